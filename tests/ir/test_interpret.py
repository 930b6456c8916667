"""The interpreter: agrees with direct NumPy computations; binds symbols; checks inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lucid.errors import InputError
from lucid.ir import Builder, DType, Graph, TensorType, interpret
from lucid.ir.ops import OPS
from tests.ir.graphs import f32
from tests.models import seed_graph

RNG = np.random.default_rng(7)


def _seed_arrays(n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    x = (RNG.standard_normal((n, 3)) * 3).astype(np.float32)
    params = [RNG.standard_normal(s).astype(np.float32) for s in [(5, 3), (5,), (2, 5), (2,)]]
    return x, params


def test_seed_model_matches_kernels_exactly() -> None:
    g = seed_graph()
    for n in (1, 4, 9):
        x, (w1, b1, w2, b2) = _seed_arrays(n)
        (y,) = interpret(g, x, w1, b1, w2, b2)
        want = OPS["hardswish"].numpy(x @ w1.T + b1) @ w2.T + b2
        assert y.dtype == np.float32 and y.shape == (n, 2)
        np.testing.assert_array_equal(y, want)


def test_params_by_hint() -> None:
    g = seed_graph()
    x, ps = _seed_arrays(3)
    named = dict(zip(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"], ps))
    np.testing.assert_array_equal(interpret(g, x, params=named)[0], interpret(g, x, *ps)[0])
    with pytest.raises(InputError, match=r"missing \['fc2.bias'\], unexpected \['fc3.bias'\]"):
        interpret(
            g, x, params={**{k: v for k, v in named.items() if k != "fc2.bias"}, "fc3.bias": ps[3]}
        )
    with pytest.raises(InputError, match="@forward takes 1 inputs, got 2"):
        interpret(g, x, x, params=named)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a[:1], r"@forward takes 1 inputs and 4 params \(5 arrays\), got 1"),
        (
            lambda a: [a[0].astype(np.float64), *a[1:]],
            r"input 0 \(x\): expected f32\[N,3\], got a float64 array of shape \(4, 3\)",
        ),
        (
            lambda a: [a[0][:, :2], *a[1:]],
            r"input 0 \(x\): expected f32\[N,3\], got shape \(4, 2\) \(axis 1 is 2\)",
        ),
        (
            lambda a: [a[0][0], *a[1:]],
            r"input 0 \(x\): expected f32\[N,3\], got a float32 array of shape \(3,\)",
        ),
        (
            lambda a: [*a[:2], a[2][:1], *a[3:]],
            r"param 1 \(fc1.bias\): expected f32\[5\], got shape \(1,\) \(axis 0 is 1\)",
        ),
    ],
)
def test_input_errors(change, message: str) -> None:  # type: ignore[no-untyped-def]
    x, ps = _seed_arrays(4)
    with pytest.raises(InputError, match=message):
        interpret(seed_graph(), *change([x, *ps]))


def test_symbol_bound_by_first_input_must_agree() -> None:
    b = Builder()
    x, y = b.input(f32("N", 2), "x"), b.input(f32("N", 2), "y")
    b.output(b.op("add", [x, y]))
    g = b.build()
    a = np.zeros((3, 2), np.float32)
    with pytest.raises(
        InputError, match=r"input 1 \(y\): dim N is 4 here but 3 in an earlier input"
    ):
        interpret(g, a, np.zeros((4, 2), np.float32))
    assert isinstance(InputError("x"), ValueError)


def test_fused_node_runs_its_body() -> None:
    body = Builder("body")
    bx, bw, bb = body.input(f32("N", 3)), body.input(f32(5, 3)), body.input(f32(5))
    y = body.op("linear", [bx, bw, bb])
    body.output(body.op("hardswish", [y]), body.op("sum", [y], {"axes": (0,)}))
    b = Builder()
    x, w, c = b.input(f32("N", 3)), b.param(f32(5, 3), "w"), b.param(f32(5), "b")
    act, colsum = b.op_multi("fused_gemm", [x, w, c], body=body.build())
    b.output(b.op("relu", [act]), colsum)
    xs, (w1, b1, _, _) = _seed_arrays(6)
    got_act, got_sum = interpret(b.build(), xs, w1, b1)
    lin = xs @ w1.T + b1
    np.testing.assert_array_equal(got_act, OPS["relu"].numpy(OPS["hardswish"].numpy(lin)))
    np.testing.assert_array_equal(got_sum, lin.sum(axis=0))


def test_scalars_and_dtypes_survive() -> None:
    b = Builder()
    x = b.input(TensorType(DType.F64, ()))
    t = b.input(TensorType(DType.I64, (3,)))
    two = b.constant(2.0, DType.F64)
    b.output(b.op("mul", [x, two]), b.op("sum", [t], {"axes": None}), b.op("equal", [t, t]))
    doubled, total, same = interpret(b.build(), np.float64(1.25), np.array([1, 2, 3]))
    assert doubled.shape == () and doubled.dtype == np.float64 and doubled == 2.5
    assert total.dtype == np.int64 and total == 6
    assert same.dtype == np.bool_ and same.all()


def test_deep_graph_interprets_without_recursion() -> None:
    b = Builder()
    v = x = b.input(f32(2))
    for _ in range(5000):
        v = b.op("neg", [v])
    b.output(v, x)
    a = np.array([1.5, -2.0], np.float32)
    out, same = interpret(b.build(), a)
    assert same is not out
    np.testing.assert_array_equal(out, a)  # an even number of negations


def test_graph_without_inputs() -> None:
    b = Builder()
    b.output(b.constant([[1, 2], [3, 4]]))
    (c,) = interpret(b.build())
    np.testing.assert_array_equal(c, np.array([[1, 2], [3, 4]], np.float32))
    assert c.dtype == np.float32 and isinstance(Graph, type)
