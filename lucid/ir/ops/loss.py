"""Losses: mean squared error and softmax cross-entropy (with its gradient companion).

cross_entropy also takes reduction="none" (one loss per row, [N]): the per-row log-sum-exp is
the one quantity that cannot be composed stably from other ops (the table has no max reduction).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import (
    STR,
    Array,
    OpDef,
    broadcast_types,
    expect_float,
    expect_same_dtype,
    scalar,
)
from lucid.ir.ops.elementwise import lit, normal
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]
_REDUCTION = {"reduction": (STR, "mean")}


def _reduction(name: str, attrs: Attrs, allowed: tuple[str, ...] = ("mean", "sum")) -> str:
    r = attrs["reduction"]
    if r not in allowed:
        names = " or ".join(f'"{a}"' for a in allowed)
        raise IRTypeError(f"{name}: reduction must be {names}, got {r!r}")
    return str(r)


_CE_REDUCTIONS = ("mean", "sum", "none")


# ---------------------------------------------------------------- mean squared error


def _mse_infer(ts: Types, attrs: Attrs) -> Types:
    _reduction("mse_loss", attrs)
    expect_same_dtype("mse_loss", ts, ("pred", "target"))
    expect_float("mse_loss", ts[0], "pred")
    broadcast_types("mse_loss", ts)
    return (scalar(ts[0].dtype),)


def _mse(pred: Array, target: Array, *, reduction: str = "mean") -> Array:
    d = pred - target
    total = np.add.reduce(d * d, axis=None, dtype=pred.dtype)  # (d * d).sum(), minus its wrapper
    return np.asarray(total / lit(pred, d.size) if reduction == "mean" else total, dtype=pred.dtype)


def _mse_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    p, t = xs
    scale = b.add(g, g)  # (p - t) * (2g / size); g + g is 2g exactly, with no constant
    d = b.sub(p, t)
    if attrs["reduction"] == "mean":
        scale = b.div(scale, b.count(b.shape(d), g))
    gp = b.mul(d, scale)
    gt = G.sum_to(b, b.neg(gp), b.shape(t)) if needs[1] else None
    return G.sum_to(b, gp, b.shape(p)), gt


MSE_LOSS = OpDef(
    "mse_loss",
    2,
    _mse_infer,
    _mse,
    _mse_vjp,
    attrs=_REDUCTION,
    lowering="mse_loss",
    inputs=("pred", "target"),
    sample=normal((3, 4), (3, 4)),
    doc="mean (or sum) of (pred - target)^2 -> scalar",
)


# ---------------------------------------------------------------- cross-entropy


def _ce_out(logits: TensorType, attrs: Attrs) -> TensorType:
    """The loss type: a scalar, or one loss per row for reduction "none"."""
    if attrs["reduction"] == "none":
        return TensorType(logits.dtype, logits.shape[:1])
    return scalar(logits.dtype)


def _check_ce(name: str, logits: TensorType, target: TensorType, attrs: Attrs) -> None:
    _reduction(name, attrs, _CE_REDUCTIONS)
    expect_float(name, logits, "logits")
    if logits.rank != 2:
        raise IRTypeError(f"{name}: expected logits of shape [N, C], got {logits}")
    if target.dtype is not DType.I64 or target.shape != logits.shape[:1]:
        raise IRTypeError(
            f"{name}: expected target i64[{logits.shape[0]}] (one class per row), got {target}"
        )


def _ce_infer(ts: Types, attrs: Attrs) -> Types:
    _check_ce("cross_entropy", ts[0], ts[1], attrs)
    return (_ce_out(ts[0], attrs),)


def _ce_grad_infer(ts: Types, attrs: Attrs) -> Types:
    logits, target, g = ts
    _check_ce("cross_entropy_grad", logits, target, attrs)
    if g != _ce_out(logits, attrs):
        raise IRTypeError(f"cross_entropy_grad: expected g {_ce_out(logits, attrs)}, got {g}")
    return (logits,)


def log_softmax(logits: Array) -> Array:
    """Row-wise log-softmax over the last axis, stabilised by the row maximum."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_classes(logits: Array, target: Array) -> None:
    n, c = logits.shape
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: expected target of shape ({n},), got {target.shape}")
    if n and (target.min() < 0 or target.max() >= c):
        raise IndexError(
            f"cross_entropy: target classes must lie in [0, {c}), got values in "
            f"[{target.min()}, {target.max()}]"
        )


def _cross_entropy(logits: Array, target: Array, *, reduction: str = "mean") -> Array:
    """Mean (or sum, or each) over rows of -log_softmax(logits)[row, target[row]]."""
    _check_classes(logits, target)
    n = logits.shape[0]
    rows = -log_softmax(logits)[np.arange(n), target]
    if reduction == "none":
        return rows.astype(logits.dtype, copy=False)
    total = rows.sum(dtype=logits.dtype)
    return np.asarray(total / lit(logits, n) if reduction == "mean" else total, dtype=logits.dtype)


def _cross_entropy_grad(
    logits: Array, target: Array, g: Array, *, reduction: str = "mean"
) -> Array:
    """(softmax(logits) - onehot(target)) * g, divided by the row count for 'mean' (g [N],
    one per row, for 'none')."""
    n = logits.shape[0]
    p = np.exp(log_softmax(logits))
    p[np.arange(n), target] -= 1
    if reduction == "none":
        scale = np.asarray(g)[:, None]
    else:
        scale = g / lit(logits, n) if reduction == "mean" else g
    return (p * scale).astype(logits.dtype, copy=False)


def _ce_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # recomputes softmax from the saved logits; the i64 target has no gradient
    return b.cross_entropy_grad(xs[0], xs[1], g, reduction=attrs["reduction"]), None


def _ce_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    return (rng.standard_normal((4, 3)), np.array([0, 2, 1, 2], dtype=np.int64)), {}


CROSS_ENTROPY = OpDef(
    "cross_entropy",
    2,
    _ce_infer,
    _cross_entropy,
    _ce_vjp,
    attrs=_REDUCTION,
    lowering="cross_entropy",
    inputs=("logits", "target"),
    sample=_ce_sample,
    doc="logits [N, C], target i64 [N] -> mean, sum or each ([N]) of -log_softmax[row, target]",
)
CROSS_ENTROPY_GRAD = OpDef(
    "cross_entropy_grad",
    3,
    _ce_grad_infer,
    _cross_entropy_grad,
    None,
    attrs=_REDUCTION,
    lowering="cross_entropy_grad",
    inputs=("logits", "target", "g"),
    sample=lambda rng: (_ce_sample(rng)[0] + (np.array(1.5),), {}),
    doc="(softmax(logits) - onehot(target)) * g (/ N for mean; g [N] for none)",
)

OPS = (MSE_LOSS, CROSS_ENTROPY, CROSS_ENTROPY_GRAD)
