"""lucid's own float exp, tanh and erf (templates/helpers.c.j2), through the ops that call them and
compiled on their own with and without FMA: within 2 ulp of the correctly rounded result
(float64 reference) on a sample of every float bit pattern and on the edges (overflow,
subnormals, NaN, infinities, signed zeros). tools/vector_math_ulps.py checks all 2^32 floats:
at most 0.94, 1.38 and 1.30 ulp with FMA, 1.23, 1.35 and 1.39 without."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cffi
import numpy as np
import pytest

from lucid.codegen._scalar_c import float_math_source
from lucid.ir import Builder, DType, TensorType
from lucid.runtime.build import DEFAULT_FLAGS
from tests.codegen.test_c_harness import compile_graph
from tests.conftest import c_compiler

pytestmark = pytest.mark.needs_cc

EDGES = np.array(
    [0.0, -0.0, np.nan, np.inf, -np.inf, 88.72283, 88.72284, 88.8, 89.0, 89.5, 1e30, -1e30,
     -87.33654, -87.34, -103.2, -103.97207, -103.97208, -104.0, -104.5, 1e-45, -1e-45, 1e-38,
     0.625, -0.625, 0.62499994, 0.62500006, 9.0, 9.1, -9.1, 20.0, 0.34657359, -0.34657359,
     0.921875, -0.921875, 0.92187494, 0.92187506, 3.9, 3.92, 4.0, -4.0, 4.5, 10.0, 10.5, -10.5],
    dtype=np.float32,
)  # fmt: skip


def _sample() -> np.ndarray:
    """Every 4099th float bit pattern (about a million), plus the edges."""
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    return np.concatenate([bits.view(np.float32), EDGES])


def _ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|got - want| in units of the float32 ulp at want (the smallest subnormal below 2^-126)."""
    with np.errstate(over="ignore", invalid="ignore"):  # overflows and inf - inf: `same` covers
        w32 = want.astype(np.float32)
        ulp = np.spacing(np.abs(w32)).astype(np.float64)
        err = np.abs(got.astype(np.float64) - want) / ulp
    same = (got == w32) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0.0, err)


@pytest.mark.parametrize("op", ["exp", "tanh"])
def test_float_exp_and_tanh_within_two_ulp(op: str) -> None:
    x = _sample()
    b = Builder("forward")
    v = b.input(TensorType(DType.F32, (x.size,)), "x")
    b.output(b.op(op, [v]))
    got = compile_graph(b.build()).run([x])[0]
    with np.errstate(over="ignore", invalid="ignore"):  # exp overflows; signalling NaNs
        want = getattr(np, op)(x.astype(np.float64))
    ulps = _ulps(got, want)
    worst = int(np.nanargmax(ulps))
    assert ulps[worst] <= 2.0, f"{op}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.signbit(got[x == 0]), np.signbit(want[x == 0]))  # tanh(-0) = -0


FUNCTIONS = {
    "exp": ("lucid_expf", np.exp),
    "tanh": ("lucid_tanhf", np.tanh),
    "erf": ("lucid_erff", None),
}


def _helpers_library(tmp: Path, fma: bool) -> tuple[cffi.FFI, object]:
    """The helpers' float functions (the text tools/vector_math_ulps.py checks exhaustively)
    compiled with lucid's flags, plus or minus FMA, behind one batch call each."""
    batches = "".join(
        f"void {op}_batch(const float *restrict x, float *restrict y, int64_t n)"
        f" {{ for (int64_t i = 0; i < n; ++i) y[i] = {fn}(x[i]); }}\n"
        for op, (fn, _) in FUNCTIONS.items()
    )
    source = tmp / "helpers.c"
    source.write_text(
        "#include <math.h>\n#include <stdint.h>\n#include <string.h>\n"
        + float_math_source()
        + batches
    )
    flags = [*DEFAULT_FLAGS, *([] if fma else ["-mno-fma"])]
    so = tmp / ("fma.so" if fma else "nofma.so")
    cc = c_compiler()
    assert cc is not None  # needs_cc skips this module without one
    subprocess.run([cc, *flags, "-shared", "-fPIC", str(source), "-o", str(so), "-lm"], check=True)
    ffi = cffi.FFI()
    ffi.cdef("".join(f"void {op}_batch(const float *, float *, int64_t);" for op in FUNCTIONS))
    return ffi, ffi.dlopen(str(so))


