"""Learning-rate schedulers with PyTorch's names, arguments and step convention.

A scheduler sets the rate of each of the optimizer's parameter groups from that group's rate
at construction (`base_lrs`), as PyTorch's do. Construction counts as step 0 and sets the
initial rates; each `step()` (called after `optimizer.step()`) advances one epoch. Rates are computed in closed form from the epoch, so a scheduler restored
by `load_state_dict` continues exactly where the saved one was.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lucid.optim.optimizer import Optimizer


class LRScheduler:
    """Base class: `last_epoch` counts steps; `base_lrs` are the groups' rates at construction.

    Invariant: after construction and after every `step()`, each group's rate is the
    matching entry of `get_last_lr()`.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: expected a lucid Optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    @property
    def base_lr(self) -> float:
        """The first group's rate at construction."""
        return self.base_lrs[0]

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance one epoch and set each group's learning rate."""
        self.last_epoch += 1
        self._last_lr = [self._lr_at(self.last_epoch, base) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The rates set by the last step, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and, for LambdaLR, the function)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambda")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict`; the optimizer's rates follow at the next step. A state from
        a lucid before parameter groups (one `base_lr`) is read as one group's."""
        state = dict(state)
        if "base_lr" in state and "base_lrs" not in state:
            state["base_lrs"] = [state.pop("base_lr")]
        if not isinstance(state.get("_last_lr", []), list):
            state["_last_lr"] = [state["_last_lr"]]
        if len(state.get("base_lrs", self.base_lrs)) != len(self.base_lrs):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state has "
                f"{len(state['base_lrs'])} group rate(s), the optimizer {len(self.base_lrs)} "
                "group(s)"
            )
        self.__dict__.update(state)


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size), for each group's base_lr."""

    def __init__(
        self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1
    ) -> None:
        if step_size <= 0:
            raise ValueError(f"StepLR: step_size must be positive, got {step_size}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (SGDR without
    restarts; past T_max the cosine continues, as PyTorch's does)."""

    def __init__(
        self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1
    ) -> None:
        if T_max <= 0:
            raise ValueError(f"CosineAnnealingLR: T_max must be positive, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        cos = math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cos) / 2


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(epoch)."""

    def __init__(
        self, optimizer: Optimizer, lr_lambda: Callable[[int], float], last_epoch: int = -1
    ) -> None:
        if not callable(lr_lambda):
            raise TypeError(f"LambdaLR: lr_lambda must be callable, got {type(lr_lambda).__name__}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, epoch: int, base_lr: float) -> float:
        return base_lr * float(self.lr_lambda(epoch))


__all__ = ["CosineAnnealingLR", "LRScheduler", "LambdaLR", "StepLR"]
