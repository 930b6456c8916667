"""Usage errors exit 2 with the subcommand's usage, also those found after argparse; every
accepted option does something (`run --batch`, `run --seed`); .lir errors found after parsing
carry `file:line:col`, the source line and a caret in every subcommand that reads .lir."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lucid
from lucid.cli import build_parser, main

# %w should be f32[3,5]: the type rule of matmul rejects line 3, column 3
BAD_TYPES = """\
graph @f(%x: f32[N,3], %w: f32[5,4]) -> (f32[N,5]) {
  %0 = relu %x : f32[N,3]
  %1 = matmul %0, %w : f32[N,5]
  return %1
}
"""
# valid, but relu_grad has no VJP rule: `grad` fails after parsing, at line 3
NO_VJP = """\
graph @f(%x: f32[N,3]) -> (f32[N,3]) {
  %0 = relu %x : f32[N,3]
  %1 = relu_grad %x, %0 : f32[N,3]
  return %1
}
"""
STATIC = """\
graph @f(%x: f32[2,3]) -> (f32[2,3]) {
  %0 = relu %x : f32[2,3]
  return %0
}
"""


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """stderr of `lucid-ir argv`, which must be a usage error (exit 2, usage shown)."""
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert f"usage: lucid-ir {argv[0]}" in err, err
    return err


@pytest.mark.parametrize("command", ["opt", "run", "grad", "emit-c"])
def test_lir_type_error_has_file_line_column_source_and_caret(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    lir = tmp_path / "bad.lir"
    lir.write_text(BAD_TYPES)
    assert main([command, str(lir)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"{lir}:3:3: error: matmul: the type rule rejects the inputs")
    assert lines[1:3] == ["    %1 = matmul %0, %w : f32[N,5]", "    ^"]


def test_error_found_after_parsing_points_into_the_lir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lir = tmp_path / "nograd.lir"
    lir.write_text(NO_VJP)
    assert main(["grad", str(lir)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"{lir}:3:3: error: no VJP rule for op 'relu_grad': cannot differentiate it"
    assert lines[1:3] == ["    %1 = relu_grad %x, %0 : f32[N,3]", "    ^"]
    assert "  > %1 = relu_grad %x, %0 : f32[N,3]" in lines  # and the IR around it


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["opt", "{lir}", "--input", "1x3"], "a .lir file declares its own input types; --input 1x3"),
        (["run", "{lir}", "--dtype", "f64"], "--dtype f64 applies to Python models only"),
        (["grad", "{lir}", "--dynamic-batch"], "--dynamic-batch applies to Python models only"),
        (["opt", "{lir}", "--model", "m:Net"], "expected the model once, as TARGET or --model"),
        (["trace", "seed", "--format", "dot", "--locs"], "--locs applies to --format text, got --format dot"),
        (["trace", "--model", "lucid.cli:SeedModel"], "lucid.cli:SeedModel: expected the input shapes with --input (e.g. --input Nx3), got none"),
        (["run", "{static}", "--batch", "3"], "--batch 3 expected a symbolic dim such as N in the inputs of @f, got none (f32[2,3])"),
        (["run", "seed", "--batch", "0"], "argument --batch: expected an integer >= 1, got '0'"),
    ],
)  # fmt: skip
def test_conflicting_options_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    (tmp_path / "f.lir").write_text(NO_VJP)
    (tmp_path / "static.lir").write_text(STATIC)
    paths = {"lir": str(tmp_path / "f.lir"), "static": str(tmp_path / "static.lir")}
    err = usage_error(capsys, *(a.format(**paths) for a in argv))
    assert f"lucid-ir {argv[0]}: error: " in err and message in err, err


def run_out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["run", *argv]) == 0
    return capsys.readouterr().out


def test_run_batch_is_honoured_for_a_model_and_for_a_lir(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = run_out(capsys, "seed", "--batch", "3")  # the seed's 1x3 input becomes Nx3
    assert "-> (f32[N,2])" in out and "output 0: f32[3,2] =" in out
    assert "output 0: f32[5,2] =" in run_out(capsys, "seed", "--input", "1x3", "--batch", "5")
    lir = tmp_path / "f.lir"
    lir.write_text(NO_VJP)
    assert "output 0: f32[2,3] =" in run_out(capsys, str(lir), "--batch", "2")
    assert "output 0: f32[4,3] =" in run_out(capsys, str(lir))  # the default batch


def test_run_seed_changes_the_random_inputs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lir = tmp_path / "f.lir"
    lir.write_text(STATIC)
    first, again = run_out(capsys, str(lir)), run_out(capsys, str(lir), "--seed", "0")
    other = run_out(capsys, str(lir), "--seed", "1")
    assert first == again and other != first


def test_only_run_takes_batch_and_seed() -> None:
    """Elsewhere they would be accepted and ignored: the output does not depend on them."""
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    takes = {
        name
        for name, parser in sub.choices.items()
        if {"--batch", "--seed"} & {s for a in parser._actions for s in a.option_strings}
    }
    assert takes == {"run"}


def test_python_m_lucid_is_lucid_ir(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(lucid.__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "lucid", "run", "seed", "--batch", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0 and "output 0: f32[2,2] =" in done.stdout, done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "lucid", "trace", "--model", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 2 and "usage: lucid-ir trace" in done.stderr
