"""Elementwise eager ops: arithmetic, math functions, clip, maximum/minimum, comparisons, where.

Each function is one primitive of docs/DESIGN.md's table: it computes its NumPy result directly
(through `_np_kernels` where the formula is not obvious), defines its backward rule next to it,
and records itself once through `_result`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import _np_kernels as K
from lucid.tensor import Array, Tensor, _result

_unbroadcast = K.unbroadcast


def constant(value: Any, like: Tensor | None = None) -> Tensor:
    """Wrap a non-Tensor operand as a constant Tensor in `like`'s dtype (or the default rule)."""
    if isinstance(value, Tensor):
        return value
    if like is not None:
        arr = np.asarray(value)
        # Constants are weakly typed: they take the Tensor operand's dtype, unless that would
        # silently truncate (a float constant against an integer tensor keeps its own dtype).
        if like.dtype.kind == "f" or arr.dtype.kind in "iub":
            return Tensor(arr, dtype=like.dtype)
    return Tensor(value)


def operands(op: str, a: Any, b: Any) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as Tensors of one dtype, or a TypeError naming both."""
    if not isinstance(a, Tensor):
        a = constant(a, b)
    elif not isinstance(b, Tensor):
        b = constant(b, a)
    if a.data.dtype != b.data.dtype:  # .data directly: this runs for every binary op
        raise TypeError(
            f"{op}: operands have different dtypes {a.dtype} and {b.dtype}; lucid does not "
            "promote implicitly, convert one with .astype()"
        )
    return a, b


def require_float(op: str, x: Tensor) -> None:
    """Raise a TypeError unless x has a floating dtype."""
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point Tensor, got dtype {x.dtype}")


# ---------------------------------------------------------------- arithmetic


def add(a: Any, b: Any) -> Tensor:
    """a + b with NumPy broadcasting."""
    a, b = operands("add", a, b)
    sa, sb = a.shape, b.shape
    return _result(
        a.data + b.data, "add", (a, b), {}, lambda g: (_unbroadcast(g, sa), _unbroadcast(g, sb))
    )


def sub(a: Any, b: Any) -> Tensor:
    """a - b with NumPy broadcasting."""
    a, b = operands("sub", a, b)
    sa, sb = a.shape, b.shape
    return _result(
        a.data - b.data, "sub", (a, b), {}, lambda g: (_unbroadcast(g, sa), _unbroadcast(-g, sb))
    )


def mul(a: Any, b: Any) -> Tensor:
    """a * b with NumPy broadcasting."""
    a, b = operands("mul", a, b)
    x, y = a.data, b.data
    return _result(
        x * y,
        "mul",
        (a, b),
        {},
        lambda g: (_unbroadcast(g * y, x.shape), _unbroadcast(g * x, y.shape)),
    )


def div(a: Any, b: Any) -> Tensor:
    """a / b with NumPy broadcasting."""
    a, b = operands("div", a, b)
    x, y = a.data, b.data

    def backward(g: Array) -> tuple[Array, Array]:
        ga = g / y
        return _unbroadcast(ga, x.shape), _unbroadcast(-ga * x / y, y.shape)

    return _result(x / y, "div", (a, b), {}, backward)


def neg(a: Tensor) -> Tensor:
    """-a."""
    return _result(-a.data, "neg", (a,), {}, lambda g: (-g,))


def pow(a: Tensor, exponent: Any) -> Tensor:
    """a ** exponent for a Python number exponent."""
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
        raise TypeError(
            f"pow: the exponent must be a Python int or float, got {type(exponent).__name__}"
        )
    p = float(exponent)
    x = a.data
    xp = x.dtype.type(p) if x.dtype.kind == "f" else p
    return _result(x**xp, "pow", (a,), {"exponent": p}, lambda g: (g * (xp * x ** (xp - 1)),))


# ---------------------------------------------------------------- math functions


def exp(x: Tensor) -> Tensor:
    """Elementwise e**x."""
    require_float("exp", x)
    y = np.exp(x.data)
    return _result(y, "exp", (x,), {}, lambda g: (g * y,))


def log(x: Tensor) -> Tensor:
    """Elementwise natural logarithm."""
    require_float("log", x)
    d = x.data
    return _result(np.log(d), "log", (x,), {}, lambda g: (g / d,))


def sqrt(x: Tensor) -> Tensor:
    """Elementwise square root."""
    require_float("sqrt", x)
    y = np.sqrt(x.data)
    return _result(y, "sqrt", (x,), {}, lambda g: (g / (y + y),))


def tanh(x: Tensor) -> Tensor:
    """Elementwise hyperbolic tangent."""
    require_float("tanh", x)
    y = np.tanh(x.data)
    return _result(y, "tanh", (x,), {}, lambda g: (g * (1 - y * y),))


def abs(x: Tensor) -> Tensor:
    """Elementwise |x|; the gradient at 0 is 0."""
    d = x.data
    return _result(np.abs(d), "abs", (x,), {}, lambda g: (K.abs_grad(d, g),))


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:
    """Clamp x into [min, max] (None = unbounded); NaN passes through."""
    require_float("clip", x)
    lo = -np.inf if min is None else float(min)
    hi = np.inf if max is None else float(max)
    if lo > hi:
        raise ValueError(f"clip: min must not exceed max, got min={lo}, max={hi}")
    d = x.data
    return _result(
        K.clip(d, lo, hi),
        "clip",
        (x,),
        {"min": lo, "max": hi},
        lambda g: (K.clip_grad(d, g, lo, hi),),
    )


def _extremum(op: str, a: Any, b: Any) -> Tensor:
    a, b = operands(op, a, b)
    x, y = a.data, b.data
    kernel, rule = (K.maximum, K.maximum_grad) if op == "maximum" else (K.minimum, K.minimum_grad)

    def backward(g: Array) -> tuple[Array, Array]:
        ga, gb = rule(x, y, g)
        return _unbroadcast(ga, x.shape), _unbroadcast(gb, y.shape)

    return _result(kernel(x, y), op, (a, b), {}, backward)


def maximum(a: Any, b: Any) -> Tensor:
    """Elementwise maximum (NaN wins; a tie splits the gradient in halves)."""
    return _extremum("maximum", a, b)


def minimum(a: Any, b: Any) -> Tensor:
    """Elementwise minimum (NaN wins; a tie splits the gradient in halves)."""
    return _extremum("minimum", a, b)


# ---------------------------------------------------------------- comparisons and where

_COMPARE = {
    "less": np.less,
    "less_equal": np.less_equal,
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}


def compare(op: str, a: Any, b: Any) -> Tensor:
    """One of the six comparisons; a bool Tensor with no gradient."""
    a, b = operands(op, a, b)
    return _result(_COMPARE[op](a.data, b.data), op, (a, b), {}, None)


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise `a if condition else b` with broadcasting; condition must be bool."""
    c = condition if isinstance(condition, Tensor) else Tensor(np.asarray(condition))
    if c.dtype != np.bool_:
        raise TypeError(f"where: the condition must be a bool Tensor, got dtype {c.dtype}")
    a, b = operands("where", a, b)
    m, sa, sb = c.data, a.shape, b.shape
    zero = a.data.dtype.type(0)

    def backward(g: Array) -> tuple[None, Array, Array]:
        return (
            None,
            _unbroadcast(np.where(m, g, zero), sa),
            _unbroadcast(np.where(m, zero, g), sb),
        )

    return _result(np.where(m, a.data, b.data), "where", (c, a, b), {}, backward)
