"""lucid.optim: optimizers that update parameters in place."""

from __future__ import annotations

from lucid.optim.adam import Adam
from lucid.optim.optimizer import Optimizer
from lucid.optim.sgd import SGD

__all__ = ["SGD", "Adam", "Optimizer"]
