"""benchmarks/bench_activations.py keeps working: tiny shapes print the CPU and one timed row per
activation (PyTorch's column when it is installed, after checking that both agree)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.needs_cc


def test_bench_activations_prints_every_activation(run_bench) -> None:
    proc = run_bench("bench_activations.py", "--tiny", "--threads", "1")
    out = proc.stdout
    assert out.startswith("CPU: ") and "1 thread(s)" in out
    names = ("none", "relu", "hardswish", "sigmoid", "silu", "gelu-tanh", "gelu")
    for name in names:
        assert re.search(rf"^  {re.escape(name)} +\d", out, re.MULTILINE), name
