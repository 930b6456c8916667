"""Generated GEMM kernels: accuracy vs NumPy, edge shapes, epilogues, threads, NaN/inf, fork."""

from __future__ import annotations

import os
import time
import zlib

import numpy as np
import pytest

from lucid.ir.ops import OPS
from tests.codegen import gemm_harness as H

pytestmark = [pytest.mark.needs_cc, pytest.mark.slow]

ISAS = H.available_isas()
DTYPES = ["float", "double"]
TRANS = [(False, False), (False, True), (True, False), (True, True)]
SHAPES = [(1, 1, 1), (1, 3, 5), (7, 13, 17), (33, 65, 129), (256, 257, 63), (15, 40, 300)]


@pytest.fixture(scope="module")
def mods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, H.Built]:
    """Every available isa's catalogue (spec name -> module), compiled once per session."""
    return H.build_all(tmp_path_factory.getbasetemp() / "gemm")


def _np_dtype(dtype: str) -> type:
    return np.float32 if dtype == "float" else np.float64


def _operands(rng: np.random.Generator, dtype: str, m: int, n: int, k: int, ta: bool, tb: bool):
    dt = _np_dtype(dtype)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dt)
    return a, b


def _op(x: np.ndarray, t: bool) -> np.ndarray:
    return x.T if t else x


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """op(A) @ op(B) with more precision than the inputs' dtype (long double for float64)."""
    wide = np.longdouble if a.dtype == np.float64 else np.float64
    return np.matmul(a.astype(wide), b.astype(wide))


KERNELS = [("small", t) for t in TRANS] + [("plain", t) for t in H.PLAIN_TRANS]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind,trans", KERNELS)
def test_error_within_twice_numpy(
    mods, isa: str, dtype: str, kind: str, trans: tuple[bool, bool]
) -> None:
    """Every edge shape: error vs a wider reference is at most twice NumPy's (plus one ulp)."""
    ta, tb = trans
    tag = f"{isa}_{dtype}_{int(ta)}{int(tb)}"
    spec = H.spec_named(isa, f"{kind}_{tag}")
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    for m, n, k in SHAPES:
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        status, c, _ = H.run(mods[spec.name], spec, a, b, nthreads=2)
        assert status == 0
        ref = _reference(_op(a, ta), _op(b, tb))
        mine = float(np.abs(c - ref).max())
        numpy_err = float(np.abs(_op(a, ta) @ _op(b, tb) - ref).max())
        scale = float((np.abs(_op(a, ta)).astype(np.float64) @ np.abs(_op(b, tb))).max())
        ulp = float(np.finfo(_np_dtype(dtype)).eps) * scale
        assert mine <= 2 * numpy_err + ulp, (m, n, k, mine, numpy_err)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "kind,ta,tb", [("small", *t) for t in TRANS] + [("hsw", *t) for t in H.EPILOGUE_TRANS]
)
def test_threads_bitwise_identical(
    mods, isa: str, dtype: str, kind: str, ta: bool, tb: bool
) -> None:
    """Splitting over rows/columns only: 1, 2 and 3 threads give identical bits, colsum too."""
    spec = H.spec_named(isa, f"{kind}_{isa}_{dtype}_{int(ta)}{int(tb)}")
    rng = np.random.default_rng(7)
    for m, n, k in [(97, 131, 101), (5, 300, 64), (300, 5, 64)]:
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        bias = rng.standard_normal(n).astype(_np_dtype(dtype))
        results = [
            H.run(mods[spec.name], spec, a, b, {"bias": bias}, nthreads=t) for t in (1, 2, 3)
        ]
        for status, c, cs in results:
            assert status == 0
            assert np.array_equal(c, results[0][1])
            assert cs is None or np.array_equal(cs, results[0][2])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", H.EPILOGUE_TRANS)
def test_bias_hardswish_colsum(mods, isa: str, dtype: str, ta: bool, tb: bool) -> None:
    """The epilogue equals the op table's hardswish kernel applied to the same kernel's plain result."""
    tag = f"{isa}_{dtype}_{int(ta)}{int(tb)}"
    plain, fused = H.spec_named(isa, f"small_{tag}"), H.spec_named(isa, f"hsw_{tag}")
    rng = np.random.default_rng(3)
    for m, n, k in [(1, 1, 1), (7, 13, 17), (45, 70, 100)]:
        a, b = _operands(rng, dtype, m, n, k, ta, tb)
        a *= 3  # spread values over all three hardswish regions
        bias = rng.standard_normal(n).astype(_np_dtype(dtype))
        _, z, _ = H.run(mods[plain.name], plain, a, b, nthreads=2)
        status, c, cs = H.run(mods[fused.name], fused, a, b, {"bias": bias}, nthreads=2)
        assert status == 0
        expect = OPS["hardswish"].numpy(z + bias)
        assert np.array_equal(c, expect)
        np.testing.assert_allclose(cs, c.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_mixed_epilogue(mods, isa: str, dtype: str) -> None:
    """relu, residual add [M,N], row scale [M], scalar shift, column maximum [N], then colsum."""
    dt = _np_dtype(dtype)
    plain = H.spec_named(isa, f"small_{isa}_{dtype}_01")
    fused = H.spec_named(isa, f"mix_{isa}_{dtype}")
    rng = np.random.default_rng(5)
    m, n, k = 37, 71, 59
    a, b = _operands(rng, dtype, m, n, k, False, True)
    ops = {
        "res": rng.standard_normal((m, n)).astype(dt),
        "rowscale": rng.standard_normal(m).astype(dt),
        "shift": np.array([0.25], dtype=dt),
        "floor": rng.standard_normal(n).astype(dt),
    }
    ops["floor"][3] = np.nan
    _, z, _ = H.run(mods[plain.name], plain, a, b, nthreads=1)
    status, c, cs = H.run(mods[fused.name], fused, a, b, ops, nthreads=2)
    assert status == 0
    v = OPS["relu"].numpy(z) + ops["res"]
    v = v * ops["rowscale"][:, None]
    v = v - ops["shift"][0]
    v = OPS["maximum"].numpy(v, ops["floor"])
    assert np.array_equal(c, v, equal_nan=True)
    np.testing.assert_allclose(cs, c.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, True), (True, False)])
