"""Basic indexing (`x[1, ::2, None, ...]`) as a plan of table ops: one `slice`, then a `reshape`.

Ints, slices with positive steps, `...` and `None` become a static slice of the cut axes and a
reshape that drops the int axes and inserts the new ones, so indexing traces and compiles like
any other op. Bounds are computed from the concrete sizes; an axis kept whole keeps its size as
the shape gives it (a SymInt under a traced dynamic batch), so only an axis that is actually cut
must be static (the slice op's type rule refuses to cut the symbolic batch, which the tracer
reports with the line). Tensors, lists and bools as indices are advanced indexing, which stays
eager-only (see `Tensor.__getitem__`).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid._symbolic import SymInt


@dataclass(frozen=True)
class IndexPlan:
    """`slice` attrs (empty `axes`: nothing cut) and the result's shape (None: no reshape)."""

    slice_attrs: dict[str, tuple[int, ...]]
    shape: tuple[Any, ...] | None


def is_basic(index: Any) -> bool:
    """Whether `index` is basic indexing: ints, slices, `...` and None (alone or in a tuple)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(_is_int(i) or i is None or i is Ellipsis or isinstance(i, slice) for i in items)


def _is_int(i: Any) -> bool:
    return isinstance(i, (int, np.integer, SymInt)) and not isinstance(i, (bool, np.bool_))


def _whole(s: slice, size: Any) -> bool:
    """Whether `s` keeps an axis of `size` whole for every value of the size (not just this one):
    `:`, `0:`, `::1`, or a stop that is the size itself."""
    start_zero = s.start is None or (
        _is_int(s.start) and not isinstance(s.start, SymInt) and s.start == 0
    )
    step_one = s.step is None or (not isinstance(s.step, SymInt) and s.step == 1)
    if not (start_zero and step_one):
        return False
    if s.stop is None:
        return True
    if isinstance(size, SymInt):
        return isinstance(s.stop, SymInt) and s.stop.expr == size.expr
    return operator.index(s.stop) >= size


def plan(index: Any, shape: tuple[Any, ...], concrete: tuple[int, ...]) -> IndexPlan:
    """The slice and reshape that compute `x[index]` for x of `shape` (sizes as x.shape gives
    them) and `concrete` (its array's shape); IndexError/ValueError for a bad index."""
    items = list(index) if isinstance(index, tuple) else [index]
    if sum(i is Ellipsis for i in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    consumed = sum(1 for i in items if i is not None and i is not Ellipsis)
    ndim = len(concrete)
    if consumed > ndim:
        raise IndexError(
            f"too many indices for a tensor of dimension {ndim}: {consumed} given for shape "
            f"{tuple(concrete)}"
        )
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at : at + 1] = [slice(None)] * (ndim - consumed)
    else:
        items += [slice(None)] * (ndim - consumed)
    axes: list[int] = []
    starts: list[int] = []
    stops: list[int] = []
    steps: list[int] = []
    out: list[Any] = []
    reshaped = False
    axis = 0
    for item in items:
        if item is None:
            out.append(1)
            reshaped = True
            continue
        n = concrete[axis]
        if isinstance(item, slice):
            if item.step is not None and operator.index(item.step) <= 0:
                raise ValueError(
                    f"indexing: step must be positive, got {operator.index(item.step)} "
                    "(negative steps are not supported; flip with an explicit index instead)"
                )
            if _whole(item, shape[axis]):
                out.append(shape[axis])
            else:
                lo, hi, st = slice(
                    *(
                        None if b is None else operator.index(b)
                        for b in (item.start, item.stop, item.step)
                    )
                ).indices(n)
                axes.append(axis)
                starts.append(lo)
                stops.append(max(lo, hi))
                steps.append(st)
                out.append(len(range(lo, hi, st)))
        else:
            i = operator.index(item)
            if not -n <= i < n:
                raise IndexError(
                    f"index {i} is out of bounds for dimension {axis} with size {n} "
                    f"(tensor of shape {tuple(concrete)})"
                )
            i %= n
            axes.append(axis)
            starts.append(i)
            stops.append(i + 1)
            steps.append(1)
            reshaped = True
        axis += 1
    attrs = {
        "axes": tuple(axes),
        "starts": tuple(starts),
        "stops": tuple(stops),
        "steps": tuple(steps),
    }
    return IndexPlan(attrs, tuple(out) if reshaped else None)
