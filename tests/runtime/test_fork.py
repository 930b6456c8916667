"""A process forked after its parent ran a threaded compiled model can run it too.

GNU OpenMP's pool hangs in such a child. lucid's worker pool records the pid that created its
workers and the pid of the process owning it for a call, so a child sees inherited state and
starts a pool of its own (parallel.c.j2). The model is large enough that its GEMMs split over
two threads (above the per-thread work threshold).
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import lucid
from lucid import nn

pytestmark = pytest.mark.needs_cc


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


@pytest.mark.slow
def test_fork_while_another_thread_owns_the_pool() -> None:
    """fork() while a parent thread is inside a threaded call: the child inherits a pool marked
    as owned, with workers that do not exist in it. It must take the pool over (or fall back),
    not wait for a call that will never finish, and compute the parent's result."""
    lucid.random.seed(6)
    model = nn.Sequential(nn.Linear(512, 768), nn.HardSwish(), nn.Linear(768, 512)).eval()
    x = lucid.randn(384, 512)
    before = lucid.get_num_threads()
    lucid.set_num_threads(2)
    stop = threading.Event()
    worker: threading.Thread | None = None
    try:
        cmodel = lucid.compile(model)
        with lucid.no_grad():
            parent = cmodel(x).data.copy()

        def busy() -> None:  # keeps the pool owned most of the time
            with lucid.no_grad():
                while not stop.is_set():
                    cmodel(x)

        worker = threading.Thread(target=busy, daemon=True)
        worker.start()
        time.sleep(0.05)
        pids = []
        for _ in range(3):  # several forks: some land inside a call
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    with lucid.no_grad():
                        ok = all(np.array_equal(cmodel(x).data, parent) for _ in range(3))
                    code = 0 if ok else 2
                finally:
                    os._exit(code)
            pids.append(pid)
            time.sleep(0.01)
        for pid in pids:
            assert _wait(pid, 60) == 0, "the child computed a different result than its parent"
    finally:
        stop.set()
        if worker is not None:
            # grad mode is one global, not per thread: a worker still inside its no_grad block
            # when the next test enters one would leave grad mode off for the rest of the run
            worker.join(timeout=60)
        lucid.set_num_threads(before)
