"""Every differentiable op's VJP rule, alone and in hypothesis-generated random MLPs:
interpreted (augmented forward, backward) == eager lucid (float64, tight) == central
differences away from kinks; at the kinks, the documented rule, equal to eager."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import lucid
from lucid import nn
from lucid.ir import OPS, Graph, interpret, trace
from lucid.tensor import apply
from tests.ir.test_autodiff import Fn, check_module, eager_grads, ir_grads

F = nn.functional
MARGIN = 1e-3  # central differences with eps 1e-6 never straddle a kink this far away


def kink_distance(graph: Graph, arrays: Sequence[np.ndarray]) -> float:
    """How close any kinked op's input comes to its kink (inf if the graph has none)."""
    every = Graph(graph.name, graph.inputs, graph.params, graph.nodes, graph.all_values())
    env = dict(zip(every.outputs, interpret(every, *arrays)))
    best = np.inf

    def near(a: np.ndarray, *points: float) -> None:
        nonlocal best
        for p in points:
            if np.isfinite(p) and a.size:
                best = min(best, float(np.min(np.abs(a - p))))

    for node in graph.nodes:
        xs = [env[v] for v in node.inputs]
        if node.op in ("hardswish", "hardsigmoid"):
            near(xs[0], -3.0, 3.0)
        elif node.op in ("relu", "abs", "leaky_relu", "elu"):
            near(xs[0], 0.0)
        elif node.op == "relu6":
            near(xs[0], 0.0, 6.0)
        elif node.op == "hardtanh":
            near(xs[0], float(node.attrs["min_val"]), float(node.attrs["max_val"]))  # type: ignore[arg-type]
        elif node.op == "softplus":  # switches to x at beta x = threshold
            near(xs[0], float(node.attrs["threshold"]) / float(node.attrs["beta"]))  # type: ignore[arg-type]
        elif node.op == "clip":
            near(xs[0], float(node.attrs["min"]), float(node.attrs["max"]))  # type: ignore[arg-type]
        elif node.op in ("maximum", "minimum", "less", "less_equal", "greater", "greater_equal"):
            near(xs[0] - xs[1], 0.0)
    return best


def check_away_from_kinks(
    make: Callable[[np.random.Generator], tuple[nn.Module, list[np.ndarray]]],
) -> None:
    """check_module on the first seeded draw whose kinked ops stay MARGIN away from their kinks."""
    for seed in range(100):
        module, inputs = make(np.random.default_rng(seed))
        arrays = [*inputs, *(p.data for _, p in module.named_parameters())]
        if kink_distance(trace(module, *inputs), arrays) > MARGIN:
            check_module(module, inputs)
            return
    pytest.fail("no draw away from the kinks")


def unary(fn: Callable[[Any], Any], scale: float = 3.0, shift: float = 0.0) -> Callable[..., Any]:
    """A maker: fn applied to x * w (so the weight gets a gradient too), x ~ N(shift, scale)."""

    def make(rng: np.random.Generator) -> tuple[nn.Module, list[np.ndarray]]:
        m = Fn(lambda self, x: fn(x * self.w), w=rng.uniform(0.5, 1.5, 4))
        return m, [rng.standard_normal((3, 4)) * scale + shift]

    return make


def binary(
    fn: Callable[[Any, Any], Any], pshape: tuple[int, ...] = (4,), low: float = -2.0
) -> Callable[..., Any]:
    """A maker: fn(x, p) with p broadcast against x [3, 4]; values in [low, 2]."""

    def make(rng: np.random.Generator) -> tuple[nn.Module, list[np.ndarray]]:
        m = Fn(lambda self, x: fn(x, self.p), p=rng.uniform(low, 2.0, pshape))
        return m, [rng.uniform(low, 2.0, (3, 4))]

    return make


def shaped(
    fn: Callable[[Any, Any], Any], xshape: tuple[int, ...], **pshapes: tuple[int, ...]
) -> Callable[..., Any]:
    """A maker: fn(self, x) with params of the given shapes, all N(0, 1)."""

    def make(rng: np.random.Generator) -> tuple[nn.Module, list[np.ndarray]]:
        m = Fn(fn, **{k: rng.standard_normal(s) for k, s in pshapes.items()})
        return m, [rng.standard_normal(xshape)]

    return make


