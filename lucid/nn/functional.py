"""Functional forms of lucid's layers: each is one eager primitive (see docs/DESIGN.md)."""

from __future__ import annotations

from lucid._eager_nn import (
    cross_entropy,
    dropout,
    hardsigmoid,
    hardswish,
    linear,
    mse_loss,
    relu,
    relu6,
    sigmoid,
    tanh,
)

__all__ = [
    "cross_entropy",
    "dropout",
    "hardsigmoid",
    "hardswish",
    "linear",
    "mse_loss",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
]
