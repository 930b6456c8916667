"""The small-GEMM path and the GEMM machinery shared between nodes of one translation unit."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lucid.codegen.gemm import (
    Epilogue,
    GemmSpec,
    bias_add,
    choose_blocking,
    emit_gemm,
    gemm_parts,
    plan_paths,
)
from lucid.ir.ops import OPS
from tests.codegen import gemm_harness as H

ISA = H.available_isas()[0]
TRANS = [(False, False), (False, True), (True, False), (True, True)]


def _hsw(dtype: str) -> Epilogue:
    """bias + hardswish + column sums: the fused Linear shape."""
    return Epilogue((bias_add("bias"), H.HARDSWISH), colsum=True)


def _spec(name: str, ta: bool, tb: bool, m, n, k, ep=None, dtype="float", **blk) -> GemmSpec:
    blocking = replace(choose_blocking(dtype, ISA, n=n), **blk)  # type: ignore[arg-type]
    return GemmSpec(name, dtype, ta, tb, m, n, k, ep, ISA, blocking)  # type: ignore[arg-type]


def _specs() -> list[GemmSpec]:
    out = []
    for ta, tb in TRANS:
        t = f"{int(ta)}{int(tb)}"
        # static N*K tiny: the small path only, any M
        out.append(_spec(f"nk_{t}", ta, tb, None, 5, 3, _hsw("float")))
        # static M*N tiny, K runtime: all of C summed in locals across K (a weight gradient)
        out.append(_spec(f"mn_{t}", ta, tb, 2, 5, None, _hsw("float")))
        # N*K = 437: small below M*N*K = 4096 (M <= 9), blocked above
        out.append(_spec(f"rt_{t}", ta, tb, None, 19, 23, _hsw("float")))
        # the same GEMM with the small path switched off: the blocked reference
        out.append(_spec(f"bl_{t}", ta, tb, None, 19, 23, _hsw("float"), small_work=0))
    out.append(_spec("nk_f64", False, True, None, 5, 3, _hsw("double"), dtype="double"))
    out.append(_spec("plain_nk", False, False, None, 4, 4))
    return out


SPECS = {s.name: s for s in _specs()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> H.Built:
    """Every spec of this file in one extension (one translation unit)."""
    return H.build(list(SPECS.values()), tmp_path_factory.mktemp("gemm_small"))


def _inputs(rng, spec: GemmSpec, m: int, k: int):
    dt = np.float32 if spec.dtype == "float" else np.float64
    n = spec.n
    a = rng.standard_normal((k, m) if spec.trans_a else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if spec.trans_b else (k, n)).astype(dt)
    bias = rng.standard_normal(n).astype(dt)
    return a, b, bias


def _op(x: np.ndarray, t: bool) -> np.ndarray:
    return x.T if t else x


def test_plan_paths_from_static_shapes() -> None:
    """Static tiny products give the small path alone; others a runtime choice or blocked."""
    assert plan_paths(SPECS["nk_00"])[1] is False
    small, blocked = plan_paths(SPECS["mn_10"])
    assert small is not None and small.mb == 2 and not blocked
    small, blocked = plan_paths(SPECS["rt_01"])
    assert small is not None and small.mb == 1 and blocked
    assert plan_paths(SPECS["bl_01"]) == (None, True)
    # N at run time: nothing to size the row of sums by
    assert plan_paths(_spec("dyn", False, True, None, None, 3)) == (None, True)
    # the seed's layers have no blocked code at all
    _, text = gemm_parts(SPECS["nk_01"])
    assert "_small(" in text and "lucid_gemm_f32_" not in text.split("static int nk_01(")[1]


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.parametrize("kind", ["nk", "mn", "rt"])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_small_path_matches_numpy(built, kind: str, ta: bool, tb: bool) -> None:
    """Epilogue and column sums of the small path (shapes straddling the runtime threshold)."""
    spec = SPECS[f"{kind}_{int(ta)}{int(tb)}"]
    rng = np.random.default_rng(3)
    mks = {
        "nk": [(1, 3), (7, 3), (1000, 3)],
        "mn": [(2, 1), (2, 40), (2, 3000)],
        "rt": [(1, 23), (9, 23), (10, 23), (100, 23)],
    }[kind]
    for m, k in mks:
        a, b, bias = _inputs(rng, spec, m, k)
        status, c, cs = H.run(built, spec, a, b, {"bias": bias}, nthreads=2)
        assert status == 0
        ref64 = OPS["hardswish"].numpy(
            _op(a, ta).astype(np.float64) @ _op(b, tb).astype(np.float64) + bias.astype(np.float64)
        )
        np.testing.assert_allclose(c, ref64, rtol=1e-5, atol=1e-5)
        assert cs is not None
        np.testing.assert_allclose(cs, c.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("ta,tb", TRANS)
@pytest.mark.needs_cc
@pytest.mark.slow
def test_small_path_bitwise_equals_blocked_within_one_k_block(built, ta: bool, tb: bool) -> None:
    """Below the threshold the small path gives exactly the blocked path's bits (K < kc)."""
    small, blocked = SPECS[f"rt_{int(ta)}{int(tb)}"], SPECS[f"bl_{int(ta)}{int(tb)}"]
    rng = np.random.default_rng(5)
    for m in (1, 5, 9):
        a, b, bias = _inputs(rng, small, m, 23)
        _, c1, s1 = H.run(built, small, a, b, {"bias": bias})
        _, c2, s2 = H.run(built, blocked, a, b, {"bias": bias})
        assert np.array_equal(c1, c2) and np.array_equal(s1, s2)


