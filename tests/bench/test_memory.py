"""benchmarks/suite_memory.py measures what a row allocates: an N MiB allocation inside the
measured call shows up as at least N MiB, a call that allocates nothing as about zero; the
user's model is made before the baseline (not counted), while what the system allocates getting
ready to run it is counted; a real row (lucid compiled on the tiny GPT) is measured in a fresh process, and the table, the targets
and the JSON carry it; a system that is not installed or cannot run the row is skipped with
its reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ALLOCATED_MIB = 64
READY_MIB = 24  # what the Hoarder system keeps after getting ready (its "compiled model")

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc high-water mark"
)


@pytest.fixture
def bench(bench_imports):
    """suite_memory, suite_report and the workloads, imported from benchmarks/."""
    import suite_memory
    import suite_report
    from workloads import TINY

    return SimpleNamespace(memory=suite_memory, report=suite_report, TINY=TINY)


def allocating() -> Callable[[], object]:
    """A row whose every call writes (so makes resident) ALLOCATED_MIB and frees it."""
    return lambda: float(np.ones(ALLOCATED_MIB << 20, np.uint8).sum())


def idle() -> Callable[[], object]:
    """A row whose calls allocate nothing."""
    return lambda: None


def test_an_allocation_in_the_call_is_counted(bench) -> None:
    rec = bench.memory.in_fresh_process(bench.memory.working_memory, allocating)
    assert rec["status"] == "ok", rec
    # the array was freed before the peak was read: only the high-water mark can see it (less
    # the odd page of the baseline that the interpreter frees meanwhile: 63.97 MiB was seen)
    assert rec["first_mb"] >= ALLOCATED_MIB - 1 and rec["steady_mb"] >= ALLOCATED_MIB - 1
    assert rec["peak_mb"] < 2 * ALLOCATED_MIB + 16  # np.ones and nothing much besides


def test_a_call_that_allocates_nothing_is_near_zero(bench) -> None:
    rec = bench.memory.in_fresh_process(bench.memory.working_memory, idle)
    assert rec["status"] == "ok", rec
    assert abs(rec["peak_mb"]) < 4 and rec["baseline_mb"] > 1


class Hoarder:
    """A system whose user's model holds ALLOCATED_MIB and which keeps READY_MIB once ready
    (as a compiler keeps its compiled code and packed weights); its calls allocate nothing."""

    name = "hoarder"

    def model(self, w, d, mode: str) -> np.ndarray:
        return np.ones(ALLOCATED_MIB << 20, np.uint8)

    def forward(self, w, d, model: np.ndarray):
        from peers import Forward

        kept = np.ones(READY_MIB << 20, np.uint8)
        return Forward(lambda: kept, lambda out: out)


def test_the_model_is_not_counted_getting_ready_is(bench) -> None:
    w = bench.TINY["gpt"]
    rec = bench.memory.in_fresh_process(bench.memory.measure_system, Hoarder(), w, None, "forward")
    assert rec["status"] == "ok", rec
    assert rec["baseline_mb"] > ALLOCATED_MIB  # the model was resident before the baseline
    for key in ("first_mb", "steady_mb"):
        assert READY_MIB - 1 <= rec[key] < ALLOCATED_MIB, (key, rec)


def test_a_dying_child_is_a_failed_record(bench) -> None:
    import os

    rec = bench.memory.in_fresh_process(os._exit, 3)
    assert rec["status"] == "failed: the child died (exit code 3)"


@pytest.mark.needs_cc
def test_rows_table_targets_and_json(bench, tmp_path: Path, capsys) -> None:
    w = bench.TINY["gpt"]
    skipped = {"jax jit": "jax not installed (pip install '.[bench]')"}
    memory = bench.memory.memory_rows(
        [(w, "forward")], ["lucid compiled", "numpy by hand"], skipped, threads=1
    )
    rows = memory["gpt/forward"]
    assert rows["lucid compiled"]["status"] == "ok", rows["lucid compiled"]
    assert rows["lucid compiled"]["peak_mb"] >= rows["lucid compiled"]["steady_mb"] > 0
    assert rows["numpy by hand"]["status"].startswith("not available: MLP and GEMM")
    assert rows["jax jit"]["status"] == f"not available: {skipped['jax jit']}"

    # a measured peer, to give the ratio and the target something to compare with
    rows["pytorch eager"] = {**rows["lucid compiled"], "peak_mb": 1e6}
    bench.report.print_memory(memory, "Test CPU", 1)
    out = capsys.readouterr().out
    assert "Test CPU" in out and "gpt/forward" in out and "(pytorch eager)" in out
    assert "jax jit" not in out  # no column for a system that measured nothing
    (check,) = bench.report.memory_targets(memory)
    assert check["status"] == "PASS" and check["value"] < 1e-3
    del rows["pytorch eager"]
    assert bench.report.memory_targets(memory)[0]["status"] == "n/a"  # no peer: never a pass

    path = tmp_path / "r.json"
    bench.report.write_json(path, {}, None, {}, {}, [], memory)
    doc = json.loads(path.read_text())
    assert doc["memory_mb"]["gpt/forward"]["lucid compiled"]["peak_mb"] > 0
