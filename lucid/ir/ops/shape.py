"""Ops that move data without arithmetic: reshape, transpose, broadcast, cast."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import DIMS, DTYPE, INTS, REQUIRED, Array, OpDef
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, Dim, DType, TensorType, broadcast_shapes, format_shape

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _reshape_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    target = ints(attrs, "shape")
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise IRTypeError(f"reshape: shape may hold one -1 and dims >= 0, got {target}")
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    static = int(np.prod([d for d in x.shape if isinstance(d, int)], dtype=np.int64))
    symbols = [d for d in x.shape if isinstance(d, str)]
    fill: Dim
    if not symbols:
        if -1 not in target:
            if known != static:
                raise IRTypeError(f"reshape: cannot reshape {x} ({static} elements) to {target}")
            return (TensorType(x.dtype, target),)
        if known == 0 or static % known:
            raise IRTypeError(f"reshape: cannot reshape {x} ({static} elements) to {target}")
        fill = static // known
    else:
        if -1 not in target or len(symbols) != 1 or known != static:
            raise IRTypeError(
                f"reshape: a symbolic shape reshapes only with one -1 standing for exactly its "
                f"one symbolic dim (e.g. f32[N,4,5] -> (-1, 20)); cannot reshape {x} to {target}"
            )
        fill = symbols[0]
    return (TensorType(x.dtype, tuple(fill if d == -1 else d for d in target)),)


RESHAPE = OpDef(
    "reshape",
    1,
    _reshape_infer,
    lambda x, *, shape: x.reshape(shape),
    lambda b, attrs, xs, ys, needs, g: (G.reshape_to(b, g, b.shape(xs[0])),),
    attrs={"shape": (INTS, REQUIRED)},
    lowering="copy",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((2, 6)),), {"shape": (3, -1)}),
    doc="reshape to `shape` (ints; at most one -1, which may stand for a symbolic dim)",
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
    shape = attrs["shape"]
    assert isinstance(shape, tuple)
    try:
        fits = broadcast_shapes(x.shape, shape) == shape  # type: ignore[arg-type]
    except IRTypeError:
        fits = False
    if not fits:
        raise IRTypeError(f"broadcast: cannot broadcast {x} to {format_shape(shape)}")  # type: ignore[arg-type]
    return (TensorType(x.dtype, shape),)  # type: ignore[arg-type]


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

OPS = (RESHAPE, TRANSPOSE, BROADCAST, CAST)