@pytest.mark.needs_cc
@pytest.mark.slow
def test_small_path_error_within_twice_numpy(built) -> None:
    """Same-dtype accumulation: no worse than twice NumPy's error against float64."""
    spec = SPECS["plain_nk"]
    rng = np.random.default_rng(7)
    worst_ours = worst_np = 0.0
    for _ in range(20):
        a = rng.standard_normal((300, 4)).astype(np.float32)
        b = rng.standard_normal((4, 4)).astype(np.float32)
        _, c, _ = H.run(built, spec, a, b)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        worst_ours = max(worst_ours, float(np.max(np.abs(c - ref))))
        worst_np = max(worst_np, float(np.max(np.abs(a @ b - ref))))
    assert worst_ours <= 2 * worst_np + 1e-7


@pytest.mark.needs_cc
@pytest.mark.slow
def test_small_path_f64_and_k_zero(built) -> None:
    """float64 sums stay double; a mismatching static K is -2; K == 0 gives epilogue(0)."""
    spec = SPECS["nk_f64"]
    rng = np.random.default_rng(9)
    a, b, bias = _inputs(rng, spec, 33, 3)
    status, c, _ = H.run(built, spec, a, b, {"bias": bias})
    assert status == 0 and c.dtype == np.float64
    np.testing.assert_allclose(c, OPS["hardswish"].numpy(a @ b.T + bias), rtol=1e-12, atol=1e-12)
    status, _, _ = H.run(built, spec, np.ones((2, 0)), np.ones((5, 0)), {"bias": bias})
    assert status == -2
    b32 = bias.astype(np.float32)
    status, c, cs = H.run(built, SPECS["mn_10"], np.ones((0, 2)), np.ones((0, 5)), {"bias": b32})
    assert status == 0
    assert np.array_equal(c, np.broadcast_to(OPS["hardswish"].numpy(b32), (2, 5)))
    assert np.array_equal(cs, 2 * OPS["hardswish"].numpy(b32))


@pytest.mark.needs_cc
@pytest.mark.slow
def test_small_path_nan_inf(built) -> None:
    """NaN and inf propagate through the small path's sums and selects as in NumPy."""
    spec = SPECS["nk_01"]
    a = np.ones((4, 3), np.float32)
    a[1, 0] = np.nan
    a[2, 1] = np.inf
    b = np.ones((5, 3), np.float32)
    b[3, 2] = -np.inf
    bias = np.zeros(5, np.float32)
    _, c, cs = H.run(built, spec, a, b, {"bias": bias})
    with np.errstate(invalid="ignore"):
        ref = OPS["hardswish"].numpy(a @ b.T + bias)
    assert np.array_equal(np.isnan(c), np.isnan(ref))
    assert np.array_equal(np.isposinf(c), np.isposinf(ref))
    assert np.array_equal(c[~np.isnan(ref)], ref[~np.isnan(ref)])
    assert np.isnan(cs[0])


