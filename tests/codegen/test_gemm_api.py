"""The GEMM generator's Python side: blocking model, detection helpers, prototypes, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from lucid.codegen._lower import gemm_dtype
from lucid.codegen.gemm import (
    Blocking,
    CacheSizes,
    Epilogue,
    EpilogueStep,
    GemmSpec,
    bias_add,
    choose_blocking,
    detect_caches,
    detect_isa,
    emit_gemm,
    gemm_params,
    gemm_prototype,
)
from lucid.errors import CompileError
from lucid.ir.types import DType


@pytest.mark.parametrize("dtype", ["float", "double"])
@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_blocking_invariants(dtype: str, isa: str) -> None:
    """mc is whole micro-panels, nc whole NR panels, kc a multiple of 8, within cache budgets."""
    caches = CacheSizes(l1d=48 * 1024, l2=2 * 1024 * 1024, l3=64 * 1024 * 1024)
    b = choose_blocking(dtype, isa, caches)  # type: ignore[arg-type]
    elem = 4 if dtype == "float" else 8
    assert b.mc % b.mr == 0 and b.nc % b.nr == 0 and b.kc % 8 == 0
    assert b.kc * b.nr * elem <= caches.l1d
    assert b.mc * b.kc * elem <= caches.l2 // 2


def test_narrow_static_n_shrinks_tile() -> None:
    """N = 5 with 16-lane vectors: one vector wide instead of two."""
    assert choose_blocking("float", "avx512", n=5).nr == 16
    assert choose_blocking("double", "avx512", n=5).nr == 8
    assert choose_blocking("float", "avx512", n=1000).nr == 32


def test_detect_caches_reads_sysfs(tmp_path: Path) -> None:
    """Levels and sizes come from index*/{level,type,size}; missing levels keep defaults."""
    for i, (level, kind, size) in enumerate(
        [("1", "Data", "48K"), ("1", "Instruction", "32K"), ("2", "Unified", "2048K")]
    ):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    caches = detect_caches(str(tmp_path))
    assert caches.l1d == 48 * 1024 and caches.l2 == 2 * 1024 * 1024
    assert caches.l3 == CacheSizes().l3
    assert detect_caches(str(tmp_path / "missing")) == CacheSizes()


def test_detect_isa_from_flags(tmp_path: Path) -> None:
    """avx512f+fma -> avx512, avx2+fma -> avx2, otherwise scalar."""
    cases = {"fpu avx2 fma avx512f": "avx512", "fpu avx2 fma": "avx2", "fpu sse2": "scalar"}
    for flags, isa in cases.items():
        f = tmp_path / "cpuinfo"
        f.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert detect_isa(str(f)) == isa
    assert detect_isa(str(tmp_path / "nope")) == "scalar"


def test_prototype_lists_operands_in_step_order() -> None:
    """A, B, C, M, N, K, distinct operands (first use), colsum, nthreads."""
    ep = Epilogue(
        (
            bias_add("b"),
            EpilogueStep("v = v * v;"),
            EpilogueStep("v = v + x;", "r", "full"),
            EpilogueStep("v = v * x;", "b", "col"),
        ),
        colsum=True,
    )
    spec = GemmSpec("k0", "float", False, True, None, 8, 4, ep, "scalar")
    assert [n for _, n in gemm_params(spec)] == [
        "A",
        "B",
        "C",
        "M",
        "N",
        "K",
        "e_b",
        "e_r",
        "colsum",
        "nthreads",
    ]
    assert gemm_prototype(spec) == (
        "int k0(const float *A, const float *B, float *C, int64_t M, int64_t N, int64_t K, "
        "const float *e_b, const float *e_r, float *colsum, int nthreads);"
    )


def test_emit_is_deterministic_and_commented() -> None:
    """Same spec, same text; the IR line and the formula appear in the header comment."""
    ep = Epilogue((bias_add("fc1_bias"), EpilogueStep("v = v * v;")))
    spec = GemmSpec(
        "fc1",
        "float",
        False,
        True,
        None,
        5,
        3,
        ep,
        "avx512",
        ir_comment="%0 = linear %x, %fc1.weight, %fc1.bias : f32[N,5]",
    )
    text = emit_gemm(spec)
    assert text == emit_gemm(spec)
    assert "implements: %0 = linear %x, %fc1.weight, %fc1.bias : f32[N,5]" in text
    assert "C = A @ B^T (Mx5x3, float, avx512)" in text
    assert "static int fc1(" in text and "{{" not in text


def test_invalid_specs_are_rejected() -> None:
    """Names must be C identifiers; an operand can't change broadcast; blocking is checked."""
    with pytest.raises(ValueError):
        emit_gemm(GemmSpec("bad name", "float", False, False, None, 4, 4, None, "scalar"))
    with pytest.raises(ValueError):
        emit_gemm(
            GemmSpec(
                "g",
                "float",
                False,
                False,
                None,
                4,
                4,
                Epilogue((EpilogueStep("v = x;", "x; system(1)", "col"),)),
                "scalar",
            )
        )
    add = "v = v + x;"
    ep = Epilogue((EpilogueStep(add, "e", "col"), EpilogueStep(add, "e", "row")))
    with pytest.raises(ValueError):
        emit_gemm(GemmSpec("g", "float", False, False, None, 4, 4, ep, "scalar"))
    with pytest.raises(ValueError):
        emit_gemm(
            GemmSpec(
                "g", "float", False, False, None, 4, 4, None, "avx512", Blocking(14, 24, 28, 64, 48)
            )
        )  # nr not whole vectors


def test_gemm_dtype_is_float_or_double_and_names_anything_else() -> None:
    assert gemm_dtype(DType.F32) == "float"
    assert gemm_dtype(DType.F64) == "double"
    with pytest.raises(CompileError, match="a GEMM needs float32 or float64 operands, got i64"):
        gemm_dtype(DType.I64)