def test_nan_inf_propagate(mods, isa: str, dtype: str, ta: bool, tb: bool) -> None:
    """NaN and inf behave as in a plain dot product, including 0 * inf = NaN (no skipped zeros)."""
    spec = H.spec_named(isa, f"small_{isa}_{dtype}_{int(ta)}{int(tb)}")
    rng = np.random.default_rng(11)
    m, n, k = 30, 50, 70
    a, b = _operands(rng, dtype, m, n, k, ta, tb)
    opa, opb = _op(a, ta), _op(b, tb)  # views: writes go through to a and b
    opa[3, 10] = np.nan
    opa[5, :] = 0.0
    opb[20, 7] = np.inf  # row 5 of op(A) is zero: C[5, 7] = 0 * inf = NaN
    opb[21, 9] = -np.inf
    opa[8, 21] = 1e30 if dtype == "double" else 1e20
    opb[40, 30] = np.inf
    opa[12, 40] = -1.0
    status, c, _ = H.run(mods[spec.name], spec, a, b, nthreads=2)
    assert status == 0
    with np.errstate(invalid="ignore"):
        ref = opa.astype(np.float64) @ opb.astype(np.float64)
    assert np.array_equal(np.isnan(c), np.isnan(ref))
    assert np.array_equal(np.isposinf(c), np.isposinf(ref))
    assert np.array_equal(np.isneginf(c), np.isneginf(ref))
    assert np.isnan(c[3]).all() and np.isnan(c[5, 7])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_static_n(mods, isa: str, dtype: str) -> None:
    """N = 5 (static) with a narrowed tile: bias + relu over many rows, 1 and 2 threads equal."""
    spec = H.spec_named(isa, f"narrow_{isa}_{dtype}")
    rng = np.random.default_rng(13)
    for m, k in [(1, 3), (1000, 3), (333, 70)]:
        a, b = _operands(rng, dtype, m, 5, k, False, True)
        bias = rng.standard_normal(5).astype(_np_dtype(dtype))
        status, c, _ = H.run(mods[spec.name], spec, a, b, {"bias": bias}, nthreads=2)
        assert status == 0
        _, c1, _ = H.run(mods[spec.name], spec, a, b, {"bias": bias}, nthreads=1)
        assert np.array_equal(c, c1)
        np.testing.assert_allclose(c, OPS["relu"].numpy(a @ b.T + bias), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_degenerate_sizes(mods, isa: str) -> None:
    """M == 0 returns at once (colsum zeroed); K == 0 gives epilogue(0) = hardswish(bias)."""
    spec = H.spec_named(isa, f"hsw_{isa}_float_01")
    bias = np.array([1.0, -4.0, 2.5], dtype=np.float32)
    status, c, cs = H.run(mods[spec.name], spec, np.zeros((0, 4)), np.ones((3, 4)), {"bias": bias})
    assert status == 0 and c.shape == (0, 3) and np.array_equal(cs, np.zeros(3, np.float32))
    status, c, cs = H.run(mods[spec.name], spec, np.zeros((2, 0)), np.ones((3, 0)), {"bias": bias})
    assert status == 0
    assert np.array_equal(c, np.broadcast_to(OPS["hardswish"].numpy(bias), (2, 3)))


@pytest.mark.parametrize("isa", ISAS)
def test_bad_arguments(mods, isa: str) -> None:
    """Static dims are checked; negative dims and NULL pointers return -2 without touching memory."""
    spec = H.spec_named(isa, f"static_{isa}_float")  # n = 19, k = 23 static
    lib, ffi = mods[spec.name].lib, mods[spec.name].ffi
    a, b = np.ones((4, 23), np.float32), np.ones((19, 23), np.float32)
    status, c, _ = H.run(mods[spec.name], spec, a, b)
    assert status == 0 and np.all(c == 23)
    status, _, _ = H.run(mods[spec.name], spec, np.ones((4, 22)), np.ones((19, 22)))
    assert status == -2
    fn = getattr(lib, spec.name)
    assert fn(ffi.NULL, ffi.NULL, ffi.NULL, -1, 19, 23, 1) == -2
    assert fn(ffi.NULL, ffi.NULL, ffi.NULL, 4, 19, 23, 1) == -2


def test_fork_after_threaded_gemm(mods) -> None:
    """A child forked after the parent ran a threaded GEMM can run one itself and exit."""
    isa = ISAS[0]
    spec = H.spec_named(isa, f"small_{isa}_float_00")
    rng = np.random.default_rng(1)
    a, b = _operands(rng, "float", 120, 130, 90, False, False)
    status, c_parent, _ = H.run(mods[spec.name], spec, a, b, nthreads=2)
    assert status == 0
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            status, c_child, _ = H.run(mods[spec.name], spec, a, b, nthreads=2)
            code = 0 if status == 0 and np.array_equal(c_child, c_parent) else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, wstatus = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(wstatus) == 0
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("forked child hung running a threaded GEMM")