@pytest.mark.needs_cc
@pytest.mark.slow
def test_shared_machinery_is_emitted_once_per_file(tmp_path: Path) -> None:
    """Two nodes of different epilogues share one copy of the kernels, and compute exactly what
    each computes when emitted alone."""
    ep_relu = Epilogue((bias_add("bias"), H.RELU))
    one = _spec("one", False, True, None, 64, 96, _hsw("float"), small_work=0)
    two = _spec("two", False, True, None, 64, 96, ep_relu, small_work=0)
    blocks_one, _ = gemm_parts(one)
    blocks_two, _ = gemm_parts(two)
    assert [b.key for b in blocks_one] == [b.key for b in blocks_two]
    together = H.build([one, two], tmp_path / "together")
    alone = {s.name: H.build([s], tmp_path / s.name) for s in (one, two)}
    source = emit_gemm(one) + emit_gemm(two)
    # the guarded micro-kernel definitions appear twice in the text, compiled once
    assert (
        len(
            re.findall(
                r"#ifndef LUCID_GEMM_F32_AVX\w*_DEFINED|#ifndef LUCID_GEMM_F32_SCALAR\w*_DEFINED",
                source,
            )
        )
        >= 2
    )
    rng = np.random.default_rng(11)
    for m in (1, 13, 300):
        a = rng.standard_normal((m, 96)).astype(np.float32)
        b = rng.standard_normal((64, 96)).astype(np.float32)
        bias = rng.standard_normal(64).astype(np.float32)
        for spec in (one, two):
            s1, c1, cs1 = H.run(together, spec, a, b, {"bias": bias}, nthreads=2)
            s2, c2, cs2 = H.run(alone[spec.name], spec, a, b, {"bias": bias}, nthreads=2)
            assert s1 == s2 == 0 and np.array_equal(c1, c2)
            assert (cs1 is None and cs2 is None) or np.array_equal(cs1, cs2)
        _, c_relu, _ = H.run(together, two, a, b, {"bias": bias})
        np.testing.assert_allclose(c_relu, OPS["relu"].numpy(a @ b.T + bias), rtol=1e-5, atol=1e-5)


def test_emit_c_lays_out_shared_blocks_once() -> None:
    """A program with three blocked GEMMs (two transpositions) of one register tile holds one
    set of micro-kernels, and one tile epilogue: the three apply the same (none), so they name
    one function, whose later copies its guard drops."""
    from lucid.codegen import CodegenOptions, emit_c
    from lucid.codegen.gemm import CacheSizes
    from lucid.ir import Builder
    from tests.ir.graphs import f32

    b = Builder("backward")
    dy, z, x = b.input(f32("N", 64), "dy"), b.input(f32("N", 48), "z"), b.input(f32("N", 32), "x")
    w1, w2 = b.param(f32(48, 32), "fc1.weight"), b.param(f32(64, 48), "fc2.weight")
    dz = b.op("hardswish_grad", [z, b.op("matmul", [dy, w2])])
    dw = b.op("matmul", [b.op("transpose", [dz], {"perm": (1, 0)}), x])
    b.output(b.op("matmul", [dz, w1]), dw)
    src = emit_c(b.build(), CodegenOptions(isa="avx2", caches=CacheSizes())).source
    ukernels = re.findall(r"^static inline void (lucid_gemm_\w+_ukernel_\d+)\(", src, re.MULTILINE)
    assert ukernels == ["lucid_gemm_f32_avx2_6x16_ukernel_" + h for h in ("6", "4", "2", "1")]
    finishes = set(re.findall(r"^static void (lucid_finish_f32_[0-9a-f]{16})\(", src, re.MULTILINE))
    assert len(finishes) == 1
    assert re.findall(r"\.finish = (\w+),", src) == [*finishes] * 3
    assert src.count(f"#ifndef {next(iter(finishes)).upper()}\n") == 3
    assert (
        len(re.findall(r"^LUCID_SHARED_FN int lucid_gemm_f32_avx2_6x16_run\(", src, re.MULTILINE))
        == 1
    )


def test_gemm_nodes_share_a_tile_epilogue_by_what_it_computes() -> None:
    """The blocked path's tile epilogue is named by a hash of its C: nodes of other shapes and
    transpositions with the same epilogue and tile name the same function (this file's `built`
    module compiles the bl_ and rt_ nodes' numerics through one copy); another epilogue, dtype
    or tile names another."""

    def finish(spec: GemmSpec) -> str:
        found = re.search(r"\.finish = (lucid_finish_f(?:32|64)_[0-9a-f]{16}),", emit_gemm(spec))
        assert found is not None, spec.name
        return found[1]

    same = [
        _spec("a", False, True, None, 64, 96, _hsw("float"), small_work=0),
        _spec("b", True, False, 300, 48, None, _hsw("float"), small_work=0),
        SPECS["bl_11"],
    ]
    assert len({finish(s) for s in same}) == 1
    others = [
        _spec("relu", False, True, None, 64, 96, Epilogue((bias_add("bias"), H.RELU))),
        _spec("plain", False, True, None, 64, 96, small_work=0),
        _spec("f64", False, True, None, 64, 96, _hsw("double"), dtype="double", small_work=0),
        _spec("nr16", False, True, None, 64, 96, _hsw("float"), nr=16, small_work=0),
    ]
    assert len({finish(s) for s in [same[0], *others]}) == 1 + len(others)
