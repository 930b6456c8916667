"""softmax and log_softmax along one axis `dim`: not elementwise, so each has a C lowering.

Both are stabilised by the maximum along `dim` (NaN-propagating, like ndarray.max), as PyTorch
and cross_entropy are: exp never overflows, and a row of equal large values gives 1/n, not NaN.
The VJPs read the result y, which the forward keeps:
  softmax:     dx = y * (g - sum(g * y, dim))
  log_softmax: dx = g - exp(y) * sum(g, dim)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import INT, REQUIRED, Array, InferFn, OpDef, expect_float
from lucid.ir.types import Attr, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _dim_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """A negative dim counted from the end; an out-of-range one is left for the type rule."""
    out = dict(attrs)
    dim, rank = attrs.get("dim"), ts[0].rank
    if isinstance(dim, int) and not isinstance(dim, bool) and -rank <= dim < 0:
        out["dim"] = dim + rank
    return out


def _infer(name: str) -> InferFn:
    def infer(ts: Types, attrs: Attrs) -> Types:
        (x,) = ts
        expect_float(name, x, "x")
        dim = attrs["dim"]
        if not isinstance(dim, int) or not 0 <= dim < x.rank:
            raise IRTypeError(f"{name}: dim must lie in [0, {x.rank}) for {x}, got {dim}")
        return (x,)

    return infer


def _softmax(x: Array, *, dim: int) -> Array:
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def _log_softmax(x: Array, *, dim: int) -> Array:
    shifted = x - x.max(axis=dim, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))


def _softmax_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (y,), axes = ys, (attrs["dim"],)
    return (b.mul(y, b.sub(g, b.sum(b.mul(g, y), axes=axes, keepdims=True))),)


def _log_softmax_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (y,), axes = ys, (attrs["dim"],)
    return (b.sub(g, b.mul(b.exp(y), b.sum(g, axes=axes, keepdims=True))),)


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # a middle axis: the C walks a strided row, with axes on both sides
    return (rng.standard_normal((2, 3, 4)) * 3,), {"dim": 1}


def _op(name: str, kernel: Any, vjp: Any, doc: str) -> OpDef:
    return OpDef(
        name,
        1,
        _infer(name),
        kernel,
        vjp,
        attrs={"dim": (INT, REQUIRED)},
        lowering="softmax",
        inputs=("x",),
        sample=_sample,
        prepare=_dim_prepare,
        doc=doc,
    )


SOFTMAX = _op("softmax", _softmax, _softmax_vjp, "exp(x - max) / sum(exp(x - max)) along dim")
LOG_SOFTMAX = _op(
    "log_softmax",
    _log_softmax,
    _log_softmax_vjp,
    "(x - max) - log(sum(exp(x - max))) along dim",
)

OPS = (SOFTMAX, LOG_SOFTMAX)
