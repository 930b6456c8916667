"""Normalising user arguments: axes and shapes, as Tensor's methods and the factories take them."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucid._symbolic import SymInt


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


def shape_args(op: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Accept f(2, 3) and f((2, 3)) alike: ints, and the SymInts a traced dynamic batch gives
    (kept as they are: see lucid/_symbolic.py)."""
    if len(args) == 1 and not isinstance(args[0], (int, np.integer, SymInt)):
        args = tuple(args[0])
    try:
        return tuple(a if isinstance(a, SymInt) else operator.index(a) for a in args)
    except TypeError:
        raise TypeError(f"{op}: expected integers, got {args!r}") from None


def dim_arg(op: str, dim: Any, ndim: int, shape: Sequence[Any]) -> int:
    """`dim` as a non-negative axis of a tensor of `ndim` dims, or an error naming op and shape."""
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{op}: dim must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        expected = f"expected dim in [{-ndim}, {ndim - 1}]" if ndim else "it has no dims"
        raise IndexError(
            f"{op}: dim {int(dim)} is out of range for a tensor of shape {tuple(shape)} ({expected})"
        )
    return int(dim) % ndim
