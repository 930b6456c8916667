"""Elementwise ops (the ones fusion chains into one loop) and their gradient-only companions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lucid import _np_kernels as K
from lucid.errors import IRTypeError
from lucid.ir.core import Attr
from lucid.ir.ops import (
    FLOAT,
    REQUIRED,
    Array,
    OpDef,
    arr,
    broadcast_types,
    expect_float,
    expect_numeric,
    expect_same_dtype,
    float_attr_or_inf,
    register,
)
from lucid.ir.types import DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _unary(name: str, fn: Callable[[Array], Array], doc: str, *, float_only: bool = True) -> None:
    def infer(ts: Types, attrs: Attrs) -> Types:
        (expect_float if float_only else expect_numeric)(name, ts[0], "x")
        return (ts[0],)

    def reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
        return (arr(fn(xs[0])),)

    register(OpDef(name, 1, {}, infer, reference, elementwise=True, doc=doc))


_unary("neg", np.negative, "-x", float_only=False)
_unary("abs", np.abs, "|x|", float_only=False)
_unary("sign", np.sign, "sign(x) in {-1, 0, 1} (sign(0) = 0; NaN -> NaN)", float_only=False)
_unary("hardswish", K.hardswish, "x * hardsigmoid(x)")
_unary("hardsigmoid", K.hardsigmoid, "clip(x / 6 + 1/2, 0, 1)")
_unary("relu", K.relu, "x < 0 ? 0 : x")
_unary("relu6", K.relu6, "x < 0 ? 0 : (x > 6 ? 6 : x)")
_unary("sigmoid", K.sigmoid, "1 / (1 + exp(-x))")
_unary("tanh", np.tanh, "tanh(x)")
_unary("exp", np.exp, "e ** x")
_unary("log", np.log, "natural log")
_unary("sqrt", np.sqrt, "square root")


def _identity_infer(ts: Types, attrs: Attrs) -> Types:
    return (ts[0],)


register(
    OpDef(
        "stop_gradient",
        1,
        {},
        _identity_infer,
        lambda xs, attrs: (arr(xs[0]),),
        elementwise=True,
        doc="x, with no gradient flowing back (detach)",
    )
)


def _float_infer(name: str) -> Callable[[Types, Attrs], Types]:
    def infer(ts: Types, attrs: Attrs) -> Types:
        expect_float(name, ts[0], "x")
        return (ts[0],)

    return infer


def _pow_reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
    # the same expression eager uses: the exponent in x's dtype, so f32 stays f32
    x, exponent = xs[0], attrs["exponent"]
    assert isinstance(exponent, float)
    return (arr(x ** x.dtype.type(exponent)),)


register(
    OpDef(
        "pow",
        1,
        {"exponent": (FLOAT, REQUIRED)},
        _float_infer("pow"),
        _pow_reference,
        elementwise=True,
        doc="x ** exponent",
    )
)


def _clip_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    out = dict(attrs)
    out["min"] = float_attr_or_inf(attrs.get("min"), -1.0)  # type: ignore[assignment]
    out["max"] = float_attr_or_inf(attrs.get("max"), 1.0)  # type: ignore[assignment]
    return out


def _bounds(attrs: Attrs) -> tuple[float, float]:
    lo, hi = attrs["min"], attrs["max"]
    assert isinstance(lo, float) and isinstance(hi, float)
    return lo, hi


register(
    OpDef(
        "clip",
        1,
        {"min": (FLOAT, REQUIRED), "max": (FLOAT, REQUIRED)},
        _float_infer("clip"),
        lambda xs, attrs: (arr(K.clip(xs[0], *_bounds(attrs))),),
        elementwise=True,
        doc="x < min ? min : (x > max ? max : x); None bounds become -inf / inf",
        prepare=_clip_prepare,
    )
)


# ---------------------------------------------------------------- binary, broadcasting


def _binary(
    name: str,
    fn: Callable[[Array, Array], Array],
    doc: str,
    *,
    check: Callable[[str, TensorType, str], None] = expect_numeric,
    result: DType | None = None,
) -> None:
    def infer(ts: Types, attrs: Attrs) -> Types:
        a = ts[0]
        expect_same_dtype(name, ts, ("a", "b"))
        check(name, a, "a")
        return (TensorType(result or a.dtype, broadcast_types(name, ts)),)

    def reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
        return (arr(fn(xs[0], xs[1])),)

    register(OpDef(name, 2, {}, infer, reference, elementwise=True, doc=doc))


def _any(op: str, t: TensorType, what: str) -> None:
    """Comparisons for equality accept every dtype."""


_binary("add", np.add, "a + b")
_binary("sub", np.subtract, "a - b")
_binary("mul", np.multiply, "a * b")
_binary("div", np.true_divide, "a / b (true division; float only)", check=expect_float)
_binary("maximum", K.maximum, "(a > b || isnan(a)) ? a : b")
_binary("minimum", K.minimum, "(a < b || isnan(a)) ? a : b")
_binary("less", np.less, "a < b", result=DType.BOOL)
_binary("less_equal", np.less_equal, "a <= b", result=DType.BOOL)
_binary("greater", np.greater, "a > b", result=DType.BOOL)
_binary("greater_equal", np.greater_equal, "a >= b", result=DType.BOOL)
_binary("equal", np.equal, "a == b", check=_any, result=DType.BOOL)
_binary("not_equal", np.not_equal, "a != b", check=_any, result=DType.BOOL)


def _where_infer(ts: Types, attrs: Attrs) -> Types:
    c, a, b = ts
    if c.dtype is not DType.BOOL:
        raise IRTypeError(f"where: expected a bool condition, got {c}")
    expect_same_dtype("where", (a, b), ("a", "b"))
    return (TensorType(a.dtype, broadcast_types("where", ts)),)


register(
    OpDef(
        "where",
        3,
        {},
        _where_infer,
        lambda xs, attrs: (arr(np.where(xs[0], xs[1], xs[2])),),
        elementwise=True,
        doc="c ? a : b, broadcasting all three",
    )
)


# ---------------------------------------------------------------- gradient-only ops


def _grad_infer(name: str) -> Callable[[Types, Attrs], Types]:
    def infer(ts: Types, attrs: Attrs) -> Types:
        x, g = ts
        expect_float(name, x, "x")
        if g != x:
            raise IRTypeError(f"{name}: expected the cotangent g to have x's type {x}, got {g}")
        return (x,)

    return infer


def _grad(name: str, fn: Callable[[Array, Array], Array], doc: str) -> None:
    register(
        OpDef(
            name,
            2,
            {},
            _grad_infer(name),
            lambda xs, attrs: (arr(fn(xs[0], xs[1])),),
            elementwise=True,
            doc=doc,
        )
    )


_grad("hardswish_grad", K.hardswish_grad, "g * hardswish'(x)")
_grad("hardsigmoid_grad", K.hardsigmoid_grad, "g * hardsigmoid'(x)")
_grad("relu_grad", K.relu_grad, "g where x > 0 else 0")
_grad("relu6_grad", K.relu6_grad, "g where 0 < x < 6 else 0")
register(
    OpDef(
        "clip_grad",
        2,
        {"min": (FLOAT, REQUIRED), "max": (FLOAT, REQUIRED)},
        _grad_infer("clip_grad"),
        lambda xs, attrs: (arr(K.clip_grad(xs[0], xs[1], *_bounds(attrs))),),
        elementwise=True,
        doc="g where min <= x <= max else 0",
        prepare=_clip_prepare,
    )
)


def _extremum_grad(name: str, fn: Callable[[Array, Array, Array], tuple[Array, Array]]) -> None:
    def infer(ts: Types, attrs: Attrs) -> Types:
        a, b, g = ts
        expect_same_dtype(name, ts, ("a", "b", "g"))
        expect_float(name, a, "a")
        shape = broadcast_types(name, (a, b))
        if g.shape != shape:
            raise IRTypeError(
                f"{name}: expected g of the broadcast shape {TensorType(a.dtype, shape)}, got {g}"
            )
        return (g, g)

    def reference(xs: Sequence[Array], attrs: Attrs) -> tuple[Array, ...]:
        ga, gb = fn(xs[0], xs[1], xs[2])
        return arr(ga), arr(gb)

    doc = "(ga, gb): cotangents in the broadcast shape (a tie splits g); sum_to them after"
    register(OpDef(name, 3, {}, infer, reference, doc=doc))


_extremum_grad("maximum_grad", K.maximum_grad)
_extremum_grad("minimum_grad", K.minimum_grad)
