"""Ops that move data without arithmetic: reshape, transpose, broadcast, cast, slice, concat."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import (
    DIMS,
    DTYPE,
    INT,
    INTS,
    NOT_DIFFERENTIABLE,
    REQUIRED,
    Array,
    OpDef,
    dims,
)
from lucid.ir.ops.reduce import ints
from lucid.ir.types import (
    Attr,
    Dim,
    DType,
    TensorType,
    broadcast_shapes,
    format_shape,
    shape_factors,
    symbolic_dim,
)

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _reshape_infer(ts: Types, attrs: Attrs) -> Types:
    """Element counts must agree as products of a constant and symbols: f32[N,3,4] reshapes
    to (N, 12), (N, -1), (-1, 12) as f32[N,12]; f32[N,8,11] to (-1, 11) as f32[N*8,11] and back
    with (-1, 8, 11) or (N, 8, 11). A -1 stands for what is left: a constant, or one symbol
    times a constant (`N*8`); several symbols in a dim (N*N) are refused."""
    (x,) = ts
    target = dims(attrs, "shape")
    ints_only = [d for d in target if isinstance(d, int)]
    if ints_only.count(-1) > 1 or any(d < -1 for d in ints_only):
        raise IRTypeError(f"reshape: shape may hold one -1 and dims >= 0, got {target}")
    static, have = shape_factors(x.shape)
    known, want = shape_factors(tuple(d for d in target if d != -1))
    if -1 not in target:
        if (known, want) != (static, have):
            raise IRTypeError(
                f"reshape: cannot reshape {x} ({_count(static, have)} elements) to "
                f"{format_shape(target)} ({_count(known, want)} elements)"
            )
        return (TensorType(x.dtype, target),)
    left, foreign = list(have), False
    for d in want:
        if d in left:
            left.remove(d)
        else:
            foreign = True  # the target has a symbol the input has not: no -1 can fix that
    if foreign or known == 0 or static % known or len(left) > 1 or (left and static == 0):
        if foreign or len(left) > 1:
            why = "the symbols of both sides do not match (-1 may stand for one symbol at most)"
        else:
            why = f"the -1 would be {_count(static, tuple(left))} / {known}, not a whole dim"
        raise IRTypeError(
            f"reshape: cannot reshape {x} ({_count(static, have)} elements) to "
            f"{format_shape(target)}: {why}"
        )
    fill: Dim = symbolic_dim(left[0], static // known) if left else static // known
    return (TensorType(x.dtype, tuple(fill if d == -1 else d for d in target)),)


def _count(factor: int, symbols: tuple[str, ...]) -> str:
    """An element count as people read it: `N*88`, `12`."""
    return "*".join([*symbols, str(factor)] if factor != 1 or not symbols else symbols)


RESHAPE = OpDef(
    "reshape",
    1,
    _reshape_infer,
    lambda x, *, shape: x.reshape(shape),
    lambda b, attrs, xs, ys, needs, g: (G.reshape_to(b, g, b.shape(xs[0])),),
    attrs={"shape": (DIMS, REQUIRED)},
    lowering="copy",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((2, 6)),), {"shape": (3, -1)}),
    doc="reshape to `shape` (ints and symbols; at most one -1, which may stand for a symbol)",
)


def _perm_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    out = dict(attrs)
    if attrs.get("perm", None) is None:
        out["perm"] = tuple(reversed(range(ts[0].rank)))
    return out


def _transpose_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    perm = ints(attrs, "perm")
    if sorted(perm) != list(range(x.rank)):
        raise IRTypeError(f"transpose: perm must be a permutation of 0..{x.rank - 1}, got {perm}")
    return (TensorType(x.dtype, tuple(x.shape[p] for p in perm)),)


def _transpose_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    perm = ints(attrs, "perm")
    return (b.transpose(g, perm=tuple(sorted(range(len(perm)), key=perm.__getitem__))),)


TRANSPOSE = OpDef(
    "transpose",
    1,
    _transpose_infer,
    lambda x, *, perm: x.transpose(perm),
    _transpose_vjp,
    attrs={"perm": (INTS, REQUIRED)},
    lowering="transpose",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((2, 3, 4)),), {"perm": (2, 0, 1)}),
    prepare=_perm_prepare,
    doc="permute dims (perm None -> reversed, like .T)",
)


def _broadcast_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    shape = dims(attrs, "shape")
    try:
        fits = broadcast_shapes(x.shape, shape) == shape
    except IRTypeError:
        fits = False
    if not fits:
        raise IRTypeError(f"broadcast: cannot broadcast {x} to {format_shape(shape)}")
    return (TensorType(x.dtype, shape),)


BROADCAST = OpDef(
    "broadcast",
    1,
    _broadcast_infer,
    lambda x, *, shape: np.array(np.broadcast_to(x, shape)),  # fresh and writable
    lambda b, attrs, xs, ys, needs, g: (G.sum_to(b, g, b.shape(xs[0])),),
    attrs={"shape": (DIMS, REQUIRED)},
    lowering="broadcast",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((3, 1)),), {"shape": (2, 3, 4)}),
    doc="broadcast_to(shape); shape may name symbols (bound by the interpreter)",
)


def _cast(x: Array, *, dtype: Any) -> Array:
    return x.astype(dtype.np if isinstance(dtype, DType) else dtype)


def _cast_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # only asked when x is a float (a cast from int or bool starts a constant); the cotangent
    # goes back to x's dtype
    return (b.cast(g, dtype=b.dtype(xs[0])),)


def _cast_c(node: Any) -> str:
    """C conversions, except where C is undefined or differs from NumPy's x86 behaviour."""
    src, dst = node.inputs[0].type.dtype, node.results[0].type.dtype
    if src.is_float and dst is DType.I64:
        return "lucid_to_i64{s}({x})"  # NaN and out-of-range give INT64_MIN, like cvttsd2si
    if dst is DType.BOOL:
        return "({x} != 0)"
    if src is DType.F64 and dst is DType.F32:
        return "lucid_to_f32({x})"  # keeps the rounding GCC 12 may optimise away (helpers.c.j2)
    return "({T}){x}"


