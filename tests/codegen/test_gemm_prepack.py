"""Prepacked op(B): `NAME_pack_b` packs a weight once, and a call given the result as `Bp`
skips packing B. The product must be bitwise the one of the same GEMM packing B itself, for
every isa this machine runs, both dtypes, both layouts of B, epilogues, edge tiles and several
K blocks, on one thread and two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lucid.codegen.gemm import (
    Epilogue,
    GemmSpec,
    bias_add,
    emit_gemm,
    gemm_params,
    prepacked_b_elems,
)
from tests.codegen import gemm_harness as H

# (N, K): N not a multiple of any tile width, K over several 48-wide K blocks and not a
# multiple of 8; and one K inside a single block
SHAPES = [(45, 101), (70, 29)]


def _specs(isa: str) -> list[GemmSpec]:
    specs = []
    for dtype in ("float", "double"):
        small = H.small_blocking(dtype, isa)  # type: ignore[arg-type]
        for tb in (False, True):
            for n, k in SHAPES:
                tag = f"{isa}_{dtype}_{int(tb)}_{n}_{k}"
                specs.append(
                    GemmSpec(
                        f"pp_{tag}", dtype, False, tb, None, n, k, None, isa, small, prepack_b=True
                    )  # type: ignore[arg-type]
                )
        ep = Epilogue((bias_add("bias"), H.HARDSWISH))  # type: ignore[arg-type]
        specs.append(
            GemmSpec(
                f"pphsw_{isa}_{dtype}",
                dtype,
                False,
                True,
                None,
                45,
                101,
                ep,
                isa,
                small,
                prepack_b=True,
            )  # type: ignore[arg-type]
        )
    return specs


def _pack_shims(specs: list[GemmSpec]) -> tuple[str, str]:
    """Non-static wrappers so the test can call each static NAME_pack_b through cffi."""
    c, cdef = [], []
    for s in specs:
        c.append(
            f"void test_{s.name}_pack_b(const {s.dtype} *B, {s.dtype} *out) {{ {s.name}_pack_b(B, out); }}"
        )
        cdef.append(f"void test_{s.name}_pack_b(const {s.dtype} *B, {s.dtype} *out);")
    return "\n".join(c), "\n".join(cdef)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[H.Built, GemmSpec]]:
    out = {}
    for isa in H.available_isas():
        specs = _specs(isa)
        extra_c, extra_cdef = _pack_shims(specs)
        b = H.build(specs, Path(tmp_path_factory.mktemp(f"prepack_{isa}")), extra_c, extra_cdef)
        out.update({s.name: (b, s) for s in specs})
    return out


def _case(name: str) -> list[str]:
    return [s.name for isa in H.available_isas() for s in _specs(isa) if name in s.name]


def aligned(n: int, dt: type) -> np.ndarray:
    """n NaNs of dtype dt starting at a 64-byte boundary (what the micro-kernels load from)."""
    raw = np.full(n + 64, np.nan, dtype=dt)
    skip = (-raw.ctypes.data % 64) // raw.itemsize
    return raw[skip : skip + n]


def _pack(b: H.Built, spec: GemmSpec, w: np.ndarray) -> np.ndarray:
    out = aligned(prepacked_b_elems(spec), np.float32 if spec.dtype == "float" else np.float64)
    tp = spec.dtype + " *"
    getattr(b.lib, f"test_{spec.name}_pack_b")(
        b.ffi.cast(tp, b.ffi.from_buffer(w)), b.ffi.cast(tp, b.ffi.from_buffer(out))
    )
    return out


@pytest.mark.parametrize("name", _case("pp"))
@pytest.mark.parametrize("m", [1, 13, 64])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_prepacked_matches_packing_in_call(built, name: str, m: int) -> None:
    b, spec = built[name]
    dt = np.float32 if spec.dtype == "float" else np.float64
    rng = np.random.default_rng(m)
    n, k = spec.n, spec.k
    assert n is not None and k is not None
    a = rng.standard_normal((m, k)).astype(dt)
    w = rng.standard_normal((n, k) if spec.trans_b else (k, n)).astype(dt)
    ops = {"bias": rng.standard_normal(n).astype(dt)} if spec.epilogue else None
    packed = _pack(b, spec, w)
    assert not np.isnan(packed).any(), "the packer left part of its output unwritten"
    st, _, _ = H.run(b, spec, a, w, ops, bp=packed[1:] if packed.size > 1 else packed)
    if packed.size > 1:
        assert st == -2, "a misaligned Bp must be refused, not read"
    for threads in (1, 2):
        st0, want, _ = H.run(b, spec, a, w, ops, nthreads=threads)
        st1, got, _ = H.run(b, spec, a, w, ops, nthreads=threads, bp=packed)
        assert st0 == st1 == 0
        np.testing.assert_array_equal(got, want)
    # and the product itself, against float64 (so a wrong layout cannot pass by matching itself)
    ref = a.astype(np.float64) @ (w.T if spec.trans_b else w).astype(np.float64)
    if spec.epilogue is None:
        tol = 1e-4 if dt == np.float32 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.sqrt(k))


@pytest.mark.parametrize("name", _case("pp_")[:1])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_the_packed_copy_is_what_the_call_reads(built, name: str) -> None:
    """A stale prepacked buffer gives the old weights' product: the call reads Bp, not B."""
    b, spec = built[name]
    dt = np.float32 if spec.dtype == "float" else np.float64
    rng = np.random.default_rng(1)
    n, k = spec.n, spec.k
    assert n is not None and k is not None
    a = rng.standard_normal((20, k)).astype(dt)
    w_old = rng.standard_normal((n, k) if spec.trans_b else (k, n)).astype(dt)
    w_new = w_old + 1
    packed = _pack(b, spec, w_old)
    _, want, _ = H.run(b, spec, a, w_old, nthreads=1)
    _, got, _ = H.run(b, spec, a, w_new, nthreads=1, bp=packed)
    np.testing.assert_array_equal(got, want)


def test_prepack_only_where_it_applies() -> None:
    """No Bp parameter for a runtime K or N, or a GEMM that only has the small path."""
    isa = H.available_isas()[-1]
    runtime_k = GemmSpec("rk", "float", False, True, None, 64, None, isa=isa, prepack_b=True)  # type: ignore[arg-type]
    tiny = GemmSpec("tiny", "float", False, True, None, 4, 8, isa=isa, prepack_b=True)  # type: ignore[arg-type]
    off = GemmSpec("off", "float", False, True, None, 64, 64, isa=isa)  # type: ignore[arg-type]
    on = GemmSpec("on", "float", False, True, None, 64, 64, isa=isa, prepack_b=True)  # type: ignore[arg-type]
    for spec in (runtime_k, tiny, off):
        assert prepacked_b_elems(spec) == 0
        assert "Bp" not in [p for _, p in gemm_params(spec)]
        assert f"{spec.name}_pack_b" not in emit_gemm(spec)
    assert "Bp" in [p for _, p in gemm_params(on)]
    assert "on_pack_b(" in emit_gemm(on)
    assert prepacked_b_elems(on) >= 64 * 64
