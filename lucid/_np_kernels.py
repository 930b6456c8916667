"""NumPy kernels shared by eager lucid and the IR's reference semantics.

Every formula here is *the* definition of its op: eager `Tensor` ops call these, the IR op
table's NumPy references call these, and the C lowering must reproduce them element for element
(see docs/DESIGN.md, "Numerics"). Each is written so that it maps one-to-one onto a C expression:
comparisons and selects rather than np.maximum tricks where signed zeros or NaN could differ.

Conventions
- Inputs are NumPy arrays of one floating dtype (float32 or float64); results keep that dtype.
- NaN propagates through every op. HardSwish(-inf) is NaN, because HardSwish is defined as
  x * HardSigmoid(x) and IEEE gives -inf * 0 = NaN (the same answer as PyTorch and ONNX Runtime).
- Gradient rules (``*_grad``) take the forward input ``x`` (or output ``y`` where noted) and the
  incoming cotangent ``g``; at kinks they follow the seed document: HardSwish' = x/3 + 1/2 on
  [-3, 3] inclusive, 1 above, 0 below.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray


def _c(x: Array, v: float) -> np.generic:
    """A scalar constant in x's dtype, so float32 arithmetic stays float32."""
    return x.dtype.type(v)


# ---------------------------------------------------------------- activations


def hardsigmoid(x: Array) -> Array:
    """clip(x / 6 + 1/2, 0, 1), NaN-propagating; -0.0 stays -0.0 as in C's select."""
    t = x / _c(x, 6.0) + _c(x, 0.5)
    return np.where(t < 0, _c(x, 0.0), np.where(t > 1, _c(x, 1.0), t)).astype(x.dtype, copy=False)


def hardswish(x: Array) -> Array:
    """x * hardsigmoid(x) (IEEE: -inf -> NaN, x < -3 -> -0.0)."""
    return x * hardsigmoid(x)


def relu(x: Array) -> Array:
    """x < 0 ? 0 : x (NaN and -0.0 pass through)."""
    return np.where(x < 0, _c(x, 0.0), x).astype(x.dtype, copy=False)


def relu6(x: Array) -> Array:
    """x < 0 ? 0 : (x > 6 ? 6 : x)."""
    return np.where(x < 0, _c(x, 0.0), np.where(x > 6, _c(x, 6.0), x)).astype(x.dtype, copy=False)


def sigmoid(x: Array) -> Array:
    """1 / (1 + exp(-x))."""
    one = _c(x, 1.0)
    return one / (one + np.exp(-x))


def clip(x: Array, lo: float, hi: float) -> Array:
    """x < lo ? lo : (x > hi ? hi : x); lo = -inf or hi = +inf disable that side."""
    return np.where(x < lo, _c(x, lo), np.where(x > hi, _c(x, hi), x)).astype(x.dtype, copy=False)


def maximum(a: Array, b: Array) -> Array:
    """(a > b || isnan(a)) ? a : b, which is exactly np.maximum (ties return b)."""
    return np.maximum(a, b)


def minimum(a: Array, b: Array) -> Array:
    """(a < b || isnan(a)) ? a : b, which is exactly np.minimum (ties return b)."""
    return np.minimum(a, b)


# ---------------------------------------------------------------- gradients


def hardswish_grad(x: Array, g: Array) -> Array:
    """g * (x < -3 ? 0 : (x > 3 ? 1 : x/3 + 1/2)); both ends of [-3, 3] inclusive (seed)."""
    d = np.where(
        x < -3, _c(x, 0.0), np.where(x > 3, _c(x, 1.0), x / _c(x, 3.0) + _c(x, 0.5))
    ).astype(x.dtype, copy=False)
    return g * d


def hardsigmoid_grad(x: Array, g: Array) -> Array:
    """g * (-3 <= x <= 3 ? 1/6 : 0), inclusive like HardSwish's rule."""
    inside = (x >= -3) & (x <= 3)
    return np.where(inside, g / _c(x, 6.0), _c(x, 0.0)).astype(x.dtype, copy=False)


