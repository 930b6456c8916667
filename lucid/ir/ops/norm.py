"""moments: the mean and the (biased) variance over axes, in one op, for normalization layers.

`moments(x){axes}` returns both statistics stacked on a new leading axis: result[0] is the mean
over `axes` and result[1] the mean of squared deviations from it (NumPy's `x.var(axis=axes)`),
each with the reduced axes kept as size 1, so the result is [2, *keepdims shape]. BatchNorm,
LayerNorm and GroupNorm (lucid/nn/normalization.py) take the two halves with `x[0]`, `x[1]`
(slice + reshape, K values each) and normalize with elementwise ops, which fuse into one loop.
One op for both statistics because one kernel (lucid/codegen/_lower_norm.py) computes both: two
passes over each group of elements while it sits in cache, with wide partial sums carried into
double, so it neither cancels catastrophically (as sum(x^2) - sum(x)^2 would) nor pays
Welford's division per element.
(A separate `mean` node would read the whole tensor once more, through the generic reduction.)

The kernel views x as [A, K, B], K the kept axes, so the kept axes must be one contiguous block
(or none): a row of LayerNorm (A = 1, B = the normalized size), a channel of BatchNorm (A = N,
B = H * W), a group of GroupNorm. The type rule refuses other axis sets.

VJP, with g = [g_mean, g_var]: dx = (g_mean + 2 g_var (x - mean)) / n, broadcast over `axes`.

batch_norm: BatchNorm's per-channel affine map, one composite op
-----------------------------------------------------------------
`batch_norm(x, mean, var[, weight[, bias]]){eps}` for x [N, C, *] and [C] statistics is
`x * scale + shift` with `scale = 1 / sqrt(var + eps) * weight` and `shift = bias + -(mean *
scale)` (scale and shift reshaped to [C, 1, ...]): PyTorch's CPU spelling, two operations per
element. BatchNorm records it in eval mode (the running statistics) and in training (the batch's
`moments`). It is a composite (OpDef.expand): the trace records one node where the spelled-out
map made thirteen (two thirds of MobileNetV3-Small's traced nodes), and the `expand` pass puts
the thirteen back before the other passes, so the compiled graph is the one it always was
(scale and shift in the convolution's epilogue). The kernel runs the same expansion on arrays.

VJP, with dB = sum of g and dS = sum of g * x over all axes but 1: dx = g * scale, dbias = dB,
dmean = -dB * scale, dweight = (dS - mean dB) / sqrt(var + eps), dvar = (dS - mean dB) * weight
* -r^3 / 2 with r = 1 / sqrt(var + eps).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import FLOAT, INTS, REQUIRED, Array, OpDef, expect_float, expect_same_dtype
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def kept_block(rank: int, axes: tuple[int, ...]) -> tuple[int, int] | None:
    """(first, stop) of the kept axes when they form one contiguous block ((0, 0) if none are
    kept), else None."""
    kept = [k for k in range(rank) if k not in axes]
    if not kept:
        return (0, 0)
    if kept != list(range(kept[0], kept[-1] + 1)):
        return None
    return (kept[0], kept[-1] + 1)


def _axes_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """An int -> (int,); negatives counted from the end; sorted, unique (as `sum`'s axes)."""
    out = dict(attrs)
    rank = ts[0].rank
    axes = attrs.get("axes")
    if isinstance(axes, (int, tuple, list)) and not isinstance(axes, bool):
        listed = (axes,) if isinstance(axes, int) else tuple(axes)
        if all(isinstance(a, int) and -rank <= a < rank for a in listed):
            out["axes"] = tuple(sorted({a % rank for a in listed}))  # type: ignore[operator]
    return out


def _infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    expect_float("moments", x, "x")
    axes = ints(attrs, "axes")
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.rank for a in axes):
        raise IRTypeError(
            f"moments: axes must be sorted, distinct and in [0, {x.rank}) for {x}, got {axes}"
        )
    if kept_block(x.rank, axes) is None:
        raise IRTypeError(
            f"moments: the kept axes of {x} must be one contiguous block (reducing {axes} "
            "keeps axes on both sides of a reduced one)"
        )
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    return (TensorType(x.dtype, (2, *shape)),)


def _moments(x: Array, *, axes: tuple[int, ...]) -> Array:
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axis=axes, keepdims=True)  # two-pass, biased, as ndarray.var
    return np.stack([mean, var])


def _part(b: Any, v: Any, i: int, shape: tuple[Any, ...]) -> Any:
    """v[i] of a [2, ...] value, shaped `shape`."""
    s = b.slice(v, axes=(0,), starts=(i,), stops=(i + 1,), steps=(1,))
    return G.reshape_to(b, s, shape)


