"""Reverse-mode autodiff over the IR: the seed's backward graph, the engine's conventions and
errors. Shared helpers (IR vs eager vs central differences) live here; per-op and random-MLP
checks are in test_autodiff_ops.py."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import AutodiffError, SourceLoc
from lucid.ir import (
    Builder,
    DType,
    Graph,
    TensorType,
    format_graph,
    grad,
    interpret,
    parse,
    trace,
    verify,
)
from lucid.ir.autodiff import GradResult, Saved
from tests.ir.graphs import f32
from tests.models import SeedModel, seed_graph

Arrays = list[np.ndarray]


def f64(*shape: int | str) -> TensorType:
    """Shorthand for an f64 tensor type."""
    return TensorType(DType.F64, tuple(shape))


def ir_grads(
    graph: Graph,
    inputs: Sequence[np.ndarray],
    params: Sequence[np.ndarray],
    cotangents: Sequence[np.ndarray] | None = None,
    wrt: Sequence[bool] | None = None,
) -> tuple[GradResult, Arrays]:
    """Differentiate `graph`, interpret the augmented forward then the backward (ones-seeded)."""
    r = grad(graph, wrt_inputs=wrt)
    outs = interpret(r.forward, *inputs, *params)
    for got, want in zip(outs[: r.num_outputs], interpret(graph, *inputs, *params)):
        np.testing.assert_array_equal(got, want)  # augmenting must not change the outputs
    cts = [np.ones_like(o) for o in outs[: r.num_outputs]] if cotangents is None else cotangents
    return r, list(interpret(r.backward, *r.backward_args(inputs, params, outs, cts)))


def numeric_grads(
    graph: Graph,
    inputs: Sequence[np.ndarray],
    params: Sequence[np.ndarray],
    wrt: Sequence[bool],
    eps: float = 1e-6,
) -> Arrays:
    """Central differences of sum(outputs) (ones cotangents) for wrt inputs, then every param."""
    arrays = [np.array(a) for a in (*inputs, *params)]
    targets = [i for i, w in enumerate(wrt) if w] + list(range(len(inputs), len(arrays)))

    def f() -> float:
        return float(sum(np.sum(o, dtype=np.float64) for o in interpret(graph, *arrays)))

    out = []
    for t in targets:
        a, d = arrays[t], np.zeros(arrays[t].shape)
        for idx in np.ndindex(a.shape):
            keep = a[idx]
            a[idx] = keep + eps
            hi = f()
            a[idx] = keep - eps
            lo = f()
            a[idx] = keep
            d[idx] = (hi - lo) / (2 * eps)
        out.append(d)
    return out


class Fn(nn.Module):
    """A module running `fn(self, *inputs)`, with float64 parameters made from `params`."""

    def __init__(self, fn: Callable[..., Any], **params: np.ndarray) -> None:
        super().__init__()
        self._fn = fn
        for name, value in params.items():
            setattr(self, name, nn.Parameter(value, dtype=np.float64))

    def forward(self, *xs: Any) -> Any:
        return self._fn(self, *xs)


def eager_grads(module: nn.Module, inputs: Sequence[np.ndarray], wrt: Sequence[bool]) -> Arrays:
    """Eager lucid's gradients (ones-seeded backward of each output) for wrt inputs, then params."""
    ts = [lucid.Tensor(a, requires_grad=w) for a, w in zip(inputs, wrt)]
    params = [p for _, p in module.named_parameters()]
    for p in params:
        p.zero_grad()
    result = module(*ts)
    for out in result if isinstance(result, (tuple, list)) else [result]:
        if out.requires_grad:
            out.backward()
    leaves = [t for t, w in zip(ts, wrt) if w] + params
    return [np.zeros_like(t.data) if t.grad is None else t.grad for t in leaves]


def check_module(
    module: nn.Module,
    inputs: Sequence[np.ndarray],
    *,
    numeric: bool = True,
    wrt: Sequence[bool] | None = None,
) -> GradResult:
    """IR gradients == eager (tight) == central differences (eps 1e-6, atol 1e-5, rtol 1e-3)."""
    graph = trace(module, *inputs)
    wrt = [a.dtype.kind == "f" for a in inputs] if wrt is None else list(wrt)
    params = [p.data for _, p in module.named_parameters()]
    r, got = ir_grads(graph, inputs, params, wrt=wrt)
    want = eager_grads(module, inputs, wrt)
    assert len(got) == len(want)
    for g, e in zip(got, want):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    if numeric:
        for g, n in zip(got, numeric_grads(graph, inputs, params, wrt)):
            np.testing.assert_allclose(g, n, atol=1e-5, rtol=1e-3)
    return r


