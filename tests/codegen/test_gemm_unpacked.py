"""The GEMM paths that read their operands in place, at the level of the generated C
(lucid/codegen/gemm/emit.py): the row path over every row of C when N is at most NARROW_N (a
classifier head's forward), and the stream path, C = A^T @ B with a static M of a few rows and
op(B) = B (its weight gradient, dW = dY^T @ X over the batch). Checked against a wider reference
at the edges (every remainder of the row blocks, uneven column blocks, K tails, a runtime K
including 0), with an epilogue, NaN and inf, the same bits on any thread count, and the stream
path's bits against the blocked path's."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen import gemm
from lucid.codegen.gemm import GemmSpec, Isa, detect_isa, emit_gemm
from lucid.codegen.gemm.emit import STREAM_SUMS
from tests.codegen.gemm_harness import (
    Built,
    available_isas,
    build,
    build_on_path,
    check_against_wide,
    run,
    spec_pair,
)

pytestmark = pytest.mark.needs_cc

# the stream path: (M, N), one row; a remainder of rows of every size up to the limit; N one
# vector, whole blocks of two vectors, and blocks with a tail of 5 (f32) or 13 (f64) columns
MOST = min(gemm.STREAM_ROWS, STREAM_SUMS[detect_isa()])  # the most rows this isa streams
SHAPES = [(1, 16), (3, 37), (10, 64), (MOST, 100)]
KS = [0, 1, 7, 300]


# the row path: (N, K), columns in uneven blocks (11 -> 4, 4, 3) with a K tail of 4, and the
# widest N in blocks of 4 with K exactly the lanes' multiple; run on every remainder of the
# 5-row blocks, a runtime M that is several blocks, and one row
NARROW = [(11, 100), (gemm.NARROW_N, 64)]
NARROW_M = [1, 2, 3, 4, 5, 6, 9, 10, 37]


def _row_pair(dtype: str, n: int, k: int, isa: Isa | None = None) -> list[GemmSpec]:
    return spec_pair(f"rows{n}", dtype, False, True, None, n, k, isa)


def _stream_pair(dtype: str, m: int, n: int, isa: Isa | None = None) -> list[GemmSpec]:
    return spec_pair(f"st{m}x{n}", dtype, True, False, m, n, None, isa)


@pytest.fixture(scope="module")
def mods(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dtypes = ("float", "double")
    rows = [s for d in dtypes for n, k in NARROW for s in _row_pair(d, n, k)]
    stream = [s for d in dtypes for m, n in SHAPES for s in _stream_pair(d, m, n)]
    groups = [(rows, "row path: every row of C"), (stream, "stream path: the")]
    return build_on_path(groups, tmp_path_factory.mktemp("unpacked"))


@pytest.mark.parametrize("dtype", ["float", "double"])
@pytest.mark.parametrize(("m", "n"), SHAPES)
def test_stream_path_matches_a_wide_reference(mods, dtype: str, m: int, n: int) -> None:
    dt = np.float32 if dtype == "float" else np.float64
    pair = _stream_pair(dtype, m, n)
    rng = np.random.default_rng(m * 1000 + n)
    for k in KS:  # op(A) = A^T: A is stored [K, M]
        a = rng.standard_normal((k, m)).astype(dt)
        check_against_wide(mods, pair, a, rng.standard_normal((k, n)).astype(dt), rng)


def test_stream_path_nan_and_inf(mods) -> None:
    """NaN and inf reach exactly the outputs whose sums contain them; 0 * inf is NaN (no product
    is skipped), in the vector blocks and in the tail columns alike."""
    m, n = 3, 37
    spec = _stream_pair("float", m, n)[0]
    rng = np.random.default_rng(4)
    a = rng.standard_normal((20, m)).astype(np.float32)
    b = rng.standard_normal((20, n)).astype(np.float32)
    a[5, 1] = np.nan  # row 1 of C, every column
    a[:, 2] = 0.0
    b[7, 3] = np.inf  # column 3 (a block) and 35 (the tail): inf, or NaN for row 2 (0 * inf)
    b[8, 35] = -np.inf
    status, c, _ = run(mods, spec, a, b, nthreads=2)
    assert status == 0
    assert np.isnan(c[1]).all()
    assert np.isnan(c[2, [3, 35]]).all() and np.isfinite(np.delete(c[2], [3, 35])).all()
    assert np.isinf(c[0, [3, 35]]).all() and np.isfinite(np.delete(c[0], [3, 35])).all()


def test_a_classifier_head_weight_gradient_takes_the_stream_path() -> None:
    """Linear(300, 10) at batch 37, float64: the backward's weight gradient is a stream-path
    GEMM and equals eager lucid's to 1e-12."""
    lucid.random.seed(11)
    model = nn.Sequential(nn.Linear(300, 10))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    x = np.random.default_rng(11).standard_normal((37, 300))
    cm = lucid.compile(model)
    out = cm(lucid.Tensor(x))
    (out * out).sum().backward()
    grads = [p.grad.copy() for p in model.parameters()]
    entry = cm.entry()
    assert entry.grad is not None and "stream path: the" in entry.grad.executable.source
    model.zero_grad()
    ref = model(lucid.Tensor(x))
    (ref * ref).sum().backward()
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float", "double"])
def test_stream_path_has_the_blocked_paths_bits(
    dtype: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """One FMA per product in k order, as the blocked path's micro-kernels: while K fits one of
    the blocked path's K blocks, both paths give the same bits (edge tiles and tail columns
    included)."""
    import lucid.codegen.gemm.emit as gemm_emit

    spec = spec_pair("bits", dtype, True, False, 10, 100, None)[0]
    stream = build([spec], tmp_path / "stream")
    monkeypatch.setattr(gemm_emit, "STREAM_ROWS", 0)
    assert "stream path" not in emit_gemm(spec) and "blocked path" in emit_gemm(spec)
    blocked = build([spec], tmp_path / "blocked")
    dt = np.float32 if dtype == "float" else np.float64
    rng = np.random.default_rng(8)
    for k in (1, 37, min(300, spec.resolved_blocking().kc)):
        a = rng.standard_normal((k, 10)).astype(dt)
        b = rng.standard_normal((k, 100)).astype(dt)
        for threads in (1, 2):
            got = run(stream, spec, a, b, nthreads=threads)
            want = run(blocked, spec, a, b, nthreads=threads)
            assert got[0] == want[0] == 0
            np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("dtype", ["float", "double"])
@pytest.mark.parametrize(("n", "k"), NARROW)
def test_narrow_row_path_matches_a_wide_reference(mods, dtype: str, n: int, k: int) -> None:
    """A GEMM with few columns (a classifier head) takes the row path for any M: each element
    within the dot product's error bound of a wider reference, the same bits on 1, 2 and 3
    threads, and the epilogue applied exactly to those sums."""
    dt = np.float32 if dtype == "float" else np.float64
    pair = _row_pair(dtype, n, k)
    rng = np.random.default_rng(n * 100 + k)
    b = rng.standard_normal((n, k)).astype(dt)
    for m in NARROW_M:
        check_against_wide(mods, pair, rng.standard_normal((m, k)).astype(dt), b, rng)


def test_narrow_row_path_empty_and_non_finite(mods) -> None:
    """M = 0 writes nothing; NaN and inf in a row reach exactly that row's outputs (0 * inf is
    NaN: no product is skipped)."""
    n, k = NARROW[0]
    spec = _row_pair("float", n, k)[0]
    rng = np.random.default_rng(3)
    b = rng.standard_normal((n, k)).astype(np.float32)
    status, c, _ = run(mods, spec, np.zeros((0, k), np.float32), b, nthreads=2)
    assert status == 0 and c.shape == (0, n)
    a = rng.standard_normal((12, k)).astype(np.float32)
    a[3, 10] = np.nan
    a[7, :] = 0.0
    b[2, 5] = np.inf
    status, c, _ = run(mods, spec, a, b, nthreads=2)
    assert status == 0
    assert np.isnan(c[3]).all() and np.isnan(c[7, 2]) and np.isfinite(np.delete(c[7], 2)).all()
    others = np.delete(np.arange(12), [3, 7])
    assert np.isfinite(np.delete(c[others], 2, axis=1)).all()
    assert np.isinf(c[others, 2]).all()  # x * inf for nonzero x: the column is infinite


@pytest.mark.parametrize("isa", [isa for isa in available_isas() if isa != detect_isa()])
def test_unpacked_paths_on_the_other_isas(isa: str, tmp_path) -> None:
    """The narrow row path and the stream path with another isa's register budget (smaller
    blocks on avx2; no stream path without vector FMA): the same checks on a few shapes."""
    rows = _row_pair("float", 11, 100, isa) + _row_pair("double", 16, 64, isa)
    stream = _stream_pair("float", 10, 64, isa) if isa != "scalar" else []
    groups = [(rows, "row path: every row of C"), (stream, "stream path: the")]
    built = build_on_path(groups, tmp_path)
    rng = np.random.default_rng(21)
    for pair in (rows[:2], rows[2:]):
        dt = np.float32 if pair[0].dtype == "float" else np.float64
        n, k = pair[0].n, pair[0].k
        assert n is not None and k is not None
        b = rng.standard_normal((n, k)).astype(dt)
        for m in (1, 3, 7, 12):
            check_against_wide(built, pair, rng.standard_normal((m, k)).astype(dt), b, rng)
    if stream:
        for k in (0, 5, 130):
            a = rng.standard_normal((k, 10)).astype(np.float32)
            b = rng.standard_normal((k, 64)).astype(np.float32)
            check_against_wide(built, stream, a, b, rng)


@pytest.mark.parametrize("isa", available_isas())
def test_row_path_static_shapes_on_every_isa(isa: str, tmp_path) -> None:
    """A static M emits only the short blocks it can meet (N % nb columns at the end of the
    last thread's columns, M % mb rows at the end of the last thread's rows), whatever the
    isa's block sizes (avx2's 3 columns per block for 2 rows do not divide 16: its threads
    split the columns in groups of 18). Every M of the batch-style path with N = 38 (a short
    block of 2 columns for 4 per block, 2 for 3, none for 2), and the narrow path with static
    M = 12 and 13 rows: the same checks, threads splitting."""
    cols = [s for m in range(1, gemm.ROW_PATH_ROWS + 1) for s in _static_pair(m, 38, isa)]
    rows = [s for m in (12, 13) for s in _static_pair(m, 11, isa)]
    groups = [(cols, "row path: each of the"), (rows, "row path: every row of C")]
    built = build_on_path(groups, tmp_path)
    rng = np.random.default_rng(5)
    for i in range(0, len(cols + rows), 2):
        pair = (cols + rows)[i : i + 2]
        m, n, k = pair[0].m, pair[0].n, pair[0].k
        assert m is not None and n is not None and k is not None
        b = rng.standard_normal((n, k)).astype(np.float32)
        check_against_wide(built, pair, rng.standard_normal((m, k)).astype(np.float32), b, rng)


def _static_pair(m: int, n: int, isa: Isa) -> list[GemmSpec]:
    return spec_pair(f"rows{m}x{n}", "float", False, True, m, n, 100, isa)
