"""Modules and tensors pickle and unpickle, with their structure, names and values."""

from __future__ import annotations

import pickle

import numpy as np

import lucid
from lucid import nn


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(3, 4), nn.HardSwish(), nn.Linear(4, 2))
        self.scale = 0.5

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.inner(x) * self.scale


def test_a_module_with_children_round_trips_through_pickle() -> None:
    lucid.random.seed(0)
    model = Block()
    x = lucid.Tensor(np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32))
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy(x).data, model(x).data)
    assert [n for n, _ in copy.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert copy.inner.path == "inner" and copy.inner[2].path == "inner.2"  # owner links rebuilt
    assert copy.scale == 0.5 and copy.training
    # the copy is independent: training it leaves the original alone
    before = model.inner[0].weight.data.copy()
    copy(x).sum().backward()
    for p in copy.parameters():
        p.data -= 0.1 * p.grad
    np.testing.assert_array_equal(model.inner[0].weight.data, before)


def test_a_child_pickled_alone_becomes_a_root() -> None:
    model = Block()
    child = pickle.loads(pickle.dumps(model.inner))
    assert child.path == "" and child[0].path == "0"


def test_a_leaf_tensor_round_trips() -> None:
    t = lucid.Tensor([1.0, -2.0], requires_grad=True)
    copy = pickle.loads(pickle.dumps(t))
    assert copy.requires_grad and copy.dtype == np.float32
    np.testing.assert_array_equal(copy.data, t.data)
