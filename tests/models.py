"""Models the tests share, each written once: the seed model of the seed document.

Only `lucid` and `lucid.nn` are imported here, so a child process may import this module
without loading the code generator (tests/runtime/test_warm_start.py checks that it stays
unloaded). tests/conftest.py wraps these factories as fixtures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import lucid
from lucid import nn

if TYPE_CHECKING:
    from lucid.ir import Graph


class SeedModel(nn.Module):
    """The seed page's NeuralNetwork: fc1 = Linear(3, 5) -> HardSwish -> fc2 = Linear(5, 2)."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, 5, dtype=dtype)
        self.hardswish = nn.HardSwish()
        self.fc2 = nn.Linear(5, 2, dtype=dtype)

    def forward(self, x: Any) -> Any:
        return self.fc2(self.hardswish(self.fc1(x)))


def seed_model(dtype: Any = np.float32) -> SeedModel:
    """The seed model with the weights lucid.random.seed(0) gives: the same on every call."""
    lucid.random.seed(0)
    return SeedModel(dtype)


def seed_graph() -> Graph:
    """The seed model's forward IR, with a symbolic batch: x f32[N,3] -> f32[N,2]."""
    from lucid.ir.trace import trace

    return trace(SeedModel(), np.zeros((1, 3), np.float32), dynamic_batch=True)


def hardswish_mlp(sizes: tuple[int, int, int], seed: int) -> nn.Sequential:
    """Linear(in, hidden) -> HardSwish -> Linear(hidden, out) of `sizes`, initialised from
    lucid.random.seed(seed)."""
    lucid.random.seed(seed)
    fin, hidden, fout = sizes
    return nn.Sequential(nn.Linear(fin, hidden), nn.HardSwish(), nn.Linear(hidden, fout))


def normal_rows(rows: int, features: int, seed: int) -> np.ndarray:
    """A float32 batch [rows, features] of standard normal draws from NumPy's `seed`."""
    return np.random.default_rng(seed).standard_normal((rows, features)).astype(np.float32)
