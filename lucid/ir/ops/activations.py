"""Activations: HardSwish and its family, ReLU, sigmoid, SiLU, GELU, LeakyReLU, ELU, Softplus and
Hardtanh, each one OpDef (softmax and log_softmax, which are not elementwise, are in softmax.py).

HardSwish follows the seed document (shared/seed, NOTES.md): HardSigmoid(x) = clip(x/6 + 1/2,
0, 1) with the constant exactly 1/6, HardSwish(x) = x * HardSigmoid(x), and the derivative
x/3 + 1/2 on [-3, 3] (both ends inclusive), 1 above, 0 below. IEEE rules apply as written:
HardSwish(-inf) = -inf * 0 = NaN, as in PyTorch and ONNX Runtime.

Where the derivative is a function of the result (relu, relu6, sigmoid) the rule reads y, so the
forward saves y, which the next layer's weight gradient needs anyway, instead of a second
buffer for x; HardSwish's derivative needs x, and its rule recomputes it in one select.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import FLOAT, STR, Array, OpDef
from lucid.ir.ops.elementwise import clamp, grad_of, lit, unary
from lucid.ir.types import Attr, TensorType

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
    "({T})1 / (({T})1 + lucid_exp{s}(-{x}))",
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
    "{x} / (({T})1 + lucid_exp{s}(-{x}))",
    "x * sigmoid(x), computed as x / (1 + exp(-x))",
)


# ---------------------------------------------------------------- GELU
# PyTorch's formulas, term for term (aten/src/ATen/native/cpu/Activation.cpp), so that C, NumPy
# and torch round alike: exact 0.5 x (1 + erf(x / sqrt 2)); "tanh" 0.5 x (1 + tanh(k (x + c x^3))).

_SQRT1_2 = 0.7071067811865476  # 1 / sqrt(2)
_INV_SQRT_2PI = 0.3989422804014327  # 1 / sqrt(2 pi): the normal density's factor
_K = 0.7978845608028654  # sqrt(2 / pi)
_C = 0.044715
_erf_object = np.frompyfunc(math.erf, 1, 1)  # Python's math.erf is libm's erf, as C calls it


def _erf(x: Array) -> Array:
    """erf elementwise in x's dtype (NumPy has none; float32 is computed in double, rounded)."""
    return np.asarray(_erf_object(x), dtype=x.dtype)


def _gelu(x: Array, *, approximate: str = "none") -> Array:
    half, one = lit(x, 0.5), lit(x, 1.0)
    if approximate == "tanh":
        return half * x * (one + np.tanh(lit(x, _K) * (x + lit(x, _C) * x * x * x)))
    return x * half * (one + _erf(x * lit(x, _SQRT1_2)))


def _gelu_grad(x: Array, g: Array, *, approximate: str = "none") -> Array:
    half, one = lit(x, 0.5), lit(x, 1.0)
    if approximate == "tanh":
        k, c = lit(x, _K), lit(x, _C)
        t = np.tanh(k * (x + c * x * x * x))
        right = half * x * (one - t * t) * k * (one + np.multiply(lit(x, 3.0), c) * x * x)
        return g * (half * (one + t) + right)
    cdf = half * (one + _erf(x * lit(x, _SQRT1_2)))
    pdf = lit(x, _INV_SQRT_2PI) * np.exp(x * x * lit(x, -0.5))
    return g * (cdf + x * pdf)


_TANH_INNER = "lucid_tanh{s}(({T})0.7978845608028654 * ({x} + ({T})0.044715 * {x} * {x} * {x}))"
_GELU_C = {
    "none": "{x} * ({T})0.5 * (({T})1 + lucid_erf{s}({x} * ({T})0.7071067811865476))",
    # 0.5 x (1 + tanh(u)) = x sigmoid(2u) = x / (1 + exp(-2u)): one exp and one division
    # instead of tanh's, and no cancellation in 1 + tanh(u) for negative x
    "tanh": "{x} / (({T})1 + lucid_exp{s}(({T})-1.5957691216057308 * ({x} + ({T})0.044715 * {x} * {x} * {x})))",
}
_GELU_GRAD_C = {
    "none": "{g} * (({T})0.5 * (({T})1 + lucid_erf{s}({x} * ({T})0.7071067811865476))"
    " + {x} * (({T})0.3989422804014327 * lucid_exp{s}({x} * {x} * ({T})-0.5)))",
    "tanh": "{g} * (({T})0.5 * (({T})1 + " + _TANH_INNER + ")"
    " + ({T})0.5 * {x} * (({T})1 - " + _TANH_INNER + " * " + _TANH_INNER + ")"
    " * ({T})0.7978845608028654 * (({T})1 + ({T})3 * ({T})0.044715 * {x} * {x}))",
}
_APPROXIMATE = {"approximate": (STR, "none")}


