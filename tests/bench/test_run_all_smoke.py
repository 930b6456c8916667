"""benchmarks/run_all.py keeps working: a --quick run of the seed workload (lucid and NumPy rows)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict, Path]:
    """(stdout, results JSON, png path) of `run_all.py --quick --no-peers --only seed`."""
    out = tmp_path_factory.mktemp("bench")
    png = out / "r.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--no-peers",
            "--only",
            "seed",
            "--threads",
            "1",
            "--json",
            str(out / "r.json"),
            "--png",
            str(png),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "r.json").read_text()), png


@pytest.mark.needs_cc
@pytest.mark.slow
def test_lucid_and_numpy_rows_are_timed_and_agree(quick_run) -> None:
    _, doc, _ = quick_run
    fwd, train = doc["results"]["seed/forward"], doc["results"]["seed/train"]
    for name in ("lucid compiled", "lucid eager", "numpy by hand"):
        assert fwd[name]["status"] == "ok", fwd[name]
        assert fwd[name]["p10"] <= fwd[name]["median"] <= fwd[name]["p90"]
    for name in ("lucid eager", "numpy by hand"):
        assert train[name]["status"] == "ok", train[name]
    # compiled training may be missing in a checkout, but must never be wrong or crash
    status = train["lucid compiled"]["status"]
    assert status == "ok" or status.startswith("not available"), status
    assert doc["meta"]["threads"] == 1 and doc["meta"]["quick"] is True


@pytest.mark.needs_cc
@pytest.mark.slow
def test_report_has_targets_compile_times_and_chart(quick_run) -> None:
    stdout, doc, png = quick_run
    assert "Targets" in stdout and "== seed forward" in stdout
    cold_warm = doc["compile_first_call_s"]["seed/forward"]
    assert cold_warm["cold"] > 0 and cold_warm["warm"] > 0
    assert {t["status"] for t in doc["targets"]} <= {"PASS", "MISS", "n/a"}
    pytest.importorskip("matplotlib")
    assert png.stat().st_size > 1000


def test_a_wrong_output_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    # run_all.py puts benchmarks/ on sys.path when imported: give it a copy that is restored
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    forward_check, update_check = run_all.forward_check, run_all.update_check

    ref = np.array([[0.5, -1.0]])
    assert forward_check(ref.astype(np.float32), ref)["ok"]
    assert not forward_check(ref + 0.1, ref)["ok"]
    before, after = [np.zeros(3)], [np.array([1e-3, 0.0, -1e-3])]
    assert update_check(before, after, after)["ok"]
    assert not update_check(before, [-after[0]], after)["ok"]


def test_unknown_workload_is_an_error() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "nope", "--no-compile-times", "--png", ""],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "unknown workload" in proc.stderr
