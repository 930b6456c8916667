"""Dropout: a random mask from a counter-based hash of (seed, element index), so it is a pure op.

    %y = dropout %x, %seed {p=0.3} : f32[N,5]

`x` is f32 or f64, `seed` an i64[] tensor (read as its 64-bit two's-complement pattern); the
result has x's type. Element i (in C order) is kept iff `h(i) >= threshold(p)`, with

    key  = mix64(seed)                         (decorrelates nearby seeds)
    h(i) = mix64(key + (i + 1) * GAMMA)        (the i-th output of splitmix64 started at key)
    threshold(p) = ceil(p * 2**64)             (exact: p is a binary fraction)

so P(keep) = 1 - p to within 2**-64, and C and NumPy agree exactly: everything is integer
arithmetic modulo 2**64, and no float rounds on the way to the decision. A kept element is
`x * scale`, scale = 1 / (1 - p) computed in double and rounded to x's dtype once (the C
multiplies by the same constant); a dropped one is +0.0. p == 1 drops everything.

Because the mask is a function of (seed, index), nothing is saved for the backward: dropout is
linear in x, and its VJP is `dropout(g, seed){p}`, the same mask recomputed. Where seeds come
from (one per call, drawn from lucid.random at run time, never a graph constant): lucid/random.py
and lucid/ir/trace.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import FLOAT, REQUIRED, Array, OpDef, expect_float
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]

MASK64 = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15  # splitmix64's increment: 2**64 / the golden ratio, odd
MIX1 = 0xBF58476D1CE4E5B9  # splitmix64's finaliser multipliers (Stafford's variant 13)
MIX2 = 0x94D049BB133111EB


def mix64(z: int) -> int:
    """splitmix64's finaliser on a Python int, modulo 2**64 (the C's lucid dropout key)."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def threshold(p: float) -> int:
    """ceil(p * 2**64) for 0 <= p < 1, exactly: keep element i iff h(i) >= threshold(p)."""
    return math.ceil(Fraction(p) * 2**64)


def scale(p: float) -> float:
    """The factor of a kept element, 1 / (1 - p), in double (rounded to the dtype by users)."""
    return 1.0 / (1.0 - p)


_BLOCK = 1 << 14  # elements hashed per pass: two uint64 buffers of 128 KiB stay in cache


def keep_mask(n: int, seed: int, p: float) -> Array:
    """The keep decision of elements 0 .. n-1 for `seed` (a bool array of n elements)."""
    out = np.empty(n, dtype=bool)
    key, limit = mix64(seed), np.uint64(threshold(p))
    # uint64 arrays wrap modulo 2**64 without warnings (only NumPy *scalars* warn). Block by
    # block, in place: a whole-array pass per step would be bound by memory, 5x slower.
    steps = np.arange(1, min(n, _BLOCK) + 1, dtype=np.uint64) * np.uint64(GAMMA)  # (j+1) GAMMA
    z, t = np.empty_like(steps), np.empty_like(steps)
    for start in range(0, n, _BLOCK):
        m = min(_BLOCK, n - start)
        h, tmp = z[:m], t[:m]
        np.add(steps[:m], np.uint64((key + start * GAMMA) & MASK64), out=h)  # key + (i+1) GAMMA
        for shift, factor in ((30, MIX1), (27, MIX2)):
            np.right_shift(h, np.uint64(shift), out=tmp)
            h ^= tmp
            h *= np.uint64(factor)
        np.right_shift(h, np.uint64(31), out=tmp)
        h ^= tmp
        np.greater_equal(h, limit, out=out[start : start + m])
    return out


def _check_p(p: Attr) -> float:
    if not isinstance(p, float) or not 0.0 <= p <= 1.0:
        raise IRTypeError(f"dropout: p must lie in [0, 1], got {p!r}")
    return p


def _infer(ts: Types, attrs: Attrs) -> Types:
    _check_p(attrs["p"])
    x, seed = ts
    expect_float("dropout", x, "x")
    if seed != TensorType(DType.I64, ()):
        raise IRTypeError(f"dropout: expected seed i64[] (one seed per call), got {seed}")
    return (x,)


def _dropout(x: Array, seed: Array, *, p: float) -> Array:
    """keep(i) ? x[i] * scale : 0 over x in C order, keep from (seed, i) (the module doc)."""
    if p == 1.0:
        return np.zeros_like(x)
    keep = keep_mask(x.size, int(seed), p).reshape(np.shape(x))
    out: Array = np.where(keep, x * x.dtype.type(scale(p)), x.dtype.type(0))
    return out


def _vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # linear in x: the cotangent goes through the same mask, recomputed from the same seed
    return b.dropout(g, xs[1], p=attrs["p"]), None


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # a negative seed: the C reads it as the same 64-bit pattern NumPy does
    return (rng.standard_normal((5, 7)), np.array(-1234567890123, dtype=np.int64)), {"p": 0.3}


DROPOUT = OpDef(
    "dropout",
    2,
    _infer,
    _dropout,
    _vjp,
    attrs={"p": (FLOAT, REQUIRED)},
    lowering="dropout",
    inputs=("x", "seed"),
    sample=_sample,
    doc="x, seed i64[] -> x * 1/(1-p) where hash(seed, index) keeps it, else 0",
)

OPS = (DROPOUT,)
