"""What eager ops report to the tracer seam: IR op names, inputs, attrs; unsupported exits."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import Tensor, _hooks, nn


class FakeTracer:
    """Records what the seam reports, with the module path active at each report."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, tuple[Tensor, ...], dict[str, Any], Tensor, str]] = []
        self.unsupported_calls: list[tuple[str, tuple[Tensor, ...]]] = []
        self.seeds: list[Tensor] = []
        self.scope: list[str] = []

    def record(self, op, inputs, attrs, output) -> None:
        self.ops.append((op, tuple(inputs), dict(attrs), output, ".".join(self.scope)))

    def unsupported(self, what, inputs) -> None:
        self.unsupported_calls.append((what, tuple(inputs)))

    def rng_seed(self) -> Tensor:
        self.seeds.append(Tensor(np.array(0, np.int64)))
        return self.seeds[-1]

    def enter_module(self, module) -> None:
        self.scope.append(type(module).__name__)

    def exit_module(self) -> None:
        self.scope.pop()

    # the symbolic-size part of the seam: this tracer has no symbols
    def shape(self, tensor) -> tuple[int, ...]:
        return tensor.data.shape

    def guard(self, test, outcome) -> None:
        raise AssertionError("no SymInt exists without a symbolic shape")

    bind_size = bind_fill = guard

    def random(self, what) -> None:
        self.unsupported_calls.append((what, ()))


def trace(fn, *args) -> FakeTracer:
    tracer = FakeTracer()
    with _hooks.installed(tracer):
        fn(*args)
    return tracer


def one(fn, *args) -> tuple[str, tuple[Tensor, ...], dict[str, Any], Tensor]:
    """The single op fn records (composites must not record their internals)."""
    tracer = trace(fn, *args)
    assert len(tracer.ops) == 1, [op[0] for op in tracer.ops]
    assert not tracer.unsupported_calls
    return tracer.ops[0][:4]


x3 = lucid.ones(2, 3, 4)
m = lucid.ones(2, 3)
n = lucid.ones(2, 3)


@pytest.mark.parametrize(
    "fn, op, attrs, n_inputs",
    [
        (lambda: m + m, "add", {}, 2),
        (lambda: m - m, "sub", {}, 2),
        (lambda: m * m, "mul", {}, 2),
        (lambda: m / m, "div", {}, 2),
        (lambda: -m, "neg", {}, 1),
        (lambda: m**2, "pow", {"exponent": 2.0}, 1),
        (lambda: m @ lucid.ones(3, 5), "matmul", {}, 2),
        (lambda: F.linear(m, lucid.ones(5, 3), lucid.ones(5)), "linear", {}, 3),
        (lambda: F.linear(m, lucid.ones(5, 3)), "linear", {}, 2),
        (lambda: F.hardswish(m), "hardswish", {}, 1),
        (lambda: F.hardsigmoid(m), "hardsigmoid", {}, 1),
        (lambda: F.relu(m), "relu", {}, 1),
        (lambda: F.relu6(m), "relu6", {}, 1),
        (lambda: F.sigmoid(m), "sigmoid", {}, 1),
        (lambda: F.tanh(m), "tanh", {}, 1),
        (lambda: m.exp(), "exp", {}, 1),
        (lambda: m.log(), "log", {}, 1),
        (lambda: m.sqrt(), "sqrt", {}, 1),
        (lambda: abs(m), "abs", {}, 1),
        (lambda: m.clip(None, 1), "clip", {"min": -math.inf, "max": 1.0}, 1),
        (lambda: m.clip(0, 6), "clip", {"min": 0.0, "max": 6.0}, 1),
        (lambda: lucid.maximum(m, 0.0), "maximum", {}, 2),
        (lambda: lucid.minimum(m, m), "minimum", {}, 2),
        (lambda: x3.sum(), "sum", {"axes": (0, 1, 2), "keepdims": False}, 1),
        (lambda: x3.sum(axis=-1), "sum", {"axes": (2,), "keepdims": False}, 1),
        (lambda: x3.mean((2, -3), True), "mean", {"axes": (0, 2), "keepdims": True}, 1),
        (lambda: x3.reshape(2, -1), "reshape", {"shape": (2, -1)}, 1),
        (lambda: x3.reshape((6, 4)), "reshape", {"shape": (6, 4)}, 1),
        (lambda: x3.transpose(1, 0, 2), "transpose", {"perm": (1, 0, 2)}, 1),
        (lambda: x3.T, "transpose", {"perm": (2, 1, 0)}, 1),
        (lambda: m.broadcast_to((4, 2, 3)), "broadcast", {"shape": (4, 2, 3)}, 1),
        (lambda: m.astype(np.float64), "cast", {"dtype": np.dtype(np.float64)}, 1),
        (lambda: m.detach(), "stop_gradient", {}, 1),
        (lambda: m < n, "less", {}, 2),
        (lambda: m <= 1.0, "less_equal", {}, 2),
        (lambda: m > n, "greater", {}, 2),
        (lambda: m >= n, "greater_equal", {}, 2),
        (lambda: m == n, "equal", {}, 2),
        (lambda: m != n, "not_equal", {}, 2),
        (lambda: F.mse_loss(m, m), "mse_loss", {"reduction": "mean"}, 2),
        (lambda: F.cross_entropy(m, np.array([0, 2])), "cross_entropy", {"reduction": "mean"}, 2),
        (
            lambda: F.cross_entropy(m, np.array([0, 2]), "sum"),
            "cross_entropy",
            {"reduction": "sum"},
            2,
        ),
    ],
)
def test_each_primitive_records_once_with_ir_name_and_attrs(fn, op, attrs, n_inputs) -> None:
    name, inputs, got_attrs, out = one(fn)
    assert (name, got_attrs, len(inputs)) == (op, attrs, n_inputs)
    assert all(isinstance(t, Tensor) for t in inputs) and isinstance(out, Tensor)
    for k, v in got_attrs.items():  # exact attr types, not just equal values
        assert type(v) is type(attrs[k]), k