# ---------------------------------------------------------------- the seed model


def test_seed_backward_golden(golden: Callable[[str, str], None]) -> None:
    r = grad(seed_graph())
    text = format_graph(r.backward)
    golden("grad_seed.lir", text)
    assert format_graph(parse(text)) == text
    verify(r.backward)


def test_seed_saved_values_and_conventions() -> None:
    g = seed_graph()
    r = grad(g)
    z, h = g.nodes[0].result, g.nodes[1].result
    # X comes back from the caller (no copy), Z and H are new forward outputs; no param saved
    assert r.saved == (Saved("input", 0), Saved("output", 1), Saved("output", 2))
    assert r.forward.outputs == (*g.outputs, z, h) and r.num_outputs == 1
    assert r.forward.nodes == g.nodes
    # the backward reads W1 and W2 live and never b1, b2
    assert [p.hint for p in r.backward.params] == ["fc1.weight", "fc2.weight"]
    assert r.param_indices == (0, 2)
    assert r.grad_inputs == (0,)
    assert r.backward.input_types == (f32("N", 3), f32("N", 5), f32("N", 5), f32("N", 2))
    assert r.backward.output_types == (f32("N", 3), *g.param_types)
    ops = [n.op for n in r.backward.nodes]
    assert ops.count("matmul") == 4 and ops.count("hardswish_grad") == 1


def test_seed_without_dx_drops_its_gemm_and_x_is_still_saved() -> None:
    r = grad(seed_graph(), wrt_inputs=[False])
    assert r.grad_inputs == () and len(r.backward.outputs) == 4
    assert [n.op for n in r.backward.nodes].count("matmul") == 3
    assert [p.hint for p in r.backward.params] == ["fc2.weight"]  # W1 is only needed for dX


@pytest.mark.parametrize("n", [1, 4])
def test_seed_matches_eager_float32(n: int, seed_model: SeedModel) -> None:
    rng = np.random.default_rng(n)
    model = seed_model
    x = (rng.standard_normal((n, 3)) * 3).astype(np.float32)
    graph = trace(model, x, dynamic_batch=True)
    params = [p.data for _, p in model.named_parameters()]
    _, got = ir_grads(graph, [x], params)
    want = eager_grads(model, [x], [True])
    for g, e in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def test_seed_float64_matches_eager_and_central_differences() -> None:
    rng = np.random.default_rng(3)
    model = SeedModel(np.float64)
    x = rng.standard_normal((6, 3)) * 4
    check_module(model, [x])


def test_hardswish_kinks_follow_the_seed_rule() -> None:
    # HardSwish' = x/3 + 1/2 on [-3, 3] inclusive: 0 and 1 at the ends, 1 above, 0 below
    x = np.array([[-3.0, 3.0, -3.5, 3.5, 0.0, -1.5]])
    m = Fn(lambda self, x: nn.functional.hardswish(x))
    check_module(m, [x], numeric=False)
    _, (dx,) = ir_grads(trace(m, x), [x], [])
    np.testing.assert_array_equal(dx, [[-0.5, 1.5, 0.0, 1.0, 0.5, 0.0]])


# ---------------------------------------------------------------- engine behaviour


def test_a_value_used_several_times_sums_its_cotangents() -> None:
    b = Builder("forward")
    x = b.input(f64(3), "x")
    y = b.op("mul", [x, x])
    b.output(b.op("add", [y, b.op("tanh", [x])]), y)
    xs = np.array([0.3, -1.2, 2.0])
    _, (dx,) = ir_grads(b.build(), [xs], [], [np.ones(3), np.full(3, 2.0)])
    np.testing.assert_allclose(dx, 3 * 2 * xs + (1 - np.tanh(xs) ** 2), rtol=1e-14)
    # two outputs of one value: the cotangents are summed too
    b = Builder("forward")
    x = b.input(f64(2), "x")
    b.output(x, x)
    _, (dx,) = ir_grads(b.build(), [np.ones(2)], [], [np.ones(2), np.full(2, 5.0)])
    np.testing.assert_array_equal(dx, [6.0, 6.0])


def test_unused_inputs_and_params_get_zeros() -> None:
    b = Builder("forward")
    x = b.input(f64(2, 3), "x")
    b.input(f64(4), "unused")
    b.param(f64(5), "w")
    b.output(b.op("exp", [x]))
    r, (dx, du, dw) = ir_grads(b.build(), [np.zeros((2, 3)), np.ones(4)], [np.ones(5)])
    np.testing.assert_array_equal(dx, np.ones((2, 3)))
    np.testing.assert_array_equal(du, np.zeros(4))
    np.testing.assert_array_equal(dw, np.zeros(5))
    assert r.backward.params == () and r.backward.outputs[2].type == f64(5)