CAST = OpDef(
    "cast",
    1,
    lambda ts, attrs: (ts[0].with_dtype(attrs["dtype"]),),  # type: ignore[arg-type]
    _cast,
    _cast_vjp,
    attrs={"dtype": (DTYPE, REQUIRED)},
    c=_cast_c,
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((3, 4)),), {"dtype": DType.F32}),
    elementwise=True,
    doc="x.astype(dtype)",
)


def _dim_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    axis = attrs["axis"]
    assert isinstance(axis, int)
    if not 0 <= axis < x.rank:
        raise IRTypeError(f"dim: axis {axis} is out of range for {x}")
    dtype = attrs["dtype"]
    assert isinstance(dtype, DType)
    return (TensorType(dtype, ()),)


def _dim(x: Array, *, axis: int, dtype: Any) -> Array:
    return np.asarray(x.shape[axis], dtype.np if isinstance(dtype, DType) else dtype)


DIM = OpDef(
    "dim",
    1,
    _dim_infer,
    _dim,
    NOT_DIFFERENTIABLE,  # a size: no gradient flows to the tensor it is read from
    attrs={"axis": (INT, REQUIRED), "dtype": (DTYPE, REQUIRED)},
    lowering="dim",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((3, 4)),), {"axis": 1, "dtype": DType.F64}),
    doc="x.shape[axis] as a 0-d tensor of `dtype`: a symbolic size read at run time",
)


# ---------------------------------------------------------------- slice, slice_grad, concat
# A slice names only the axes it cuts (ONNX's form): every other axis is kept whole, so it may
# be the symbolic batch. The cut axes must be static; the eager side normalises the bounds
# (0 <= start, stop <= dim; step >= 1), so a node holds no negative or open-ended bound.


def _slice_spec(attrs: Attrs) -> tuple[tuple[int, ...], ...]:
    return tuple(ints(attrs, k) for k in ("axes", "starts", "stops", "steps"))


