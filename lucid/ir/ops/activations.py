"""Activations: HardSwish and its family, ReLU, sigmoid and SiLU, each one OpDef.

HardSwish follows the seed document (shared/seed, NOTES.md): HardSigmoid(x) = clip(x/6 + 1/2,
0, 1) with the constant exactly 1/6, HardSwish(x) = x * HardSigmoid(x), and the derivative
x/3 + 1/2 on [-3, 3] (both ends inclusive), 1 above, 0 below. IEEE rules apply as written:
HardSwish(-inf) = -inf * 0 = NaN, as in PyTorch and ONNX Runtime.

Where the derivative is a function of the result (relu, relu6, sigmoid) the rule reads y, so the
forward saves y, which the next layer's weight gradient needs anyway, instead of a second
buffer for x; HardSwish's derivative needs x, and its rule recomputes it in one select.
"""

from __future__ import annotations

import numpy as np

from lucid.ir.ops import grad as G
from lucid.ir.ops.base import Array
from lucid.ir.ops.elementwise import clamp, grad_of, lit, unary

# Kinks at +-3 (HardSwish) and 0, 6 (ReLU6) would make central differences straddle a kink.
_AWAY_FROM_KINKS = [-4.5, -2.5, -1.2, -0.4, 0.3, 1.1, 2.2, 2.9, 3.5, 4.0, 5.5, 7.0]


def _smooth_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    return (rng.permutation(np.array(_AWAY_FROM_KINKS)).reshape(3, 4),), {}


# ---------------------------------------------------------------- HardSigmoid, HardSwish


def _hardsigmoid(x: Array) -> Array:
    """clip(x / 6 + 1/2, 0, 1): division by 6, not a multiplication by 0.1666..."""
    return clamp(x / lit(x, 6.0) + lit(x, 0.5), 0.0, 1.0)


def _hardswish(x: Array) -> Array:
    return x * _hardsigmoid(x)


def _hardswish_grad(x: Array, g: Array) -> Array:
    d = np.where(x < -3, lit(x, 0.0), np.where(x > 3, lit(x, 1.0), x / lit(x, 3.0) + lit(x, 0.5)))
    return g * d.astype(x.dtype, copy=False)


def _hardsigmoid_grad(x: Array, g: Array) -> Array:
    inside = (x >= -3) & (x <= 3)
    return np.where(inside, g / lit(x, 6.0), lit(x, 0.0)).astype(x.dtype, copy=False)


_HSIG_C = "lucid_clamp{s}({x} / ({T})6 + ({T})0.5, ({T})0, ({T})1)"

HARDSIGMOID = unary(
    "hardsigmoid",
    _hardsigmoid,
    G.unary(lambda b, x, y, g: b.hardsigmoid_grad(x, g)),
    _HSIG_C,
    "clip(x / 6 + 1/2, 0, 1)",
    sample=_smooth_sample,
)
HARDSIGMOID_GRAD = grad_of(
    "hardsigmoid_grad",
    _hardsigmoid_grad,
    "(({x} >= -3 && {x} <= 3) ? {g} / ({T})6 : ({T})0)",
    "g * hardsigmoid'(x): g / 6 on [-3, 3], else 0",
)
HARDSWISH = unary(
    "hardswish",
    _hardswish,
    # recomputed from the pre-activation: one select in the GEMM epilogue of dY @ W
    G.unary(lambda b, x, y, g: b.hardswish_grad(x, g)),
    "{x} * " + _HSIG_C,
    "x * hardsigmoid(x)",
    sample=_smooth_sample,
)
HARDSWISH_GRAD = grad_of(
    "hardswish_grad",
    _hardswish_grad,
    "{g} * ({x} < -3 ? ({T})0 : ({x} > 3 ? ({T})1 : {x} / ({T})3 + ({T})0.5))",
    "g * hardswish'(x): x/3 + 1/2 on [-3, 3] inclusive, 1 above, 0 below",
)


# ---------------------------------------------------------------- ReLU, ReLU6


def _relu(x: Array) -> Array:
    """x < 0 ? 0 : x (NaN and -0.0 pass through)."""
    return np.where(x < 0, lit(x, 0.0), x).astype(x.dtype, copy=False)


def _relu6(x: Array) -> Array:
    return clamp(x, 0.0, 6.0)


def _relu_grad(y: Array, g: Array) -> Array:
    """g where y > 0 (exactly where x > 0, NaN included), else 0: the subgradient at 0 is 0."""
    return np.where(y > 0, g, lit(y, 0.0)).astype(y.dtype, copy=False)


def _relu6_grad(y: Array, g: Array) -> Array:
    """g where 0 < y < 6 (exactly where 0 < x < 6), else 0: PyTorch's convention at both kinks."""
    return np.where((y > 0) & (y < 6), g, lit(y, 0.0)).astype(y.dtype, copy=False)


RELU = unary(
    "relu",
    _relu,
    G.unary(lambda b, x, y, g: b.relu_grad(y, g)),
    "({x} < 0 ? ({T})0 : {x})",
    "x < 0 ? 0 : x",
    sample=_smooth_sample,
)
RELU_GRAD = grad_of("relu_grad", _relu_grad, "({x} > 0 ? {g} : ({T})0)", "g where x > 0 else 0")
RELU6 = unary(
    "relu6",
    _relu6,
    G.unary(lambda b, x, y, g: b.relu6_grad(y, g)),
    "lucid_clamp{s}({x}, ({T})0, ({T})6)",
    "x < 0 ? 0 : (x > 6 ? 6 : x)",
    sample=_smooth_sample,
)
RELU6_GRAD = grad_of(
    "relu6_grad",
    _relu6_grad,
    "(({x} > 0 && {x} < 6) ? {g} : ({T})0)",
    "g where 0 < x < 6 else 0",
)


# ---------------------------------------------------------------- sigmoid


def _sigmoid(x: Array) -> Array:
    one = lit(x, 1.0)
    return one / (one + np.exp(-x))


SIGMOID = unary(
    "sigmoid",
    _sigmoid,
    G.unary(lambda b, x, y, g: b.mul(b.mul(g, y), b.sub(b.const(1.0, y), y))),
    "({T})1 / (({T})1 + exp{s}(-{x}))",
    "1 / (1 + exp(-x))",
)


# ---------------------------------------------------------------- SiLU (swish)


def _silu(x: Array) -> Array:
    one = lit(x, 1.0)
    return x / (one + np.exp(-x))


def _silu_vjp(b: G.GradBuilder, x: Array, y: Array, g: Array) -> Array:
    # silu'(x) = s + y (1 - s) with s = sigmoid(x): no extra buffer, y is kept for the next GEMM
    s = b.sigmoid(x)
    return b.mul(g, b.add(s, b.mul(y, b.sub(b.const(1.0, s), s))))


SILU = unary(
    "silu",
    _silu,
    G.unary(_silu_vjp),
    "{x} / (({T})1 + exp{s}(-{x}))",
    "x * sigmoid(x), computed as x / (1 + exp(-x))",
)

OPS = (
    HARDSIGMOID, HARDSIGMOID_GRAD, HARDSWISH, HARDSWISH_GRAD, RELU, RELU_GRAD, RELU6, RELU6_GRAD,
    SIGMOID, SILU,
)  # fmt: skip
