"""2-D convolution (NCHW, PyTorch's cross-correlation) and its two gradient companions.

    conv2d(x [N, C, H, W], w [O, C/groups, kh, kw], b [O]?)   -> y [N, O, OH, OW]
    conv2d_grad_input(g [N, O, OH, OW], w)  {in_size=(H, W)}   -> dx [N, C, H, W]
    conv2d_grad_weight(x, g)                {kernel_size}      -> dw [O, C/groups, kh, kw]

Attributes shared by all three: `stride (sh, sw)`, `padding (top, bottom, left, right)` (zeros;
four sides, because PyTorch's "same" pads an even kernel asymmetrically), `dilation (dh, dw)`
and `groups`. OH = (H + top + bottom - dh (kh - 1) - 1) // sh + 1, likewise OW.

The NumPy kernels are im2col on a strided view (`sliding_window_view`) followed by one batched
matmul per group; the input gradient scatters the column gradient back with one strided add per
kernel tap (kh * kw slices, never a loop over pixels). The bias gradient is a plain `sum` over
(N, OH, OW). Conv1d is this op on a [N, C, 1, L] view (lucid/nn/conv.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from lucid.errors import IRTypeError
from lucid.ir.ops.base import INT, INTS, Array, OpDef, expect_float, expect_same_dtype
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, Dim, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]

CONV_ATTRS = {
    "stride": (INTS, (1, 1)),
    "padding": (INTS, (0, 0, 0, 0)),
    "dilation": (INTS, (1, 1)),
    "groups": (INT, 1),
}


def out_size(size: int, lo: int, hi: int, k: int, stride: int, dilation: int) -> int:
    """Output length along one spatial axis (may be <= 0: the kernel does not fit)."""
    return (size + lo + hi - dilation * (k - 1) - 1) // stride + 1


def _geometry(
    op: str, attrs: Attrs
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
    """(stride, padding, dilation, groups) of a node, or an IRTypeError saying what is wrong."""
    stride, padding, dilation = (
        ints(attrs, "stride"),
        ints(attrs, "padding"),
        ints(attrs, "dilation"),
    )
    groups = attrs["groups"]
    assert isinstance(groups, int)
    if len(stride) != 2 or min(stride) < 1:
        raise IRTypeError(f"{op}: stride must be two ints >= 1, got {stride}")
    if len(dilation) != 2 or min(dilation) < 1:
        raise IRTypeError(f"{op}: dilation must be two ints >= 1, got {dilation}")
    if len(padding) != 4 or min(padding) < 0:
        raise IRTypeError(
            f"{op}: padding must be four ints >= 0 (top, bottom, left, right), got {padding}"
        )
    if groups < 1:
        raise IRTypeError(f"{op}: groups must be >= 1, got {groups}")
    return stride, padding, dilation, groups


def _static_chw(op: str, t: TensorType, what: str) -> tuple[Dim, int, int, int]:
    if t.rank != 4:
        raise IRTypeError(f"{op}: expected {what} of rank 4 [N, C, H, W], got {t}")
    n, *rest = t.shape
    if not all(isinstance(d, int) for d in rest):
        raise IRTypeError(f"{op}: only the batch dim of {what} may be symbolic, got {t}")
    return n, rest[0], rest[1], rest[2]  # type: ignore[return-value]


def conv_output_type(x: TensorType, w: TensorType, attrs: Attrs, op: str = "conv2d") -> TensorType:
    """The type of conv2d(x, w) under `attrs`, or an IRTypeError naming the shapes."""
    stride, pad, dil, groups = _geometry(op, attrs)
    n, c, h, wd = _static_chw(op, x, "x")
    if w.rank != 4 or not w.is_static:
        raise IRTypeError(f"{op}: expected a static weight [O, C/groups, kh, kw], got {w}")
    o, cg, kh, kw = w.shape
    assert (
        isinstance(o, int) and isinstance(cg, int) and isinstance(kh, int) and isinstance(kw, int)
    )
    if c % groups or o % groups:
        raise IRTypeError(
            f"{op}: groups={groups} must divide the input channels {c} and the output channels {o}"
        )
    if cg * groups != c:
        raise IRTypeError(
            f"{op}: weight {w} expects {cg * groups} input channels (groups={groups}), "
            f"x {x} has {c}"
        )
    if min(kh, kw, o) < 1:
        raise IRTypeError(f"{op}: empty weight {w}")
    oh = out_size(h, pad[0], pad[1], kh, stride[0], dil[0])
    ow = out_size(wd, pad[2], pad[3], kw, stride[1], dil[1])
    if oh < 1 or ow < 1:
        raise IRTypeError(
            f"{op}: kernel {kh}x{kw} (dilation {dil[0]}x{dil[1]}) is larger than the padded "
            f"input {h + pad[0] + pad[1]}x{wd + pad[2] + pad[3]} of x {x}"
        )
    return TensorType(x.dtype, (n, o, oh, ow))


def _conv_infer(ts: Types, attrs: Attrs) -> Types:
    x, w = ts[0], ts[1]
    expect_same_dtype("conv2d", ts, ("x", "w", "b")[: len(ts)])
    expect_float("conv2d", x, "x")
    y = conv_output_type(x, w, attrs)
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise IRTypeError(
            f"conv2d: expected b of shape [{w.shape[0]}] (w's out channels), got {ts[2]}"
        )
    return (y,)


def _grad_input_infer(ts: Types, attrs: Attrs) -> Types:
    g, w = ts
    expect_same_dtype("conv2d_grad_input", ts, ("g", "w"))
    expect_float("conv2d_grad_input", g, "g")
    in_size = ints(attrs, "in_size")
    if len(in_size) != 2 or w.rank != 4 or g.rank != 4:
        raise IRTypeError(
            f"conv2d_grad_input: expected in_size (H, W), g and w of rank 4, got {g}, {w}"
        )
    groups = attrs["groups"]
    assert isinstance(groups, int) and isinstance(w.shape[1], int)
    if groups < 1:
        raise IRTypeError(f"conv2d_grad_input: groups must be >= 1, got {groups}")
    x = TensorType(g.dtype, (g.shape[0], w.shape[1] * groups, *in_size))
    if conv_output_type(x, w, attrs, "conv2d_grad_input") != g:
        raise IRTypeError(f"conv2d_grad_input: g {g} is not the output of a conv of {x} by {w}")
    return (x,)


def _grad_weight_infer(ts: Types, attrs: Attrs) -> Types:
    x, g = ts
    expect_same_dtype("conv2d_grad_weight", ts, ("x", "g"))
    expect_float("conv2d_grad_weight", x, "x")
    ks = ints(attrs, "kernel_size")
    groups = attrs["groups"]
    if len(ks) != 2 or g.rank != 4 or x.rank != 4 or not isinstance(x.shape[1], int):
        raise IRTypeError(
            f"conv2d_grad_weight: expected kernel_size (kh, kw), x and g of rank 4, got {x}, {g}"
        )
    assert isinstance(groups, int)
    if groups < 1 or x.shape[1] % groups:
        raise IRTypeError(f"conv2d_grad_weight: groups={groups} must divide the channels of {x}")
    w = TensorType(x.dtype, (g.shape[1], x.shape[1] // groups, *ks))
    if conv_output_type(x, w, attrs, "conv2d_grad_weight") != g:
        raise IRTypeError(f"conv2d_grad_weight: g {g} is not the output of a conv of {x} by {w}")
    return (w,)


# ---------------------------------------------------------------------------- NumPy kernels


def _columns(
    x: Array, kh: int, kw: int, stride: Any, padding: Any, dilation: Any, groups: int
) -> Array:
    """im2col: [N, groups, C/groups * kh * kw, OH * OW] (a copy; rows ordered (c, i, j))."""
    n, c, h, w = x.shape
    pt, pb, pl, pr = padding
    if pt or pb or pl or pr:
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    oh = out_size(h, pt, pb, kh, stride[0], dilation[0])
    ow = out_size(w, pl, pr, kw, stride[1], dilation[1])
    win = sliding_window_view(x, (eh, ew), axis=(2, 3))  # [N, C, H', W', eh, ew], no copy
    win = win[:, :, : stride[0] * (oh - 1) + 1 : stride[0], : stride[1] * (ow - 1) + 1 : stride[1]]
    win = win[..., :: dilation[0], :: dilation[1]]  # [N, C, OH, OW, kh, kw]
    cols = win.transpose(0, 1, 4, 5, 2, 3)  # [N, C, kh, kw, OH, OW]
    return cols.reshape(n, groups, (c // groups) * kh * kw, oh * ow)


def _conv2d(
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    stride: Any = (1, 1),
    padding: Any = (0, 0, 0, 0),
    dilation: Any = (1, 1),
    groups: int = 1,
) -> Array:
    o, _, kh, kw = w.shape
    n, oh = x.shape[0], out_size(x.shape[2], padding[0], padding[1], kh, stride[0], dilation[0])
    if n == 0:  # an empty batch (the tracer runs models on one): only the shape to work out
        ow = out_size(x.shape[3], padding[2], padding[3], kw, stride[1], dilation[1])
        return np.zeros((0, o, oh, ow), np.result_type(x, w))
    cols = _columns(x, kh, kw, stride, padding, dilation, groups)
    y: Array = np.matmul(w.reshape(groups, o // groups, -1), cols)  # [N, G, O/G, OH*OW]
    y = y.reshape(n, o, oh, y.shape[-1] // oh)  # not -1: an empty batch has no size to infer
    if b is not None:
        y += b.reshape(o, 1, 1)
    return y


def _conv2d_grad_input(
    g: Array,
    w: Array,
    *,
    in_size: Any,
    stride: Any = (1, 1),
    padding: Any = (0, 0, 0, 0),
    dilation: Any = (1, 1),
    groups: int = 1,
) -> Array:
    n, o, oh, ow = g.shape
    _, cg, kh, kw = w.shape
    h, wd = in_size
    pt, pb, pl, pr = padding
    wg = w.reshape(groups, o // groups, cg * kh * kw)
    cols = np.matmul(wg.transpose(0, 2, 1), g.reshape(n, groups, o // groups, oh * ow))
    cols = cols.reshape(n, cg * groups, kh, kw, oh, ow)
    dx = np.zeros((n, cg * groups, h + pt + pb, wd + pl + pr), dtype=g.dtype)
    sh, sw = stride
    for i in range(kh):  # one strided add per kernel tap
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            dx[:, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw] += cols[
                :, :, i, j
            ]
    return dx[:, :, pt : pt + h, pl : pl + wd]


def _conv2d_grad_weight(
    x: Array,
    g: Array,
    *,
    kernel_size: Any,
    stride: Any = (1, 1),
    padding: Any = (0, 0, 0, 0),
    dilation: Any = (1, 1),
    groups: int = 1,
) -> Array:
    n, o, oh, ow = g.shape
    kh, kw = kernel_size
    cols = _columns(x, kh, kw, stride, padding, dilation, groups)  # [N, G, K, P]
    k = cols.shape[2]
    # [G, O/G, N*P] @ [G, N*P, K]: one GEMM per group over every image's pixels
    gg = g.reshape(n, groups, o // groups, oh * ow).transpose(1, 2, 0, 3)
    cc = cols.transpose(1, 0, 3, 2).reshape(groups, n * oh * ow, k)
    dw: Array = np.matmul(gg.reshape(groups, o // groups, n * oh * ow), cc)
    return dw.reshape(o, k // (kh * kw), kh, kw)


def _geometry_attrs(attrs: Attrs) -> dict[str, Attr]:
    return {k: attrs[k] for k in CONV_ATTRS}


def _conv2d_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    x, w = xs[0], xs[1]
    geo = _geometry_attrs(attrs)
    xshape, wshape = b.shape(x), b.shape(w)
    gx = b.conv2d_grad_input(g, w, in_size=tuple(xshape[2:]), **geo) if needs[0] else None
    gw = b.conv2d_grad_weight(x, g, kernel_size=tuple(wshape[2:]), **geo) if needs[1] else None
    gb = b.sum(g, axes=(0, 2, 3)) if len(xs) == 3 and needs[2] else None
    return (gx, gw, gb)[: len(xs)]


def _grad_input_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, gy: Any) -> tuple[Any, ...]:
    # dx = grad_input(g, w) is bilinear and the adjoint of conv in x: <gy, dx> = <g, conv(gy, w)>
    g, w = xs
    geo = _geometry_attrs(attrs)
    gg = b.conv2d(gy, w, **geo) if needs[0] else None
    ks = tuple(b.shape(w)[2:])
    gw = b.conv2d_grad_weight(gy, g, kernel_size=ks, **geo) if needs[1] else None
    return gg, gw


def _grad_weight_vjp(
    b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, gy: Any
) -> tuple[Any, ...]:
    # dw = grad_weight(x, g) is bilinear: <gy, dw> = <g, conv(x, gy)>
    x, g = xs
    geo = _geometry_attrs(attrs)
    in_size = tuple(b.shape(x)[2:])
    gx = b.conv2d_grad_input(g, gy, in_size=in_size, **geo) if needs[0] else None
    gg = b.conv2d(x, gy, **geo) if needs[1] else None
    return gx, gg


def _from_body(ts: Types, attrs: Attrs) -> Types:
    raise IRTypeError("fused ops take their result types from their body graph")


# a sample with stride, asymmetric padding, dilation and groups all at work, odd sizes
_SAMPLE_ATTRS = {"stride": (2, 1), "padding": (1, 0, 2, 1), "dilation": (1, 2), "groups": 2}


def _conv_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, Any]]:
    x, w, b = (
        rng.standard_normal((2, 4, 5, 6)),
        rng.standard_normal((6, 2, 3, 2)),
        rng.standard_normal(6),
    )
    return (x, w, b), dict(_SAMPLE_ATTRS)


def _grad_input_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, Any]]:
    g, w = rng.standard_normal((2, 6, 2, 7)), rng.standard_normal((6, 2, 3, 2))
    return (g, w), {**_SAMPLE_ATTRS, "in_size": (5, 6)}


def _grad_weight_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, Any]]:
    x, g = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((2, 6, 2, 7))
    return (x, g), {**_SAMPLE_ATTRS, "kernel_size": (3, 2)}


CONV2D = OpDef(
    "conv2d",
    (2, 3),
    _conv_infer,
    _conv2d,
    _conv2d_vjp,
    attrs=dict(CONV_ATTRS),
    lowering="conv2d",
    inputs=("x", "w", "b"),
    sample=_conv_sample,
    doc="2-D cross-correlation of x [N, C, H, W] with w [O, C/groups, kh, kw] (+ b [O])",
)
CONV2D_GRAD_INPUT = OpDef(
    "conv2d_grad_input",
    2,
    _grad_input_infer,
    _conv2d_grad_input,
    _grad_input_vjp,
    attrs={**CONV_ATTRS, "in_size": (INTS, (1, 1))},
    lowering="conv2d_grad_input",
    inputs=("g", "w"),
    sample=_grad_input_sample,
    doc="the gradient of conv2d with respect to x (a transposed convolution of g by w)",
)
CONV2D_GRAD_WEIGHT = OpDef(
    "conv2d_grad_weight",
    2,
    _grad_weight_infer,
    _conv2d_grad_weight,
    _grad_weight_vjp,
    attrs={**CONV_ATTRS, "kernel_size": (INTS, (1, 1))},
    lowering="conv2d_grad_weight",
    inputs=("x", "g"),
    sample=_grad_weight_sample,
    doc="the gradient of conv2d with respect to w (g correlated with x's columns)",
)
FUSED_CONV = OpDef(
    "fused_conv",
    (1, None),
    _from_body,
    None,
    None,
    lowering="fused_conv",
    region=True,
    doc="a conv2d then an elementwise epilogue (bias, activation) applied inside its kernel",
)

OPS = (CONV2D, CONV2D_GRAD_INPUT, CONV2D_GRAD_WEIGHT, FUSED_CONV)
