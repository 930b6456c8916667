"""Fixtures of the benchmark tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture
def bench_imports():
    """Let a test import benchmarks/ modules (workloads, run_all, peers, ...) by their short
    names, as the scripts do; sys.path and sys.modules are restored afterwards."""
    path, before = list(sys.path), set(sys.modules)
    sys.path[:0] = [str(BENCH), str(ROOT)]
    yield
    sys.path[:] = path
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(BENCH)):
            del sys.modules[name]
