"""2-D pooling over NCHW tensors: max_pool2d, avg_pool2d, adaptive_avg_pool2d (+ gradients).

Geometry is PyTorch's, per spatial axis with input size n, kernel k, stride s, padding p and
dilation d (avg: d = 1):
  out = floor((n + 2p - d(k - 1) - 1 + (ceil_mode ? s - 1 : 0)) / s) + 1,
  minus one if ceil_mode and the last window would start at or past n + p;
output position o reads input rows o*s - p + i*d, i < k, those inside [0, n). PyTorch refuses
p > k / 2 and an output size below 1, and so do the type rules (`pool_geometry`). The spatial
dims H, W must be static; N and C may be the batch symbol.

- max_pool2d: the NaN-propagating maximum of each window's elements inside the input (padding
  never wins). Its VJP `max_pool2d_grad(x, g)` recomputes each window's argmax from x and adds
  g there: the first maximum in (row, column) order wins a tie, a NaN beats every number and
  the first NaN wins (PyTorch takes the last NaN), so no index tensor is saved.
- avg_pool2d: the window's sum divided by PyTorch's divisor: with count_include_pad the window
  clipped to the padded input (ceil_mode windows may reach past it), else the count of its
  elements inside the input. Both are per-axis products, so the divisors are two static tables.
  VJP `avg_pool2d_grad(g){input_size}` spreads g / divisor over each window.
- adaptive_avg_pool2d: output cell (i, j) averages rows floor(i H / OH) .. ceil((i+1) H / OH)
  and the same for columns (bins may overlap). VJP `adaptive_avg_pool2d_grad(g){input_size}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import (
    BOOL,
    INTS,
    REQUIRED,
    Array,
    InferFn,
    OpDef,
    expect_float,
    expect_same_dtype,
)
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, TensorType, is_symbol

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


# ---------------------------------------------------------------- geometry (shared with nn)


def pool_out_size(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size along one axis (may be < 1: the caller refuses that)."""
    span = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = span // s + 1  # floor division, as PyTorch's div_rtn
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def pool_geometry(
    op: str,
    shape: tuple[Any, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    ceil_mode: bool,
) -> tuple[int, ...]:
    """The spatial output size of a pooling of `shape` (NCHW or NCL), or a ValueError naming
    `op`, the input shape and what PyTorch would refuse."""
    nd = len(kernel)
    shown = "[" + ", ".join(str(d) for d in shape) + "]"
    if len(shape) != nd + 2:
        raise ValueError(f"{op}: expected a {nd + 2}-D input (N, C, spatial...), got {shown}")
    for name, v, least in (("kernel_size", kernel, 1), ("stride", stride, 1)):
        if len(v) != nd or min(v) < least:
            raise ValueError(f"{op}: {name} must be {nd} positive ints, got {v}")
    if len(dilation) != nd or min(dilation) < 1:
        raise ValueError(f"{op}: dilation must be {nd} positive ints, got {dilation}")
    if len(padding) != nd or min(padding) < 0:
        raise ValueError(f"{op}: padding must be {nd} non-negative ints, got {padding}")
    for k, p in zip(kernel, padding):
        if p > k // 2:
            raise ValueError(
                f"{op}: padding {padding} must be at most half the kernel size {kernel} "
                "(PyTorch's rule: each window must hold an element of the input)"
            )
    sizes = shape[2:]
    for n in sizes:
        if is_symbol(n):
            raise ValueError(f"{op}: the spatial dims of {shown} must be static, not {n}")
    out = tuple(
        pool_out_size(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(sizes, kernel, stride, padding, dilation)
    )
    if min(out) < 1:
        raise ValueError(
            f"{op}: input {shown} is too small for kernel_size={kernel}, stride={stride}, "
            f"padding={padding}, dilation={dilation}: the output would be "
            f"{'x'.join(str(o) for o in out)}"
        )
    return out


def adaptive_bins(n: int, out: int) -> tuple[list[int], list[int]]:
    """Start and end (exclusive) of each of `out` adaptive bins over `n` elements."""
    return [i * n // out for i in range(out)], [-(-(i + 1) * n // out) for i in range(out)]


def avg_divisors(n: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> list[int]:
    """PyTorch's avg-pool divisor factor along one axis, one per output position."""
    result = []
    for o in range(out):
        start = o * s - p
        end = min(start + k, n + p)
        if count_include_pad:
            result.append(end - start)
        else:
            result.append(min(end, n) - max(start, 0))
    return result


# ---------------------------------------------------------------- attrs and type rules


def _pool_attrs(attrs: Attrs, *, dilation: bool) -> tuple[Any, ...]:
    k, s, p = ints(attrs, "kernel_size"), ints(attrs, "stride"), ints(attrs, "padding")
    d = ints(attrs, "dilation") if dilation else (1,) * len(k)
    return k, s, p, d, bool(attrs["ceil_mode"])


def _geometry(op: str, shape: tuple[Any, ...], attrs: Attrs, dilation: bool) -> tuple[int, int]:
    try:
        oh, ow = pool_geometry(op, shape, *_pool_attrs(attrs, dilation=dilation))
    except ValueError as e:
        raise IRTypeError(str(e)) from None
    return oh, ow


def _pooled_infer(op: str, dilation: bool) -> InferFn:
    def infer(ts: Types, attrs: Attrs) -> Types:
        x = ts[0]
        expect_float(op, x, "x")
        oh, ow = _geometry(op, x.shape, attrs, dilation)
        if op == "max_pool2d_grad":  # (x, g): g has the pooled shape, x's is the result's
            expect_same_dtype(op, ts, ("x", "g"))
            want = (*x.shape[:2], oh, ow)
            if ts[1].shape != want:
                raise IRTypeError(f"{op}: g must have the pooled shape {want} of {x}, got {ts[1]}")
            return (x,)
        return (TensorType(x.dtype, (*x.shape[:2], oh, ow)),)

    return infer


def _grad_infer(op: str, dilation: bool) -> InferFn:
    """g [N, C, OH, OW] -> [N, C, H, W] with (H, W) the `input_size` attr."""

    def infer(ts: Types, attrs: Attrs) -> Types:
        (g,) = ts
        expect_float(op, g, "g")
        h, w = ints(attrs, "input_size")
        x_shape = (*g.shape[:2], h, w)
        want: tuple[Any, ...]
        if "kernel_size" in attrs:
            want = (*g.shape[:2], *_geometry(op, x_shape, attrs, dilation))
        else:
            want = (*g.shape[:2], *ints(attrs, "output_size"))
        if g.rank != 4 or g.shape != want:
            raise IRTypeError(f"{op}: g must have shape {want} for input_size {(h, w)}, got {g}")
        return (TensorType(g.dtype, x_shape),)

    return infer


# ---------------------------------------------------------------- max_pool2d


def _pad_after(n: int, out: int, span: int, s: int, p: int) -> int:
    """Padding after the input so that every window of `out` windows of extent `span` fits."""
    return max(0, (out - 1) * s + span - p - n)


def _max_pool2d(x: Array, **attrs: Any) -> Array:
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), _ = _pool_attrs(attrs, dilation=True)
    h, w = x.shape[2:]
    oh, ow = pool_geometry("max_pool2d", x.shape, *_pool_attrs(attrs, dilation=True))
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # window extents
    pads = (
        (0, 0),
        (0, 0),
        (ph, _pad_after(h, oh, eh, sh, ph)),
        (pw, _pad_after(w, ow, ew, sw, pw)),
    )
    xp = np.pad(x, pads, constant_values=-np.inf)  # padding never wins the maximum
    # one strided view per window tap, each over every output at once (far faster than a
    # max over the window axes of a sliding_window_view); np.maximum propagates NaN
    out = np.full((*x.shape[:2], oh, ow), -np.inf, dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            r, c = i * dh, j * dw
            np.maximum(
                out,
                xp[:, :, r : r + (oh - 1) * sh + 1 : sh, c : c + (ow - 1) * sw + 1 : sw],
                out=out,
            )
    return out


def max_pool2d_argmax(x: Array, attrs: Attrs) -> Array:
    """Each window's winner as a flat index into its H*W plane: the first valid element seeds
    it, then a greater element or the first NaN takes over (the C does the same scan)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), _ = _pool_attrs(attrs, dilation=True)
    h, w = x.shape[2:]
    oh, ow = pool_geometry("max_pool2d", x.shape, *_pool_attrs(attrs, dilation=True))
    best = np.zeros((*x.shape[:2], oh, ow), dtype=x.dtype)
    at = np.full(best.shape, -1, dtype=np.int64)
    for i in range(kh):
        ih = np.arange(oh) * sh - ph + i * dh
        for j in range(kw):
            iw = np.arange(ow) * sw - pw + j * dw
            valid = ((ih >= 0) & (ih < h))[:, None] & ((iw >= 0) & (iw < w))[None, :]
            v = x[:, :, np.clip(ih, 0, h - 1)[:, None], np.clip(iw, 0, w - 1)[None, :]]
            take = valid & ((at < 0) | (v > best) | (np.isnan(v) & ~np.isnan(best)))
            best = np.where(take, v, best)
            at = np.where(take, ih[:, None] * w + iw[None, :], at)
    return at


def _max_pool2d_grad(x: Array, g: Array, **attrs: Any) -> Array:
    n, c, h, w = x.shape
    at = max_pool2d_argmax(x, attrs).reshape(n * c, -1)
    flat = (at + (np.arange(n * c, dtype=np.int64) * (h * w))[:, None]).ravel()
    dx = np.bincount(flat, weights=g.ravel(), minlength=x.size)
    return dx.astype(x.dtype).reshape(x.shape)


def _max_pool2d_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    return (b.max_pool2d_grad(xs[0], g, **attrs),)


_MAX_ATTRS = {
    "kernel_size": (INTS, REQUIRED),
    "stride": (INTS, REQUIRED),
    "padding": (INTS, (0, 0)),
    "dilation": (INTS, (1, 1)),
    "ceil_mode": (BOOL, False),
}
# odd sizes, padding, dilation and ceil_mode at once; distinct values (no ties)
_MAX_SAMPLE_ATTRS: dict[str, Any] = {"kernel_size": (3, 2), "stride": (2, 1), "padding": (1, 1)}
_MAX_SAMPLE_ATTRS.update({"dilation": (1, 2), "ceil_mode": True})


def _max_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, Any]]:
    x = rng.permutation(2 * 3 * 6 * 7).reshape(2, 3, 6, 7) / 10.0 - 12.0
    return (x,), dict(_MAX_SAMPLE_ATTRS)


def _max_grad_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, Any]]:
    (x,), attrs = _max_sample(rng)
    return (x, rng.standard_normal((2, 3, 4, 7))), attrs


MAX_POOL2D = OpDef(
    "max_pool2d",
    1,
    _pooled_infer("max_pool2d", True),
    _max_pool2d,
    _max_pool2d_vjp,
    attrs=_MAX_ATTRS,
    lowering="max_pool2d",
    inputs=("x",),
    sample=_max_sample,
    doc="NCHW max pooling (PyTorch's geometry; NaN propagates; padding never wins)",
)

MAX_POOL2D_GRAD = OpDef(
    "max_pool2d_grad",
    2,
    _pooled_infer("max_pool2d_grad", True),
    _max_pool2d_grad,
    None,
    attrs=_MAX_ATTRS,
    lowering="max_pool2d_grad",
    inputs=("x", "g"),
    sample=_max_grad_sample,
    doc="max_pool2d's VJP: g added at each window's argmax (first max; recomputed from x)",
)


# ---------------------------------------------------------------- avg_pool2d


def _avg_divisor(x_hw: tuple[int, int], out: tuple[int, int], attrs: Attrs, dtype: Any) -> Array:
    (kh, kw), (sh, sw), (ph, pw), _, _ = _pool_attrs(attrs, dilation=False)
    inc = bool(attrs["count_include_pad"])
    dh = avg_divisors(x_hw[0], kh, sh, ph, out[0], inc)
    dw = avg_divisors(x_hw[1], kw, sw, pw, out[1], inc)
    return np.outer(dh, dw).astype(dtype)


def _avg_pool2d(x: Array, **attrs: Any) -> Array:
    (kh, kw), (sh, sw), (ph, pw), _, _ = _pool_attrs(attrs, dilation=False)
    h, w = x.shape[2:]
    oh, ow = pool_geometry("avg_pool2d", x.shape, *_pool_attrs(attrs, dilation=False))
    pads = (
        (0, 0),
        (0, 0),
        (ph, _pad_after(h, oh, kh, sh, ph)),
        (pw, _pad_after(w, ow, kw, sw, pw)),
    )
    xp = np.pad(x, pads)
    # window offsets in (row, column) order, each over every output at once: the C's order
    total = np.zeros((*x.shape[:2], oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            total += xp[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw]
    return np.asarray(total / _avg_divisor((h, w), (oh, ow), attrs, x.dtype))


def _avg_pool2d_grad(g: Array, *, input_size: Any, **attrs: Any) -> Array:
    (kh, kw), (sh, sw), (ph, pw), _, _ = _pool_attrs(attrs, dilation=False)
    h, w = input_size
    oh, ow = g.shape[2:]
    gd = g / _avg_divisor((h, w), (oh, ow), attrs, g.dtype)
    dxp = np.zeros(
        (
            *g.shape[:2],
            ph + h + _pad_after(h, oh, kh, sh, ph),
            pw + w + _pad_after(w, ow, kw, sw, pw),
        ),
        dtype=g.dtype,
    )
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + (oh - 1) * sh + 1 : sh, j : j + (ow - 1) * sw + 1 : sw] += gd
    return np.ascontiguousarray(dxp[:, :, ph : ph + h, pw : pw + w])


def _avg_pool2d_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    h, w = b.shape(xs[0])[2:]
    return (b.avg_pool2d_grad(g, input_size=(int(h), int(w)), **attrs),)


_AVG_ATTRS = {
    "kernel_size": (INTS, REQUIRED),
    "stride": (INTS, REQUIRED),
    "padding": (INTS, (0, 0)),
    "ceil_mode": (BOOL, False),
    "count_include_pad": (BOOL, True),
}
_AVG_SAMPLE_ATTRS: dict[str, Any] = {"kernel_size": (3, 2), "stride": (2, 2), "padding": (1, 1)}
_AVG_SAMPLE_ATTRS.update({"ceil_mode": True, "count_include_pad": False})

AVG_POOL2D = OpDef(
    "avg_pool2d",
    1,
    _pooled_infer("avg_pool2d", False),
    _avg_pool2d,
    _avg_pool2d_vjp,
    attrs=_AVG_ATTRS,
    lowering="avg_pool2d",
    inputs=("x",),
    sample=lambda rng: ((rng.standard_normal((2, 3, 6, 7)),), dict(_AVG_SAMPLE_ATTRS)),
    doc="NCHW average pooling (PyTorch's geometry and divisors)",
)

AVG_POOL2D_GRAD = OpDef(
    "avg_pool2d_grad",
    1,
    _grad_infer("avg_pool2d_grad", False),
    _avg_pool2d_grad,
    None,
    attrs={**_AVG_ATTRS, "input_size": (INTS, REQUIRED)},
    lowering="avg_pool2d_grad",
    inputs=("g",),
    sample=lambda rng: (
        (rng.standard_normal((2, 3, 4, 4)),),
        {**_AVG_SAMPLE_ATTRS, "input_size": (6, 7)},
    ),
    doc="avg_pool2d's VJP: g / divisor spread over each window's input elements",
)


# ---------------------------------------------------------------- adaptive_avg_pool2d


def _counts(h: int, w: int, oh: int, ow: int, dtype: Any) -> Array:
    hs, he = adaptive_bins(h, oh)
    ws, we = adaptive_bins(w, ow)
    return np.outer(np.subtract(he, hs), np.subtract(we, ws)).astype(dtype)


def _adaptive_avg_pool2d(x: Array, *, output_size: Any) -> Array:
    oh, ow = output_size
    h, w = x.shape[2:]
    if (oh, ow) == (1, 1):  # global average pooling (MobileNetV3's head): sum in double
        total = x.sum(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype)
        return np.asarray(total / x.dtype.type(h * w))
    # each bin: its columns summed down the bin's rows, then across (the C's order)
    hs, he = adaptive_bins(h, oh)
    ws, we = adaptive_bins(w, ow)
    rows = np.stack([_running_sum(x, 2, a, b) for a, b in zip(hs, he)], axis=2)
    cells = np.stack([_running_sum(rows, 3, a, b) for a, b in zip(ws, we)], axis=3)
    return np.asarray(cells / _counts(h, w, oh, ow, x.dtype))


def _running_sum(x: Array, axis: int, start: int, end: int) -> Array:
    """x's slices start..end along `axis` added one after another (a fixed order)."""
    index = [slice(None)] * x.ndim
    total = np.zeros(x.shape[:axis] + x.shape[axis + 1 :], dtype=x.dtype)
    for k in range(start, end):
        index[axis] = k  # type: ignore[call-overload]
        total = total + x[tuple(index)]
    return total


def _adaptive_avg_pool2d_grad(g: Array, *, input_size: Any, output_size: Any) -> Array:
    h, w = input_size
    oh, ow = output_size
    gd = g / _counts(h, w, oh, ow, g.dtype)
    if (oh, ow) == (1, 1):
        return np.array(np.broadcast_to(gd, (*g.shape[:2], h, w)))
    hs, he = adaptive_bins(h, oh)
    ws, we = adaptive_bins(w, ow)
    dx = np.zeros((*g.shape[:2], h, w), dtype=g.dtype)
    for i in range(oh):  # bins in (row, column) order, as the C adds them
        for j in range(ow):
            dx[:, :, hs[i] : he[i], ws[j] : we[j]] += gd[:, :, i : i + 1, j : j + 1]
    return dx


def _adaptive_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    expect_float("adaptive_avg_pool2d", x, "x")
    out = ints(attrs, "output_size")
    if x.rank != 4 or not all(isinstance(d, int) for d in x.shape[2:]):
        raise IRTypeError(f"adaptive_avg_pool2d: expected [N, C, H, W] with static H, W, got {x}")
    if len(out) != 2 or min(out) < 1:
        raise IRTypeError(f"adaptive_avg_pool2d: output_size must be 2 positive ints, got {out}")
    return (TensorType(x.dtype, (*x.shape[:2], *out)),)


def _adaptive_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    h, w = b.shape(xs[0])[2:]
    return (b.adaptive_avg_pool2d_grad(g, input_size=(int(h), int(w)), **attrs),)


ADAPTIVE_AVG_POOL2D = OpDef(
    "adaptive_avg_pool2d",
    1,
    _adaptive_infer,
    _adaptive_avg_pool2d,
    _adaptive_vjp,
    attrs={"output_size": (INTS, REQUIRED)},
    lowering="adaptive_avg_pool2d",
    inputs=("x",),
    # 7 rows into 3 bins overlap ([0,3), [2,5), [4,7)); 5 columns into 2 bins too
    sample=lambda rng: ((rng.standard_normal((2, 3, 7, 5)),), {"output_size": (3, 2)}),
    doc="NCHW adaptive average pooling to output_size (bins floor(iH/OH)..ceil((i+1)H/OH))",
)

ADAPTIVE_AVG_POOL2D_GRAD = OpDef(
    "adaptive_avg_pool2d_grad",
    1,
    _grad_infer("adaptive_avg_pool2d_grad", False),
    _adaptive_avg_pool2d_grad,
    None,
    attrs={"output_size": (INTS, REQUIRED), "input_size": (INTS, REQUIRED)},
    lowering="adaptive_avg_pool2d_grad",
    inputs=("g",),
    sample=lambda rng: (
        (rng.standard_normal((2, 3, 3, 2)),),
        {"output_size": (3, 2), "input_size": (7, 5)},
    ),
    doc="adaptive_avg_pool2d's VJP: g / bin size added over each bin",
)

OPS = (
    MAX_POOL2D,
    MAX_POOL2D_GRAD,
    AVG_POOL2D,
    AVG_POOL2D_GRAD,
    ADAPTIVE_AVG_POOL2D,
    ADAPTIVE_AVG_POOL2D_GRAD,
)
