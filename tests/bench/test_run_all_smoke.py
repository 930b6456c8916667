"""benchmarks/run_all.py keeps working: --quick runs of the seed workload (lucid and NumPy rows)
and of the tiny GPT (the model rows), and the pieces that decide a row passes."""

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
    assert cold_warm["cold"] > 0 and cold_warm["warm"] > 0 and cold_warm["call"] > 0
    assert cold_warm["warm_overhead"] == pytest.approx(cold_warm["warm"] - cold_warm["call"])
    by_target = {t["target"]: t for t in doc["targets"]}
    warm = by_target["seed/forward warm start adds < 20 ms to the first call"]
    assert warm["status"] in {"PASS", "MISS"} and warm["value"] == cold_warm["warm_overhead"]
    assert by_target["seed/forward cold compile + first call < 1 s"]["value"] == cold_warm["cold"]
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


def _load_run_all(monkeypatch: pytest.MonkeyPatch):
    """benchmarks/run_all.py as a module (it puts benchmarks/ on sys.path: a restored copy)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("run_all", SCRIPT)
    assert spec is not None and spec.loader is not None
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    return run_all


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """(stdout, results JSON) of `run_all.py --quick --no-peers --tiny --only gpt`."""
    out = tmp_path_factory.mktemp("bench-gpt")
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--no-peers",
            "--tiny",
            "--only",
            "gpt",
            "--threads",
            "1",
            "--no-compile-times",
            "--json",
            str(out / "r.json"),
            "--png",
            "",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "r.json").read_text())


@pytest.mark.needs_cc
@pytest.mark.slow
def test_model_rows_are_timed_checked_and_targeted(gpt_run) -> None:
    stdout, doc = gpt_run
    results = doc["results"]
    assert set(results) == {"gpt/forward", "gpt/train"}
    for key in results:
        rows = results[key]
        for name in ("lucid compiled", "lucid eager"):
            assert rows[name]["status"] == "ok", (key, rows[name])
            assert rows[name]["p10"] <= rows[name]["median"] <= rows[name]["p90"]
            assert "gflops" not in rows[name]  # no FLOP count is claimed for the models
        assert rows["numpy by hand"]["status"].startswith("not available")
        assert rows["pytorch eager"]["status"] == "not available: skipped by --no-peers"
    # the compiled rows were checked against eager: forward output, then one SGD update
    assert results["gpt/forward"]["lucid compiled"]["check"]["max_abs_diff"] < 1e-4
    assert results["gpt/train"]["lucid compiled"]["check"]["rel_to_update"] < 5e-2
    by_target = {t["target"]: t for t in doc["targets"]}
    for target in ("gpt forward faster than every peer", "gpt train step faster than every peer"):
        # no peer in this run: the target is not measured, never a pass
        assert by_target[target]["status"] == "n/a"
    assert (
        "== gpt forward: GPT 1 layer" in stdout and "gpt forward faster than every peer" in stdout
    )
    assert "cross-entropy" in doc["meta"]["training_step"]


def test_only_accepts_model_groups(bench_imports) -> None:
    from workloads import select

    chosen, unknown = select("mnv3,gpt")
    assert [w.name for w in chosen] == ["mnv3-b1", "mnv3-b32", "gpt"] and unknown == []
    assert [w.modes for w in chosen] == [("forward",), ("forward", "train"), ("forward", "train")]
    assert (chosen[0].batch, chosen[1].batch, chosen[2].batch) == (1, 32, 16)
    assert chosen[0].sizes == (3, 224, 224) and chosen[2].sizes == (65, 64, 4, 4, 128)
    tiny, _ = select("mnv3-b32", tiny=True)
    assert tiny[0].sizes == (3, 32, 32) and tiny[0].batch == 2
    assert select("seed,nope")[1] == ["nope"]


def test_model_forward_check_is_relative(monkeypatch: pytest.MonkeyPatch) -> None:
    run_all = _load_run_all(monkeypatch)
    ref = np.array([[0.02, -0.01]])  # logits far below 1, as MobileNet's
    assert not run_all.forward_check(ref + 1e-4, ref, relative=True)["ok"]
    assert run_all.forward_check(ref + 1e-4, ref)["ok"]  # the MLP rule would let it through
    assert run_all.forward_check(ref + 1e-6, ref, relative=True)["ok"]
    assert not run_all.forward_check(np.zeros((2, 2)), ref, relative=True)["ok"]  # shape


def test_model_update_check_is_per_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    run_all = _load_run_all(monkeypatch)
    before = [np.zeros(3), np.zeros(2)]
    ref = [np.array([1.0, -1.0, 0.5]), np.array([1e-2, 0.0])]  # the second hardly moves
    wrong_small = [ref[0], np.array([-1e-2, 0.0])]  # its update reversed
    # against the largest update of all the error is 2%: the MLP rule lets it through
    assert run_all.update_check(before, wrong_small, ref)["ok"]
    assert not run_all.update_check(before, wrong_small, ref, per_param=True)["ok"]
    noise = [ref[0] + 1e-6, ref[1] + 1e-6]
    assert run_all.update_check(before, noise, ref, per_param=True)["ok"]
    # a parameter near 1 that hardly moves, one float32 rounding step off: not a mismatch
    before = [np.zeros(2, np.float32), np.ones(2, np.float32)]
    ref = [np.array([1e-2, -1e-2], np.float32), np.float32(1) - np.array([1e-6, 0], np.float32)]
    rounded = [ref[0], ref[1] + np.spacing(np.float32(1))]
    assert run_all.update_check(before, rounded, ref, per_param=True)["ok"]
    assert not run_all.update_check(before, [ref[0], ref[1] + 1e-5], ref, per_param=True)["ok"]
    assert not run_all.update_check(before, ref[:1], ref, per_param=True)["ok"]  # count


def test_mobilenet_data_has_calibrated_batch_norm(bench_imports) -> None:
    from model_workloads import lucid_loaded, make_model_data
    from workloads import TINY

    import lucid

    w = TINY["mnv3-b1"]
    d = make_model_data(w)
    assert d.state is not None and d.param_names is not None
    assert d.state["features.0.1.running_var"].std() > 0  # not the initial ones
    assert set(d.param_names) < set(d.state)  # buffers too
    model = lucid_loaded(w, d).eval()
    with lucid.no_grad():
        logits = model(lucid.Tensor(d.x)).data
    # with the initial statistics these logits are ~1e-9 and every forward check would pass
    assert logits.shape == (1, 1000) and np.abs(logits).max() > 1e-2


def test_the_chart_has_only_systems_that_ran_with_their_spread(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A peer that was not available anywhere gets no bar and no legend entry; each bar
    carries its p10 and p90 for the error bar."""
    _load_run_all(monkeypatch)  # puts benchmarks/ on the (restored) sys.path
    import suite_report

    results = {
        "seed/forward": {
            "lucid compiled": {"status": "ok", "median": 2e-6, "p10": 1.9e-6, "p90": 2.4e-6},
            "pytorch eager": {"status": "ok", "median": 2e-5, "p10": 1.8e-5, "p90": 2.5e-5},
            "jax jit": {"status": "not available: not installed"},
        },
        "wide/forward": {
            "lucid compiled": {"status": "ok", "median": 3e-3, "p10": 2.9e-3, "p90": 3.3e-3},
            "jax jit": {"status": "not available: not installed"},
        },
    }
    series = suite_report.chart_series(results)
    assert [s[0] for s in series] == ["lucid compiled", "pytorch eager"]
    assert series[0][1:] == ([0, 1], [2e-6, 3e-3], [1.9e-6, 2.9e-3], [2.4e-6, 3.3e-3])
    pytest.importorskip("matplotlib")
    suite_report.write_png(tmp_path / "chart.png", results)
    assert (tmp_path / "chart.png").stat().st_size > 1000