def _sliced_shape(op: str, shape: tuple[Dim, ...], attrs: Attrs) -> tuple[Dim, ...]:
    """The shape `shape` slices to, or an IRTypeError naming `op` and what is wrong."""
    axes, starts, stops, steps = _slice_spec(attrs)
    if not len(axes) == len(starts) == len(stops) == len(steps):
        raise IRTypeError(f"{op}: axes, starts, stops and steps must have one entry per axis")
    if len(set(axes)) != len(axes):
        raise IRTypeError(f"{op}: repeated axis in axes={axes}")
    out = list(shape)
    for a, lo, hi, st in zip(axes, starts, stops, steps):
        if not 0 <= a < len(shape):
            raise IRTypeError(f"{op}: axis {a} is out of range for shape {format_shape(shape)}")
        d = shape[a]
        if not isinstance(d, int):
            raise IRTypeError(
                f"{op}: cannot slice the symbolic dim {d} of {format_shape(shape)} (axis {a}): "
                "its bounds would depend on it"
            )
        if st < 1 or not (0 <= lo <= d and 0 <= hi <= d):
            raise IRTypeError(
                f"{op}: bounds {lo}:{hi}:{st} do not fit axis {a} of size {d} (normalised bounds "
                "lie in [0, size], step >= 1)"
            )
        out[a] = max(0, -(-(hi - lo) // st))
    return tuple(out)


def _index(ndim: int, attrs: Attrs) -> tuple[slice, ...]:
    index = [slice(None)] * ndim
    for a, lo, hi, st in zip(*_slice_spec(attrs)):
        index[a] = slice(lo, hi, st)
    return tuple(index)


def _slice(x: Array, **attrs: Any) -> Array:
    return np.array(x[_index(x.ndim, attrs)])  # a fresh, contiguous copy


def _slice_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    return (b.slice_grad(g, shape=tuple(b.shape(xs[0])), **attrs),)


_SLICE_ATTRS = {"axes": (INTS, REQUIRED), "starts": (INTS, REQUIRED)}
_SLICE_ATTRS.update({"stops": (INTS, REQUIRED), "steps": (INTS, REQUIRED)})

SLICE = OpDef(
    "slice",
    1,
    lambda ts, attrs: (TensorType(ts[0].dtype, _sliced_shape("slice", ts[0].shape, attrs)),),
    _slice,
    _slice_vjp,
    attrs=_SLICE_ATTRS,
    lowering="slice",
    inputs=("x",),
    sample=lambda rng: (
        (rng.standard_normal((4, 7, 3)),),
        {"axes": (1, 2), "starts": (1, 0), "stops": (7, 2), "steps": (2, 1)},
    ),
    doc="x[start:stop:step] on each listed axis (static bounds, normalised); other axes whole",
)


def _slice_grad_infer(ts: Types, attrs: Attrs) -> Types:
    (g,) = ts
    shape = dims(attrs, "shape")
    want = _sliced_shape("slice_grad", shape, attrs)
    if g.shape != want:
        raise IRTypeError(
            f"slice_grad: the cotangent {g} does not have the sliced shape {format_shape(want)}"
        )
    return (TensorType(g.dtype, shape),)


def _slice_grad(g: Array, *, shape: Any, **attrs: Any) -> Array:
    out = np.zeros(shape, dtype=g.dtype)
    out[_index(out.ndim, attrs)] = g
    return out


def _slice_grad_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    return (b.slice(g, **{k: v for k, v in attrs.items() if k != "shape"}),)


SLICE_GRAD = OpDef(
    "slice_grad",
    1,
    _slice_grad_infer,
    _slice_grad,
    _slice_grad_vjp,
    attrs={"shape": (DIMS, REQUIRED), **_SLICE_ATTRS},
    lowering="slice_grad",
    inputs=("g",),
    sample=lambda rng: (
        (rng.standard_normal((4, 3, 2)),),
        {"shape": (4, 7, 3), "axes": (1, 2), "starts": (1, 0), "stops": (7, 2), "steps": (2, 1)},
    ),
    doc="zeros of `shape` with g written where `slice` with the same bounds reads (its VJP)",
)


def _concat_infer(ts: Types, attrs: Attrs) -> Types:
    axis = attrs["axis"]
    assert isinstance(axis, int)
    first = ts[0]
    shown = ", ".join(str(t) for t in ts)
    if not 0 <= axis < first.rank:
        raise IRTypeError(f"concat: axis {axis} is out of range for {first}")
    for t in ts:
        same = t.rank == first.rank and all(
            a == b for k, (a, b) in enumerate(zip(t.shape, first.shape)) if k != axis
        )
        if t.dtype != first.dtype or not same:
            raise IRTypeError(
                f"concat: inputs must have one dtype and equal dims except on axis {axis}, got "
                f"{shown}"
            )
        if not isinstance(t.shape[axis], int):
            raise IRTypeError(
                f"concat: cannot concatenate along the symbolic dim of {t} (axis {axis}); "
                f"got {shown}"
            )
    total = sum(int(t.shape[axis]) for t in ts)
    return (TensorType(first.dtype, (*first.shape[:axis], total, *first.shape[axis + 1 :])),)


def _concat_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    axis = attrs["axis"]
    out: list[Any] = []
    start = 0
    for x, need in zip(xs, needs):
        n = b.shape(x)[axis]
        one = {"axes": (axis,), "starts": (start,), "stops": (start + n,), "steps": (1,)}
        out.append(b.slice(g, **one) if need else None)
        start += n
    return tuple(out)


CONCAT = OpDef(
    "concat",
    (1, None),
    _concat_infer,
    lambda *xs, axis: np.concatenate(xs, axis=axis),
    _concat_vjp,
    attrs={"axis": (INT, REQUIRED)},
    lowering="concat",
    sample=lambda rng: (
        (
            rng.standard_normal((2, 3, 2)),
            rng.standard_normal((2, 1, 2)),
            rng.standard_normal((2, 4, 2)),
        ),
        {"axis": 1},
    ),
    doc="torch.cat: the inputs joined along `axis` (static there; other dims equal, may be N)",
)

OPS = (RESHAPE, TRANSPOSE, BROADCAST, CAST, DIM, SLICE, SLICE_GRAD, CONCAT)
