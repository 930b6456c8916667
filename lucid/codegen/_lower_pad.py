"""Lowerings of pad and pad_grad (lucid/ir/ops/pad.py).

pad: loops over the output rows (every axis but the last); each folds its output index back to
the input index it reads (mode by mode, as `pad.source_index`), then the last axis is written
in three runs: the left edge, the interior (a straight copy GCC vectorizes) and the right edge.
Constant mode fills the whole output with the value first and then loops over the rows that
read the input only, so no loop holds a branch. (A "row of padding" branch in the row loop,
with `continue`, was miscompiled by GCC 12.2's loop vectorizer at -O3: rows came out as zeros.)
pad_grad: zeros, then one loop nest over the cotangent adding each element into the input
element it was read from, in row-major order (the NumPy kernel's bincount order).
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, dim_c, index_c, prod_c, strides_c
from lucid.codegen._scalar_c import c_literal
from lucid.ir.ops.base import number
from lucid.ir.ops.pad import per_axis
from lucid.ir.ops.reduce import ints

INDENT = "    "


def fold(var: str, o: str, before: int, n: int, mode: str) -> list[str]:
    """C statements defining `var`, the input index that output index `o` reads along an axis
    of input size `n` padded by `before` (constant mode: possibly outside [0, n))."""
    start = o if before == 0 else f"{o} - {before}"
    if mode == "constant":
        return [f"const int64_t {var} = {start};"]
    lines = [f"int64_t {var} = {start};"]
    if mode == "reflect":  # mirrored about the edge elements; pads < n, so once is enough
        lines += [
            f"if ({var} < 0) {var} = -{var};",
            f"if ({var} >= {n}) {var} = {2 * (n - 1)} - {var};",
        ]
    elif mode == "replicate":
        lines += [f"if ({var} < 0) {var} = 0;", f"if ({var} >= {n}) {var} = {n - 1};"]
    else:  # circular; pads <= n
        lines += [f"if ({var} < 0) {var} += {n};", f"if ({var} >= {n}) {var} -= {n};"]
    return lines


@dataclass(frozen=True)
class Level:
    """One loop of a nest and the statements at its top (the folded index of its axis)."""

    var: str
    start: int
    extent: str
    indent: str
    body: tuple[str, ...]


@dataclass(frozen=True)
class Pad:
    """pad.c.j2: outer loops over output rows, then the runs of the last axis."""

    comment: str
    T: str
    fill: str  # constant mode: the element count to fill with `value` first ("" otherwise)
    levels: tuple[Level, ...]
    indent: str  # of the row statements
    value: str
    y_row: str
    x_row: str
    row: int  # output row length
    mid_lo: int
    mid_hi: int
    src: str  # the input index of interior element o
    edge: tuple[str, ...]  # statements of an edge element o (yr[o] = ...); none if filled


def lower_pad(ctx: LowerCtx) -> Kernel:
    """Outer rows folded axis by axis; the last axis as left edge, interior copy, right edge."""
    x, y = ctx.inputs[0].type, ctx.results[0].type
    pads = ints(ctx.node.attrs, "pads")
    mode = str(ctx.node.attrs["mode"])
    rank = x.rank
    pairs = per_axis(pads, rank)
    value = c_literal(number(ctx.node.attrs, "value"), x.dtype)
    comment = f"mode {mode}; (before, after) per axis: {', '.join(str(p) for p in pairs)}"
    if rank == 0:
        return ctx.kernel(f"    /* {comment} */\n    y0[0] = x0[0];\n    return 0;")
    outer_o = [f"o{k}" for k in range(rank - 1)]
    outer_s = [f"s{k}" for k in range(rank - 1)]
    constant = mode == "constant"
    levels = []
    for k in range(rank - 1):
        b, _ = pairs[k]
        n, extent = x.shape[k], dim_c(y.shape[k])
        start = 0
        if pairs[k] == (0, 0):
            body = [f"const int64_t {outer_s[k]} = {outer_o[k]};"]
        else:
            body = fold(outer_s[k], outer_o[k], b, int(n), mode)
            if constant:  # only the rows that read the input: the rest keep the fill
                start = max(b, 0)
                extent = str(min(b + int(n), int(y.shape[k])))
        levels.append(Level(outer_o[k], start, extent, INDENT * (k + 1), tuple(body)))
    y_strides, x_strides = strides_c(y.shape), strides_c(x.shape)
    y_row = index_c(list(zip(outer_o, y_strides[:-1])))
    x_row = index_c(list(zip(outer_s, x_strides[:-1])))
    b, _ = pairs[-1]
    n, row = int(x.shape[-1]), int(y.shape[-1])
    mid_lo = min(max(b, 0), row)
    mid_hi = max(min(b + n, row), mid_lo)
    edge: tuple[str, ...] = ()
    if not constant:
        edge = (*fold("s", "o", b, n, mode), "yr[o] = xr[s];")
    pad = Pad(
        comment=comment,
        T=x.dtype.c,
        fill=prod_c(y.shape) if constant else "",
        levels=tuple(levels),
        indent=INDENT * rank,
        value=value,
        y_row=y_row,
        x_row=x_row,
        row=row,
        mid_lo=mid_lo,
        mid_hi=mid_hi,
        src="o" if b == 0 else (f"o - {b}" if b > 0 else f"o + {-b}"),
        edge=edge,
    )
    return ctx.kernel(render("pad.c.j2", p=pad))


@dataclass(frozen=True)
class PadGrad:
    """pad_grad.c.j2: a loop nest over g, each level folding its index."""

    comment: str
    total: str
    levels: tuple[Level, ...]
    indent: str
    inside: str  # constant mode: the C condition that g's element was read from x ("" always)
    g_index: str
    dx_index: str


def lower_pad_grad(ctx: LowerCtx) -> Kernel:
    """dx = 0; then dx[fold(o)] += g[o] over g in row-major order."""
    g, dx = ctx.inputs[0].type, ctx.results[0].type
    pads = ints(ctx.node.attrs, "pads")
    mode = str(ctx.node.attrs["mode"])
    rank = g.rank
    pairs = per_axis(pads, rank)
    os_ = [f"o{k}" for k in range(rank)]
    ss = [f"s{k}" for k in range(rank)]
    levels = []
    for k in range(rank):
        body = (
            fold(ss[k], os_[k], pairs[k][0], int(dx.shape[k]), mode)
            if pairs[k] != (0, 0)
            else [f"const int64_t {ss[k]} = {os_[k]};"]
        )
        levels.append(Level(os_[k], 0, dim_c(g.shape[k]), INDENT * (k + 1), tuple(body)))
    inside = ""
    if mode == "constant":
        tests = [f"{s} >= 0 && {s} < {n}" for s, n, p in zip(ss, dx.shape, pairs) if p != (0, 0)]
        inside = " && ".join(tests)
    pg = PadGrad(
        comment=f"mode {mode}; (before, after) per axis: {', '.join(str(p) for p in pairs)}",
        total=prod_c(dx.shape),
        levels=tuple(levels),
        indent=INDENT * (rank + 1),
        inside=inside,
        g_index=index_c(list(zip(os_, strides_c(g.shape)))),
        dx_index=index_c(list(zip(ss, strides_c(dx.shape)))),
    )
    return ctx.kernel(render("pad_grad.c.j2", p=pg))
