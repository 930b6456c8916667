"""The persistent worker pool of parallel.c.j2 ("pool" mode) against per-call threads ("spawn").

The pool only changes which thread runs a task, never how the work is split, so every result must
be bitwise the spawn mode's at any thread count, whoever gets the pool.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from lucid.codegen.gemm import Epilogue, GemmSpec, bias_add, parallel_block
from tests.codegen import gemm_harness as H

ISA = H.available_isas()[0]
# odd sizes: partial tiles in M and N, a short last K block, fewer jobs than threads
SHAPES = [(97, 300, 101), (5, 131, 64), (300, 7, 50), (61, 77, 259)]
CASES = [("float", False, True), ("double", False, False), ("float", True, False)]


def _spec(dtype: str, ta: bool, tb: bool, threads: str) -> GemmSpec:
    """Tiny blocks so that threads split even these small shapes; colsum exercises the reduction."""
    blk = H.small_blocking(dtype, ISA)
    ep = Epilogue((bias_add("bias"), H.HARDSWISH), colsum=True)
    name = f"pool_{dtype}_{int(ta)}{int(tb)}_{threads}"
    return replace(GemmSpec(name, dtype, ta, tb, None, None, None, ep, ISA, blk), threads=threads)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[GemmSpec, H.Built]]:
    """One module per mode (a translation unit has one thread helper)."""
    work = tmp_path_factory.getbasetemp() / "gemm_pool"
    out: dict[str, tuple[GemmSpec, H.Built]] = {}
    for mode in ("pool", "spawn"):
        specs = [_spec(d, ta, tb, mode) for d, ta, tb in CASES]
        mod = H.build(specs, work)
        out.update({s.name: (s, mod) for s in specs})
    return out


def _inputs(rng: np.random.Generator, dtype: str, m: int, n: int, k: int, ta: bool, tb: bool):
    dt = np.float32 if dtype == "float" else np.float64
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
    return a, b, {"bias": rng.standard_normal(n).astype(dt)}


def _bits(x: np.ndarray) -> np.ndarray:
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


def test_modes_differ_only_in_the_pool() -> None:
    """Spawn mode has no static state at all (the AOT promise); pool mode has the pool."""
    pool, spawn = parallel_block("pool").text, parallel_block("spawn").text
    assert "static lucid_pool_state lucid_pool;" in pool
    assert "lucid_pool" not in spawn and "static int" not in spawn
    with pytest.raises(ValueError, match="threads must be"):
        parallel_block("openmp")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype,ta,tb", CASES)
@pytest.mark.parametrize("m,n,k", SHAPES)
@pytest.mark.needs_cc
@pytest.mark.slow
def test_pool_is_bitwise_spawn_at_any_thread_count(built, dtype, ta, tb, m, n, k) -> None:
    rng = np.random.default_rng(m * 7 + n)
    a, b, ops = _inputs(rng, dtype, m, n, k, ta, tb)
    ref_spec, ref_mod = built[f"pool_{dtype}_{int(ta)}{int(tb)}_spawn"]
    status, ref_c, ref_sum = H.run(ref_mod, ref_spec, a, b, ops, nthreads=1)
    assert status == 0
    # thread counts go up and down: the pool grows to 3 workers, then serves smaller calls
    for mode in ("spawn", "pool"):
        spec, mod = built[f"pool_{dtype}_{int(ta)}{int(tb)}_{mode}"]
        for nt in (1, 2, 3, 4, 2, 1):
            status, c, colsum = H.run(mod, spec, a, b, ops, nthreads=nt)
            assert status == 0
            assert np.array_equal(_bits(c), _bits(ref_c)), (mode, nt)
            assert colsum is not None and ref_sum is not None
            assert np.array_equal(_bits(colsum), _bits(ref_sum)), (mode, nt)


@pytest.mark.needs_cc
@pytest.mark.slow
def test_concurrent_callers_share_one_pool(built) -> None:
    """Threads calling the pool-mode GEMM at once (cffi releases the GIL): one owns the pool per
    call, the others fall back to per-call threads; every result is the single-thread one and
    nobody waits forever."""
    spec, mod = built["pool_float_01_pool"]
    rng = np.random.default_rng(3)
    jobs = []
    for m, n, k in SHAPES:
        a, b, ops = _inputs(rng, "float", m, n, k, False, True)
        status, c, colsum = H.run(mod, spec, a, b, ops, nthreads=1)
        assert status == 0
        jobs.append((a, b, ops, c, colsum))
    failures: list[str] = []

    def caller(tid: int) -> None:
        try:
            for it in range(60):
                a, b, ops, ref_c, ref_sum = jobs[(tid + it) % len(jobs)]
                status, c, colsum = H.run(mod, spec, a, b, ops, nthreads=2 + (it + tid) % 2)
                if (
                    status != 0
                    or not np.array_equal(c, ref_c)
                    or not np.array_equal(colsum, ref_sum)
                ):
                    failures.append(f"thread {tid} call {it}: status {status} or wrong result")
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
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a caller hung: the pool deadlocked"
    assert not failures, failures