def _check_approximate(name: str) -> Callable[[Mapping[str, Attr]], None]:
    def check(attrs: Mapping[str, Attr]) -> None:
        if attrs["approximate"] not in _GELU_C:
            raise IRTypeError(
                f'{name}: approximate must be "none" or "tanh", got {attrs["approximate"]!r}'
            )

    return check


def _with_check(op: OpDef, check: Callable[[Mapping[str, Attr]], None]) -> OpDef:
    """`op` whose type rule first runs `check` on the attrs (an IRTypeError naming the op)."""
    infer = op.infer

    def checked(ts: tuple[TensorType, ...], attrs: Mapping[str, Attr]) -> tuple[TensorType, ...]:
        check(attrs)
        return infer(ts, attrs)

    return dataclasses.replace(op, infer=checked)


def _with_attrs(grad_op: str, attrs: Mapping[str, Any]) -> Callable[..., tuple[Any, ...]]:
    """The VJP `g -> grad_op(x, g, **attrs)`: the rules read x, which the forward keeps."""

    def vjp(b: G.GradBuilder, a: Any, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
        return (getattr(b, grad_op)(xs[0], g, **{k: a[k] for k in attrs}),)

    vjp.__name__ = f"{grad_op}_vjp"
    return vjp


def _pick(forms: Mapping[str, str]) -> Callable[[Any], str]:
    return lambda node: forms[str(node.attrs["approximate"])]


GELU = _with_check(
    unary(
        "gelu",
        _gelu,
        _with_attrs("gelu_grad", _APPROXIMATE),
        _pick(_GELU_C),
        'x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); approximate="tanh": '
        "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))",
        attrs=_APPROXIMATE,
    ),
    _check_approximate("gelu"),
)
GELU_GRAD = _with_check(
    grad_of(
        "gelu_grad",
        _gelu_grad,
        _pick(_GELU_GRAD_C),
        "g * gelu'(x): Phi(x) + x phi(x), or the derivative of the tanh form",
        attrs=_APPROXIMATE,
    ),
    _check_approximate("gelu_grad"),
)


# ---------------------------------------------------------------- LeakyReLU, ELU, Softplus, Hardtanh
# PyTorch's conventions at the kinks: LeakyReLU and ELU take the negative side at 0, Hardtanh's
# gradient is 0 at both bounds; Softplus is x itself where beta x > threshold.


def _leaky_relu(x: Array, *, negative_slope: float) -> Array:
    return np.where(x > 0, x, x * lit(x, negative_slope)).astype(x.dtype, copy=False)


def _leaky_relu_grad(x: Array, g: Array, *, negative_slope: float) -> Array:
    return np.where(x > 0, g, g * lit(x, negative_slope)).astype(x.dtype, copy=False)


def _elu(x: Array, *, alpha: float) -> Array:
    # expm1 of x with the positive side (not taken) zeroed, so it cannot overflow; -0.0 stays
    neg = lit(x, alpha) * np.expm1(np.where(x > 0, lit(x, 0.0), x))
    return np.where(x > 0, x, neg).astype(x.dtype, copy=False)


def _elu_grad(x: Array, g: Array, *, alpha: float) -> Array:
    neg = g * (lit(x, alpha) * np.exp(np.where(x > 0, lit(x, 0.0), x)))
    return np.where(x > 0, g, neg).astype(x.dtype, copy=False)


def _softplus(x: Array, *, beta: float, threshold: float) -> Array:
    b, t = lit(x, beta), lit(x, threshold)
    z = x * b
    soft = np.log1p(np.exp(np.where(z > t, t, z))) / b  # the branch not taken cannot overflow
    return np.where(z > t, x, soft).astype(x.dtype, copy=False)


def _softplus_grad(x: Array, g: Array, *, beta: float, threshold: float) -> Array:
    b, t = lit(x, beta), lit(x, threshold)
    z = x * b
    e = np.exp(np.where(z > t, t, z))
    return np.where(z > t, g, g * e / (e + lit(x, 1.0))).astype(x.dtype, copy=False)


def _hardtanh(x: Array, *, min_val: float, max_val: float) -> Array:
    return clamp(x, min_val, max_val)


def _hardtanh_grad(x: Array, g: Array, *, min_val: float, max_val: float) -> Array:
    """0 where x <= min_val or x >= max_val (PyTorch: both bounds excluded), else g (NaN: g)."""
    outside = (x <= min_val) | (x >= max_val)
    return np.where(outside, lit(x, 0.0), g).astype(x.dtype, copy=False)


def _sample_with(**attrs: float) -> Callable[[np.random.Generator], Any]:
    return lambda rng: (_smooth_sample(rng)[0], dict(attrs))


def _smooth_pair(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    return (_smooth_sample(rng)[0][0], rng.standard_normal((3, 4))), {}


def _activation(
    name: str,
    numpy: Callable[..., Any],
    grad: Callable[..., Any],
    c: str,
    grad_c: str,
    attrs: Mapping[str, Any],
    doc: str,
    grad_doc: str,
    sample: dict[str, float],
) -> tuple[OpDef, OpDef]:
    """An elementwise activation with float attrs and its gradient companion `<name>_grad`."""
    op = unary(
        name,
        numpy,
        _with_attrs(f"{name}_grad", attrs),
        c,
        doc,
        attrs=attrs,
        sample=_sample_with(**sample),
    )
    companion = grad_of(f"{name}_grad", grad, grad_c, grad_doc, attrs=attrs)
    return op, dataclasses.replace(companion, sample=lambda rng: (_smooth_pair(rng)[0], sample))


LEAKY_RELU, LEAKY_RELU_GRAD = _activation(
    "leaky_relu",
    _leaky_relu,
    _leaky_relu_grad,
    "({x} > 0 ? {x} : {x} * {negative_slope})",
    "({x} > 0 ? {g} : {g} * {negative_slope})",
    {"negative_slope": (FLOAT, 0.01)},
    "x > 0 ? x : x * negative_slope",
    "g where x > 0 else g * negative_slope",
    {"negative_slope": 0.2},
)
ELU, ELU_GRAD = _activation(
    "elu",
    _elu,
    _elu_grad,
    "({x} > 0 ? {x} : {alpha} * expm1{s}({x}))",
    "({x} > 0 ? {g} : {g} * ({alpha} * lucid_exp{s}({x})))",
    {"alpha": (FLOAT, 1.0)},
    "x > 0 ? x : alpha * (exp(x) - 1), computed with expm1",
    "g where x > 0 else g * alpha * exp(x)",
    {"alpha": 1.3},
)
SOFTPLUS, SOFTPLUS_GRAD = _activation(
    "softplus",
    _softplus,
    _softplus_grad,
    "({x} * {beta} > {threshold} ? {x} : log1p{s}(lucid_exp{s}({x} * {beta})) / {beta})",
    "({x} * {beta} > {threshold} ? {g}"
    " : {g} * lucid_exp{s}({x} * {beta}) / (lucid_exp{s}({x} * {beta}) + ({T})1))",
    {"beta": (FLOAT, 1.0), "threshold": (FLOAT, 20.0)},
    "beta x > threshold ? x : log(1 + exp(beta x)) / beta",
    "g where beta x > threshold else g * sigmoid(beta x)",
    {"beta": 1.5, "threshold": 4.0},  # the switch at x = 8/3, away from the sample's points
)
HARDTANH, HARDTANH_GRAD = _activation(
    "hardtanh",
    _hardtanh,
    _hardtanh_grad,
    "lucid_clamp{s}({x}, {min_val}, {max_val})",
    "(({x} <= {min_val} || {x} >= {max_val}) ? ({T})0 : {g})",
    {"min_val": (FLOAT, -1.0), "max_val": (FLOAT, 1.0)},
    "x < min_val ? min_val : (x > max_val ? max_val : x)",
    "0 where x <= min_val or x >= max_val, else g",
    {"min_val": -2.0, "max_val": 3.0},
)

OPS = (
    HARDSIGMOID, HARDSIGMOID_GRAD, HARDSWISH, HARDSWISH_GRAD, RELU, RELU_GRAD, RELU6, RELU6_GRAD,
    SIGMOID, SILU, GELU, GELU_GRAD, LEAKY_RELU, LEAKY_RELU_GRAD, ELU, ELU_GRAD, SOFTPLUS,
    SOFTPLUS_GRAD, HARDTANH, HARDTANH_GRAD,
)  # fmt: skip
