"""A minimal LayerNorm composed of table ops (mean, var, sqrt), so attention layers can be
built and tested while the real one (lucid/nn/normalization.py) is written; it replaces this
file at merge."""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor


class LayerNorm(Module):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing `normalized_shape` dims
    (biased variance), as torch.nn.LayerNorm; weight ones and bias zeros at init."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (
            (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        )
        self.normalized_shape = shape
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        dt = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.ones(shape), dtype=dt) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape), dtype=dt) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        """Normalize x over its trailing dims."""
        n = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - n :]) != self.normalized_shape or x.ndim < n:
            raise ValueError(
                f"LayerNorm: expected input of shape [..., {', '.join(map(str, self.normalized_shape))}], "
                f"got {x.shape}"
            )
        axes = tuple(range(x.ndim - n, x.ndim))
        y = (x - x.mean(axes, keepdims=True)) / (
            x.var(axes, correction=0, keepdim=True) + self.eps
        ).sqrt()
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )
