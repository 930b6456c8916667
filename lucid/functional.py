"""lucid's free functions on Tensors (`lucid.exp(x)`, `lucid.where(c, a, b)`, ...).

Each checks its arguments and runs one op of the table through `lucid.tensor.apply`; the math,
the gradient and the C of every op are in its definition under lucid/ir/ops/.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lucid.ir.ops import OPS
from lucid.tensor import Tensor, apply, binary, cat, matmul, operands, stack

__all__ = [
    "abs",
    "argmax",
    "argmin",
    "astype",
    "broadcast_to",
    "cat",
    "chunk",
    "clip",
    "detach",
    "exp",
    "flatten",
    "log",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "permute",
    "reshape",
    "sigmoid",
    "split",
    "sqrt",
    "squeeze",
    "stack",
    "std",
    "sum",
    "tanh",
    "transpose",
    "unsqueeze",
    "var",
    "where",
]


def exp(x: Tensor) -> Tensor:
    """Elementwise e**x."""
    return x.exp()


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    return x.log()


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    return x.sqrt()


def tanh(x: Tensor) -> Tensor:
    """Elementwise hyperbolic tangent."""
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return x.sigmoid()


def abs(x: Tensor) -> Tensor:
    """Elementwise |x|; the gradient at 0 is 0."""
    return x.abs()


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp x into [min, max] (None = unbounded); NaN passes through."""
    return x.clip(min, max)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum (NaN wins; a tie splits the gradient in halves)."""
    return binary(OPS["maximum"], a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum (NaN wins; a tie splits the gradient in halves)."""
    return binary(OPS["minimum"], a, b)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise `a if condition else b` with broadcasting; condition must be bool."""
    c = condition if isinstance(condition, Tensor) else Tensor(np.asarray(condition))
    if c.dtype != np.bool_:
        raise TypeError(f"where: the condition must be a bool Tensor, got dtype {c.dtype}")
    a, b = operands("where", a, b)
    return apply(OPS["where"], (c, a, b))


def sum(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Sum of x over `axis` (all axes when None)."""
    return x.sum(axis, keepdims)


def mean(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False) -> Tensor:
    """Mean of x over `axis` (all axes when None)."""
    return x.mean(axis, keepdims)


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """x with a new shape of the same size (at most one -1)."""
    return x.reshape(*shape)


def transpose(x: Tensor, *perm: Any) -> Tensor:
    """Permute x's axes by `perm`; no arguments reverses them."""
    return x.transpose(*perm)


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """x broadcast to `shape` by NumPy's rules (a fresh, writable array)."""
    return x.broadcast_to(shape)


def astype(x: Tensor, dtype: Any) -> Tensor:
    """x converted to `dtype`; differentiable between floating dtypes only."""
    return x.astype(dtype)


def detach(x: Tensor) -> Tensor:
    """x's values (shared) without autograd history."""
    return x.detach()


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """x with a new axis of size 1 at `dim`."""
    return x.unsqueeze(dim)


def squeeze(x: Tensor, dim: int | Sequence[int] | None = None) -> Tensor:
    """x without its axes of size 1 (all, or those of `dim`)."""
    return x.squeeze(dim)


def permute(x: Tensor, dims: Sequence[int]) -> Tensor:
    """x with its axes reordered as `dims`."""
    return x.permute(*dims)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """x with the axes start_dim..end_dim merged into one."""
    return x.flatten(start_dim, end_dim)


def split(
    x: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0
) -> tuple[Tensor, ...]:
    """x cut along `dim` into pieces of a size, or of the given sizes."""
    return x.split(split_size_or_sections, dim)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """x cut along `dim` into `chunks` pieces (the last may be smaller)."""
    return x.chunk(chunks, dim)


def max(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """torch.max(x) or torch.max(x, dim): the largest element, or (values, indices) along dim."""
    return x.max(dim, keepdim)


def min(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Any:
    """torch.min(x) or torch.min(x, dim): the smallest element, or (values, indices) along dim."""
    return x.min(dim, keepdim)


def argmax(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The int64 index of the largest element (along dim, or of the flattened tensor)."""
    return x.argmax(dim, keepdim)


def argmin(x: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """The int64 index of the smallest element (along dim, or of the flattened tensor)."""
    return x.argmin(dim, keepdim)


def var(
    x: Tensor, dim: int | Sequence[int] | None = None, correction: float = 1, keepdim: bool = False
) -> Tensor:
    """Variance over dim, divided by n - correction (torch.var)."""
    return x.var(dim, correction=correction, keepdim=keepdim)


def std(
    x: Tensor, dim: int | Sequence[int] | None = None, correction: float = 1, keepdim: bool = False
) -> Tensor:
    """Standard deviation over dim (torch.std)."""
    return x.std(dim, correction=correction, keepdim=keepdim)