@pytest.mark.parametrize("fma", [True, False], ids=["fma", "no-fma"])
def test_float_functions_within_two_ulp_with_and_without_fma(tmp_path: Path, fma: bool) -> None:
    """The no-FMA spelling of LUCID_FMAF is what a target without the instruction compiles;
    this machine's kernels never reach it, so it is compiled here with -mno-fma."""
    ffi, lib = _helpers_library(tmp_path, fma)
    x = _sample()
    x64 = x.astype(np.float64)
    for op, (_, ref) in FUNCTIONS.items():
        got = np.empty_like(x)
        getattr(lib, f"{op}_batch")(
            ffi.from_buffer("float[]", x), ffi.from_buffer("float[]", got), x.size
        )
        with np.errstate(over="ignore", invalid="ignore"):
            want = ref(x64) if ref is not None else np.vectorize(math.erf)(x64)
        ulps = _ulps(got, want)
        worst = int(np.nanargmax(ulps))
        assert ulps[worst] <= 2.0, f"{op}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"
        assert np.array_equal(np.isnan(got), np.isnan(want)), op
        if op != "exp":  # odd functions keep the sign, -0 included
            assert np.array_equal(np.signbit(got[~np.isnan(x)]), np.signbit(x[~np.isnan(x)])), op


def test_ops_built_on_exp_agree_with_numpy() -> None:
    """sigmoid, silu, GELU (tanh form and exact), softmax and log_softmax of float32 against
    float64 NumPy."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 33)) * 6).astype(np.float32)
    b = Builder("forward")
    v = b.input(TensorType(DType.F32, x.shape), "x")
    outs = [b.op(name, [v]) for name in ("sigmoid", "silu")]
    outs.append(b.op("gelu", [v], {"approximate": "tanh"}))
    outs.append(b.op("gelu", [v], {"approximate": "none"}))
    outs += [b.op(name, [v], {"dim": 1}) for name in ("softmax", "log_softmax")]
    b.output(*outs)
    got = compile_graph(b.build()).run([x])
    d = x.astype(np.float64)
    sig = 1 / (1 + np.exp(-d))
    gelu = 0.5 * d * (1 + np.tanh(0.7978845608028654 * (d + 0.044715 * d**3)))
    gelu_exact = 0.5 * d * (1 + np.vectorize(math.erf)(d / math.sqrt(2)))
    shifted = d - d.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    wants = [sig, d * sig, gelu, gelu_exact, np.exp(shifted - lse), shifted - lse]
    for g, w in zip(got, wants, strict=True):
        np.testing.assert_allclose(g, w, rtol=4e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [DType.F32, DType.F64])
@pytest.mark.parametrize("n", [1, 7, 33, 64, 100])
def test_softmax_rows_with_nan_and_infinities_agree_with_numpy(dtype: DType, n: int) -> None:
    """Rows long enough for the partial maxima and sums (n >= 2 lanes) and short ones, along
    the last axis (contiguous rows) and the first (strided): finite rows agree with float64
    NumPy; a NaN anywhere gives a row of NaN; an inf gives what NumPy's formula gives."""
    rng = np.random.default_rng(n)
    x = (rng.standard_normal((9, n)) * 5).astype(dtype.np)
    x[1, n // 2] = np.nan
    x[2, -1] = np.inf
    x[3, 0] = -np.inf
    x[4, :] = -np.inf
    x[5, 0], x[5, -1] = np.inf, np.nan
    x[6, :] = np.nan
    b = Builder("forward")
    v = b.input(TensorType(dtype, x.shape), "x")
    names = ("softmax", "log_softmax")
    b.output(*[b.op(name, [v], {"dim": d}) for d in (1, 0) for name in names])
    got = compile_graph(b.build()).run([x])
    tol = {"rtol": 4e-6, "atol": 1e-6} if dtype == DType.F32 else {"rtol": 1e-12, "atol": 1e-14}
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        for g, (d, name) in zip(got, [(d, nm) for d in (1, 0) for nm in names], strict=True):
            shifted = x64 - x64.max(axis=d, keepdims=True)
            total = np.exp(shifted).sum(axis=d, keepdims=True)
            want = shifted - np.log(total) if name == "log_softmax" else np.exp(shifted) / total
            assert np.array_equal(np.isnan(g), np.isnan(want)), (name, d)
            finite = ~np.isnan(want)
            np.testing.assert_allclose(g[finite], want[finite], **tol, err_msg=f"{name} dim {d}")
    assert np.isnan(got[0][1]).all() and np.isnan(got[1][6]).all()  # a NaN spoils its row


@pytest.mark.parametrize("dtype", [DType.F32, DType.F64])
def test_moments_of_runs_shorter_and_longer_than_a_chunk(dtype: DType) -> None:
    """LayerNorm-shaped moments (A = 1, K rows, B features) for B around the lane count and the
    chunk (moments_part.c.j2): means and variances within a few ulps of float64 NumPy."""
    rng = np.random.default_rng(7)
    for width in (5, 31, 32, 33, 64, 128, 255, 256, 300, 700):
        x = (rng.standard_normal((6, width)) * 3 + 1).astype(dtype.np)
        b = Builder("forward")
        v = b.input(TensorType(dtype, x.shape), "x")
        b.output(b.op("moments", [v], {"axes": (1,)}))
        (got,) = compile_graph(b.build()).run([x])
        d = x.astype(np.float64)
        want = np.stack([d.mean(axis=1, keepdims=True), d.var(axis=1, keepdims=True)])
        tol = 8 * np.finfo(dtype.np).eps
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"width {width}")


@pytest.mark.parametrize("dtype", [DType.F32, DType.F64])
def test_sums_in_partial_lanes_agree_with_float64(dtype: DType) -> None:
    """sum/mean over axes ending in the last one (partial sums along it; static trailing
    reduced axes merged into one run), sum_to of a broadcast and mse_loss, for run lengths
    below, at and above the 8 lanes: within a few ulps of float64 NumPy."""
    rng = np.random.default_rng(11)
    cases = [((3, 4, 5, 7), (0, 2, 3)), ((2, 3, 16), (2,)), ((5, 9), (1,)), ((2, 3, 4, 2), (1, 3))]
    for shape, axes in cases:
        x = (rng.standard_normal(shape) * 4 + 1).astype(dtype.np)
        b = Builder("forward")
        v = b.input(TensorType(dtype, shape), "x")
        t = b.input(TensorType(dtype, shape[-1:]), "t")
        b.output(
            b.op("sum", [v], {"axes": axes}),
            b.op("mean", [v], {"axes": axes}),
            b.op("sum_to", [v], {"shape": (1,) * (len(shape) - 1) + shape[-1:]}),
            b.op("mse_loss", [v, t]),
        )
        tgt = rng.standard_normal(shape[-1:]).astype(dtype.np)
        got = compile_graph(b.build()).run([x, tgt])
        d = x.astype(np.float64)
        wants = [
            d.sum(axis=axes),
            d.mean(axis=axes),
            d.sum(axis=tuple(range(len(shape) - 1)), keepdims=True),
            ((d - tgt) ** 2).mean(),
        ]
        tol = 16 * np.finfo(dtype.np).eps
        for g, w in zip(got, wants, strict=True):
            np.testing.assert_allclose(
                g, w, rtol=tol, atol=tol * np.abs(d).sum(), err_msg=str(shape)
            )
