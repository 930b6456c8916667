"""variance: the statistic normalization layers need that the table had no one op for.

`variance(x){axes, keepdims}` is the biased variance (the mean of squared deviations from the
mean, NumPy's `x.var(axis=axes)`) over `axes`. BatchNorm, LayerNorm and GroupNorm are composed
from it, `mean` and elementwise ops (lucid/nn/normalization.py): the elementwise part fuses
into one loop, and the variance gets a kernel of its own (lucid/codegen/_lower_norm.py) that
makes two passes over each group of elements while they sit in cache, summing in double, so it
neither cancels catastrophically (as sum(x^2) - sum(x)^2 would) nor pays Welford's division per
element.

The kernel views x as [A, K, B], K the kept axes, so the kept axes must be one contiguous block
(or none): a row of LayerNorm (A = 1, B = the normalized size), a channel of BatchNorm (A = N,
B = H * W), a group of GroupNorm. The type rule refuses other axis sets.

VJP: d var / dx = 2 (x - mean(x)) / n, with the cotangent broadcast back over `axes`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import BOOL, INTS, REQUIRED, Array, OpDef, expect_float
from lucid.ir.ops.reduce import _axes_prepare, ints
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


def _infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    expect_float("variance", x, "x")
    axes = ints(attrs, "axes")
    if list(axes) != sorted(set(axes)) or any(not 0 <= a < x.rank for a in axes):
        raise IRTypeError(
            f"variance: axes must be sorted, distinct and in [0, {x.rank}) for {x}, got {axes}"
        )
    if kept_block(x.rank, axes) is None:
        raise IRTypeError(
            f"variance: the kept axes of {x} must be one contiguous block (reducing {axes} "
            "keeps axes on both sides of a reduced one)"
        )
    keep = attrs["keepdims"]
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    return (TensorType(x.dtype, shape),)


def _variance(x: Array, *, axes: tuple[int, ...], keepdims: bool = False) -> Array:
    return x.var(axis=axes, keepdims=keepdims)  # two-pass, biased (ddof=0)


def _variance_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (x,), axes = xs, ints(attrs, "axes")
    shape = b.shape(x)
    counted = [shape[a] for a in axes]
    centred = b.sub(x, b.mean(x, axes=axes, keepdims=True))
    if axes and not (all(isinstance(d, int) for d in counted) and math.prod(counted) == 0):
        g = b.div(g, b.count(counted, g))
    g = G.unreduce(b, g, shape, axes, bool(attrs["keepdims"]))
    return (b.mul(b.mul(g, centred), b.const(2.0, g)),)


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # BatchNorm's pattern: the channel axis kept, the axes on both sides reduced
    return (rng.standard_normal((3, 2, 4)) * 2 + 1,), {"axes": (0, 2), "keepdims": True}


VARIANCE = OpDef(
    "variance",
    1,
    _infer,
    _variance,
    _variance_vjp,
    attrs={"axes": (INTS, REQUIRED), "keepdims": (BOOL, False)},
    lowering="variance",
    inputs=("x",),
    sample=_sample,
    prepare=_axes_prepare,
    doc="biased variance over `axes` (the kept axes one contiguous block), two passes per group",
)

OPS = (VARIANCE,)
