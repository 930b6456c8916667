"""lucid.set_num_threads / get_num_threads: validation, default, and results independent of it."""

from __future__ import annotations

import os

import numpy as np
import pytest

import lucid
from tests.runtime.test_compile_models import BACKENDS, mlp


@pytest.fixture(autouse=True)
def _restore_threads():
    before = lucid.get_num_threads()
    yield
    lucid.set_num_threads(before)


def test_default_is_the_cores_available_to_the_process():
    from lucid.runtime import threads

    assert threads.available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises((ValueError, TypeError), match="expected an int >= 1"):
        lucid.set_num_threads(bad)


def test_set_and_get():
    lucid.set_num_threads(np.int64(3))
    assert lucid.get_num_threads() == 3 and type(lucid.get_num_threads()) is int


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.slow
def test_results_equal_across_thread_counts(backend):
    lucid.random.seed(11)
    model = mlp([96, 256, 200, 10]).eval()
    cm = lucid.compile(model, backend=backend, dynamic_batch=True)
    x = np.random.default_rng(11).standard_normal((300, 96)).astype(np.float32)
    outs = []
    for n in (1, 2, 1):
        lucid.set_num_threads(n)  # read at every call: no recompilation
        outs.append(cm(x).data)
    assert len(cm.signatures) == 1
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
    np.testing.assert_allclose(outs[0], model(lucid.Tensor(x)).data, rtol=1e-4, atol=1e-5)


def _big_model() -> tuple[lucid.nn.Module, np.ndarray]:
    """Linear layers wide enough that their GEMMs split over 2-3 threads."""
    lucid.random.seed(23)
    model = mlp([384, 512, 256, 64]).eval()
    x = np.random.default_rng(23).standard_normal((193, 384)).astype(np.float32)
    return model, x


@pytest.mark.needs_cc
def test_threads_calling_one_compiled_model_at_once():
    """cffi releases the GIL, so Python threads run the model's C at the same time: one call owns
    the worker pool, the others fall back to per-call threads, and all get the 1-thread result."""
    import threading

    model, x = _big_model()
    cm = lucid.compile(model, dynamic_batch=True)
    lucid.set_num_threads(1)
    expected = {rows: cm(x[:rows]).data.copy() for rows in (193, 150, 97)}
    lucid.set_num_threads(3)
    failures: list[str] = []

    def caller(tid: int) -> None:
        try:
            for it in range(25):
                rows = (193, 150, 97)[(tid + it) % 3]
                if not np.array_equal(cm(x[:rows]).data, expected[rows]):
                    failures.append(f"thread {tid} call {it}: wrong result")
                    return
        except Exception as exc:
            # Recorded for the assert below (an exception in a thread is otherwise lost) and
            # re-raised so that the thread's traceback is printed as well.
            failures.append(f"thread {tid}: {exc!r}")
            raise

    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a caller hung: the pool deadlocked"
    assert not failures, failures


_EXIT_SCRIPT = """
import sys, time
import numpy as np
import lucid
from lucid import nn
lucid.set_num_threads(2)
lucid.random.seed(1)
model = nn.Sequential(nn.Linear(512, 512), nn.HardSwish(), nn.Linear(512, 512)).eval()
cm = lucid.compile(model)
x = lucid.randn(256, 512)
for _ in range(5):
    y = cm(x)
assert np.allclose(y.data, model(x).data, rtol=1e-4, atol=1e-4)
print("done", flush=True)
"""


@pytest.mark.needs_cc
@pytest.mark.slow
def test_process_with_pool_workers_exits_promptly(tmp_path):
    """Pool workers are detached and asleep or spinning after the last call: the interpreter
    exits at once around them, cleanly (exit code 0, no crash at teardown)."""
    import subprocess
    import sys
    import time

    env = dict(os.environ, LUCID_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXIT_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # compile + run: the cache is cold, allow for the build
        done_at = time.monotonic()
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail("the process did not exit: pool workers kept it alive")
    exit_seconds = time.monotonic() - done_at
    assert line.strip() == "done", proc.stderr.read() if proc.stderr else ""
    assert code == 0, proc.stderr.read() if proc.stderr else ""
    assert exit_seconds < 5.0, f"exit took {exit_seconds:.1f} s after the last call"


@pytest.mark.needs_cc
@pytest.mark.slow
def test_aot_export_keeps_per_call_threads(tmp_path):
    """lucid.compile generates the pool; an exported library (no global mutable state, NAME_run
    callable from any number of threads) gets per-call threads only."""
    from lucid.codegen import CodegenOptions

    assert CodegenOptions().threads == "pool"
    model, x = _big_model()
    result = lucid.export(model, lucid.Tensor(x), tmp_path / "wide")
    source = (tmp_path / "wide.c").read_text()
    assert "lucid_parallel_spawn" in source, "the model should have threaded kernels"
    assert "lucid_pool" not in source
    del result


@pytest.mark.needs_cc
def test_the_kept_arena_serves_larger_and_smaller_batches():
    """A call keeps its arena for the next (program.c.j2): a bigger batch must get a bigger
    one, a smaller batch may reuse it, and no call sees another's intermediates."""
    model, x = _big_model()
    cm = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        for rows in (10, 193, 3, 193, 150, 1, 97):
            want = model(lucid.Tensor(x[:rows])).data
            np.testing.assert_allclose(cm(x[:rows]).data, want, rtol=1e-4, atol=1e-4)
