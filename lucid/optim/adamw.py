"""AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from lucid.optim.adam import Adam
from lucid.tensor import Tensor


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameter directly (p *= 1 - lr * weight_decay)
    before the moment update, instead of adding weight_decay * p to the gradient; PyTorch's
    defaults, including weight_decay=1e-2."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, i: int, p: Tensor) -> None:
        assert p.grad is not None
        h = self.group(i)
        b1, b2 = h["betas"]
        if h["weight_decay"]:
            p.data *= 1 - h["lr"] * h["weight_decay"]
        m_hat, v_hat = self._moments(i, p.grad, b1, b2)
        p.data -= h["lr"] * m_hat / (np.sqrt(v_hat) + h["eps"])
