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
    time = r"(\S+ [mun]?s)"  # benchmarks/_common.fmt_time: 3 significant digits and a unit
    rows = re.findall(
        rf"^\s*(\d+) (inference|training forward|training dW) +{time} +{time} +(\S+)x$",
        out,
        re.MULTILINE,
    )
    assert [(n, kind) for n, kind, *_ in rows] == [
        (n, kind)
        for n in ("3", "20")  # 20 is wider than NARROW_N: both builds' forward is blocked
        for kind in ("inference", "training forward", "training dW")
    ]
    scale = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

    def seconds(text: str) -> float:
        value, unit = text.split()
        return float(value) * scale[unit]

    for *_, narrow, other, ratio in rows:
        assert seconds(narrow) > 0 and seconds(other) > 0
        # the printed times keep 3 significant digits: their ratio is the printed one to ~1%
        assert float(ratio) == pytest.approx(seconds(other) / seconds(narrow), rel=0.02)
