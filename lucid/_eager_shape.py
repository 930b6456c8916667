"""Eager ops that move or reduce data: sum/mean, reshape, transpose, broadcast, cast, detach,
and indexing (which works eagerly but has no IR form, so it reports itself as unsupported)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucid import _hooks
from lucid import _np_kernels as K
from lucid.tensor import Array, Tensor, _result, grad_enabled


def normalize_axes(op: str, axis: int | Sequence[int] | None, ndim: int) -> tuple[int, ...]:
    """`axis` as the IR wants it: non-negative, sorted, unique; None means every axis."""
    if axis is None:
        return tuple(range(ndim))
    raw = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = []
    for a in raw:
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor of {ndim} dimensions")
        axes.append(a % ndim)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: repeated axis in {raw}")
    return tuple(sorted(axes))


def reduce(op: str, x: Tensor, axis: int | Sequence[int] | None, keepdims: bool) -> Tensor:
    """sum or mean of x over `axis`."""
    axes = normalize_axes(op, axis, x.ndim)
    keepdims = bool(keepdims)
    d = x.data
    data = (d.sum if op == "sum" else d.mean)(axis=axes, keepdims=keepdims)
    data = np.asarray(data, dtype=d.dtype) if d.dtype.kind == "f" else np.asarray(data)
    count = math.prod(d.shape[a] for a in axes)  # math.prod: np.prod costs ~2 us per call
    kept = tuple(1 if i in axes else n for i, n in enumerate(d.shape))

    def backward(g: Array) -> tuple[Array]:
        if op == "mean":
            g = g / g.dtype.type(count) if count else g
        return (np.broadcast_to(g.reshape(kept), d.shape),)

    return _result(data, op, (x,), {"axes": axes, "keepdims": keepdims}, backward)


def _shape_args(op: str, args: tuple[Any, ...]) -> tuple[int, ...]:
    """Accept f(2, 3) and f((2, 3)) alike."""
    if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
        args = tuple(args[0])
    try:
        return tuple(operator.index(a) for a in args)
    except TypeError:
        raise TypeError(f"{op}: expected integers, got {args!r}") from None


def reshape(x: Tensor, *shape: Any) -> Tensor:
    """x with a new shape of the same size (at most one -1)."""
    new = _shape_args("reshape", shape)
    if new.count(-1) > 1 or any(n < -1 for n in new):
        raise ValueError(f"reshape: invalid shape {new}: sizes must be >= 0, with at most one -1")
    try:
        data = x.data.reshape(new)
    except ValueError:
        raise ValueError(
            f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) into {new}"
        ) from None
    old = x.shape
    return _result(data, "reshape", (x,), {"shape": new}, lambda g: (g.reshape(old),))


def transpose(x: Tensor, *perm: Any) -> Tensor:
    """Permute x's axes by `perm`; no arguments reverses them."""
    p = _shape_args("transpose", perm) if perm else tuple(reversed(range(x.ndim)))
    if sorted(p) != list(range(x.ndim)):
        raise ValueError(
            f"transpose: {p} is not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}"
        )
    inverse = tuple(np.argsort(p))
    return _result(
        x.data.transpose(p), "transpose", (x,), {"perm": p}, lambda g: (g.transpose(inverse),)
    )


def broadcast_to(x: Tensor, shape: Sequence[int]) -> Tensor:
    """x broadcast to `shape` by NumPy's rules (a fresh, writable array)."""
    target = _shape_args("broadcast_to", (shape,))
    try:
        data = np.array(np.broadcast_to(x.data, target))
    except ValueError:
        raise ValueError(f"broadcast_to: cannot broadcast shape {x.shape} to {target}") from None
    old = x.shape
    return _result(data, "broadcast", (x,), {"shape": target}, lambda g: (K.unbroadcast(g, old),))


def astype(x: Tensor, dtype: Any) -> Tensor:
    """x converted to `dtype`; differentiable between floating dtypes only."""
    dt = np.dtype(dtype)
    src = x.dtype
    backward = (lambda g: (g.astype(src),)) if dt.kind == "f" and src.kind == "f" else None
    return _result(x.data.astype(dt), "cast", (x,), {"dtype": dt}, backward)


def detach(x: Tensor) -> Tensor:
    """x's values (shared) without autograd history."""
    return _result(x.data, "stop_gradient", (x,), {}, None)


def _plain_index(index: Any) -> Any:
    """An index with Tensors replaced by their arrays, for NumPy."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def getitem(x: Tensor, index: Any) -> Tensor:
    """x[index] with a gradient (eager only: it has no IR form)."""
    _hooks.unsupported("Tensor.__getitem__ (indexing)", (x,))
    idx = _plain_index(index)
    shape, dtype = x.shape, x.dtype

    def backward(g: Array) -> tuple[Array]:
        full = np.zeros(shape, dtype=dtype)
        np.add.at(full, idx, g)  # add.at, not +=, so repeated indices accumulate
        return (full,)

    return _result(np.array(x.data[idx]), None, (x,), {}, backward)


def setitem(x: Tensor, index: Any, value: Any) -> None:
    """x[index] = value in place; refused while x takes part in autograd."""
    _hooks.unsupported("Tensor.__setitem__ (in-place assignment)", (x,))
    if x.requires_grad and grad_enabled():
        raise RuntimeError(
            "in-place assignment to a Tensor that requires grad would corrupt its gradient; "
            "do it under lucid.no_grad() or on a tensor with requires_grad=False"
        )
    x.data[_plain_index(index)] = value.data if isinstance(value, Tensor) else value
    if hasattr(x, "_version"):
        x._version += 1
