"""`lucid-ir grad`: the backward graph of a .lir file or a target, and tools applied to it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lucid.cli import main
from lucid.ir import parse

GOLDEN = Path(__file__).parents[1] / "golden"


def test_grad_of_the_seed_target_optimised_is_the_compiled_backward(tmp_path, capsys):
    out = tmp_path / "bw.lir"
    assert main(["grad", "seed", "--input", "Nx3", "--no-input-grads", "-O", "-o", str(out)]) == 0
    # the same graph lucid.compile optimises for a training step (test_train_semantics)
    assert out.read_text() == (GOLDEN / "grad_seed_opt.lir").read_text()
    capsys.readouterr()


def test_grad_of_a_lir_file_then_opt_and_emit_c(tmp_path, capsys):
    bw = tmp_path / "bw.lir"
    assert main(["grad", str(GOLDEN / "ir_seed.lir"), "-o", str(bw)]) == 0
    graph = parse(bw.read_text())
    assert graph.name == "backward" and "hardswish_grad" in bw.read_text()
    assert len(graph.outputs) == 1 + len(graph.params) + 2  # dx, then every forward param
    assert main(["opt", str(bw)]) == 0
    optimised = capsys.readouterr().out
    assert "fused_gemm" in optimised and "hardswish_grad" in optimised
    assert main(["emit-c", str(bw)]) == 0
    source = capsys.readouterr().out
    assert "hardswish_grad" in source and "lucid_run" in source


def test_grad_formats_and_errors(tmp_path, capsys):
    assert main(["grad", "seed", "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    # an integer param (a counter buffer) carries no gradient: zeros of its own type
    ints = tmp_path / "int.lir"
    ints.write_text("graph @f(%x: f32[3]) params(%k: i64[3]) -> (f32[3]) {\n  return %x\n}\n")
    assert main(["grad", str(ints)]) == 0
    backward = parse(capsys.readouterr().out)
    assert [str(t) for t in backward.output_types] == ["f32[3]", "i64[3]"]
    bad = tmp_path / "bad.lir"
    bad.write_text("graph @f(%x: f32[3]) -> (f32[3]) {\n  return %y\n}\n")
    assert main(["grad", str(bad)]) == 1
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["-O", "--optimize"])
def test_grad_optimize_flag_spellings(flag, capsys):
    assert main(["grad", "seed", flag]) == 0
    assert "fused_gemm" in capsys.readouterr().out