def test_wrt_inputs_selects_gradients_and_skips_ints() -> None:
    b = Builder("forward")
    a = b.input(f64(3), "a")
    c = b.input(f64(3), "c")
    t = b.input(TensorType(DType.I64, (3,)), "t")
    b.output(b.op("mul", [a, c]), t)
    g = b.build()
    assert grad(g).grad_inputs == (0, 1)  # default: every float input
    r, (da,) = ir_grads(
        g,
        [np.ones(3), np.arange(3.0), np.arange(3)],
        [],
        [np.ones(3), np.zeros(3, np.int64)],
        wrt=[True, False, False],
    )
    np.testing.assert_array_equal(da, [0.0, 1.0, 2.0])
    assert r.saved == (Saved("input", 1),)  # only c is read: a's cotangent is not wanted
    with pytest.raises(AutodiffError, match=r"input 2 \(t\) is i64\[3\]"):
        grad(g, wrt_inputs=[True, True, True])
    with pytest.raises(AutodiffError, match="wrt_inputs has 2 entries for the 3 inputs"):
        grad(g, wrt_inputs=[True, True])


def test_stop_gradient_stops_and_drops_upstream_work() -> None:
    b = Builder("forward")
    x = b.input(f64(3), "x")
    w = b.param(f64(3), "w")
    frozen = b.op("stop_gradient", [b.op("exp", [b.op("mul", [x, w])])])
    b.output(b.op("add", [b.op("mul", [frozen, x]), x]))
    xs, ws = np.array([0.5, 1.0, -1.0]), np.array([2.0, -1.0, 0.5])
    r, (dx, dw) = ir_grads(b.build(), [xs], [ws])
    np.testing.assert_allclose(dx, np.exp(xs * ws) + 1, rtol=1e-14)
    np.testing.assert_array_equal(dw, np.zeros(3))
    assert "exp" not in [n.op for n in r.backward.nodes]  # nothing flows through stop_gradient
    m = Fn(lambda self, x: x * x.detach() + self.w * x, w=ws)
    check_module(m, [xs], numeric=False)  # detach is not the function's true derivative


def test_constants_are_reemitted_not_saved() -> None:
    b = Builder("forward")
    x = b.input(f64(2), "x")
    c = b.constant([3.0, 4.0], DType.F64)
    b.output(b.op("mul", [x, c]))
    r, (dx,) = ir_grads(b.build(), [np.ones(2)], [])
    np.testing.assert_array_equal(dx, [3.0, 4.0])
    assert r.saved == () and len(r.forward.outputs) == 1
    assert [n.op for n in r.backward.nodes] == ["constant", "mul"]


def test_backward_nodes_carry_the_forward_source_line() -> None:
    b = Builder("forward")
    x = b.input(f64(2), "x")
    loc = SourceLoc("model.py", 7, "forward")
    b.output(b.op("hardswish", [x], loc=loc))
    r = grad(b.build())
    assert [n.loc for n in r.backward.nodes] == [loc]
    assert 'loc("model.py":7)' in format_graph(r.backward, locs=True)


def test_missing_rule_names_the_op_and_source_line() -> None:
    # gradient-only companions (relu_grad, ...) have no rule of their own: lucid differentiates once
    b = Builder("forward")
    x = b.input(f64(2), "x")
    y = b.op("relu_grad", [x, x], loc=SourceLoc("user_model.py", 42, "forward"))
    b.output(b.op("exp", [y]))
    with pytest.raises(AutodiffError) as info:
        grad(b.build())
    text = str(info.value)
    assert text.startswith("user_model.py:42: error: no VJP rule for op 'relu_grad'")
    assert re.search(r"> %0 = relu_grad %x, %x : f64\[2\]", text)
    # a value that needs no gradient never asks for a rule
    b = Builder("forward")
    x = b.input(f64(2), "x")
    b.output(b.op("relu_grad", [x, x]))
    grad(b.build(), wrt_inputs=[False])


def test_a_failing_rule_is_reported_at_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AutodiffError("cannot do this")

    monkeypatch.setattr(lucid.ir.ops.grad, "rows_t_matmul", fail)  # linear's weight gradient
    b = Builder("forward")
    x = b.input(f64(2, "N", 4), "x")
    w = b.param(f64(3, 4), "w")
    b.output(b.op("linear", [x, w], loc=SourceLoc("m.py", 3)))
    with pytest.raises(AutodiffError, match=r"m.py:3: error: the VJP rule of 'linear' failed"):
        grad(b.build())


