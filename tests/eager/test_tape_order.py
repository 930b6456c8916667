"""The tape's topological order: the chain shortcut agrees with the general walk, and the
backward through chains, diamonds and keep_grad nodes is eager's."""

from __future__ import annotations

import numpy as np

import lucid
from lucid._tape import general_order, topological_order


def ids(nodes: list) -> list[int]:
    return [id(n) for n in nodes]


def test_chain_is_its_own_order():
    x = lucid.Tensor(np.arange(3.0), requires_grad=True)
    t = lucid.Tensor(np.ones(3))  # a parent that does not require grad is not on the chain
    y = ((x * 2.0) + t).sum()
    order = topological_order(y)
    assert ids(order) == ids(general_order(y))
    assert order[0] is x and order[-1] is y and len(order) == 4


def test_diamond_and_repeated_parent_take_the_general_walk():
    x = lucid.Tensor(np.arange(3.0), requires_grad=True)
    a = x * 2.0
    y = (a * a).sum()  # the same parent twice
    assert ids(topological_order(y)) == ids(general_order(y))
    z = (a + x.exp()).sum()  # two paths from x
    assert ids(topological_order(z)) == ids(general_order(z))
    z.backward()
    np.testing.assert_allclose(x.grad, 2.0 + np.exp(np.arange(3.0)))


def test_chain_backward_keep_grad_and_accumulation():
    x = lucid.Tensor(np.arange(1.0, 4.0), requires_grad=True)
    for _ in range(2):
        h = x * 3.0
        h.keep_grad = True
        (h.exp() * 0.5).sum().backward()
    np.testing.assert_allclose(h.grad, 0.5 * np.exp(3.0 * np.arange(1.0, 4.0)))
    np.testing.assert_allclose(x.grad, 2 * 1.5 * np.exp(3.0 * np.arange(1.0, 4.0)))


def test_ones_seed_keeps_dtype_shape_and_is_a_fresh_array():
    x = lucid.Tensor(np.zeros((2, 3), np.float32), requires_grad=True)
    x.backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == (2, 3) and (x.grad == 1).all()
    s = lucid.Tensor(np.float32(2.0), requires_grad=True)
    s.backward()
    assert s.grad.shape == () and s.grad == 1
