"""A process forked after its parent ran a threaded compiled model can run it too.

GNU OpenMP's pool hangs in such a child; lucid starts its threads per call and joins them
before returning, so nothing is left half-alive across fork(). The model is large enough that
its GEMMs split over two threads (above the per-thread work threshold).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import lucid
from lucid import nn


def _wait(pid: int, seconds: float) -> int:
    """The child's exit code; kill it and fail if it has not finished in time (a hang)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"forked child did not finish within {seconds} s: a threaded kernel hung")


def test_fork_after_a_threaded_compiled_call() -> None:
    lucid.random.seed(5)
    model = nn.Sequential(nn.Linear(512, 512), nn.HardSwish(), nn.Linear(512, 512)).eval()
    x = lucid.randn(256, 512)
    before = lucid.get_num_threads()
    lucid.set_num_threads(2)
    try:
        cmodel = lucid.compile(model)
        with lucid.no_grad():
            parent = cmodel(x).data.copy()
            expected = model(x).data
        np.testing.assert_allclose(parent, expected, rtol=1e-4, atol=1e-4)
        pid = os.fork()
        if pid == 0:  # the child must never return into pytest
            code = 1
            try:
                with lucid.no_grad():
                    child = cmodel(x).data
                code = 0 if np.array_equal(child, parent) else 2
            finally:
                os._exit(code)
        assert _wait(pid, 60) == 0, "the child computed a different result than its parent"
    finally:
        lucid.set_num_threads(before)
