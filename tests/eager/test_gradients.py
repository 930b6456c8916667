"""Every differentiable eager op against central differences (float64, away from kinks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import Tensor

from .gradcheck import check_grads, numerical_grad

rng = np.random.default_rng(1234)


def normal(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def away(*shape: int, kinks: tuple[float, ...] = (), lo: float = -5.0, hi: float = 5.0):
    """Uniform samples in [lo, hi] at least 0.05 from every kink (central differences straddle)."""
    x = rng.uniform(lo, hi, shape)
    for k in kinks:
        near = np.abs(x - k) < 0.05
        x[near] = k + np.where(x[near] >= k, 0.1, -0.1)
    return x


def positive(*shape: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def distinct(*shape: int) -> np.ndarray:
    """Values that differ pairwise by >= 0.05, so maximum/minimum have no near-ties."""
    n = int(np.prod(shape))
    return rng.permutation(np.arange(n) * 0.1 - n * 0.05).reshape(shape)


TARGET = np.array([2, 0, 1, 2, 1])

# (id, op, inputs); every op of docs/DESIGN.md's table with a gradient appears here.
CASES: list[tuple[str, Callable[..., Tensor], list[np.ndarray]]] = [
    ("add", lambda a, b: a + b, [normal(3, 4), normal(3, 4)]),
    ("add-broadcast", lambda a, b: a + b, [normal(2, 3, 4), normal(4)]),
    ("add-broadcast-both", lambda a, b: a + b, [normal(3, 1), normal(1, 4)]),
    ("radd-scalar", lambda a: 2.5 + a, [normal(3)]),
    ("sub-broadcast", lambda a, b: a - b, [normal(3, 1), normal(2, 1, 4)]),
    ("rsub-array", lambda a: np.ones(3) - a, [normal(2, 3)]),
    ("mul-broadcast", lambda a, b: a * b, [normal(2, 3), normal(2, 1)]),
    ("div-broadcast", lambda a, b: a / b, [normal(3, 4), positive(4)]),
    ("rdiv-scalar", lambda a: 1.0 / a, [positive(5)]),
    ("neg", lambda a: -a, [normal(3, 2)]),
    ("pow-int", lambda a: a**3, [normal(4)]),
    ("pow-frac", lambda a: a**2.5, [positive(4)]),
    ("pow-neg", lambda a: a**-1.5, [positive(4)]),
    ("matmul", lambda a, b: a @ b, [normal(3, 4), normal(4, 2)]),
    ("matmul-batched", lambda a, b: a @ b, [normal(2, 3, 4), normal(4, 5)]),
    ("matmul-vector", lambda a, b: a @ b, [normal(4), normal(4, 3)]),
    ("linear", F.linear, [normal(5, 3), normal(4, 3), normal(4)]),
    ("linear-nobias", F.linear, [normal(5, 3), normal(4, 3)]),
    ("linear-3d", F.linear, [normal(2, 5, 3), normal(4, 3), normal(4)]),
    ("hardswish", F.hardswish, [away(4, 6, kinks=(-3.0, 3.0))]),
    ("hardsigmoid", F.hardsigmoid, [away(4, 6, kinks=(-3.0, 3.0))]),
    ("relu", F.relu, [away(4, 6, kinks=(0.0,))]),
    ("relu6", F.relu6, [away(4, 6, kinks=(0.0, 6.0), lo=-3, hi=9)]),
    ("sigmoid", F.sigmoid, [normal(3, 4)]),
    ("tanh", F.tanh, [normal(3, 4)]),
    ("exp", lucid.exp, [normal(3, 4)]),
    ("log", lucid.log, [positive(3, 4)]),
    ("sqrt", lucid.sqrt, [positive(3, 4)]),
    ("abs", lucid.abs, [away(3, 4, kinks=(0.0,))]),
    ("clip", lambda a: a.clip(-1.0, 0.5), [away(4, 5, kinks=(-1.0, 0.5), lo=-2, hi=2)]),
    ("clip-open", lambda a: a.clip(None, 0.5), [away(4, 5, kinks=(0.5,), lo=-2, hi=2)]),
    ("maximum", lucid.maximum, [distinct(3, 4), distinct(3, 4)[::-1].copy() + 0.05]),
    ("maximum-broadcast", lucid.maximum, [distinct(3, 4), np.array([0.025, -0.125, 0.175, 0.325])]),
    ("minimum-broadcast", lucid.minimum, [distinct(3, 1), distinct(1, 4) + 0.025]),
    ("sum-all", lambda a: a.sum(), [normal(3, 4)]),
    ("sum-axis", lambda a: a.sum(axis=-1), [normal(2, 3, 4)]),
    ("sum-axes-keep", lambda a: a.sum(axis=(0, 2), keepdims=True), [normal(2, 3, 4)]),
    ("mean-all", lambda a: a.mean(), [normal(3, 4)]),
    ("mean-axis-keep", lambda a: a.mean(axis=1, keepdims=True), [normal(2, 3, 4)]),
    ("reshape", lambda a: a.reshape(4, -1), [normal(2, 3, 4)]),
    ("transpose", lambda a: a.transpose(2, 0, 1), [normal(2, 3, 4)]),
    ("T", lambda a: a.T, [normal(2, 3)]),
    ("broadcast_to", lambda a: a.broadcast_to((2, 3, 4)), [normal(3, 1)]),
    ("cast", lambda a: a.astype(np.float64) * a.astype(np.float64), [normal(3)]),
    (
        "where",
        lambda a, b: lucid.where(Tensor(np.array([True, False, True])), a, b),
        [normal(2, 3), normal(3)],
    ),
    ("getitem", lambda a: a[np.array([0, 2, 0])], [normal(3, 2)]),
    ("getitem-slice", lambda a: a[1:, ::2], [normal(3, 4)]),
    ("mse_loss", F.mse_loss, [normal(4, 3), normal(4, 3)]),
    ("mse_loss-sum", lambda p, t: F.mse_loss(p, t, reduction="sum"), [normal(4, 3), normal(4, 3)]),
    ("cross_entropy", lambda z: F.cross_entropy(z, TARGET), [normal(5, 3)]),
    ("cross_entropy-sum", lambda z: F.cross_entropy(z, Tensor(TARGET), "sum"), [normal(5, 3)]),
    (
        "composite",
        lambda x, w: (F.hardswish(x @ w) * 2.0 - x.sum()).mean(axis=0),
        [normal(3, 4), normal(4, 2)],
    ),
]


@pytest.mark.parametrize("op, inputs", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gradient_matches_central_differences(op, inputs) -> None:
    check_grads(op, *inputs)


def test_gradient_of_constant_input_is_not_computed() -> None:
    check_grads(F.linear, normal(5, 3), normal(4, 3), normal(4), const=(0,))


def test_numerical_grad_helper_is_right_on_a_known_function() -> None:
    # d/dx sum(x**3) = 3 x**2: guards the helper itself, so the checks above mean something.
    x = normal(2, 3)
    (g,) = numerical_grad(lambda a: (a**3).sum(), [x.copy()])
    np.testing.assert_allclose(g, 3 * x**2, rtol=1e-6, atol=1e-6)


def test_gradcheck_detects_a_wrong_rule() -> None:
    with pytest.raises(AssertionError):
        check_grads(_wrong_square, positive(3))


def _wrong_square(a: Tensor) -> Tensor:
    out = a * a
    out._backward = lambda g: (g, None)  # drops half of the product rule on purpose
    return out


def test_kernel_minimum_grad_order() -> None:
    from lucid.ir.ops import OPS

    ga, gb = OPS["minimum_grad"].numpy(np.array([1.0]), np.array([2.0]), np.array([1.0]))
    assert (ga[0], gb[0]) == (1.0, 0.0)  # a is the minimum, so a gets the cotangent


def test_cast_float32_gradient_returns_in_source_dtype() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x.astype(np.float64) * 3.0).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_cast_to_integer_has_no_gradient() -> None:
    x = Tensor([1.5, 2.5], requires_grad=True)
    assert not x.astype(np.int64).requires_grad


def test_tie_in_maximum_splits_gradient() -> None:
    a = Tensor([1.0, 2.0], requires_grad=True)
    b = Tensor([1.0, 3.0], requires_grad=True)
    lucid.maximum(a, b).backward()
    np.testing.assert_array_equal(a.grad, [0.5, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 1.0])


def test_getitem_repeated_index_accumulates() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2])].backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_dropout_gradient_is_its_mask() -> None:
    lucid.random.seed(0)
    x = Tensor(np.ones((50, 40)), requires_grad=True)
    y = F.dropout(x, 0.25, training=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, y.data)  # y = x * mask with x = 1
    assert set(np.unique(y.data)) == {0.0, 1.0 / 0.75}