def relu_grad(x: Array, g: Array) -> Array:
    """g where x > 0, else 0 (the subgradient at 0 is 0, as in PyTorch)."""
    return np.where(x > 0, g, _c(x, 0.0)).astype(x.dtype, copy=False)


def relu6_grad(x: Array, g: Array) -> Array:
    """g where 0 < x < 6, else 0 (PyTorch's convention at both kinks)."""
    return np.where((x > 0) & (x < 6), g, _c(x, 0.0)).astype(x.dtype, copy=False)


def clip_grad(x: Array, g: Array, lo: float, hi: float) -> Array:
    """g where lo <= x <= hi (inclusive, as PyTorch's clamp), else 0."""
    return np.where((x >= lo) & (x <= hi), g, _c(x, 0.0)).astype(x.dtype, copy=False)


def maximum_grad(a: Array, b: Array, g: Array) -> tuple[Array, Array]:
    """Cotangents of maximum(a, b): the larger side gets g, a tie splits it in halves."""
    half = g * _c(g, 0.5)
    ga = np.where(a > b, g, np.where(a == b, half, _c(g, 0.0)))
    gb = np.where(b > a, g, np.where(a == b, half, _c(g, 0.0)))
    return ga.astype(g.dtype, copy=False), gb.astype(g.dtype, copy=False)


def minimum_grad(a: Array, b: Array, g: Array) -> tuple[Array, Array]:
    """Cotangents of minimum(a, b): the smaller side gets g, a tie splits it in halves."""
    # a is the smaller side exactly where b is the larger one, so maximum's rule with the
    # arguments swapped yields (d/da, d/db) of minimum in that order.
    return maximum_grad(b, a, g)


def abs_grad(x: Array, g: Array) -> Array:
    """g * sign(x), with sign(0) = 0."""
    return g * np.sign(x).astype(x.dtype, copy=False)


# ---------------------------------------------------------------- reductions and losses


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum g over the axes that broadcasting added or stretched, back to `shape`."""
    if g.shape == tuple(shape):
        return g
    extra = g.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1
    )
    out = g.sum(axis=axes, keepdims=True) if axes else g
    return out.reshape(shape)


def log_softmax(logits: Array) -> Array:
    """Row-wise log-softmax over the last axis, stabilised by the row maximum."""
    m = logits.max(axis=-1, keepdims=True)
    shifted = logits - m
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits: Array, target: Array, reduction: str = "mean") -> Array:
    """Mean (or sum) over rows of -log_softmax(logits)[row, target[row]]; target is int64."""
    n, c = logits.shape
    if target.shape != (n,):
        raise ValueError(f"cross_entropy: expected target of shape ({n},), got {target.shape}")
    if n and (target.min() < 0 or target.max() >= c):
        raise IndexError(
            f"cross_entropy: target classes must lie in [0, {c}), got values in "
            f"[{target.min()}, {target.max()}]"
        )
    picked = log_softmax(logits)[np.arange(n), target]
    total = -picked.sum(dtype=logits.dtype)
    return np.asarray(total / _c(logits, n) if reduction == "mean" else total, dtype=logits.dtype)


def cross_entropy_grad(logits: Array, target: Array, g: Array, reduction: str = "mean") -> Array:
    """(softmax(logits) - onehot(target)) * g, divided by the row count for 'mean'."""
    n = logits.shape[0]
    p = np.exp(log_softmax(logits))
    p[np.arange(n), target] -= 1
    scale = g / _c(logits, n) if reduction == "mean" else g
    return (p * scale).astype(logits.dtype, copy=False)


def mse_loss(pred: Array, target: Array, reduction: str = "mean") -> Array:
    """mean((pred - target)^2) or its sum."""
    d = pred - target
    total = (d * d).sum(dtype=pred.dtype)
    return np.asarray(total / _c(pred, d.size) if reduction == "mean" else total, dtype=pred.dtype)
