"""Training utilities on parameters' gradients: `clip_grad_norm_`."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from lucid.tensor import Tensor

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients of `parameters` so that their joint `norm_type` norm is at most
    `max_norm`; returns the norm before clipping (PyTorch's rule: grads are multiplied by
    min(1, max_norm / (norm + 1e-6)); parameters without a gradient are ignored)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return Tensor(np.array(0.0, dtype=np.float32))
    dtype = grads[0].dtype
    p = float(norm_type)
    if not p > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
    if math.isinf(p):
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    else:
        # float64 accumulation of per-tensor norms, like PyTorch's norm of the per-tensor norms
        norms = [np.linalg.norm(g.astype(np.float64, copy=False).ravel(), p) for g in grads]
        total = float(np.linalg.norm(np.array(norms), p))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {total}"
        )
    coef = min(1.0, float(max_norm) / (total + 1e-6))
    for q in params:
        if q.grad is not None:
            q.grad = q.grad * q.grad.dtype.type(coef)
    return Tensor(np.array(total, dtype=dtype))
