"""benchmarks/core_latency.py: the core-to-core round trip that run_all.py prints beside each
row, and the note a target gets when its two rows ran in different core placements."""

from __future__ import annotations

import math
import os
import time

import pytest


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


needs_two_cores = pytest.mark.skipif(len(_cores()) < 2, reason="needs 2 cores to pin to")


@pytest.fixture
def probe(bench_imports, tmp_path):
    from core_latency import RoundTrip

    found = RoundTrip.for_threads(2, tmp_path)
    if found.ns(windows=1) is None:
        pytest.fail("the probe did not build or run on a machine with 2 cores")
    return found


@pytest.mark.needs_cc
@needs_two_cores
def test_round_trip_between_two_cores_is_measured_and_affinity_restored(probe) -> None:
    before = os.sched_getaffinity(0)
    found = probe.ns()
    assert found is not None and math.isfinite(found) and found > 0
    assert os.sched_getaffinity(0) == before  # the caller is pinned only while it measures


@pytest.mark.needs_cc
@needs_two_cores
def test_one_core_hand_off_ends_by_its_deadline(probe) -> None:
    """Both threads on one CPU: every hand-off waits for the scheduler; the probe must still
    return (about twice its window at worst) with a large, finite answer, not hang."""
    from core_latency import RoundTrip

    cpu = _cores()[0]
    same = RoundTrip(probe._lib, (cpu, cpu))
    start = time.perf_counter()
    found = same.ns(seconds=0.01, windows=1, settle=0.0)
    assert time.perf_counter() - start < 2.0
    assert found is not None and math.isfinite(found) and found > 0


@pytest.mark.needs_cc
@needs_two_cores
def test_a_cpu_outside_the_machine_is_not_measured(probe) -> None:
    from core_latency import RoundTrip

    assert RoundTrip(probe._lib, (_cores()[0], 1023)).ns(windows=1, settle=0.0) is None


def test_one_thread_measures_nothing(bench_imports) -> None:
    from core_latency import RoundTrip

    assert RoundTrip.for_threads(1).ns() is None


def test_a_target_names_different_core_placements(bench_imports) -> None:
    from suite_report import placement_note

    rows = {
        "lucid compiled": {"core_roundtrip_ns": [61.0, 64.0]},
        "jax jit": {"core_roundtrip_ns": [58.0, 320.0]},  # moved apart during its timing
        "onnxruntime": {"core_roundtrip_ns": [70.0, 66.0]},
        "pytorch eager": {"status": "not available: torch is not installed"},
    }
    note = placement_note(rows, "lucid compiled", "jax jit")
    assert "lucid compiled 64 ns" in note and "jax jit 320 ns" in note
    assert placement_note(rows, "lucid compiled", "onnxruntime") == ""
    assert placement_note(rows, "lucid compiled", "pytorch eager") == ""  # not measured


def test_times_print_in_their_unit_and_a_negative_difference_in_its_own(bench_imports) -> None:  # type: ignore[no-untyped-def]
    from _common import fmt_time

    assert [fmt_time(t) for t in (1.5, 2.5e-3, 9.19e-6, 5e-10)] == [
        "1.5 s",
        "2.5 ms",
        "9.19 us",
        "0.5 ns",
    ]
    # a warm start's first call minus a later call that the host slowed down
    assert fmt_time(0.108 - 0.147) == "-39 ms"
