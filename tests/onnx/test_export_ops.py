"""lucid.onnx.export, op family by op family: each small module is exported with an example
batch of 2, must pass onnx.checker (full_check), and ONNX Runtime must give eager lucid's results
at batch 2, 1 and 3 (the batch is the symbolic dim "N")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn import functional as F

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

Make = Callable[[int, np.random.Generator], list[np.ndarray]]


class Fn(nn.Module):
    """A module whose forward is `fn` (lucid ops on the inputs)."""

    def __init__(self, fn: Callable[..., Any], *children: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleList(list(children))

    def forward(self, *xs: Any) -> Any:
        return self.fn(*xs, *self.parts)


def floats(*shape: int, dtype: Any = np.float32, low: float = -3.0, high: float = 3.0) -> Make:
    """One input of `shape` after the batch, uniform in [low, high)."""
    return lambda n, rng: [rng.uniform(low, high, (n, *shape)).astype(dtype)]


def check(
    tmp_path: Path,
    module: nn.Module,
    make: Make,
    *,
    opset: int = 17,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    batches: Sequence[int] = (2, 1, 3),
) -> Any:
    """Export `module` on a batch of 2, check the file, compare ORT with eager at `batches`."""
    rng = np.random.default_rng(0)
    path = tmp_path / "model.onnx"
    example = make(2, rng)
    proto = lucid.onnx.export(module, [lucid.Tensor(a) for a in example], path, opset=opset)
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == proto.SerializeToString()  # export returns what it wrote
    onnx.checker.check_model(loaded, full_check=True)
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in loaded.graph.input] == ["N"] * len(
        example
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in batches:
        arrays = example if n == 2 else make(n, rng)
        want = module(*(lucid.Tensor(a) for a in arrays))
        wants = want if isinstance(want, (tuple, list)) else [want]
        got = session.run(None, {f"input_{i}": a for i, a in enumerate(arrays)})
        assert len(got) == len(wants)
        for g, w in zip(got, wants):
            assert g.dtype == w.data.dtype and g.shape == w.data.shape, (n, g.shape, w.shape)
            np.testing.assert_allclose(g, w.data, rtol=rtol, atol=atol, err_msg=f"batch {n}")
    return loaded


def op_types(proto: Any) -> set[str]:
    return {node.op_type for node in proto.graph.node}


ACTIVATIONS: dict[str, tuple[nn.Module, str | None]] = {
    "relu": (nn.ReLU(), "Relu"),
    "relu6": (nn.ReLU6(), "Clip"),
    "hardtanh": (nn.Hardtanh(-2.0, 1.5), "Clip"),
    "sigmoid": (nn.Sigmoid(), "Sigmoid"),
    "tanh": (nn.Tanh(), "Tanh"),
    "hardswish": (nn.HardSwish(), "HardSwish"),
    "hardsigmoid": (nn.HardSigmoid(), "HardSigmoid"),
    "leaky_relu": (nn.LeakyReLU(0.2), "LeakyRelu"),
    "elu": (nn.ELU(0.7), "Elu"),
    "silu": (nn.SiLU(), "Sigmoid"),
    "softplus": (nn.Softplus(beta=2.0, threshold=5.0), "Softplus"),
    "gelu": (nn.GELU(), "Erf"),
    "gelu_tanh": (nn.GELU(approximate="tanh"), "Tanh"),
    "softmax": (nn.Softmax(dim=1), "Softmax"),
    "log_softmax": (nn.LogSoftmax(dim=2), "LogSoftmax"),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation(tmp_path: Path, name: str) -> None:
    module, op_type = ACTIVATIONS[name]
    proto = check(tmp_path, module, floats(5, 7))
    assert op_type in op_types(proto)


# ONNX Runtime has no float64 Erf, so exact GELU in float64 exports (check_model passes) but
# does not run there; every other activation is spelled out in float64 where ORT lacks a kernel.
@pytest.mark.parametrize("name", sorted(set(ACTIVATIONS) - {"gelu"}))
def test_activation_float64(tmp_path: Path, name: str) -> None:
    module, _ = ACTIVATIONS[name]
    check(tmp_path, module, floats(5, 7, dtype=np.float64), rtol=1e-12, atol=1e-13)


def test_hardswish_is_one_onnx_node_not_its_expansion(tmp_path: Path) -> None:
    proto = check(tmp_path, nn.HardSwish(), floats(6))
    assert [n.op_type for n in proto.graph.node] == ["HardSwish", "Identity"]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_is_the_onnx_op_from_opset_20(tmp_path: Path, approximate: str) -> None:
    proto = check(tmp_path, nn.GELU(approximate=approximate), floats(9), opset=20)
    assert "Gelu" in op_types(proto) and "Erf" not in op_types(proto)


ELEMENTWISE: dict[str, Callable[..., Any]] = {
    "arith": lambda x, y: (x + y) * x - y / (y.abs() + 1.0),
    "neg_exp_log_sqrt": lambda x, y: -(x.exp() + (y.abs() + 0.5).log() + (x * x).sqrt()),
    "pow": lambda x, y: x**3 + y**2,
    "max_min": lambda x, y: lucid.maximum(x, y) - lucid.minimum(x, y * 2.0),
    "compare_where": lambda x, y: lucid.where(x > y, x, lucid.where(x <= -1.0, y * 3.0, y)),
    "clip": lambda x, y: lucid.clip(x, -1.0, 0.5) + y,
    "cast": lambda x, y: (x > y).astype(np.float32) + (x < 0).astype(np.float32) * 2.0,
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise(tmp_path: Path, name: str) -> None:
    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.uniform(-2, 2, (n, 4, 3)).astype(np.float32) for _ in range(2)]

    check(tmp_path, Fn(ELEMENTWISE[name]), make)


def test_float64_is_exported_in_float64(tmp_path: Path) -> None:
    fn = Fn(lambda x: F.softmax(F.tanh(x) * 3.0 + x.exp(), dim=1) + x.mean(1, keepdims=True))
    proto = check(tmp_path, fn, floats(6, dtype=np.float64), rtol=1e-12, atol=1e-13)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


REDUCTIONS: dict[str, Callable[..., Any]] = {
    "sum": lambda x: x.sum(1),
    "sum_all": lambda x: x.sum() + x,
    "sum_no_axes": lambda x: x.sum(()) * 2.0,
    "mean_keepdim": lambda x: x.mean((1, 2), keepdims=True),
    "max": lambda x: x.max(2),
    "min": lambda x: x.min(1, keepdim=True),
    "argmax": lambda x: x.argmax(2),
    "argmin": lambda x: x.argmin(1),
    "var_std": lambda x: x.var(2) + x.std(1).sum(1, keepdims=True),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction(tmp_path: Path, name: str) -> None:
    check(tmp_path, Fn(REDUCTIONS[name]), floats(4, 5))


def _opset_sensitive(x: Any) -> Any:
    """Ops whose ONNX form changes with the opset: Reduce* axes (an input from 18), Pad, Gelu."""
    y = F.gelu(x) + x.var(2, keepdim=True) + x.max(2, keepdim=True)[0] - x.min(1, keepdim=True)[0]
    return F.pad(y, (1, 1), mode="reflect").mean(1), F.layer_norm(x, (4,)), x.argmax(2)


@pytest.mark.parametrize("opset", [17, 18, 19, 20, 21])
def test_opsets(tmp_path: Path, opset: int) -> None:
    proto = check(tmp_path, Fn(_opset_sensitive), floats(6, 4), opset=opset)
    assert proto.opset_import[0].version == opset
    assert ("Gelu" in op_types(proto)) is (opset >= 20)


def test_linear_on_rows_is_gemm_and_on_sequences_matmul(tmp_path: Path) -> None:
    lucid.random.seed(1)
    assert "Gemm" in op_types(check(tmp_path, nn.Linear(6, 4), floats(6)))
    proto = check(tmp_path, nn.Linear(6, 4), floats(3, 6))
    assert "MatMul" in op_types(proto)
    assert {i.name for i in proto.graph.initializer} == {"weight", "bias"}


def test_matmul_and_batched_matmul_with_transposes(tmp_path: Path) -> None:
    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, 3, 4, 5)).astype(np.float32) for _ in range(2)]

    fn = Fn(
        lambda a, b: (a @ b.permute(0, 1, 3, 2)) @ a + a.permute(0, 1, 3, 2).permute(0, 1, 3, 2)
    )
    check(tmp_path, fn, make)


CONVS: dict[str, Callable[[], nn.Module]] = {
    "plain_bias": lambda: nn.Conv2d(4, 6, 3),
    "stride_padding": lambda: nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False),
    "groups_dilation": lambda: nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2),
    "depthwise_rect": lambda: nn.Conv2d(4, 4, (3, 1), stride=(1, 2), padding=(1, 0), groups=4),
    "same_even_kernel": lambda: nn.Conv2d(4, 2, (2, 4), padding="same"),  # uneven pads
    "conv1d": lambda: Fn(lambda x, c: c(x.reshape(x.shape[0], 4, 72)), nn.Conv1d(4, 3, 5, 2, 1)),
}


@pytest.mark.parametrize("name", sorted(CONVS))
def test_conv(tmp_path: Path, name: str) -> None:
    lucid.random.seed(2)
    proto = check(tmp_path, CONVS[name](), floats(4, 9, 8))
    assert "Conv" in op_types(proto)


POOLS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "max": (lambda: nn.MaxPool2d(3, 2, 1), "MaxPool"),
    "max_ceil": (lambda: nn.MaxPool2d(2, 2, ceil_mode=True), "MaxPool"),
    "max_dilated": (lambda: Fn(lambda x: F.max_pool2d(x, 2, 1, 0, dilation=2)), "MaxPool"),
    "avg": (lambda: nn.AvgPool2d(3, 2, 1), "AveragePool"),
    "avg_no_pad_count": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), "AveragePool"),
    "avg_ceil": (lambda: nn.AvgPool2d(2, 2, ceil_mode=True), "AveragePool"),
    # ceil_mode whose last window would start in the padding: PyTorch drops it, ONNX keeps it
    "max_ceil_drops_window": (lambda: nn.MaxPool2d(2, 2, 1, ceil_mode=True), "MaxPool"),
    "avg_ceil_drops_window": (lambda: nn.AvgPool2d(2, 2, 1, ceil_mode=True), "AveragePool"),
    "avg_ceil_keeps_window": (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True), "AveragePool"),
    "adaptive_1x1": (lambda: nn.AdaptiveAvgPool2d(1), "GlobalAveragePool"),
    "adaptive_even": (lambda: nn.AdaptiveAvgPool2d((3, 2)), "AveragePool"),
    "adaptive_uneven": (lambda: nn.AdaptiveAvgPool2d((4, 3)), "ReduceMean"),
}


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pool(tmp_path: Path, name: str) -> None:
    factory, op_type = POOLS[name]
    proto = check(tmp_path, factory(), floats(3, 9, 8))
    assert op_type in op_types(proto)


def test_pool_whose_axes_round_differently_under_ceil_mode(tmp_path: Path) -> None:
    # on 5x6, the 2-row windows drop their last (it starts in the padding), the 3-column keep it
    for pool in (
        nn.MaxPool2d((2, 3), 2, 1, ceil_mode=True),
        nn.AvgPool2d((2, 3), 2, 1, ceil_mode=True, count_include_pad=False),
    ):
        proto = check(tmp_path, pool, floats(3, 5, 6))
        assert proto.graph.output[0].type.tensor_type.shape.dim[2].dim_value == 3
    pool = nn.AvgPool2d((2, 3), 2, 1, ceil_mode=True)  # its divisor would count ONNX's padding
    x = lucid.Tensor(np.ones((2, 3, 5, 6), np.float32))
    with pytest.raises(lucid.errors.LucidError, match="count_include_pad"):
        lucid.onnx.export(pool, x, tmp_path / "avg.onnx")
    assert not (tmp_path / "avg.onnx").exists()


@pytest.mark.parametrize(
    ("mode", "opset"),
    [("constant", 17), ("reflect", 17), ("replicate", 17), ("circular", 19)],
)
def test_pad(tmp_path: Path, mode: str, opset: int) -> None:
    value = 1.5 if mode == "constant" else None
    fn = Fn(lambda x: F.pad(x, (1, 2, 2, 0), mode=mode, value=value))
    proto = check(tmp_path, fn, floats(2, 5, 4), opset=opset)
    assert "Pad" in op_types(proto)


def _with_stats(bn: nn.Module, channels: int) -> nn.Module:
    rng = np.random.default_rng(3)
    state = {
        "weight": rng.uniform(0.5, 1.5, channels).astype(np.float32),
        "bias": rng.uniform(-1, 1, channels).astype(np.float32),
        "running_mean": rng.uniform(-1, 1, channels).astype(np.float32),
        "running_var": rng.uniform(0.5, 2, channels).astype(np.float32),
    }
    bn.load_state_dict({k: lucid.Tensor(v) for k, v in state.items()}, strict=False)
    return bn.eval()


NORMS: dict[str, tuple[Callable[[], nn.Module], Make, str]] = {
    "layer_norm": (lambda: nn.LayerNorm(6), floats(3, 6), "LayerNormalization"),
    "layer_norm_2d": (lambda: nn.LayerNorm((3, 6)), floats(3, 6), "LayerNormalization"),
    "layer_norm_no_bias": (lambda: nn.LayerNorm(6, bias=False), floats(6), "LayerNormalization"),
    "layer_norm_no_affine": (
        lambda: nn.LayerNorm(6, elementwise_affine=False),
        floats(2, 6),
        "LayerNormalization",
    ),
    "group_norm": (lambda: nn.GroupNorm(2, 4), floats(4, 3, 5), "LayerNormalization"),
    "batch_norm_2d_eval": (
        lambda: _with_stats(nn.BatchNorm2d(4), 4),
        floats(4, 3, 5),
        "BatchNormalization",
    ),
    "batch_norm_1d_eval": (
        lambda: _with_stats(nn.BatchNorm1d(4), 4),
        floats(4),
        "BatchNormalization",
    ),
    "batch_norm_1d_seq_eval": (
        lambda: _with_stats(nn.BatchNorm1d(4), 4),
        floats(4, 3),
        "BatchNormalization",
    ),
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_norm_is_the_onnx_op(tmp_path: Path, name: str) -> None:
    factory, make, op_type = NORMS[name]
    proto = check(tmp_path, factory(), make)
    assert op_type in op_types(proto) and not {"ReduceMean", "Sqrt"} & op_types(proto)


@pytest.mark.parametrize("name", ["layer_norm", "batch_norm_2d_eval"])
def test_norm_float64(tmp_path: Path, name: str) -> None:
    factory, make, op_type = NORMS[name]
    module = factory().double()
    f64: Make = lambda n, rng: [a.astype(np.float64) for a in make(n, rng)]
    proto = check(tmp_path, module, f64, rtol=1e-12, atol=1e-12)
    assert op_type in op_types(proto)


def test_a_norm_whose_inner_values_are_used_elsewhere_stays_spelled_out(tmp_path: Path) -> None:
    # CSE shares the BatchNorm's sqrt(var + eps) with the second output: no fusion, same results
    bn = _with_stats(nn.BatchNorm1d(4), 4)
    proto = check(tmp_path, Fn(lambda x, b: (b(x), (b.running_var + 1e-5).sqrt()), bn), floats(4))
    assert "BatchNormalization" not in op_types(proto) and "Sqrt" in op_types(proto)
    # two LayerNorms of one x share everything up to their weights: one normalisation, twice scaled
    lucid.random.seed(6)
    ln1, ln2 = nn.LayerNorm(6), nn.LayerNorm(6)
    for ln in (ln1, ln2):
        ln.load_state_dict({"weight": lucid.randn(6), "bias": lucid.randn(6)})
    proto = check(tmp_path, Fn(lambda x, a, b: a(x) - b(x), ln1, ln2), floats(3, 6))
    assert "LayerNormalization" in op_types(proto)


LAYER_NORM_IR = """graph @forward(%x: f32[N,6]) -> (f32[N,6], f32[N,1]) {
  %0 = moments %x {axes=[1]} : f32[2,N,1]
  %1 = slice %0 {axes=[0], starts=[0], steps=[1], stops=[1]} : f32[1,N,1]
  %2 = reshape %1 {shape=["N", 1]} : f32[N,1]
  %3 = slice %0 {axes=[0], starts=[1], steps=[1], stops=[2]} : f32[1,N,1]
  %4 = reshape %3 {shape=["N", 1]} : f32[N,1]
  %5 = sub %x, %2 : f32[N,6]
  %6 = constant {dtype=f32, value=1e-05} : f32[]
  %7 = add %4, %6 : f32[N,1]
  %8 = sqrt %7 : f32[N,1]
  %9 = constant {dtype=f32, value=1.0} : f32[]
  %10 = div %9, %8 : f32[N,1]
  %11 = mul %5, %10 : f32[N,6]
  %12 = mean %x {axes=[1], keepdims=true} : f32[N,1]
  return %11, RETURNED
}
"""


def test_layer_norm_recognition_needs_the_inner_values_private() -> None:
    from lucid.ir.parser import parse
    from lucid.onnx._export_norms import recognise_norms

    (norm,) = recognise_norms(parse(LAYER_NORM_IR.replace("RETURNED", "%12"))).values()
    assert norm.op_type == "LayerNormalization" and norm.attrs == {"axis": 1, "epsilon": 1e-05}
    for inner in ("%2", "%4", "%8", "%10"):  # the mean, the variance, sqrt(var + eps), 1 / that
        assert recognise_norms(parse(LAYER_NORM_IR.replace("RETURNED", inner))) == {}


def test_embedding_is_gather_and_refuses_bad_ids_at_run_time(tmp_path: Path) -> None:
    lucid.random.seed(4)
    emb = nn.Embedding(7, 3)

    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.integers(0, 7, (n, 5))]

    proto = check(tmp_path, emb, make)
    assert "Gather" in op_types(proto)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    for bad in (7, -1):  # eager lucid raises IndexError for both; ONNX Gather would wrap -1
        ids = np.array([[0, 1, bad, 2, 3]])
        with pytest.raises(IndexError):
            emb(lucid.Tensor(ids))
        with pytest.raises(Exception, match="(?i)out of (data )?bounds|indices"):
            session.run(None, {"input_0": ids})


SHAPES: dict[str, Callable[..., Any]] = {
    "slice_step": lambda x: x[:, 1:5:2, ::3],
    "split_cat": lambda x: lucid.cat([*reversed(x.split(2, dim=1))], dim=2),
    "reshape_flatten": lambda x: x.reshape(x.shape[0], 3, -1).flatten(1) * 2.0,
    "permute_unsqueeze": lambda x: x.permute(0, 2, 1).unsqueeze(1).squeeze(1),
    "broadcast_to": lambda x: x[:, :1, :].broadcast_to(x.shape) + x,
    "chunk_stack": lambda x: lucid.stack(x.chunk(2, dim=2), dim=1).sum(1),
    "batch_times_rows": lambda x: x.reshape(-1, 4).softmax(1).reshape(x.shape),
    "batch_as_a_number": lambda x: x.sum(0) / x.shape[0] + x,
    "batch_shaped_constants": lambda x: lucid.ones(x.shape) * x + lucid.zeros((x.shape[0], 1, 1)),
    "masked_fill_tril": lambda x: x.masked_fill(x > 0, -1.0) + x.tril() - x.triu(1),
    "int_index": lambda x: x[:, 2] + x[:, -1],
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_and_indexing(tmp_path: Path, name: str) -> None:
    check(tmp_path, Fn(SHAPES[name]), floats(6, 4))


def test_outputs_of_batch_times_constant_rows(tmp_path: Path) -> None:
    proto = check(tmp_path, Fn(lambda x: (x.reshape(-1, 4), x.flatten())), floats(6, 4))
    dims = [
        [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in proto.graph.output
    ]
    assert dims == [["N*6", 4], ["N*24"]]


def test_scaled_dot_product_attention_with_causal_mask(tmp_path: Path) -> None:
    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, 2, 5, 4)).astype(np.float32) for _ in range(3)]

    fn = Fn(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    proto = check(tmp_path, fn, make)
    assert {"Softmax", "Where", "MatMul"} <= op_types(proto)


def test_multihead_attention_and_transformer_layer(tmp_path: Path) -> None:
    lucid.random.seed(5)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    check(tmp_path, Fn(lambda x, m: m(x, x, x)[0], mha), floats(5, 8), atol=2e-5)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True).eval()
    check(tmp_path, layer, floats(5, 8), atol=2e-5)


def test_losses_take_two_inputs(tmp_path: Path) -> None:
    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        return [rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 5, n)]

    proto = check(tmp_path, nn.CrossEntropyLoss(), make)
    assert "SoftmaxCrossEntropyLoss" in op_types(proto)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)out of (data )?bounds|out of range"):  # class 5 of 5
        session.run(None, {"input_0": np.zeros((2, 5), np.float32), "input_1": np.array([0, 5])})
    check(tmp_path, Fn(lambda a, t: F.cross_entropy(a, t, reduction="none")), make)
    mse = Fn(lambda a, b: F.mse_loss(a, b) + F.mse_loss(a, b, reduction="sum"))
    check(tmp_path, mse, lambda n, rng: [rng.standard_normal((n, 3)).astype(np.float32)] * 2)


def test_mask_based_losses(tmp_path: Path) -> None:
    def make(n: int, rng: np.random.Generator) -> list[np.ndarray]:
        target = rng.integers(0, 5, n)
        target[0] = -100 if n > 1 else 0  # ignore_index (not every row: the mean would be 0/0)
        return [rng.standard_normal((n, 5)).astype(np.float32), target]

    def losses(a: Any, t: Any) -> Any:
        hot = (t.reshape(-1, 1) > 1).astype(np.float32) * lucid.ones((1, 5))
        return (
            F.nll_loss(F.log_softmax(a, 1), t),
            F.binary_cross_entropy_with_logits(a, hot),
            F.huber_loss(a, a * 0.5) + F.l1_loss(a, a * 0.3),
        )

    check(tmp_path, Fn(losses), make)


# Ops deliberately without an ONNX form: gradient companions appear only in backward graphs
# (export writes forward graphs), fused region ops are inlined body by body, and composites are
# expanded before export (the cleanup passes start with `expand`; eval BatchNorm's expansion is
# then recognised as one BatchNormalization).
NO_ONNX_FORM = {
    "batch_norm",
    "adaptive_avg_pool2d_grad",
    "avg_pool2d_grad",
    "clip_grad",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "cross_entropy_grad",
    "elu_grad",
    "embedding_grad",
    "gelu_grad",
    "hardsigmoid_grad",
    "hardswish_grad",
    "hardtanh_grad",
    "leaky_relu_grad",
    "max_pool2d_grad",
    "maximum_grad",
    "minimum_grad",
    "pad_grad",
    "relu6_grad",
    "relu_grad",
    "slice_grad",
    "softplus_grad",
    "sum_to",
    "fused_conv",
    "fused_elementwise",
    "fused_gemm",
    "fused_mlp",
}


def test_every_ir_op_has_an_onnx_translation_or_a_reason_not_to() -> None:
    from lucid.ir.ops import OPS
    from lucid.onnx._export_ops import TRANSLATIONS

    assert set(TRANSLATIONS) <= set(OPS)
    assert sorted(set(OPS) - set(TRANSLATIONS)) == sorted(NO_ONNX_FORM)
    assert all(OPS[name].region for name in NO_ONNX_FORM if name.startswith("fused_"))


# Ops the tracer never records in a forward pass, yet the table maps (a graph built by hand,
# or by a pass, may hold them): checked on IR text against lucid's interpreter.
IR_ONLY = {
    "matmul_at": """graph @f(%a: f32[N,3,4], %b: f32[N,3,5]) -> (f32[4,5]) {
  %0 = matmul_at %a, %b : f32[4,5]
  return %0
}
""",
    "stop_gradient_clip_dim": """graph @f(%a: f32[N,3,4], %b: f32[N,3,5]) -> (f32[N,3,4], f32[]) {
  %0 = stop_gradient %a : f32[N,3,4]
  %1 = clip %0 {max=0.5, min=-0.25} : f32[N,3,4]
  %2 = dim %b {axis=0, dtype=f32} : f32[]
  return %1, %2
}
""",
}


@pytest.mark.parametrize("name", sorted(IR_ONLY))
def test_ops_only_ir_text_holds(name: str) -> None:
    from lucid.ir.interpret import interpret
    from lucid.ir.parser import parse
    from lucid.onnx._export import Emitter

    graph = parse(IR_ONLY[name])
    proto = Emitter(onnx, 17).model(graph, [], ["a", "b"], ["y0", "y1"][: len(graph.outputs)], 2)
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(5)
    for n in (1, 3):
        a = rng.standard_normal((n, 3, 4)).astype(np.float32)
        b = rng.standard_normal((n, 3, 5)).astype(np.float32)
        for got, want in zip(session.run(None, {"a": a, "b": b}), interpret(graph, a, b)):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
