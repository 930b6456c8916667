"""Fixtures of the benchmark tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
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


@pytest.fixture
def run_bench(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run benchmarks/SCRIPT with its arguments in a child process whose compile cache is
    tmp_path; returns the finished process once it has exited 0 (else the test fails with its
    output)."""

    def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, str(BENCH / script), *args],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "LUCID_CACHE_DIR": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return proc

    return run