def test_where_records_three_inputs_after_its_comparison() -> None:
    tracer = trace(lambda: lucid.where(m > 0.0, m, 0.0))
    assert [o[0] for o in tracer.ops] == ["greater", "where"]
    assert len(tracer.ops[1][1]) == 3 and tracer.ops[1][1][0] is tracer.ops[0][3]


def test_scalars_and_arrays_become_constant_tensor_inputs() -> None:
    name, (a, b), _, _ = one(lambda: 2.0 - m)
    assert name == "sub" and b is m
    assert isinstance(a, Tensor) and a.dtype == np.float32 and a.data == 2.0 and not a.requires_grad
    _, (a, b), _, _ = one(lambda: m * np.full(3, 4.0))
    assert a is m and b.shape == (3,) and b.dtype == np.float32


def test_output_is_the_returned_tensor_and_inputs_are_the_operands() -> None:
    results = []
    tracer = trace(lambda: results.append(m + m))
    assert tracer.ops[0][3] is results[0]
    assert tracer.ops[0][1][0] is m and tracer.ops[0][1][1] is m


def test_modules_run_inside_module_scope_and_linear_is_one_op() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.HardSwish(), nn.Flatten(), nn.Identity())
    tracer = trace(model, lucid.ones(2, 3))
    assert [(o[0], o[4]) for o in tracer.ops] == [
        ("linear", "Sequential.Linear"),
        ("hardswish", "Sequential.HardSwish"),
        ("reshape", "Sequential.Flatten"),
    ]
    lin = tracer.ops[0][1]
    assert lin[1] is model[0].weight and lin[2] is model[0].bias
    assert tracer.ops[2][2] == {"shape": (-1, 4)}


def test_flatten_records_minus_one_and_the_product_of_the_rest() -> None:
    name, _, attrs, out = one(nn.Flatten(), x3)
    assert (name, attrs, out.shape) == ("reshape", {"shape": (-1, 12)}, (2, 12))


@pytest.mark.parametrize(
    "fn, what",
    [
        (lambda t: bool(t.sum() > 0.0), "bool"),
        (lambda t: t.sum().item(), "item"),
        (lambda t: t.numpy(), "numpy"),
        (lambda t: t.tolist(), "tolist"),
        (lambda t: float(t.sum()), "float"),
        (lambda t: int(t.sum()), "int"),
        (lambda t: [1, 2, 3][lucid.arange(1).sum()], "__index__"),
        (lambda t: t[[0]], "__getitem__"),
        (lambda t: t.__setitem__(0, 1.0), "__setitem__"),
    ],
)
def test_graph_exits_report_unsupported(fn, what) -> None:
    t = Tensor(np.ones((2, 3)))
    tracer = trace(fn, t)
    assert len(tracer.unsupported_calls) == 1
    assert what in tracer.unsupported_calls[0][0]


def test_getitem_still_works_eagerly_with_a_gradient_while_reporting() -> None:
    t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    tracer = FakeTracer()
    with _hooks.installed(tracer):
        y = t[[1, 2]]  # advanced indexing: eager, reported
    assert tracer.unsupported_calls[0][1] == (t,) and not tracer.ops
    y.backward()
    np.testing.assert_array_equal(t.grad, [0.0, 1.0, 1.0])


def test_training_dropout_asks_the_tracer_for_its_seed_and_draws_nothing() -> None:
    t = Tensor(np.ones((2, 3)))
    lucid.random.seed(5)
    tracer = trace(lambda: nn.Dropout(0.25)(t))
    [(op, inputs, attrs, _, _)] = tracer.ops
    assert (op, attrs) == ("dropout", {"p": 0.25}) and not tracer.unsupported_calls
    assert inputs[0] is t and inputs[1] is tracer.seeds[0] and len(tracer.seeds) == 1
    next_draw = lucid.random.draw_seed()
    lucid.random.seed(5)
    assert lucid.random.draw_seed() == next_draw  # the trace consumed no randomness


def test_eval_dropout_and_data_reads_are_silent() -> None:
    t = Tensor(np.ones((2, 3)))
    tracer = trace(lambda: (nn.Dropout(0.5).eval()(t), t.data, t.shape))
    assert not tracer.ops and not tracer.unsupported_calls


def test_no_tracer_means_no_reports() -> None:
    assert _hooks.active is None
    (m + 1.0).sum()  # must simply run
