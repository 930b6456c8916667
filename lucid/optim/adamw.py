"""AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lucid.optim.adam import Adam
from lucid.tensor import Tensor


class AdamW(Adam):
    """Adam whose weight decay shrinks the parameter directly (p *= 1 - lr * weight_decay)
    before the moment update, instead of adding weight_decay * p to the gradient; PyTorch's
    defaults, including weight_decay=1e-2."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)

    def _update(self, i: int, p: Tensor) -> None:
        assert p.grad is not None
        b1, b2 = self.betas
        g = p.grad
        if self.weight_decay:
            p.data *= 1 - self.lr * self.weight_decay
        m, v = self._m[i], self._v[i]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        m_hat = m / (1 - b1**self.t)
        v_hat = v / (1 - b2**self.t)
        p.data -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
