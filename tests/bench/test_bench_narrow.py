"""benchmarks/bench_narrow.py keeps working: on small shapes it prints the CPU and, for each N,
an inference and a training row timing the Linear's kernel on the row path and without it (the
script itself checks that the two builds differ where they should)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.needs_cc


def test_bench_narrow_prints_both_paths(run_bench) -> None:
    proc = run_bench(
        "bench_narrow.py",
        *("--threads", "1", "--batch", "40", "--k", "128", "--n", "3,20"),
        *("--rounds", "1", "--calls", "2"),
    )
    out = proc.stdout
    assert out.startswith("CPU: ") and "1 thread(s)" in out
    rows = re.findall(
        r"^\s*(\d+) (inference|training) +(\S+) us +(\S+) us +(\S+)x$", out, re.MULTILINE
    )
    assert [(n, mode) for n, mode, *_ in rows] == [
        ("3", "inference"),
        ("3", "training"),
        ("20", "inference"),  # wider than NARROW_N: both builds are the blocked path
        ("20", "training"),
    ]
    for *_, row, other, ratio in rows:
        assert float(row) > 0 and float(other) > 0
        assert float(ratio) == pytest.approx(float(other) / float(row), rel=0.2, abs=0.02)
