"""pad (torch.nn.functional.pad) and its VJP pad_grad.

`pads` is PyTorch's tuple, last dim first: (before_last, after_last, before_prev, after_prev,
...), covering the last len(pads) / 2 dims. Every mode maps an output position o of an axis of
input size n, padded by `before`, to a source position i = o - before, folded back as:
  constant   i itself if 0 <= i < n, else `value` (negative pads crop, as in PyTorch)
  reflect    mirrored about the edge elements (-1 -> 1, n -> n - 2); pads must be < n
  replicate  clamped to [0, n - 1]
  circular   i mod n; pads must be <= n
The modes fold each axis on its own, so pad is a product of 1-D maps and `pad_grad` (the
adjoint) adds each output's cotangent into the input element it was read from. A padded axis
must be static; the batch symbol may only be left unpadded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import FLOAT, INTS, REQUIRED, STR, Array, OpDef, expect_float
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, Dim, TensorType, format_shape, is_symbol

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]

MODES = ("constant", "reflect", "replicate", "circular")


def per_axis(pads: Sequence[int], rank: int) -> list[tuple[int, int]]:
    """(before, after) for each of `rank` axes, from PyTorch's last-dim-first pad tuple."""
    out = [(0, 0)] * rank
    for k in range(len(pads) // 2):
        out[rank - 1 - k] = (int(pads[2 * k]), int(pads[2 * k + 1]))
    return out


def padded_shape(
    op: str, shape: tuple[Dim, ...], pads: Sequence[int], mode: str
) -> tuple[Dim, ...]:
    """The shape `shape` pads to, or a ValueError naming `op`, the shape and the problem."""
    shown = format_shape(shape)
    if mode not in MODES:
        raise ValueError(f"{op}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if len(pads) % 2 or len(pads) > 2 * len(shape):
        raise ValueError(
            f"{op}: the pad tuple {tuple(pads)} must have an even length of at most twice the "
            f"rank of the input {shown}"
        )
    out: list[Dim] = []
    for axis, ((b, a), n) in enumerate(zip(per_axis(pads, len(shape)), shape)):
        if (b, a) == (0, 0):
            out.append(n)
            continue
        if is_symbol(n):
            raise ValueError(f"{op}: cannot pad the symbolic dim {n} of {shown} (axis {axis})")
        assert isinstance(n, int)
        if mode != "constant" and min(b, a) < 0:
            raise ValueError(f"{op}: negative padding {(b, a)} is only allowed in constant mode")
        if mode == "reflect" and max(b, a) >= n:
            raise ValueError(
                f"{op}: reflect padding {(b, a)} of axis {axis} must be less than its size {n} "
                f"(input {shown})"
            )
        if mode == "circular" and max(b, a) > n:
            raise ValueError(
                f"{op}: circular padding {(b, a)} of axis {axis} must be at most its size {n} "
                f"(input {shown})"
            )
        if mode != "constant" and n == 0:
            raise ValueError(f"{op}: {mode} padding needs a non-empty axis {axis} in {shown}")
        if n + b + a < 1:
            raise ValueError(
                f"{op}: padding {(b, a)} leaves axis {axis} of {shown} with size {n + b + a}"
            )
        out.append(n + b + a)
    return tuple(out)


def source_index(o: Array, before: int, n: int, mode: str) -> tuple[Array, Array]:
    """The input index each output position `o` reads along one axis, and whether it reads
    one at all (only constant mode has positions that do not)."""
    i = o - before
    if mode == "constant":
        return np.clip(i, 0, max(n - 1, 0)), (i >= 0) & (i < n)
    if mode == "reflect":
        i = np.abs(i)
        i = np.where(i >= n, 2 * (n - 1) - i, i)
    elif mode == "replicate":
        i = np.clip(i, 0, n - 1)
    else:
        i = np.mod(i, n)
    return i, np.ones(i.shape, dtype=bool)


def _pad(x: Array, *, pads: Any, mode: str, value: float) -> Array:
    out = x
    for axis, (b, a) in enumerate(per_axis(pads, x.ndim)):
        if (b, a) == (0, 0):
            continue
        n = x.shape[axis]
        idx, valid = source_index(np.arange(n + b + a), b, n, mode)
        out = np.take(out, idx, axis=axis)
        if not valid.all():
            mask = valid.reshape([-1 if k == axis else 1 for k in range(x.ndim)])
            out = np.where(mask, out, x.dtype.type(value))
    return np.array(out, dtype=x.dtype)  # fresh, even with no padding


def _pad_grad(g: Array, *, pads: Any, mode: str) -> Array:
    # the flat input index each output element reads, then one bincount: contributions are
    # added in the output's row-major order, as the C adds them
    shape = [d - b - a for (b, a), d in zip(per_axis(pads, g.ndim), g.shape)]
    flat = np.zeros((1,) * g.ndim, dtype=np.int64)
    valid = np.ones((1,) * g.ndim, dtype=bool)
    stride = 1
    for axis in reversed(range(g.ndim)):
        b = per_axis(pads, g.ndim)[axis][0]
        idx, ok = source_index(np.arange(g.shape[axis]), b, shape[axis], mode)
        along = [-1 if k == axis else 1 for k in range(g.ndim)]
        flat = flat + idx.reshape(along) * stride
        valid = valid & ok.reshape(along)
        stride *= shape[axis]
    flat, valid = np.broadcast_to(flat, g.shape), np.broadcast_to(valid, g.shape)
    dx = np.bincount(flat[valid], weights=g[valid], minlength=stride)
    return dx.astype(g.dtype).reshape(shape)


def _pad_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    expect_float("pad", x, "x")
    try:
        shape = padded_shape("pad", x.shape, ints(attrs, "pads"), str(attrs["mode"]))
    except ValueError as e:
        raise IRTypeError(str(e)) from None
    return (TensorType(x.dtype, shape),)


def _pad_grad_infer(ts: Types, attrs: Attrs) -> Types:
    (g,) = ts
    expect_float("pad_grad", g, "g")
    pads, mode = ints(attrs, "pads"), str(attrs["mode"])
    if len(pads) % 2 or len(pads) > 2 * g.rank:
        raise IRTypeError(f"pad_grad: pad tuple {pads} does not fit {g}")
    shape = tuple(
        d if (b, a) == (0, 0) or not isinstance(d, int) else d - b - a
        for (b, a), d in zip(per_axis(pads, g.rank), g.shape)
    )
    try:
        if padded_shape("pad_grad", shape, pads, mode) != g.shape:
            raise ValueError(f"pad_grad: {g} is not a padded shape")
    except ValueError as e:
        raise IRTypeError(str(e)) from None
    return (TensorType(g.dtype, shape),)


def _pad_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    return (b.pad_grad(g, pads=attrs["pads"], mode=attrs["mode"]),)


PAD = OpDef(
    "pad",
    1,
    _pad_infer,
    _pad,
    _pad_vjp,
    attrs={"pads": (INTS, REQUIRED), "mode": (STR, "constant"), "value": (FLOAT, 0.0)},
    lowering="pad",
    inputs=("x",),
    sample=lambda rng: (
        (rng.standard_normal((2, 5, 6)),),
        {"pads": (2, 1, 1, 3), "mode": "reflect"},
    ),
    doc="F.pad: pads (last dim first) in mode constant, reflect, replicate or circular",
)

PAD_GRAD = OpDef(
    "pad_grad",
    1,
    _pad_grad_infer,
    _pad_grad,
    None,
    attrs={"pads": (INTS, REQUIRED), "mode": (STR, REQUIRED)},
    lowering="pad_grad",
    inputs=("g",),
    sample=lambda rng: (
        (rng.standard_normal((2, 9, 9)),),
        {"pads": (2, 1, 1, 3), "mode": "reflect"},
    ),
    doc="pad's VJP: each output's cotangent added into the input element it read",
)

OPS = (PAD, PAD_GRAD)
