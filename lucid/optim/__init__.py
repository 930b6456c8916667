"""lucid.optim: optimizers that update parameters in place, and learning-rate schedulers."""

from __future__ import annotations

from lucid.optim import lr_scheduler
from lucid.optim.adam import Adam
from lucid.optim.adamw import AdamW
from lucid.optim.optimizer import Optimizer
from lucid.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "lr_scheduler"]
