"""The GEMM row path (lucid/codegen/gemm/emit.py, ROW_PATH_ROWS): a Linear whose batch is a
static handful of rows computes each output as a dot product of the input row and a weight
row, in 16 (f32) or 8 (f64) partial sums, with no packing and no packed copy of the weight
kept between calls. Checked against float64 NumPy at the edges: K not a multiple of the lanes,
one output column, every M up to the limit, with and without an epilogue, alone and fused.
A GEMM of at most NARROW_N columns takes the same path for any M, 5 rows at a time."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen import gemm
from lucid.errors import RecompileWarning

pytestmark = pytest.mark.needs_cc


def _linear(k: int, n: int, dtype: type, act: bool) -> nn.Module:
    lucid.random.seed(k * 7 + n)
    layers = [nn.Linear(k, n)] + ([nn.HardSwish()] if act else [])
    model = nn.Sequential(*layers).eval()
    if dtype is np.float64:
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
    return model


def _reference(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """float64 NumPy: x @ W^T + b (then HardSwish)."""
    w, b = (p.data.astype(np.float64) for p in model[0].parameters())
    y = x.astype(np.float64) @ w.T + b
    if len(model) > 1:
        y = y * np.clip(y + 3, 0, 6) / 6
    return y


# (M, K, N, HardSwish epilogue): every M up to the limit; K a multiple of both lane counts,
# one past it, and tails of several sizes; a single output column; N in whole 4-column register
# blocks and with 1, 2 and 3 columns left over
CASES = [
    (1, 64, 1, False),
    (2, 65, 7, True),
    (3, 100, 33, False),
    (gemm.ROW_PATH_ROWS, 1031, 19, True),
    (1, 1031, 19, True),
    (gemm.ROW_PATH_ROWS, 64, 1, False),
    (2, 200, 10, True),
    (gemm.ROW_PATH_ROWS, 80, 16, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("m", "k", "n", "act"), CASES)
def test_row_path_matches_float64(dtype: type, m: int, k: int, n: int, act: bool) -> None:
    model = _linear(k, n, dtype, act)
    x = np.random.default_rng(m + k).standard_normal((m, k)).astype(dtype)
    cm = lucid.compile(model)
    with lucid.no_grad():
        got = cm(x).data
    assert "row path" in cm.c_source
    entry = cm.entry()
    assert entry.packed is None or entry.packed.nbytes() == 0  # nothing kept beside the weight
    want = _reference(model, x)
    eps = np.finfo(dtype).eps
    # each output is a dot product of k terms: its error is bounded by ~k eps sum|x w|
    bound = np.abs(x.astype(np.float64)) @ np.abs(model[0].weight.data.astype(np.float64)).T
    assert np.all(np.abs(got - want) <= 4 * k * eps * (bound + 1) + 4 * eps), (m, k, n)


def test_more_rows_than_the_limit_take_the_blocked_path() -> None:
    m = gemm.ROW_PATH_ROWS + 1
    model = _linear(200, 64, np.float32, act=True)
    x = np.random.default_rng(0).standard_normal((m, 200)).astype(np.float32)
    cm = lucid.compile(model)
    with lucid.no_grad():
        got = cm(x).data
    assert "row path" not in cm.c_source
    np.testing.assert_allclose(got, _reference(model, x), rtol=1e-5, atol=1e-5)


def test_a_fused_mlp_at_batch_one_runs_every_layer_on_the_row_path() -> None:
    """Linear -> HardSwish -> Linear at batch 1 (MobileNetV3's classifier at batch 1): one tile
    of the one row, both GEMMs on the row path, and no packed copy of either weight."""
    lucid.random.seed(5)
    model = nn.Sequential(nn.Linear(576, 1024), nn.HardSwish(), nn.Linear(1024, 1000)).eval()
    x = np.random.default_rng(5).standard_normal((1, 576)).astype(np.float32)
    cm = lucid.compile(model)
    with lucid.no_grad():
        got = cm(x).data
        want = model(lucid.Tensor(x)).data
    assert "fused_mlp" in cm.c_source and cm.c_source.count("Row path:") == 2
    assert cm.entry().packed is None or cm.entry().packed.nbytes() == 0
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a dynamic batch has no static M: the blocked path, with its packed weights
    dyn = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        np.testing.assert_allclose(dyn(x).data, want, rtol=1e-5, atol=1e-5)
    assert "Row path:" not in dyn.c_source


@pytest.mark.parametrize("isa", ["avx512", "avx2", "scalar"])
def test_row_path_results_do_not_depend_on_threads_or_isa(isa: str) -> None:
    """A fused MLP on 3 rows with threads_min_work=1 (every kernel that can split does): 1, 2
    and 3 threads give the same bits on every isa, and float64's sums to f32 accuracy."""
    from lucid.ir import Builder, DType, TensorType
    from lucid.ir.passes import PassManager, default_pipeline
    from tests.codegen.test_c_harness import compile_graph

    if isa == "avx512" and gemm.detect_isa() != "avx512":
        pytest.skip("this CPU has no AVX-512")
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, (3, 300)), "x")
    w1 = b.param(TensorType(DType.F32, (257, 300)), "w1")
    b1 = b.param(TensorType(DType.F32, (257,)), "b1")
    w2 = b.param(TensorType(DType.F32, (31, 257)), "w2")
    b2 = b.param(TensorType(DType.F32, (31,)), "b2")
    h = b.op("hardswish", [b.op("linear", [x, w1, b1])])
    b.output(b.op("linear", [h, w2, b2]))
    graph = PassManager(default_pipeline()).run(b.build())[0]
    mod = compile_graph(graph, threads_min_work=1, isa=isa)
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs]
    arrays += [rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.params]
    runs = [mod.run(arrays, nthreads=t)[0] for t in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
    xs, w1a, b1a, w2a, b2a = (a.astype(np.float64) for a in arrays)
    hid = xs @ w1a.T + b1a
    want = (hid * np.clip(hid + 3, 0, 6) / 6) @ w2a.T + b2a
    np.testing.assert_allclose(runs[0], want, rtol=1e-4, atol=1e-4)
    assert "Row path:" in mod.program.source
    # with threads, each GEMM splits its columns in 16-column groups (257 -> 17, 31 -> 2)
    assert mod.program.source.count("_part_task, jobs, sizeof(") == 2


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_classifier_head_trains_through_the_narrow_row_path(dynamic: bool) -> None:
    """Linear(300, 10) at batch 37 (static and dynamic batch): forward and gradients match eager
    lucid in float64 to 1e-12, and the forward's GEMM is the row path, with no packed weight."""
    lucid.random.seed(9)
    model = nn.Sequential(nn.Linear(300, 10))
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    x = np.random.default_rng(9).standard_normal((37, 300))
    cm = lucid.compile(model, dynamic_batch=dynamic)
    out = cm(lucid.Tensor(x))
    (out * out).sum().backward()
    grads = [p.grad.copy() for p in model.parameters()]
    assert "row path: every row of C" in cm.c_source
    model.zero_grad()
    ref = model(lucid.Tensor(x))
    (ref * ref).sum().backward()
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12, atol=1e-12)
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-12, atol=1e-12)
    with lucid.no_grad(), pytest.warns(RecompileWarning, match="grad mode changed"):
        cm(x)  # an inference entry: it would hold a packed weight, if its GEMM had one
    packed = cm.entry().packed
    assert packed is None or packed.nbytes() == 0