def test_weight_gradient_over_leading_dims_mixing_the_batch_symbol() -> None:
    # [2, N, 4] cannot flatten to an [M, 4] type (M = 2N is no dim), so the weight gradient
    # is one matmul_at GEMM contracting over both leading dims (it used to raise AutodiffError)
    b = Builder("forward")
    x = b.input(f64(2, "N", 4), "x")
    w = b.param(f64(3, 4), "w")
    b.output(b.op("linear", [x, w]))
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((2, 5, 4)), rng.standard_normal((3, 4))
    gv = rng.standard_normal((2, 5, 3))
    res, (dx, dw) = ir_grads(b.build(), [xv], [wv], [gv])
    assert "matmul_at" in format_graph(res.backward)
    np.testing.assert_allclose(dw, np.einsum("abo,abi->oi", gv, xv), rtol=1e-12)
    np.testing.assert_allclose(dx, gv @ wv, rtol=1e-12)


def test_non_float_params_get_zero_gradients_of_their_type() -> None:
    # an integer buffer (BatchNorm's num_batches_tracked) carries no gradient; the graph that
    # reads it is still differentiable with respect to everything else
    b = Builder("forward")
    table = b.param(TensorType(DType.I64, (2,)), "table")
    x = b.input(f64(2), "x")
    b.output(b.op("mul", [x, b.op("cast", [table], {"dtype": DType.F64})]))
    result = grad(b.build())
    assert [str(t) for t in result.backward.output_types] == ["f64[2]", "i64[2]"]
    x0, k = np.array([1.5, -2.0]), np.array([3, 4], np.int64)
    outs = interpret(result.forward, x0, k)
    g = np.array([1.0, 10.0])
    dx, dk = interpret(result.backward, *result.backward_args([x0], [k], outs, [g]))
    np.testing.assert_array_equal(dx, g * k)
    np.testing.assert_array_equal(dk, np.zeros(2, np.int64))


@pytest.mark.slow
def test_a_5000_node_chain_needs_no_recursion() -> None:
    b = Builder("forward")
    x = b.input(f64(4), "x")
    v = x
    for i in range(5000):
        v = b.op("tanh" if i % 2 else "neg", [v])
    b.output(v)
    xs = np.array([0.1, -0.2, 0.3, 0.05])
    r, (dx,) = ir_grads(b.build(), [xs], [])
    assert len(r.backward.nodes) >= 5000
    want, y = np.ones(4), xs.copy()
    slopes = []
    for i in range(5000):
        y = np.tanh(y) if i % 2 else -y
        slopes.append((1 - y * y) if i % 2 else -np.ones(4))
    for s in reversed(slopes):
        want = want * s
    np.testing.assert_allclose(dx, want, rtol=1e-12)
    text = format_graph(r.backward)
    assert format_graph(parse(text)) == text


def test_symbolic_batch_mean_counts_rows_at_run_time() -> None:
    m = Fn(lambda self, x: (nn.functional.relu(x) * self.w).mean(), w=np.array([1.0, -2.0]))
    for n in (2, 5):
        x = np.random.default_rng(n).standard_normal((n, 2)) + 0.1
        graph = trace(m, x, dynamic_batch=True)
        _, got = ir_grads(graph, [x], [m.w.data])
        for g, e in zip(got, eager_grads(m, [x], [True])):
            np.testing.assert_allclose(g, e, rtol=1e-14)


def test_reducing_leading_axes_broadcasts_back_without_a_reshape() -> None:
    b = Builder("forward")
    x = b.input(f64("N", 4), "x")
    b.output(b.op("sum", [x], {"axes": (0,)}), b.op("sum", [x], {"axes": (1,)}))
    ops = [n.op for n in grad(b.build()).backward.nodes]
    # axis 0 leaves [4], which broadcast aligns with [N, 4]; axis 1 leaves [N], which must
    # become [N, 1] first
    assert ops.count("reshape") == 1 and ops.count("broadcast") == 2
    xs = np.arange(6.0).reshape(3, 2)
    bb = Builder("forward")
    x = bb.input(f64("N", 2), "x")
    bb.output(bb.op("sum", [x], {"axes": (0,)}), bb.op("sum", [x], {"axes": (1,)}))
    _, (dx,) = ir_grads(bb.build(), [xs], [], [np.array([1.0, 2.0]), np.array([10.0, 20.0, 30.0])])
    np.testing.assert_array_equal(dx, [[11.0, 12.0], [21.0, 22.0], [31.0, 32.0]])
