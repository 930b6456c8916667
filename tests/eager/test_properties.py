"""Property tests (hypothesis, derandomized) for broadcasting gradients and reductions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lucid import Tensor

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None)


@SETTINGS
@given(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4))
def test_broadcast_add_gradient_counts_replications(shapes) -> None:
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a = Tensor(np.ones(sa), requires_grad=True)
    b = Tensor(np.ones(sb), requires_grad=True)
    (a + b).backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    size = int(np.prod(out))
    np.testing.assert_array_equal(a.grad, np.full(sa, size / max(int(np.prod(sa)), 1)))
    np.testing.assert_array_equal(b.grad, np.full(sb, size / max(int(np.prod(sb)), 1)))


@SETTINGS
@given(
    hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=1, max_dims=3, max_side=3),
    st.integers(0, 2**32 - 1),
)
def test_broadcast_mul_gradient_is_the_other_operand_summed_back(shapes, seed) -> None:
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(sa), rng.standard_normal(sb)
    a, b = Tensor(x, requires_grad=True), Tensor(y, requires_grad=True)
    (a * b).backward()
    summed = np.broadcast_to(y, out)
    for _ in range(len(out) - len(sa)):
        summed = summed.sum(axis=0)
    for i, n in enumerate(sa):
        if n == 1:
            summed = summed.sum(axis=i, keepdims=True)
    np.testing.assert_allclose(a.grad, summed, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    hnp.array_shapes(min_dims=1, max_dims=4, max_side=4),
    st.data(),
)
def test_sum_and_mean_gradients_are_uniform(shape, data) -> None:
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)))
    keep = data.draw(st.booleans())
    x = Tensor(np.ones(shape), requires_grad=True)
    x.sum(axis=tuple(axes) or None, keepdims=keep).backward()
    np.testing.assert_array_equal(x.grad, np.ones(shape))
    x.zero_grad()
    x.mean(axis=tuple(axes) or None, keepdims=keep).backward()
    count = int(np.prod([shape[a] for a in axes])) if axes else int(np.prod(shape))
    np.testing.assert_allclose(x.grad, np.full(shape, 1.0 / count))
