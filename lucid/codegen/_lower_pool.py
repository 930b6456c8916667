"""Lowerings of the pooling ops (lucid/ir/ops/pool.py): max, average and adaptive average
pooling of NCHW tensors and their gradients.

Every kernel views its tensors as [planes, H, W] with planes = N * C (N may be the batch
symbol; H, W are static), so the geometry is a handful of constants and small static tables
computed here: the outputs whose window column j lies inside a row (`ow_lo[j]`, `ow_hi[j]`),
PyTorch's avg divisors, the adaptive bins. The templates lay those out; the width loop is
innermost and free of bounds tests so GCC can vectorize it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, prod_c
from lucid.codegen._lower_loops import split_rows
from lucid.codegen._scalar_c import SUFFIX
from lucid.ir.ops.pool import adaptive_bins, avg_divisors
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, Dim


@dataclass(frozen=True)
class Pool:
    """One pooling kernel's geometry (numbers as ints, tables as C initialisers)."""

    T: str
    s: str
    planes: str
    h: int
    w: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    ow_lo: str
    ow_hi: str
    div_h: str = ""
    div_w: str = ""
    why: str = ""


def _pair(
    attrs: Mapping[str, Attr], key: str, default: tuple[int, int] = (1, 1)
) -> tuple[int, int]:
    if key not in attrs:
        return default
    v = ints(attrs, key)
    return v[0], v[1]


def _table(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def _columns(w: int, ow: int, kw: int, sw: int, pw: int, dw: int) -> tuple[list[int], list[int]]:
    """For each kernel column j, the range [lo, hi) of outputs whose input column
    ow * sw - pw + j * dw lies in [0, w) (empty ranges as lo == hi)."""
    lo, hi = [], []
    for j in range(kw):
        inside = [o for o in range(ow) if 0 <= o * sw - pw + j * dw < w]
        first = inside[0] if inside else 0
        lo.append(first)
        hi.append(inside[-1] + 1 if inside else first)
        # the inside outputs are contiguous: the column grows with o
        assert len(inside) == hi[-1] - lo[-1]
    return lo, hi


def _pool(ctx: LowerCtx, x_shape: tuple[Dim, ...], y_shape: tuple[Dim, ...]) -> Pool:
    attrs: dict[str, Attr] = dict(ctx.node.attrs)
    (kh, kw), (sh, sw) = _pair(attrs, "kernel_size"), _pair(attrs, "stride")
    (ph, pw), (dh, dw) = _pair(attrs, "padding", (0, 0)), _pair(attrs, "dilation")
    h, w = int(x_shape[2]), int(x_shape[3])
    oh, ow = int(y_shape[2]), int(y_shape[3])
    lo, hi = _columns(w, ow, kw, sw, pw, dw)
    dtype = ctx.results[0].type.dtype
    pool = Pool(
        T=dtype.c,
        s=SUFFIX[dtype],
        planes=prod_c(x_shape[:2]),
        h=h,
        w=w,
        oh=oh,
        ow=ow,
        kh=kh,
        kw=kw,
        sh=sh,
        sw=sw,
        ph=ph,
        pw=pw,
        dh=dh,
        dw=dw,
        ow_lo=_table(lo),
        ow_hi=_table(hi),
    )
    if "count_include_pad" not in attrs:
        return pool
    inc = bool(attrs["count_include_pad"])
    return Pool(
        **{
            **pool.__dict__,
            "div_h": _table(avg_divisors(h, kh, sh, ph, oh, inc)),
            "div_w": _table(avg_divisors(w, kw, sw, pw, ow, inc)),
            "why": "windows clipped to the padded input"
            if inc
            else "elements inside the input only",
        }
    )


def lower_max_pool2d(ctx: LowerCtx) -> Kernel:
    """Rows of outputs start at -inf and take the NaN-propagating maximum of each window tap."""
    q = _pool(ctx, ctx.inputs[0].type.shape, ctx.results[0].type.shape)
    return ctx.kernel(render("max_pool2d.c.j2", q=q))


def lower_max_pool2d_grad(ctx: LowerCtx) -> Kernel:
    """Zeros, then each g added at its window's argmax (recomputed from x)."""
    q = _pool(ctx, ctx.inputs[0].type.shape, ctx.inputs[1].type.shape)
    return ctx.kernel(render("max_pool2d_grad.c.j2", q=q))


def lower_avg_pool2d(ctx: LowerCtx) -> Kernel:
    """Window sums in (row, column) tap order, then PyTorch's divisor."""
    q = _pool(ctx, ctx.inputs[0].type.shape, ctx.results[0].type.shape)
    return ctx.kernel(render("avg_pool2d.c.j2", q=q))


def lower_avg_pool2d_grad(ctx: LowerCtx) -> Kernel:
    """Zeros, then g / divisor added over each window, taps outermost."""
    q = _pool(ctx, ctx.results[0].type.shape, ctx.inputs[0].type.shape)
    return ctx.kernel(render("avg_pool2d_grad.c.j2", q=q))


@dataclass(frozen=True)
class Adaptive:
    """adaptive_avg_pool2d's bins as C tables; `is_global` for the 1 x 1 fast path."""

    T: str
    planes: str
    h: int
    w: int
    oh: int
    ow: int
    hw: int
    is_global: bool
    h_lo: str
    h_hi: str
    w_lo: str
    w_hi: str


def _adaptive(ctx: LowerCtx, x_shape: tuple[Dim, ...], y_shape: tuple[Dim, ...]) -> Adaptive:
    h, w = int(x_shape[2]), int(x_shape[3])
    oh, ow = int(y_shape[2]), int(y_shape[3])
    h_lo, h_hi = adaptive_bins(h, oh)
    w_lo, w_hi = adaptive_bins(w, ow)
    return Adaptive(
        T=ctx.results[0].type.dtype.c,
        planes=prod_c(x_shape[:2]),
        h=h,
        w=w,
        oh=oh,
        ow=ow,
        hw=h * w,
        is_global=(oh, ow) == (1, 1),
        h_lo=_table(h_lo),
        h_hi=_table(h_hi),
        w_lo=_table(w_lo),
        w_hi=_table(w_hi),
    )


def lower_adaptive_avg_pool2d(ctx: LowerCtx) -> Kernel:
    """Bin means; output size 1 x 1 is a contiguous mean per plane (the global fast path, its
    planes split across threads when there are enough: each plane's mean is computed as on
    one thread)."""
    a = _adaptive(ctx, ctx.inputs[0].type.shape, ctx.results[0].type.shape)
    if a.is_global:
        body = render("adaptive_avg_pool2d.c.j2", a=a)
        return split_rows(ctx, a.planes, body, a.hw, f"planes of {a.hw} elements")
    return ctx.kernel(render("adaptive_avg_pool2d.c.j2", a=a))


def lower_adaptive_avg_pool2d_grad(ctx: LowerCtx) -> Kernel:
    """Zeros, then g / (bin size) added over each bin."""
    a = _adaptive(ctx, ctx.results[0].type.shape, ctx.inputs[0].type.shape)
    return ctx.kernel(render("adaptive_avg_pool2d_grad.c.j2", a=a))
