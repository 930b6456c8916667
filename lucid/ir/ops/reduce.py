"""Reductions: sum, mean, max, min, argmax, argmin, and sum_to (a broadcast cotangent summed back
to its shape)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import (
    BOOL,
    DIMS,
    INT,
    INTS,
    NOT_DIFFERENTIABLE,
    REQUIRED,
    Array,
    InferFn,
    OpDef,
    dims,
    expect_float,
    expect_numeric,
)
from lucid.ir.types import Attr, DType, TensorType, broadcast_shapes, format_shape

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def ints(attrs: Attrs, key: str) -> tuple[int, ...]:
    """A tuple-of-ints attribute."""
    v = attrs[key]
    assert isinstance(v, tuple)
    return tuple(int(d) for d in v)  # type: ignore[arg-type]


def _axes_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """axes None -> all; an int -> (int,); negatives counted from the end; sorted, unique."""
    out = dict(attrs)
    rank = ts[0].rank
    axes = attrs.get("axes", None)
    if axes is None:
        out["axes"] = tuple(range(rank))
    elif isinstance(axes, (int, tuple, list)) and not isinstance(axes, bool):
        listed = (axes,) if isinstance(axes, int) else tuple(axes)
        if all(isinstance(a, int) and -rank <= a < rank for a in listed):
            out["axes"] = tuple(sorted({a % rank for a in listed}))  # type: ignore[operator]
    return out


def _reduce_infer(name: str, float_only: bool) -> InferFn:
    def infer(ts: Types, attrs: Attrs) -> Types:
        (x,) = ts
        (expect_float if float_only else expect_numeric)(name, x, "x")
        axes = ints(attrs, "axes")
        if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.rank for a in axes):
            raise IRTypeError(
                f"{name}: axes must be sorted, distinct and in [0, {x.rank}) for {x}, got {axes}"
            )
        keep = attrs["keepdims"]
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
        return (TensorType(x.dtype, shape),)

    return infer


def _sum(x: Array, *, axes: tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
    # NumPy keeps float and int64 dtypes (bool counts as int64: eager only, the IR has no bool
    # sum); a 0-d result comes back as a NumPy scalar, which callers wrap
    # what x.sum runs, without its wrapper. NumPy's stubs overload reduce on keepdims as
    # Literal[True] / Literal[False] only, so a plain bool matches none of them.
    return np.add.reduce(x, axis=axes, keepdims=keepdims)  # type: ignore[call-overload]


def _mean(x: Array, *, axes: tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
    return x.mean(axis=axes, keepdims=keepdims)  # float only (the type rule and Tensor.mean)


def _sum_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    axes = ints(attrs, "axes")
    return (G.unreduce(b, g, b.shape(xs[0]), axes, bool(attrs["keepdims"])),)


def _mean_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (x,), axes = xs, ints(attrs, "axes")
    shape = b.shape(x)
    counted = [shape[a] for a in axes]
    if axes and not (all(isinstance(d, int) for d in counted) and math.prod(counted) == 0):
        g = b.div(g, b.count(counted, g))  # divide first, then broadcast
    return (G.unreduce(b, g, shape, axes, bool(attrs["keepdims"])),)


_AXES = {"axes": (INTS, REQUIRED), "keepdims": (BOOL, False)}


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    return (rng.standard_normal((2, 3, 4)),), {"axes": (0, 2), "keepdims": False}


def _reduction(name: str, kernel: Any, vjp: Any, *, float_only: bool) -> OpDef:
    return OpDef(
        name,
        1,
        _reduce_infer(name, float_only),
        kernel,
        vjp,
        attrs=_AXES,
        lowering="reduce",
        inputs=("x",),
        sample=_sample,
        prepare=_axes_prepare,
        doc=f"{name} over `axes` (non-negative, sorted; all axes for None)",
    )


SUM = _reduction("sum", _sum, _sum_vjp, float_only=False)
MEAN = _reduction("mean", _mean, _mean_vjp, float_only=True)


def _extremum(name: str, reduce: Any) -> Any:
    def kernel(x: Array, *, axes: tuple[int, ...] | None = None, keepdims: bool = False) -> Array:
        if x.size == 0 or any(x.shape[a] == 0 for a in axes or range(x.ndim)):
            raise ValueError(f"{name}: cannot reduce an empty axis (no identity)")
        return reduce(x, axis=axes, keepdims=keepdims)  # NaN propagates, as in PyTorch

    return kernel


def _extremum_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    """The cotangent shared evenly among the elements equal to the result (PyTorch's amax rule;
    torch.max(x, dim) gives it all to the index it returns, which differs only at ties)."""
    (x,), (y,), axes = xs, ys, ints(attrs, "axes")
    shape, keep = b.shape(x), bool(attrs["keepdims"])
    hit = b.cast(b.equal(x, G.unreduce(b, y, shape, axes, keep)), dtype=b.dtype(x))
    count = b.sum(hit, axes=axes, keepdims=keep)
    return (b.mul(hit, G.unreduce(b, b.div(g, count), shape, axes, keep)),)


def _extremum_op(name: str, reduce: Any) -> OpDef:
    return OpDef(
        name,
        1,
        _reduce_infer(name, float_only=False),
        _extremum(name, reduce),
        _extremum_vjp,
        attrs=_AXES,
        lowering="extremum",
        inputs=("x",),
        sample=_sample,
        prepare=_axes_prepare,
        doc=f"{name} over `axes` (NaN propagates; the VJP shares g evenly among ties)",
    )


MAX = _extremum_op("max", np.max)
MIN = _extremum_op("min", np.min)


def _arg_infer(name: str) -> InferFn:
    def infer(ts: Types, attrs: Attrs) -> Types:
        (x,) = ts
        expect_numeric(name, x, "x")
        axis = attrs["axis"]
        assert isinstance(axis, int)
        if not 0 <= axis < x.rank:
            raise IRTypeError(f"{name}: axis {axis} is out of range for {x}")
        if x.shape[axis] == 0:
            raise IRTypeError(f"{name}: cannot reduce the empty axis {axis} of {x}")
        keep = attrs["keepdims"]
        shape = tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keep or i != axis)
        return (TensorType(DType.I64, shape),)

    return infer


def _arg_op(name: str, reduce: Any) -> OpDef:
    def kernel(x: Array, *, axis: int, keepdims: bool = False) -> Array:
        return reduce(x, axis=axis, keepdims=keepdims).astype(np.int64)  # the first NaN wins

    return OpDef(
        name,
        1,
        _arg_infer(name),
        kernel,
        NOT_DIFFERENTIABLE,  # an index
        attrs={"axis": (INT, REQUIRED), "keepdims": (BOOL, False)},
        lowering="arg_extremum",
        inputs=("x",),
        sample=lambda rng: ((rng.standard_normal((3, 5, 2)),), {"axis": 1, "keepdims": True}),
        doc=f"{name} along `axis` as int64 (the first of ties; the first NaN if any)",
    )


ARGMAX = _arg_op("argmax", np.argmax)
ARGMIN = _arg_op("argmin", np.argmin)


def unbroadcast(g: Array, *, shape: tuple[int, ...]) -> Array:
    """Sum g over the axes that broadcasting added or stretched, back to `shape`."""
    shape = tuple(shape)
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


def _sum_to_infer(ts: Types, attrs: Attrs) -> Types:
    (g,) = ts
    shape = dims(attrs, "shape")
    try:
        fits = broadcast_shapes(shape, g.shape) == g.shape
    except IRTypeError:
        fits = False
    if not fits or len(shape) > g.rank:
        raise IRTypeError(f"sum_to: {g} is not a broadcast of the shape {format_shape(shape)}")
    return (TensorType(g.dtype, shape),)


SUM_TO = OpDef(
    "sum_to",
    1,
    _sum_to_infer,
    unbroadcast,
    lambda b, attrs, xs, ys, needs, g: (b.broadcast(g, shape=b.shape(xs[0])),),
    attrs={"shape": (DIMS, REQUIRED)},
    lowering="sum_to",
    inputs=("g",),
    sample=lambda rng: ((rng.standard_normal((2, 3, 4)),), {"shape": (3, 1)}),
    doc="sum a broadcast cotangent back to `shape` (symbols bound by the interpreter)",
)

OPS = (SUM, MEAN, MAX, MIN, ARGMAX, ARGMIN, SUM_TO)
