"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lucid import _hooks
from lucid.optim.optimizer import Optimizer
from lucid.tensor import Tensor


class SGD(Optimizer):
    """PyTorch's SGD: d = grad + weight_decay * p; with momentum, the buffer
    b = d (first step) else momentum * b + (1 - dampening) * d, and d = b (or d + momentum * b
    with nesterov); then p -= lr * d."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        self._velocity: list[np.ndarray | None] = []
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": bool(nesterov),
        }
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"SGD: momentum and weight_decay must be >= 0, got {momentum} and {weight_decay}"
            )
        if group["nesterov"] and (momentum <= 0 or group["dampening"] != 0):
            raise ValueError(
                f"SGD: nesterov needs momentum > 0 and dampening 0, got momentum={momentum}, "
                f"dampening={group['dampening']}"
            )

    def _grow(self, params: list[Tensor]) -> None:
        self._velocity += [None] * len(params)

    def _param_state(self, i: int) -> dict[str, Any] | None:
        v = self._velocity[i]
        return None if v is None else {"momentum_buffer": v}

    def _check_param_states(self, states: dict[int, dict[str, Any]]) -> list[str]:
        return [
            f"state {i} has no momentum_buffer"
            for i, st in states.items()
            if "momentum_buffer" not in st
        ]

    def _set_param_states(self, states: dict[int, dict[str, Any]]) -> None:
        self._velocity = [
            np.array(states[i]["momentum_buffer"]) if i in states else None
            for i in range(len(self.params))
        ]

    def step(self) -> None:
        """Update every parameter that has a gradient.

        Plain SGD (no momentum, no weight decay in any group: the usual small-model step) runs
        inline, one `p.data -= lr * grad` per parameter, which is `_update`'s arithmetic
        without the per-parameter call; anything else (or a subclass's own `_update`) takes
        the base loop.
        """
        if _hooks.optimizer_step(self):  # a traced training step: the compiled step updates
            return
        plain = all(not g["momentum"] and not g["weight_decay"] for g in self.param_groups)
        if not plain or type(self)._update is not SGD._update:
            super().step()
            return
        for g in self.param_groups:
            lr = g["lr"]
            for p in g["params"]:
                grad = p.grad
                if grad is not None:
                    p.data -= lr * grad
                    if hasattr(p, "_version"):
                        p._version += 1

    def _update(self, i: int, p: Tensor) -> None:
        assert p.grad is not None
        h = self.group(i)
        decay, momentum = h["weight_decay"], h["momentum"]
        g = p.grad + decay * p.data if decay else p.grad
        if momentum:
            v = self._velocity[i]
            v = g.copy() if v is None else momentum * v + (1 - h["dampening"]) * g
            self._velocity[i] = v
            g = g + momentum * v if h["nesterov"] else v
        p.data -= h["lr"] * g