def _moments_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (x,), (y,), axes = xs, ys, ints(attrs, "axes")
    shape, kept = b.shape(x), tuple(b.shape(y)[1:])
    mean, g_mean, g_var = _part(b, y, 0, kept), _part(b, g, 0, kept), _part(b, g, 1, kept)
    dx = b.add(g_mean, b.mul(b.mul(g_var, b.const(2.0, g)), b.sub(x, mean)))
    if b.shape(dx) != shape:  # only if x's reduced axes are all of size 1
        dx = b.broadcast(dx, shape=shape)
    counted = [shape[a] for a in axes]
    if axes and not (all(isinstance(d, int) for d in counted) and math.prod(counted) == 0):
        dx = b.div(dx, b.count(counted, dx))
    return (dx,)


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # BatchNorm's pattern: the channel axis kept, the axes on both sides reduced
    return (rng.standard_normal((3, 2, 5)) * 2 + 1,), {"axes": (0, 2)}


MOMENTS = OpDef(
    "moments",
    1,
    _infer,
    _moments,
    _moments_vjp,
    attrs={"axes": (INTS, REQUIRED)},
    lowering="moments",
    inputs=("x",),
    sample=_sample,
    prepare=_axes_prepare,
    doc="[mean, biased variance] over `axes` (kept as size 1; the kept axes one block)",
)


def _bn_infer(ts: Types, attrs: Attrs) -> Types:
    x, *stats = ts
    expect_float("batch_norm", x, "x")
    names = ("x", "mean", "var", "weight", "bias")[: len(ts)]
    expect_same_dtype("batch_norm", ts, names)
    if x.rank < 2:
        raise IRTypeError(f"batch_norm: x must be [N, C, *], got {x}")
    for name, t in zip(names[1:], stats):
        if t.shape != (x.shape[1],):
            raise IRTypeError(f"batch_norm: {name} must be [C] = [{x.shape[1]}] for x {x}, got {t}")
    return (x,)


def _channels(b: Any, v: Any, x: Any) -> Any:
    """A [C] value as [C, 1, ...], to broadcast along axis 1 of x [N, C, ...]."""
    shape = b.shape(x)
    return G.reshape_to(b, v, (shape[1],) + (1,) * (len(shape) - 2))


def _bn_scale(b: Any, var: Any, eps: Any, affine: Any) -> tuple[Any, Any]:
    """(1 / sqrt(var + eps), that times the weight if there is one): [C] each."""
    denominator = b.sqrt(b.add(var, b.const(eps, var)))
    r = b.div(b.const(1.0, var), denominator)
    return r, (b.mul(r, affine[0]) if affine else r)


def _bn_expand(b: Any, attrs: Attrs, xs: Any) -> tuple[Any, ...]:
    """x * scale + shift, scale = 1 / sqrt(var + eps) * weight, shift = bias + -(mean * scale)."""
    x, mean, var, *affine = xs
    _, scale = _bn_scale(b, var, attrs["eps"], affine)
    shift = b.neg(b.mul(mean, scale))
    if len(affine) == 2:
        shift = b.add(affine[1], shift)
    scale, shift = _channels(b, scale, x), _channels(b, shift, x)
    return (b.add(b.mul(x, scale), shift),)


def _bn_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    x, mean, var, *affine = xs
    r, scale = _bn_scale(b, var, attrs["eps"], affine)
    out: list[Any] = [None] * len(xs)
    if needs[0]:
        out[0] = b.mul(g, _channels(b, scale, x))
    if not any(needs[1:]):
        return tuple(out)
    (c,) = b.shape(mean)
    per_channel = b.shape(_channels(b, mean, x))
    d_shift = G.reshape_to(b, G.sum_to(b, g, per_channel), (c,))
    if len(affine) == 2 and needs[4]:
        out[4] = d_shift
    if needs[1]:
        out[1] = b.neg(b.mul(d_shift, scale))
    if needs[2] or (affine and needs[3]):
        d_scaled = G.reshape_to(b, G.sum_to(b, b.mul(g, x), per_channel), (c,))
        d_scale = b.sub(d_scaled, b.mul(mean, d_shift))
        if affine and needs[3]:
            out[3] = b.mul(d_scale, r)
        if needs[2]:
            d_r = b.mul(d_scale, affine[0]) if affine else d_scale
            cube = b.mul(b.mul(r, r), r)
            out[2] = b.mul(d_r, b.mul(cube, b.const(-0.5, var)))
    return tuple(out)


def _bn_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    c = 3
    var = rng.uniform(0.5, 2.0, c)  # away from 0: sqrt's kink
    x = rng.standard_normal((2, c, 2, 3))
    return (x, rng.standard_normal(c), var, rng.standard_normal(c), rng.standard_normal(c)), {
        "eps": 1e-3
    }


BATCH_NORM = OpDef(
    "batch_norm",
    (3, 5),
    _bn_infer,
    G.expanded_kernel(_bn_expand),
    _bn_vjp,
    attrs={"eps": (FLOAT, REQUIRED)},
    inputs=("x", "mean", "var", "weight", "bias"),
    sample=_bn_sample,
    expand=_bn_expand,
    doc="x * scale + shift per channel (axis 1): BatchNorm's map of mean, var[, weight[, bias]]",
)

OPS = (MOMENTS, BATCH_NORM)
