"""The shared packed op(B) of multi-threaded GEMMs: bitwise the per-job packing and 1 thread."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from lucid.codegen.gemm import Epilogue, GemmSpec, bias_add
from lucid.ir.ops import OPS
from tests.codegen import gemm_harness as H

pytestmark = [pytest.mark.needs_cc, pytest.mark.slow]

ISA = H.available_isas()[0]
TRANS = [(False, False), (False, True), (True, False), (True, True)]
# odd sizes: partial tiles, a last claim unit narrower than the others, a short last K block
SHAPES = [(97, 300, 101), (5, 131, 64), (300, 7, 50), (29, 515, 3)]


def _spec(dtype: str, ta: bool, tb: bool, shared: bool) -> GemmSpec:
    """Tiny blocks, threads for any size; B shared between threads or packed per job."""
    blk = replace(H.small_blocking(dtype, ISA), shared_b_bytes=(16 << 20) if shared else 0)
    ep = Epilogue((bias_add("bias"), H.HARDSWISH), colsum=True)
    tag = f"{dtype}_{int(ta)}{int(tb)}_{'sh' if shared else 'own'}"
    return GemmSpec(f"shb_{tag}", dtype, ta, tb, None, None, None, ep, ISA, blk)


SPECS = [
    _spec(d, ta, tb, sh) for d in ("float", "double") for ta, tb in TRANS for sh in (True, False)
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, H.Built]:
    """All specs, compiled in a few modules in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    work = tmp_path_factory.getbasetemp() / "gemm_shared_b"
    groups = [SPECS[i : i + 4] for i in range(0, len(SPECS), 4)]
    with ThreadPoolExecutor(4) as pool:
        mods = list(pool.map(lambda g: H.build(g, work), groups))
    return {s.name: m for g, m in zip(groups, mods) for s in g}


def _bits(x: np.ndarray) -> np.ndarray:
    """The raw bits, so NaN payloads and signed zeros compare too."""
    return x.view(np.uint32 if x.dtype == np.float32 else np.uint64)


def _inputs(rng, dtype: str, m: int, n: int, k: int, ta: bool, tb: bool, specials: bool):
    dt = np.float32 if dtype == "float" else np.float64
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
    if specials:
        a.flat[:: max(1, a.size // 5)] = np.nan
        b.flat[3 :: max(1, b.size // 4)] = np.inf
        b.flat[7 :: max(1, b.size // 3)] = -np.inf
    return a, b, rng.standard_normal(n).astype(dt)


@pytest.mark.parametrize("dtype", ["float", "double"])
@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("specials", [False, True])
def test_shared_b_bitwise(built, dtype: str, ta: bool, tb: bool, specials: bool) -> None:
    """Shared B with 2 and 3 threads == per-job B with 2 threads == 1 thread, to the bit."""
    shared, own = _spec(dtype, ta, tb, True), _spec(dtype, ta, tb, False)
    rng = np.random.default_rng(11)
    for m, n, k in SHAPES:
        a, b, bias = _inputs(rng, dtype, m, n, k, ta, tb, specials)
        ref = H.run(built[own.name], own, a, b, {"bias": bias}, nthreads=1)
        runs = [H.run(built[own.name], own, a, b, {"bias": bias}, nthreads=2)]
        runs += [
            H.run(built[shared.name], shared, a, b, {"bias": bias}, nthreads=t) for t in (2, 3)
        ]
        assert ref[0] == 0
        if not specials:  # a plain reference, so equal bits also mean right values
            expect = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b) + bias
            expect = OPS["hardswish"].numpy(expect)
            np.testing.assert_allclose(ref[1], expect, rtol=1e-3, atol=1e-3)
        else:
            assert np.isnan(ref[1]).any()
        for status, c, cs in runs:
            assert status == 0
            assert np.array_equal(_bits(c), _bits(ref[1])), (m, n, k)
            assert np.array_equal(_bits(cs), _bits(ref[2])), (m, n, k)
