"""ONNX converters: shapes, slicing and the values known at import (Constant, Shape, Range, ...).

Each entry of `OPS` maps an ONNX op type to its OpSpec (lucid/onnx/_convert_base.py);
lucid/onnx/_import_ops.py joins the families into the one table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

import lucid
from lucid.ir.ops import OPS as _IR_OPS
from lucid.nn import functional as F
from lucid.onnx._convert_base import (
    DTYPES,
    FLOAT,
    FLOAT_TYPES,
    NUM,
    Converter,
    ConvertError,
    Ctx,
    NodeInfo,
    OpSpec,
    axis_of,
    like,
    mask_size,
    pieces,
    reverse,
    shape_of,
    table_op,
    where,
)
from lucid.tensor import Tensor, apply

# ---------------------------------------------------------------- shapes


def _reshape(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dims = ctx.dims(1)
    if not ctx.attr("allowzero", 0):
        dims = [shape_of(x)[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(dims)]
    elif 0 in dims and -1 in dims:
        raise ConvertError("Reshape allowzero=1 with both 0 and -1")
    return [x.reshape(*dims)]


def _flatten(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = int(ctx.attr("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ConvertError(f"Flatten axis {axis} out of range for rank {x.ndim}")
    if axis < 0:
        axis += x.ndim
    inner = math.prod(int(d) for d in x.data.shape[axis:])
    if axis == 0:
        return [x.reshape(1, -1)]
    if axis == 1:
        return [x.reshape(-1, inner)]  # keeps a dynamic batch symbolic
    outer = math.prod(int(d) for d in x.data.shape[:axis])
    return [x.reshape(outer, inner)]


def _transpose(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    perm = ctx.attr("perm")
    return [x.transpose(*perm) if perm is not None else x.transpose()]


def _axes_arg(ctx: Ctx, since: int) -> list[int] | None:
    if ctx.opset >= since:
        return ctx.ints(1) if ctx.has(1) else None
    axes = ctx.attr("axes")
    return None if axes is None else list(axes)


def _squeeze(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axes = _axes_arg(ctx, 13)
    if axes is None:
        return [x.squeeze()]
    axes = [axis_of(a, x.ndim) for a in axes]
    for a in axes:
        if int(x.data.shape[a]) != 1:
            raise ConvertError(f"Squeeze of axis {a} of size {x.data.shape[a]}")
    return [x.reshape(*[d for i, d in enumerate(shape_of(x)) if i not in axes])]


def _unsqueeze(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axes = _axes_arg(ctx, 13)
    if axes is None:
        raise ConvertError("Unsqueeze without axes")
    rank = x.ndim + len(axes)
    axes = sorted(axis_of(a, rank) for a in axes)
    shape = list(shape_of(x))
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(*shape)]


def _concat(ctx: Ctx, xs: list[Any]) -> list[Any]:
    axis = axis_of(int(ctx.attr("axis")), xs[0].ndim)
    parts = [x for x in xs if x is not None and int(x.data.shape[axis]) != 0] or [xs[0]]
    return [lucid.cat(parts, axis) if len(parts) > 1 else parts[0]]


def _split(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = axis_of(int(ctx.attr("axis", 0)), x.ndim)
    n = int(x.data.shape[axis])
    if ctx.opset >= 13 and ctx.has(1):
        sizes = ctx.ints(1)
    elif ctx.opset < 13 and "split" in ctx.attrs:
        sizes = list(ctx.attr("split"))
    else:
        k = int(ctx.attr("num_outputs", ctx.n_outputs))
        size = -(-n // k)
        sizes = [min(size, n - i * size) for i in range(k)]
    if sum(sizes) != n:
        raise ConvertError(f"Split sizes {sizes} do not add up to {n}")
    return list(x.split(sizes, axis))


def _slice(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = list(ctx.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = ctx.ints(1), ctx.ints(2)
        axes = ctx.ints(3) if ctx.has(3) else list(range(len(starts)))
        steps = ctx.ints(4) if ctx.has(4) else [1] * len(starts)
    out = x
    for a, lo, hi, st in zip(axes, starts, ends, steps):
        a = axis_of(a, x.ndim)
        n = int(x.data.shape[a])
        if st == 0:
            raise ConvertError("Slice step 0")
        if st > 0:
            lo = min(max(lo + n if lo < 0 else lo, 0), n)
            hi = min(max(hi + n if hi < 0 else hi, 0), n)
            cut = {"axes": (a,), "starts": (lo,), "stops": (max(lo, hi),), "steps": (st,)}
            out = table_op("slice", out, **cut)
        else:  # a negative step: the picked indices, one slice each, joined
            lo = min(max(lo + n if lo < 0 else lo, -1), n - 1)
            hi = min(max(hi + n if hi < 0 else hi, -1), n - 1)
            picks = list(range(lo, hi, st))
            pieces("a Slice with a negative step", len(picks))
            if not picks:
                raise ConvertError("Slice with a negative step selecting nothing")
            parts = [
                table_op("slice", out, axes=(a,), starts=(i,), stops=(i + 1,), steps=(1,))
                for i in picks
            ]
            out = lucid.cat(parts, a) if len(parts) > 1 else parts[0]
    return [out]


def _checked_positions(ids: Tensor, n: int) -> Tensor:
    """ONNX's Gather positions of runtime `ids` along a dim of size n: -n <= id < n (an
    out-of-range id stops the call, in eager and compiled code alike), negative ids counted
    from the end."""
    shifted = ids + n  # [0, 2n): a negative id lands below n, a non-negative one above
    shifted = apply(
        _IR_OPS["index_check"],
        (shifted,),
        {"size": 2 * n, "allow": (), "what": f"Gather indices (in [-{n}, {n}))"},
    )
    return lucid.where(shifted >= n, shifted - n, shifted)


def _gather_int_table(table: np.ndarray, ids: Tensor) -> Tensor:
    """Gather from a 1-D integer table known at import, with runtime indices: an index table
    (arange: lucid.onnx.export's range check of embedding ids) is the checked positions
    themselves; any other table is looked up exactly (float64 rows hold int values to 2**53)."""
    n = int(table.shape[0])
    positions = _checked_positions(ids, n)
    if np.array_equal(table, np.arange(n)):
        return positions
    rows = Tensor(table.astype(np.float64).reshape(n, 1))
    got = F.embedding(positions, rows)
    return got.reshape(*ids.shape).astype(np.int64)


def _gather(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    if not ctx.known(1) and ctx.known(0) and x.ndim == 1 and x.data.dtype.kind in "iu":
        return [_gather_int_table(ctx.const(0), xs[1])]
    if not ctx.known(1):  # runtime indices: rows of a 2-D float table (a token embedding)
        if int(ctx.attr("axis", 0)) != 0 or x.ndim != 2 or x.data.dtype.kind != "f":
            raise ConvertError("Gather with runtime indices (only rows of a 2-D float table)")
        return [F.embedding(xs[1], x)]
    idx = ctx.const(1)
    axis = axis_of(int(ctx.attr("axis", 0)), x.ndim)
    n = int(x.data.shape[axis])
    if idx.dtype.kind not in "iu":
        raise ConvertError(f"Gather indices of dtype {idx.dtype}")
    flat = [int(i) for i in idx.reshape(-1)]
    if any(not -n <= i < n for i in flat):
        raise ConvertError(f"Gather index out of range for a dim of size {n}: {flat}")
    if not flat:
        raise ConvertError("Gather with no indices")
    shape = shape_of(x)
    if len(flat) > 8 and x.data.dtype.kind == "f" and x.ndim <= 2:
        # many rows: one embedding lookup of the rows (a slice per index would be one op each)
        rows = x if axis == 0 else x.transpose(1, 0)
        table = rows if rows.ndim == 2 else rows.reshape(n, 1)
        ids = Tensor(np.asarray([i % n for i in flat], np.int64))
        got = table_op("embedding", ids, table, padding_idx=-1)  # [k, rest]
        if x.ndim == 1:
            return [got.reshape(*idx.shape)]
        if axis == 1:
            got = got.transpose(1, 0)  # [rest, k]
        return [got.reshape(*shape[:axis], *idx.shape, *shape[axis + 1 :])]
    pieces("a Gather by slices", len(flat))
    parts = [
        table_op("slice", x, axes=(axis,), starts=(i % n,), stops=(i % n + 1,), steps=(1,))
        for i in flat
    ]
    out = lucid.cat(parts, axis) if len(parts) > 1 else parts[0]
    return [out.reshape(*shape[:axis], *idx.shape, *shape[axis + 1 :])]


def _gather_check(info: NodeInfo) -> str | None:
    if info.known[1]:
        return None
    shape = info.in_shapes[0]
    if info.known[0] and info.in_types[0] == 7 and shape is not None and len(shape) == 1:
        return None  # an int64 table known at import: _gather_int_table
    if (
        info.attrs.get("axis", 0) != 0
        or info.in_types[0] not in FLOAT_TYPES
        or (shape is not None and len(shape) != 2)
    ):
        return "Gather with runtime indices other than rows of a 2-D float table"
    return None


def _expand(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dims = ctx.dims(1)
    shape = shape_of(x)
    rank = max(len(shape), len(dims))
    a = [1] * (rank - len(shape)) + list(shape)
    b = [1] * (rank - len(dims)) + list(dims)
    out = []
    for p, q in zip(a, b):
        if isinstance(q, int) and q == 1:
            out.append(p)
        elif isinstance(p, int) and p == 1:
            out.append(q)
        elif p is q or p == q:
            out.append(p)
        else:
            raise ConvertError(f"Expand of shape {list(shape)} to {dims}")
    if len(a) > len(shape):
        x = x.reshape(*a)
    return [x if tuple(out) == tuple(a) else x.broadcast_to(tuple(out))]


def _tile(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    reps = ctx.ints(1)
    if len(reps) != x.ndim:
        raise ConvertError(f"Tile repeats {reps} for rank {x.ndim}")
    for a, r in enumerate(reps):
        if r != 1:
            x = lucid.cat([x] * pieces("Tile", r), a)
    return [x]


def _pad(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = list(ctx.attr("pads"))
        value = float(ctx.attr("value", 0.0))
    else:
        pads = ctx.ints(1)
        value = ctx.scalar(2) if ctx.has(2) and ctx.known(2) else 0.0
    runtime_value = ctx.opset >= 11 and ctx.has(2) and not ctx.known(2) and mode == "constant"
    n = x.ndim
    axes = ctx.ints(3) if ctx.has(3) else list(range(n))
    axes = [axis_of(a, n) for a in axes]
    if len(pads) != 2 * len(axes):
        raise ConvertError(f"Pad has {len(pads)} pads for {len(axes)} axes")
    full = [(0, 0)] * n
    for k, a in enumerate(axes):
        full[a] = (pads[k], pads[k + len(axes)])
    first = next((i for i, p in enumerate(full) if p != (0, 0)), n)
    torch_pads: list[int] = []
    for a in range(n - 1, first - 1, -1):
        torch_pads += list(full[a])
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise ConvertError(f"Pad mode {mode!r}")
    if not torch_pads:
        return [x]
    y = F.pad(x, tuple(torch_pads), modes[mode], value if mode == "constant" else None)
    if runtime_value:  # the value comes at run time: zeros padded, then it where the pad is
        inside = np.zeros(tuple(int(d) for d in x.data.shape), bool)
        border = Tensor(~np.pad(~inside, full, constant_values=False))
        fill = xs[2].reshape(*([1] * n)).broadcast_to(shape_of(y))
        y = where(border, fill, y)
    return [y]


def _trilu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    k = int(ctx.scalar(1)) if ctx.has(1) else 0
    return [x.triu(k) if ctx.attr("upper", 1) else x.tril(k)]


def _trilu_check(info: NodeInfo) -> str | None:
    shape = info.in_shapes[0]
    if shape is not None and any(d == 0 for d in shape):
        return "Trilu of an empty tensor"
    return None


def _identity(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [xs[0]]


def _dropout(ctx: Ctx, xs: list[Any]) -> list[Any]:
    if ctx.has(2) and bool(ctx.const(2).reshape(-1)[0]):
        raise ConvertError("Dropout training_mode=True")
    return [xs[0]]


def _dropout_check(info: NodeInfo) -> str | None:
    if info.n_outputs > 1:
        return "Dropout's mask output"
    if len(info.known) > 2 and not info.known[2]:
        return "Dropout's training_mode given at run time (inference only)"
    return None


# ---------------------------------------------------------------- values known at import


def _constant(ctx: Ctx, xs: list[Any]) -> list[Any]:
    from onnx import numpy_helper

    for key in ("value_float", "value_floats"):
        if key in ctx.attrs:
            return [np.asarray(ctx.attr(key), np.float32)]
    for key in ("value_int", "value_ints"):
        if key in ctx.attrs:
            return [np.asarray(ctx.attr(key), np.int64)]
    if "value" not in ctx.attrs:
        raise ConvertError(
            f"Constant with attributes {sorted(ctx.attrs)} (lucid reads value, value_float(s), value_int(s))"
        )
    value = numpy_helper.to_array(ctx.attr("value"))
    if value.dtype not in DTYPES.values():
        raise ConvertError(f"Constant of dtype {value.dtype}")
    return [value]


def _shape_op(ctx: Ctx, xs: list[Any]) -> list[Any]:
    shape = [int(d) for d in xs[0].data.shape]
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return [np.asarray(shape[start:end] if end is not None else shape[start:], np.int64)]


def _size(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [np.asarray(xs[0].data.size, np.int64)]


def _constant_of_shape(ctx: Ctx, xs: list[Any]) -> list[Any]:
    from onnx import numpy_helper

    shape = ctx.ints(0)
    value = (
        numpy_helper.to_array(ctx.attr("value"))
        if "value" in ctx.attrs
        else np.zeros(1, np.float32)
    )
    if value.dtype not in DTYPES.values():
        raise ConvertError(f"ConstantOfShape of dtype {value.dtype}")
    return [np.full(shape, value.reshape(-1)[0], value.dtype)]


def _range(ctx: Ctx, xs: list[Any]) -> list[Any]:
    start, limit, delta = (ctx.const(i) for i in range(3))
    n = max(int(np.ceil((limit - start) / delta)), 0)
    return [(start + np.arange(n) * delta).astype(start.dtype)]


def _eye_like(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dtype = (
        DTYPES.get(int(ctx.attr("dtype", 0)), x.data.dtype)
        if "dtype" in ctx.attrs
        else x.data.dtype
    )
    rows, cols = (int(d) for d in x.data.shape)
    return [np.eye(rows, cols, int(ctx.attr("k", 0)), dtype=dtype)]


def _space_depth(to_depth: bool) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        b = int(ctx.attr("blocksize"))
        n, c, h, w = shape_of(x)
        if to_depth:
            y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
            return [y.reshape(n, c * b * b, h // b, w // b)]
        if ctx.attr("mode", "DCR") == "DCR":
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return [y.reshape(n, c // (b * b), h * b, w * b)]

    return convert


def _gather_elements(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    idx = ctx.const(1)
    axis = axis_of(int(ctx.attr("axis", 0)), x.ndim)
    n = int(x.data.shape[axis])
    if idx.ndim != x.ndim or any(
        i != axis and k > int(d) for i, (k, d) in enumerate(zip(idx.shape, x.data.shape))
    ):
        raise ConvertError(f"indices of shape {list(idx.shape)} for data {list(x.data.shape)}")
    if ((idx < -n) | (idx >= n)).any():
        raise ConvertError(f"an index is outside [-{n}, {n})")
    # data cut to the indices' other dims, its gathered axis moved last and broadcast over the
    # indices' axis; a constant one-hot mask over that last dim picks one entry (where + sum)
    cut = [(0, int(k)) for k in idx.shape]
    cut[axis] = (0, n)
    axes = tuple(i for i in range(x.ndim) if cut[i][1] != int(x.data.shape[i]))
    if axes:
        x = table_op(
            "slice",
            x,
            axes=axes,
            starts=tuple(0 for _ in axes),
            stops=tuple(cut[i][1] for i in axes),
            steps=tuple(1 for _ in axes),
        )
    perm = [i for i in range(x.ndim) if i != axis] + [axis]
    moved = x.transpose(*perm)
    rows = list(moved.data.shape[:-1])
    rows.insert(axis, 1)
    full = (*idx.shape, n)
    b = moved.reshape(*rows, n).broadcast_to(full)
    mask_size("GatherElements' indices", idx.size * n)
    hot = np.expand_dims(idx % n, -1) == np.arange(n)
    zero = like(0.0, x).broadcast_to(full) if x.data.dtype.kind == "f" else None
    if zero is None:
        raise ConvertError(f"GatherElements of dtype {x.data.dtype}")
    return [where(Tensor(hot), b, zero).sum(x.ndim)]


def _cumsum(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = axis_of(int(ctx.scalar(1)), x.ndim)
    n = pieces("CumSum", int(x.data.shape[axis]))
    if ctx.attr("reverse", 0):
        x = reverse(x, axis)
    parts = [
        table_op("slice", x, axes=(axis,), starts=(i,), stops=(i + 1,), steps=(1,))
        for i in range(n)
    ]
    sums, total = [], None
    for p in parts:  # running sums in order, as the reference adds
        total = p if total is None else total + p
        sums.append(total)
    if ctx.attr("exclusive", 0):
        sums = [parts[0] - parts[0], *sums[:-1]] if n else sums
    out = lucid.cat(sums, axis) if len(sums) > 1 else sums[0]
    return [reverse(out, axis) if ctx.attr("reverse", 0) else out]


def _source_coords(mode: str, n: int, out: int, scale: float) -> np.ndarray:
    """Resize's coordinate transform: the input coordinate of each output index."""
    y = np.arange(out, dtype=np.float64)
    if mode == "align_corners":
        return np.zeros(out) if out == 1 else y * (n - 1) / (out - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "pytorch_half_pixel":
        return np.full(out, -0.5) if scale * n == 1 else (y + 0.5) / scale - 0.5
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    raise ConvertError(f"Resize coordinate_transformation_mode={mode!r}")


def _nearest(x: np.ndarray, rounding: str, n: int) -> np.ndarray:
    """The input index Resize's nearest mode picks for each source coordinate."""
    low = np.floor(x)
    r = x - low
    if rounding == "round_prefer_floor":
        up = r > 0.5
    elif rounding == "round_prefer_ceil":
        up = r >= 0.5
    elif rounding == "floor":
        up = np.zeros_like(r, bool)
    elif rounding == "ceil":
        up = r > 0
    else:
        raise ConvertError(f"Resize nearest_mode={rounding!r}")
    return np.clip(np.where(r == 0, low, low + up), 0, n - 1).astype(np.int64)


def _resize(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    if ctx.attr("mode", "nearest") != "nearest":
        raise ConvertError(f"Resize mode={ctx.attr('mode')!r} (lucid imports nearest)")
    axes = [axis_of(a, x.ndim) for a in ctx.attr("axes", range(x.ndim))]
    shape = [int(d) for d in x.data.shape]
    if ctx.has(3):
        sizes = ctx.ints(3)
        if len(sizes) != len(axes):
            raise ConvertError(f"Resize sizes {sizes} for axes {axes}")
        outs = dict(zip(axes, sizes))
        scales = {a: outs[a] / shape[a] for a in axes}
    elif ctx.has(2):
        values = [float(v) for v in ctx.const(2).reshape(-1)]
        if len(values) != len(axes):
            raise ConvertError(f"Resize scales {values} for axes {axes}")
        scales = dict(zip(axes, values))
        outs = {a: int(scales[a] * shape[a]) for a in axes}
    else:
        raise ConvertError("Resize without scales or sizes")
    mode = ctx.attr("coordinate_transformation_mode", "half_pixel")
    rounding = ctx.attr("nearest_mode", "round_prefer_floor")
    for a in axes:
        n, out = shape[a], outs[a]
        if out == n and scales[a] == 1.0:
            continue
        picks = _nearest(_source_coords(mode, n, out, scales[a]), rounding, n)
        pieces("a nearest Resize", len(picks))
        parts = [
            table_op("slice", x, axes=(a,), starts=(int(i),), stops=(int(i) + 1,), steps=(1,))
            for i in picks
        ]
        x = lucid.cat(parts, a) if len(parts) > 1 else parts[0]
    return [x]


def _resize_check(info: NodeInfo) -> str | None:
    if info.attrs.get("mode", "nearest") != "nearest":
        return f"Resize mode {info.attrs['mode']}"
    mode = info.attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
        return f"Resize coordinate_transformation_mode {mode}"
    if info.attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        return "Resize keep_aspect_ratio_policy other than stretch"
    if info.attrs.get("antialias", 0):
        return "Resize antialias=1"
    for i in (2, 3):
        if i < len(info.known) and not info.known[i]:
            return f"Resize with {'scales' if i == 2 else 'sizes'} given at run time"
    return None


# ---------------------------------------------------------------- the table

_SPATIAL = frozenset({"auto_pad", "pads", "strides", "dilations", "kernel_shape"})
_REDUCE = frozenset({"axes", "keepdims", "noop_with_empty_axes"})


OPS: Mapping[str, OpSpec] = {
    "Identity": OpSpec(_identity),
    "Dropout": OpSpec(_dropout, frozenset({"seed", "ratio", "is_test"}), check=_dropout_check),
    "Reshape": OpSpec(_reshape, frozenset({"allowzero"}), (1,)),
    "Flatten": OpSpec(_flatten, frozenset({"axis"})),
    "Transpose": OpSpec(_transpose, frozenset({"perm"})),
    "Squeeze": OpSpec(_squeeze, frozenset({"axes"}), (1,)),
    "Unsqueeze": OpSpec(_unsqueeze, frozenset({"axes"}), (1,)),
    "Concat": OpSpec(_concat, frozenset({"axis"})),
    "Split": OpSpec(_split, frozenset({"axis", "split", "num_outputs"}), (1,), outputs=1 << 30),
    "Slice": OpSpec(_slice, frozenset({"starts", "ends", "axes"}), (1, 2, 3, 4)),
    "Gather": OpSpec(_gather, frozenset({"axis"}), check=_gather_check),
    "GatherElements": OpSpec(_gather_elements, frozenset({"axis"}), (1,), dtypes=FLOAT),
    "CumSum": OpSpec(_cumsum, frozenset({"exclusive", "reverse"}), (1,), dtypes=NUM),
    "Resize": OpSpec(
        _resize,
        frozenset(
            {
                "mode",
                "axes",
                "coordinate_transformation_mode",
                "nearest_mode",
                "keep_aspect_ratio_policy",
                "antialias",
                "cubic_coeff_a",
                "exclude_outside",
                "extrapolation_value",
            }
        ),
        check=_resize_check,
    ),
    "Expand": OpSpec(_expand, const_inputs=(1,)),
    "Tile": OpSpec(_tile, const_inputs=(1,)),
    "Pad": OpSpec(_pad, frozenset({"mode", "pads", "value"}), (1, 3), dtypes=FLOAT),
    "Trilu": OpSpec(_trilu, frozenset({"upper"}), (1,), check=_trilu_check),
    "SpaceToDepth": OpSpec(_space_depth(True), frozenset({"blocksize"})),
    "DepthToSpace": OpSpec(_space_depth(False), frozenset({"blocksize", "mode"})),
    "Constant": OpSpec(
        _constant, frozenset({"value", "value_float", "value_floats", "value_int", "value_ints"})
    ),
    "Shape": OpSpec(_shape_op, frozenset({"start", "end"})),
    "Size": OpSpec(_size),
    "ConstantOfShape": OpSpec(_constant_of_shape, frozenset({"value"}), (0,), dtypes=NUM),
    "Range": OpSpec(_range, const_inputs=(0, 1, 2), dtypes=NUM),
    "EyeLike": OpSpec(_eye_like, frozenset({"dtype", "k"})),
}
