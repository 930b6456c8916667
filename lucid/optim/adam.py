"""Adam (Kingma and Ba, 2015) with bias correction and optional L2 weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lucid import _hooks
from lucid.optim.optimizer import Optimizer
from lucid.tensor import Tensor


class Adam(Optimizer):
    """Per-parameter first and second moment estimates; `t` counts steps since construction."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.t = 0
        self._m: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        name = type(self).__name__
        b1, b2 = group["betas"]
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"{name}: betas must lie in [0, 1), got {group['betas']}")
        if group["eps"] <= 0 or group["weight_decay"] < 0:
            raise ValueError(
                f"{name}: need eps > 0 and weight_decay >= 0, got {group['eps']}, "
                f"{group['weight_decay']}"
            )
        group["betas"] = (b1, b2)

    def _grow(self, params: list[Tensor]) -> None:
        self._m += [np.zeros_like(p.data) for p in params]
        self._v += [np.zeros_like(p.data) for p in params]

    def _param_state(self, i: int) -> dict[str, Any] | None:
        if self.t == 0:
            return None
        return {"step": float(self.t), "exp_avg": self._m[i], "exp_avg_sq": self._v[i]}

    def _check_param_states(self, states: dict[int, dict[str, Any]]) -> list[str]:
        problems = [
            f"state {i} has no {k}"
            for i, st in states.items()
            for k in ("step", "exp_avg", "exp_avg_sq")
            if k not in st
        ]
        steps = {int(st["step"]) for st in states.values() if "step" in st}
        if len(steps) > 1:
            problems.append(
                f"parameters have different step counts {sorted(steps)}; lucid keeps one"
            )
        return problems

    def _set_param_states(self, states: dict[int, dict[str, Any]]) -> None:
        self.t = int(next(iter(states.values()))["step"]) if states else 0
        self._m = [
            np.array(states[i]["exp_avg"]) if i in states else np.zeros_like(p.data)
            for i, p in enumerate(self.params)
        ]
        self._v = [
            np.array(states[i]["exp_avg_sq"]) if i in states else np.zeros_like(p.data)
            for i, p in enumerate(self.params)
        ]

    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        if _hooks.optimizer_step(self):  # a traced training step: the compiled step updates
            return
        self.t += 1
        super().step()

    def _moments(
        self, i: int, g: np.ndarray, b1: float, b2: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Update parameter i's moments with gradient g; return them bias-corrected."""
        m, v = self._m[i], self._v[i]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        return m / (1 - b1**self.t), v / (1 - b2**self.t)

    def _update(self, i: int, p: Tensor) -> None:
        assert p.grad is not None
        h = self.group(i)
        b1, b2 = h["betas"]
        g = p.grad + h["weight_decay"] * p.data if h["weight_decay"] else p.grad
        m_hat, v_hat = self._moments(i, g, b1, b2)
        p.data -= h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])
