"""`lucid-ir emit-c` and `lucid-ir demo`: the commands that go through the C compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

from lucid.cli import main

SEED_LIR = """graph @forward(%x: f32[N,3]) params(%w: f32[5,3], %b: f32[5]) -> (f32[N,5]) {
  %0 = linear %x, %w, %b : f32[N,5]
  %1 = hardswish %0 : f32[N,5]
  return %1
}
"""


def test_emit_c_prints_commented_c_for_a_lir_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.lir"
    path.write_text(SEED_LIR)
    assert main(["emit-c", str(path), "--prefix", "demo_net"]) == 0
    source = capsys.readouterr().out
    assert "int demo_net_run(" in source
    assert "%0 = fused_gemm" in source and "hardswish" in source  # the IR it implements


def test_emit_c_no_opt_keeps_the_unfused_kernels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.lir"
    path.write_text(SEED_LIR)
    assert main(["emit-c", str(path), "--no-opt", "--isa", "scalar"]) == 0
    source = capsys.readouterr().out
    assert "fused_" not in source
    assert "_hardswish(" in source


def test_emit_c_rejects_a_prefix_that_is_not_an_identifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.lir"
    path.write_text(SEED_LIR)
    assert main(["emit-c", str(path), "--prefix", "x; int y"]) == 1
    assert "error" in capsys.readouterr().err


@pytest.mark.needs_cc
def test_demo_compiles_the_seed_model_and_matches_eager(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "(ok)" in out and "MISMATCH" not in out
    assert "optimized IR:" in out and "per call, batch 1" in out
    assert "C library: " in out
    assert "parameter gradients match eager lucid" in out
