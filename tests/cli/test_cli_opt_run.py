"""`lucid-ir opt`, `run`, `cache`, `demo`, the usage errors and the console script."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid.cli import COMMANDS, main, seed_model
from lucid.ir import format_graph, parse
from lucid.ir.passes import CLEANUP_PASSES, PassManager, default_pipeline
from tests.cli.test_cli import run

UNOPTIMISED = """\
graph @forward(%x: f32[N,3]) params(%w: f32[5,3], %b: f32[5]) -> (f32[N,5], f32[N,5]) {
  %0 = transpose %w {perm=[1, 0]} : f32[3,5]
  %1 = matmul %x, %0 : f32[N,5]
  %2 = add %1, %b : f32[N,5]
  %3 = constant {dtype=f32, value=2.0} : f32[]
  %4 = constant {dtype=f32, value=3.0} : f32[]
  %5 = add %3, %4 : f32[]
  %6 = mul %2, %5 : f32[N,5]
  %7 = mul %2, %5 : f32[N,5]
  %8 = neg %6 : f32[N,5]
  %9 = neg %8 : f32[N,5]
  %10 = exp %2 : f32[N,5]
  return %9, %7
}
"""


@pytest.fixture
def lir(tmp_path: Path) -> Path:
    path = tmp_path / "model.lir"
    path.write_text(UNOPTIMISED)
    return path


def test_opt_cleanup_passes_match_golden(capsys, lir: Path, golden) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "opt", str(lir), "-p", ",".join(CLEANUP_PASSES))
    assert code == 0 and not err
    golden("opt_linear_constants.lir", out)
    assert [n.op for n in parse(out).nodes] == ["linear", "constant", "mul"]


def test_opt_without_p_runs_the_default_pipeline(capsys, lir: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "opt", str(lir), "--timings")
    want, _ = PassManager(default_pipeline()).run(parse(UNOPTIMISED))
    assert code == 0 and out == format_graph(want)
    assert [line.split()[0] for line in err.splitlines()[1:-1]] == default_pipeline()


def test_opt_named_passes_print_after_all_and_timings(capsys, lir: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "opt", str(lir), "-p", "cse,dce", "--print-after-all", "--timings")
    assert code == 0
    assert err.count("// -----// IR after") == 2
    assert err.index("// -----// IR after cse //----- //") < err.index("IR after dce")
    assert "pass" in err and "total" in err and "cse" in err.split("IR after dce")[-1]
    assert "exp" not in out and out.count(" = mul ") == 1 and "transpose" in out


def test_opt_target_and_output_file(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "out.lir"
    code, out, _ = run(capsys, "opt", "seed", "--input", "Nx3", "-o", str(target))
    assert code == 0 and not out
    assert parse(target.read_text()).input_types[0].shape == ("N", 3)


def test_opt_unknown_pass(capsys, lir: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsys, "opt", str(lir), "-p", "dce,frobnicate")
    assert code == 1 and not out
    assert err.startswith("lucid-ir: error: unknown pass 'frobnicate'; known passes:")


def test_parse_error_shows_file_line_column_and_caret(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.lir"
    bad.write_text(UNOPTIMISED.replace("%1 = matmul %x, %0", "%1 = matmul %x %0"))
    code, out, err = run(capsys, "opt", str(bad))
    lines = err.splitlines()
    assert code == 1 and not out
    assert lines[0].startswith(f"{bad}:3:") and ": error: " in lines[0]
    col = int(lines[0].split(":")[2])
    assert lines[1].strip() == "%1 = matmul %x %0 : f32[N,5]"
    assert lines[2].index("^") - lines[1].index("%1") == col - 3  # caret under the column


def test_missing_lir_file(capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "opt", str(tmp_path / "nope.lir"))
    assert code == 1 and err.startswith("lucid-ir: error: cannot read")


def test_run_lir_binds_batch_and_prints_outputs(capsys, lir: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "run", str(lir), "--batch", "3", "--seed", "1")
    assert code == 0
    assert "output 0: f32[3,5] =" in out and "output 1: f32[3,5] =" in out
    _, again, _ = run(capsys, "run", str(lir), "--batch", "3", "--seed", "1")
    assert again == out  # seeded
    _, other, _ = run(capsys, "run", str(lir), "--batch", "3", "--seed", "2")
    assert other != out


def test_run_target_uses_the_models_own_weights(capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsys, "run", "seed")
    assert code == 0 and "output 0: f32[1,2] =" in out
    with lucid.no_grad():
        # with no --input, seed runs on random data of the seed's shape [1, 3]
        x = np.random.default_rng(0).standard_normal((1, 3)).astype(np.float32)
        want = seed_model()(lucid.tensor(x)).data
    got = np.array(
        [float(t) for t in out.split("=")[-1].replace("[", " ").replace("]", " ").split()]
    )
    np.testing.assert_allclose(got, want.ravel(), atol=1e-5)


def test_cache_info_and_clear(capsys, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # a cache of its own: clearing the run's shared one would take the cache entries that
    # later tests of this worker read their C source from (CExecutable.source, lazily)
    monkeypatch.setenv("LUCID_CACHE_DIR", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "cache", "info")
    assert code == 0 and f"path: {os.environ['LUCID_CACHE_DIR']}" in out and "entries: " in out
    code, out, _ = run(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed ")


@pytest.mark.parametrize(
    "argv", [[], ["grad"], ["emit-c"], ["export"], ["trace"], ["opt", "x.lir", "--format", "pdf"]]
)
def test_usage_errors_exit_2(capsys, argv: list[str]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: lucid-ir" in capsys.readouterr().err


def test_version(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out == f"lucid-ir {lucid.__version__}\n"


def test_commands_table_is_the_parser() -> None:
    from lucid.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert {"trace", "opt", "run", "cache", "demo", "emit-c", "export"} <= set(COMMANDS)


@pytest.mark.needs_cc
@pytest.mark.slow
def test_console_script_and_python_m() -> None:
    env = {**os.environ, "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-m", "lucid.ir", "--version"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0 and done.stdout.startswith("lucid-ir ")
    script = Path(sys.executable).with_name("lucid-ir")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    done = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 0 and "compiled output:" in done.stdout and "(ok)" in done.stdout
    done = subprocess.run(
        [str(script), "opt", "missing.lir"], capture_output=True, text=True, check=False, env=env
    )
    assert done.returncode == 1 and done.stderr.startswith("lucid-ir: error: cannot read")
