"""benchmarks/bench_narrow.py keeps working: on small shapes it prints the CPU and, for each N,
the inference and training forward's Linear kernel and the weight gradient's, with the narrow
paths and without them (the script itself checks which path each build took)."""

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
        r"^\s*(\d+) (inference|training forward|training dW) +(\S+) us +(\S+) us +(\S+)x$",
        out,
        re.MULTILINE,
    )
    assert [(n, kind) for n, kind, *_ in rows] == [
        (n, kind)
        for n in ("3", "20")  # 20 is wider than NARROW_N: both builds' forward is blocked
        for kind in ("inference", "training forward", "training dW")
    ]
    for *_, narrow, other, ratio in rows:
        assert float(narrow) > 0 and float(other) > 0
        assert float(ratio) == pytest.approx(float(other) / float(narrow), rel=0.2, abs=0.02)
