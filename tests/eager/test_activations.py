"""Activation values and gradients at and around the kinks, NaN and infinities (the seed's rule)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lucid.nn.functional as F
from lucid import Tensor, nn

INF, NAN = math.inf, math.nan
D = 1e-4  # "just inside / just outside" a kink

# x, HardSwish(x), HardSwish'(x): x/3 + 1/2 on [-3, 3] inclusive, 1 above, 0 below (NOTES.md).
HARDSWISH = [
    (-INF, NAN, 0.0),  # IEEE -inf * 0
    (-3 - D, -0.0, 0.0),
    (-3.0, -0.0, -0.5),
    (-3 + D, (-3 + D) * (D / 6), (-3 + D) / 3 + 0.5),
    (-1.0, -1 / 3, 1 / 6),
    (0.0, 0.0, 0.5),
    (0.5, 0.5 * (0.5 / 6 + 0.5), 0.5 / 3 + 0.5),
    (3 - D, (3 - D) * (1 - D / 6), (3 - D) / 3 + 0.5),
    (3.0, 3.0, 1.5),
    (3 + D, 3 + D, 1.0),
    (INF, INF, 1.0),
    (NAN, NAN, NAN),
]

# x, HardSigmoid(x), HardSigmoid'(x): 1/6 on [-3, 3] inclusive, else 0 (NaN fails both tests).
HARDSIGMOID = [
    (-INF, 0.0, 0.0),
    (-3 - D, 0.0, 0.0),
    (-3.0, 0.0, 1 / 6),
    (0.0, 0.5, 1 / 6),
    (3.0, 1.0, 1 / 6),
    (3 + D, 1.0, 0.0),
    (INF, 1.0, 0.0),
    (NAN, NAN, 0.0),
]


def _values_and_grads(fn, xs: list[float], dtype) -> tuple[np.ndarray, np.ndarray]:
    x = Tensor(np.array(xs, dtype=dtype), requires_grad=True)
    y = fn(x)
    y.backward()
    return y.data, x.grad


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "fn, table", [(F.hardswish, HARDSWISH), (F.hardsigmoid, HARDSIGMOID)], ids=["hs", "hsig"]
)
def test_kink_table(fn, table, dtype) -> None:
    xs, ys, gs = (list(col) for col in zip(*table))
    y, g = _values_and_grads(fn, xs, dtype)
    assert y.dtype == dtype and g.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, np.array(ys, dtype=dtype), rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(g, np.array(gs, dtype=dtype), rtol=rtol, atol=1e-7)


def test_hardswish_below_minus_three_is_negative_zero() -> None:
    y = F.hardswish(Tensor([-4.0, -3.0])).data
    assert np.all(np.signbit(y)) and np.all(y == 0)


def test_notes_table_values() -> None:
    # The corrected outputs of the seed's two examples (NOTES.md section 3).
    a = F.hardswish(Tensor([[-1.0, 2.0, -0.5, 3.0]])).data
    b = F.hardswish(Tensor([[-2.0, 0.5, 1.5, -0.3]])).data
    np.testing.assert_allclose(a, [[-1 / 3, 5 / 3, -0.2083333, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(b, [[-1 / 3, 0.2916667, 1.125, -0.135]], rtol=1e-6)


@pytest.mark.parametrize(
    "fn, xs, ys, gs",
    [
        (F.relu, [-1.0, 0.0, 2.0, NAN], [0.0, 0.0, 2.0, NAN], [0.0, 0.0, 1.0, 0.0]),
        (F.relu6, [-1.0, 0.0, 3.0, 6.0, 7.0], [0.0, 0.0, 3.0, 6.0, 6.0], [0, 0, 1, 0, 0]),
        (
            lambda x: x.clip(-1.0, 1.0),
            [-2.0, -1.0, 0.0, 1.0, 2.0, NAN],
            [-1.0, -1.0, 0.0, 1.0, 1.0, NAN],
            [0, 1, 1, 1, 0, 0],
        ),
        (lambda x: x.abs(), [-2.0, 0.0, 3.0], [2.0, 0.0, 3.0], [-1.0, 0.0, 1.0]),
    ],
    ids=["relu", "relu6", "clip", "abs"],
)
def test_other_kinks(fn, xs, ys, gs) -> None:
    y, g = _values_and_grads(fn, xs, np.float64)
    np.testing.assert_array_equal(y, ys)
    np.testing.assert_array_equal(g, gs)


def test_modules_match_functional() -> None:
    x = Tensor(np.linspace(-8, 8, 33))
    for module, fn in [
        (nn.HardSwish(), F.hardswish),
        (nn.HardSigmoid(), F.hardsigmoid),
        (nn.ReLU(), F.relu),
        (nn.ReLU6(), F.relu6),
        (nn.Sigmoid(), F.sigmoid),
        (nn.Tanh(), F.tanh),
    ]:
        np.testing.assert_array_equal(module(x).data, fn(x).data)
    assert nn.Identity()(x) is x


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False))
def test_hardswish_matches_definition_and_bounds(v: float) -> None:
    x = np.array([v])
    y = F.hardswish(Tensor(x)).data[0]
    assert y == v * min(max(v / 6 + 0.5, 0.0), 1.0)
    assert y >= -0.375 - 1e-12  # the global minimum, at x = -1.5
    assert (y <= v) if v >= 0 else (y >= v)