def _dropout(x: Any) -> Any:
    """The dropout op with a fixed seed (a graph constant here, so eager and the IR agree)."""
    seed = lucid.Tensor(np.array(-42, np.int64))
    return apply(OPS["dropout"], (x, seed), {"p": 0.4})


def _ce(self: Any, x: Any, reduction: str) -> Any:
    return F.cross_entropy(x @ self.w, lucid.Tensor(np.array([0, 2, 1])), reduction)


_CONV = {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": (1, 2), "groups": 2}


def _conv_grad(name: str, **extra: Any) -> Callable[..., Any]:
    """A conv2d gradient companion applied to (x, self.w) directly (it has VJPs of its own)."""
    return lambda self, x: apply(OPS[name], (x, self.w), {**_CONV, **extra})


CASES: dict[str, Callable[..., Any]] = {
    "add": binary(lambda x, p: x + p),
    "add_bcast_x": binary(lambda x, p: p + x.sum(axis=1, keepdims=True), pshape=(3, 4)),
    "sub": binary(lambda x, p: p - x, pshape=(1, 4)),
    "mul": binary(lambda x, p: x * p, pshape=(3, 1)),
    "div": binary(lambda x, p: x / p, low=0.5),
    "rdiv": binary(lambda x, p: p / x, low=0.5),
    "neg": unary(lambda x: -x),
    "pow": unary(lambda x: (x * x + 1.0) ** 1.5),
    "pow_int": unary(lambda x: x**3),
    "matmul": shaped(lambda self, x: x @ self.w, (3, 4), w=(4, 2)),
    "matmul_3d": shaped(lambda self, x: x @ self.w, (2, 3, 4), w=(4, 2)),
    "matmul_1d": shaped(lambda self, x: x @ self.w, (4,), w=(4, 2)),
    "linear": shaped(lambda self, x: F.linear(x, self.w, self.b), (3, 4), w=(2, 4), b=(2,)),
    "linear_3d": shaped(lambda self, x: F.linear(x, self.w, self.b), (2, 3, 4), w=(2, 4), b=(2,)),
    "linear_1d": shaped(lambda self, x: F.linear(x, self.w, self.b), (4,), w=(2, 4), b=(2,)),
    "linear_nobias": shaped(lambda self, x: F.linear(x, self.w), (3, 4), w=(2, 4)),
    "hardswish": unary(F.hardswish),
    "hardsigmoid": unary(F.hardsigmoid),
    "relu": unary(F.relu),
    "relu6": unary(F.relu6, scale=4.0, shift=3.0),
    "sigmoid": unary(F.sigmoid),
    "silu": unary(F.silu),
    "tanh": unary(F.tanh),
    "gelu": unary(F.gelu),
    "gelu_tanh": unary(lambda x: F.gelu(x, approximate="tanh")),
    "leaky_relu": unary(lambda x: F.leaky_relu(x, 0.2)),
    "elu": unary(lambda x: F.elu(x, 0.7)),
    "softplus": unary(lambda x: F.softplus(x, 2.0, 3.0)),
    "hardtanh": unary(lambda x: F.hardtanh(x, -2.0, 1.5)),
    "softmax": shaped(lambda self, x: (x * self.w).softmax(1), (2, 3, 4), w=(4,)),
    "log_softmax": shaped(lambda self, x: (x * self.w).log_softmax(-1), (3, 4), w=(4,)),
    "exp": unary(lucid.exp, scale=1.0),
    "log": unary(lambda x: lucid.log(x * x + 0.5)),
    "sqrt": unary(lambda x: lucid.sqrt(x * x + 0.5)),
    "abs": unary(lucid.abs),
    "clip": unary(lambda x: x.clip(-1.0, 2.0)),
    "clip_open": unary(lambda x: x.clip(None, 1.0)),
    "dropout": unary(_dropout),
    "maximum": binary(lucid.maximum),
    "minimum": binary(lucid.minimum, pshape=(3, 1)),
    "sum": shaped(lambda self, x: (x * self.w).sum(axis=1), (3, 4), w=(4,)),
    "sum_keep": shaped(
        lambda self, x: (x * self.w).sum(axis=(0, 2), keepdims=True), (2, 3, 4), w=(4,)
    ),
    "sum_all": shaped(lambda self, x: (x * self.w).sum(), (3, 4), w=(4,)),
    "mean": shaped(lambda self, x: (x * self.w).mean(axis=0), (3, 4), w=(4,)),
    "mean_keep": shaped(lambda self, x: (x * self.w).mean(axis=1, keepdims=True), (3, 4), w=(4,)),
    "reshape": shaped(lambda self, x: (x * self.w).reshape(2, -1), (3, 4), w=(4,)),
    "transpose": shaped(lambda self, x: (x * self.w).transpose(2, 0, 1), (2, 3, 4), w=(4,)),
    "slice": shaped(lambda self, x: (x * self.w)[1:, ::2, None], (3, 4), w=(4,)),
    "concat": shaped(lambda self, x: lucid.cat([x * self.w, x, x[:, :1]], 1), (3, 4), w=(4,)),
    "max": shaped(lambda self, x: (x * self.w).max(1).values, (3, 4), w=(4,)),
    "min": shaped(lambda self, x: (x * self.w).min(), (3, 4), w=(4,)),
    "broadcast": shaped(lambda self, x: x * self.w.broadcast_to((3, 4)), (3, 4), w=(1, 4)),
    "where": binary(lambda x, p: lucid.where(x > p, x * p, p - x)),
    "mse_mean": binary(lambda x, p: F.mse_loss(x * 2.0, p), pshape=(3, 4)),
    "mse_sum": binary(lambda x, p: F.mse_loss(x, p, "sum"), pshape=(3, 4)),
    "cross_entropy": shaped(lambda self, x: _ce(self, x, "mean"), (3, 4), w=(4, 3)),
    "cross_entropy_sum": shaped(lambda self, x: _ce(self, x, "sum"), (3, 4), w=(4, 3)),
    "cross_entropy_none": shaped(lambda self, x: _ce(self, x, "none"), (3, 4), w=(4, 3)),
    "conv2d": shaped(
        lambda self, x: F.conv2d(x, self.w, self.b, (2, 1), (1, 2), (1, 2), 2),
        (2, 4, 5, 6),
        w=(6, 2, 3, 2),
        b=(6,),
    ),
    "conv2d_depthwise": shaped(
        lambda self, x: F.conv2d(x, self.w, None, 2, "valid", 1, 3), (2, 3, 7, 6), w=(6, 1, 3, 3)
    ),
    "conv1d": shaped(lambda self, x: F.conv1d(x, self.w, None, 1, "same"), (2, 3, 7), w=(2, 3, 4)),
    "conv2d_grad_input": shaped(
        _conv_grad("conv2d_grad_input", in_size=(5, 6)), (2, 6, 2, 7), w=(6, 2, 3, 2)
    ),
    "conv2d_grad_weight": shaped(
        _conv_grad("conv2d_grad_weight", kernel_size=(3, 2)),
        (2, 4, 5, 6),
        w=(2, 6, 2, 7),
    ),
    # pooling and padding (N(0, 1) draws: ties in a max window are improbable)
    "max_pool2d": shaped(
        lambda self, x: F.max_pool2d(x * self.w, 3, 2, 1, dilation=(1, 2), ceil_mode=True),
        (2, 2, 5, 6),
        w=(6,),
    ),
    "avg_pool2d": shaped(
        lambda self, x: F.avg_pool2d(x * self.w, 3, 2, 1, True, False), (2, 2, 5, 6), w=(6,)
    ),
    "adaptive_avg_pool2d": shaped(
        lambda self, x: F.adaptive_avg_pool2d(x * self.w, (3, 4)), (2, 2, 5, 6), w=(6,)
    ),
    "pad": shaped(
        lambda self, x: F.pad(F.pad(x * self.w, (2, 1, 1, 2), "reflect"), (1, 0, 0, 1), "circular"),
        (2, 2, 4, 5),
        w=(5,),
    ),
    "batch_matmul": shaped(lambda self, x: x @ self.w, (2, 1, 3, 4), w=(3, 4, 2)),
    "batch_matmul_t": shaped(
        lambda self, x: apply(OPS["batch_matmul"], (x, self.w), {"trans_a": True, "trans_b": True}),
        (2, 4, 3),
        w=(1, 5, 4),
    ),
    "matmul_at": shaped(
        lambda self, x: apply(OPS["matmul_at"], (x, self.w)), (2, 3, 4), w=(2, 3, 5)
    ),
    "embedding": shaped(
        lambda self, x: F.embedding(lucid.Tensor(np.array([[0, 2], [2, 3]])), self.w) * x,
        (2, 2, 3),
        w=(4, 3),
    ),
    "stop_gradient": shaped(lambda self, x: x * self.w + (x * self.w).detach(), (3, 4), w=(4,)),
    # moments through the normalization layers: rows (LayerNorm), channels (BatchNorm)
    "moments_rows": shaped(lambda self, x: F.layer_norm(x * self.w, 4) * self.w, (3, 4), w=(4,)),
    "moments_channels": shaped(
        lambda self, x: F.batch_norm(x * self.w, None, None, training=True) * self.w,
        (3, 4, 2),
        w=(2,),
    ),
    # batch_norm with each affine arity: weight only (3-D), weight and bias (2-D), bias only
    # (normalize, then shift); var kept positive, away from sqrt's kink
    "batch_norm_weight": shaped(
        lambda self, x: F.batch_norm(x, self.m, self.v * self.v + 0.5, self.w) * x,
        (3, 2, 4),
        m=(2,),
        v=(2,),
        w=(2,),
    ),
    "batch_norm_affine": shaped(
        lambda self, x: F.batch_norm(x, self.m, self.v * self.v + 0.5, self.w, self.b, eps=0.1),
        (3, 2),
        m=(2,),
        v=(2,),
        w=(2,),
        b=(2,),
    ),
    "batch_norm_shift": shaped(
        lambda self, x: F.batch_norm(x, self.m, self.v * self.v + 0.5, None, self.b) * x,
        (3, 2, 2),
        m=(2,),
        v=(2,),
        b=(2,),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_eager_and_central_differences(case: str) -> None:
    if case == "stop_gradient":  # detach changes the derivative on purpose: eager is the judge
        module, inputs = CASES[case](np.random.default_rng(0))
        check_module(module, inputs, numeric=False)
        return
    check_away_from_kinks(CASES[case])


def test_every_differentiable_op_has_a_case() -> None:
    covered = set()
    for case in CASES.values():
        module, inputs = case(np.random.default_rng(0))
        covered |= {n.op for n in trace(module, *inputs).nodes}
    covered.add("cast")  # float32 round trips: test_cast below
    differentiable = {name for name, op in OPS.items() if op.differentiable}
    # gradient-only helpers (slice_grad's own rule is checked by tests/ir/test_op_table.py)
    missing = differentiable - covered - {"sign", "sum_to", "slice_grad"}
    assert not missing, f"ops with a VJP rule but no test case: {sorted(missing)}"


def test_cast_casts_the_cotangent_back() -> None:
    m = Fn(lambda self, x: (x.astype(np.float32) * 3.0).astype(np.float64) * self.w, w=np.ones(4))
    x = np.random.default_rng(1).standard_normal((3, 4))
    r = check_module(m, [x], numeric=False)
    assert [n.op for n in r.backward.nodes].count("cast") == 2
    _, (dx, _) = ir_grads(trace(m, x), [x], [np.ones(4)])
    np.testing.assert_array_equal(dx, np.full((3, 4), 3.0))


# ---------------------------------------------------------------- at the kinks


@pytest.mark.parametrize(
    ("fn", "x", "want"),
    [
        (F.hardswish, [-3.0, 3.0, -3.0001, 3.0001], [-0.5, 1.5, 0.0, 1.0]),
        (F.hardsigmoid, [-3.0, 3.0, -3.0001, 3.0001], [1 / 6, 1 / 6, 0.0, 0.0]),
        (F.relu, [0.0, -0.0, 1e-300, -1.0], [0.0, 0.0, 1.0, 0.0]),
        (F.relu6, [0.0, 6.0, 5.999, 6.001], [0.0, 0.0, 1.0, 0.0]),
        (lambda x: x.clip(-1.0, 2.0), [-1.0, 2.0, -1.001, 2.001], [1.0, 1.0, 0.0, 0.0]),
        (lucid.abs, [0.0, -0.0, -2.0, 2.0], [0.0, 0.0, -1.0, 1.0]),
    ],
)
def test_unary_kinks_follow_the_documented_rule(
    fn: Callable[[Any], Any], x: list[float], want: list[float]
) -> None:
    m = Fn(lambda self, x: fn(x))
    xs = np.array(x)
    check_module(m, [xs], numeric=False)
    _, (dx,) = ir_grads(trace(m, xs), [xs], [])
    np.testing.assert_array_equal(dx, want)


@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_extremum_ties_split_the_cotangent(op: str) -> None:
    fn = getattr(lucid, op)
    m = Fn(lambda self, a: fn(a, self.p), p=np.array([1.0, 2.0, 3.0]))
    a = np.array([[1.0, 5.0, 0.0], [1.0, 2.0, 3.0]])
    check_module(m, [a], numeric=False)
    _, (da, dp) = ir_grads(trace(m, a), [a], [m.p.data])
    bigger = op == "maximum"
    np.testing.assert_array_equal(da, [[0.5, float(bigger), float(not bigger)], [0.5] * 3])
    np.testing.assert_array_equal(dp, [1.0, 0.5 + float(not bigger), 0.5 + float(bigger)])


# ---------------------------------------------------------------- random MLPs

ACTIVATIONS: dict[str, Callable[[Any], Any]] = {
    "hardswish": F.hardswish,
    "hardsigmoid": F.hardsigmoid,
    "relu": F.relu,
    "relu6": F.relu6,
    "sigmoid": F.sigmoid,
    "silu": F.silu,
    "tanh": F.tanh,
    "gelu": F.gelu,
    "gelu_tanh": lambda h: F.gelu(h, approximate="tanh"),
    "leaky_relu": lambda h: F.leaky_relu(h, 0.1),
    "elu": F.elu,
    "softplus": lambda h: F.softplus(h, 1.5, 2.0),
    "hardtanh": lambda h: F.hardtanh(h, -1.5, 2.0),
    "softmax": lambda h: h.softmax(0) + h,
    "log_softmax": lambda h: F.log_softmax(h, -1),
    "abs": lucid.abs,
    "neg": lambda h: -h,
    "exp": lambda h: lucid.exp(h * 0.3),
    "log": lambda h: lucid.log(h * h + 1.0),
    "sqrt": lambda h: lucid.sqrt(h * h + 1.0),
    "pow": lambda h: (h * h + 1.0) ** 0.75,
    "square": lambda h: h**2,
    "clip": lambda h: h.clip(-1.5, 2.5),
    "dropout": _dropout,
    "where": lambda h: lucid.where(h > 0.0, h, h * 0.1),
    "reuse": lambda h: h * F.tanh(h) + h,
    "stop": lambda h: h + h.detach() * 0.0,
}
# steps that bring a param of the layer's width: name -> (param shape, h, p -> new h)
WITH_PARAM: dict[str, Callable[[Any, Any], Any]] = {
    "add": lambda h, p: h + p,
    "sub": lambda h, p: p - h,
    "mul": lambda h, p: h * p,
    "div": lambda h, p: h / (p * p + 1.0),
    "maximum": lucid.maximum,
    "minimum": lucid.minimum,
    "broadcast": lambda h, p: h * p.broadcast_to(h.shape),
}
SHAPE_STEPS = ("sum", "mean", "reshape", "transpose")
LOSSES = ("sum", "mean", "mse", "cross_entropy")


class RandomMLP(nn.Module):
    """A random stack: linear or matmul layers, then per layer a mix of the steps above."""

    def __init__(self, rng: np.random.Generator, widths: list[int], steps: list[str], loss: str):
        super().__init__()
        self.plan: list[tuple[str, str]] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            name = f"l{i}"
            if i % 2:
                setattr(self, name, nn.Parameter(rng.standard_normal((a, b)), dtype=np.float64))
                self.plan.append(("matmul", name))
            else:
                setattr(self, name, nn.Linear(a, b, dtype=np.float64))
                self.plan.append(("linear", name))
            step = steps[i % len(steps)]
            if step in WITH_PARAM:
                setattr(self, f"p{i}", nn.Parameter(rng.uniform(-1, 1, (b,)), dtype=np.float64))
            self.plan.append((step, f"p{i}"))
        self.loss = loss
        self.target = rng.standard_normal((3, widths[-1]))
        self.classes = rng.integers(0, widths[-1], 3)

    def forward(self, x: Any) -> Any:
        h = x
        for step, name in self.plan:
            if step == "linear":
                h = getattr(self, name)(h)
            elif step == "matmul":
                h = h @ getattr(self, name)
            elif step in ACTIVATIONS:
                h = ACTIVATIONS[step](h * 2.0)
            elif step in WITH_PARAM:
                h = WITH_PARAM[step](h, getattr(self, name))
            elif step == "sum":
                h = h + h.sum(axis=1, keepdims=True) * 0.5
            elif step == "mean":
                h = h - h.mean(axis=0)
            elif step == "reshape":
                h = (h.reshape(-1) * 1.5).reshape(h.shape)
            elif step == "transpose":
                h = F.tanh(h.T).T
        if self.loss == "mse":
            return F.mse_loss(h, lucid.Tensor(self.target))
        if self.loss == "cross_entropy":
            return F.cross_entropy(h, lucid.Tensor(self.classes))
        return h.mean() if self.loss == "mean" else h


STEP_NAMES = sorted([*ACTIVATIONS, *WITH_PARAM, *SHAPE_STEPS])


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**16),
    widths=st.lists(st.integers(2, 4), min_size=2, max_size=4),
    steps=st.lists(st.sampled_from(STEP_NAMES), min_size=1, max_size=3),
    loss=st.sampled_from(LOSSES),
)
def test_random_mlps_match_eager_and_central_differences(
    seed: int, widths: list[int], steps: list[str], loss: str
) -> None:
    rng = np.random.default_rng(seed)
    model = RandomMLP(rng, widths, steps, loss)
    x = rng.standard_normal((3, widths[0])) * 2
    graph = trace(model, x)
    params = [p.data for _, p in model.named_parameters()]
    assume(kink_distance(graph, [x, *params]) > MARGIN)
    check_module(model, [x])


def test_random_mlp_steps_cover_every_op_with_a_rule() -> None:
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    for step in STEP_NAMES:
        for loss in LOSSES:
            model = RandomMLP(rng, [3, 4, 3], [step], loss)
            seen |= {n.op for n in trace(model, rng.standard_normal((3, 3))).nodes}
    rules = {name for name, op in OPS.items() if op.differentiable}
    # cast is covered by test_cast_casts_the_cotangent_back: a float32 round trip defeats
    # float64 central differences; sum_to is a gradient-only helper; the tensor ops (slice,
    # concat, max, min) and the op families of real models are not MLP steps: CASES above
    # covers them (each family's cases sit with its tests)
    tensor_ops = {"cast", "sum_to", "slice", "slice_grad", "concat", "max", "min"}
    families = {
        "moments",  # normalization
        "batch_norm",
        "conv2d",
        "conv2d_grad_input",
        "conv2d_grad_weight",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "pad",
        "batch_matmul",
        "matmul_at",
        "embedding",
    }
    assert rules - seen == tensor_ops | families


def test_eager_reference_is_not_trivially_equal() -> None:
    # the harness must be able to fail: a wrong cotangent is caught against eager
    m = Fn(lambda self, x: F.tanh(x * self.w), w=np.array([1.0, 2.0]))
    x = np.array([[0.1, 0.2]])
    _, got = ir_grads(trace(m, x), [x], [m.w.data], cotangents=[np.full((1, 2), 2.0)])
    want = eager_grads(m, [x], [True])
    assert not np.allclose(got[0], want[0])
    np.testing.assert_allclose(got[0], 2 * want[0], rtol=1e-14)
