"""Elementwise arithmetic and math: the ops that fusion chains into one loop.

Arithmetic and comparison kernels are Python's operators (operator.add, ...): on ndarrays they
are NumPy's ufuncs, and on the NumPy scalars of a loss's backward they take NumPy's scalar fast
path, ten times cheaper than calling the ufunc.

Each op is one OpDef: type rule, NumPy kernel, VJP rule and scalar C, side by side. Kernels are
written so that they map one to one onto their C expression: comparisons and selects rather than
np.maximum tricks where signed zeros or NaN could differ (docs/DESIGN.md, "Numerics"). The C
fields are those of lucid/codegen/_scalar_c.py: {x}, {a}, {b}... the inputs by name, {T} the result's
C type, {s} the libm suffix ("f" or ""), and each numeric attribute as a literal.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import (
    FLOAT,
    NOT_DIFFERENTIABLE,
    REQUIRED,
    Array,
    OpDef,
    SampleFn,
    ScalarC,
    VjpRule,
    broadcast_types,
    expect_float,
    expect_numeric,
    expect_same_dtype,
    float_attr_or_inf,
    number,
)
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def lit(x: Array, v: float, _made: dict[tuple[Any, float], np.generic] = {}) -> np.generic:  # noqa: B006
    """A scalar constant in x's dtype, so float32 arithmetic stays float32 (each made once:
    kernels ask for their constants on every call)."""
    key = (x.dtype, v)
    made = _made.get(key)
    if made is None:
        made = _made[key] = x.dtype.type(v)
    return made


def clamp(x: Array, lo: float, hi: float) -> Array:
    """x < lo ? lo : (x > hi ? hi : x): NaN passes, -0.0 survives (C's lucid_clamp)."""
    return np.where(x < lo, lit(x, lo), np.where(x > hi, lit(x, hi), x)).astype(x.dtype, copy=False)


def normal(*shapes: tuple[int, ...], scale: float = 1.0) -> SampleFn:
    """A sample of float64 normal arrays of `shapes` (the meta-test's default)."""
    return lambda rng: (tuple(rng.standard_normal(s) * scale for s in shapes), {})


# ---------------------------------------------------------------- constructors


def unary(
    name: str,
    numpy: Callable[..., Any],
    vjp: VjpRule | Any,
    c: ScalarC,
    doc: str,
    *,
    float_only: bool = True,
    c_int: ScalarC = None,
    attrs: Mapping[str, Any] | None = None,
    prepare: Any = None,
    sample: SampleFn | None = None,
    lowering: str | None = None,
) -> OpDef:
    """A one-input elementwise op whose result has its input's type."""

    def infer(ts: Types, attrs: Attrs) -> Types:
        (expect_float if float_only else expect_numeric)(name, ts[0], "x")
        return (ts[0],)

    return OpDef(
        name,
        1,
        infer,
        numpy,
        vjp,
        attrs=attrs or {},
        c=c,
        c_int=c_int,
        lowering=lowering,
        inputs=("x",),
        sample=sample or normal((3, 4)),
        elementwise=True,
        prepare=prepare,
        doc=doc,
    )


def binary(
    name: str,
    numpy: Callable[..., Any],
    vjp: VjpRule | Any,
    c: ScalarC,
    doc: str,
    *,
    check: Callable[[str, TensorType, str], None] = expect_numeric,
    result: DType | None = None,
    c_int: ScalarC = None,
    sample: SampleFn | None = None,
) -> OpDef:
    """A two-input broadcasting elementwise op of one dtype."""

    def infer(ts: Types, attrs: Attrs) -> Types:
        expect_same_dtype(name, ts, ("a", "b"))
        check(name, ts[0], "a")
        return (TensorType(result or ts[0].dtype, broadcast_types(name, ts)),)

    return OpDef(
        name,
        2,
        infer,
        numpy,
        vjp,
        c=c,
        c_int=c_int,
        inputs=("a", "b"),
        sample=sample or normal((3, 4), (4,)),
        elementwise=True,
        doc=doc,
    )


def grad_of(
    name: str,
    numpy: Callable[..., Any],
    c: ScalarC,
    doc: str,
    *,
    attrs: Mapping[str, Any] | None = None,
    prepare: Any = None,
) -> OpDef:
    """A gradient-only companion `(x, g) -> g * f'(x)`, made by a VJP rule; not differentiated
    again (lucid computes first derivatives only)."""

    def infer(ts: Types, attrs: Attrs) -> Types:
        x, g = ts
        expect_float(name, x, "x")
        if g != x:
            raise IRTypeError(f"{name}: expected the cotangent g to have x's type {x}, got {g}")
        return (x,)

    return OpDef(
        name,
        2,
        infer,
        numpy,
        None,
        attrs=attrs or {},
        c=c,
        inputs=("x", "g"),
        sample=normal((3, 4), (3, 4)),
        elementwise=True,
        prepare=prepare,
        doc=doc,
    )


# ---------------------------------------------------------------- unary math


def _abs_vjp(b: Any, x: Any, y: Any, g: Any) -> Any:
    return b.mul(g, b.sign(x))  # sign(0) = 0: the subgradient at the kink is 0


def _sqrt_vjp(b: Any, x: Any, y: Any, g: Any) -> Any:
    return b.div(g, b.add(y, y))  # reads y, which the forward keeps anyway


def _sign(x: Array) -> Array:
    return np.sign(x)


NEG = unary(
    "neg",
    operator.neg,
    G.unary(lambda b, x, y, g: b.neg(g)),
    "-{x}",
    "-x",
    float_only=False,
    c_int="(int64_t)(0 - (uint64_t){x})",  # int64 wraps in NumPy; signed overflow is UB in C
)
ABS = unary(
    "abs",
    operator.abs,
    G.unary(_abs_vjp),
    "fabs{s}({x})",
    "|x|",
    float_only=False,
    c_int="({x} < 0 ? (int64_t)(0 - (uint64_t){x}) : {x})",
)
SIGN = unary(
    "sign",
    _sign,
    NOT_DIFFERENTIABLE,
    "({x} > 0 ? ({T})1 : ({x} < 0 ? ({T})-1 : ({x} == 0 ? ({T})0 : {x})))",
    "sign(x) in {-1, 0, 1} (sign(0) = 0; NaN -> NaN)",
    float_only=False,
    c_int="(int64_t)(({x} > 0) - ({x} < 0))",
)
EXP = unary("exp", np.exp, G.unary(lambda b, x, y, g: b.mul(g, y)), "lucid_exp{s}({x})", "e ** x")
LOG = unary(
    "log",
    np.log,
    G.unary(lambda b, x, y, g: b.div(g, x)),
    "log{s}({x})",
    "natural log",
    sample=lambda rng: ((rng.uniform(0.5, 2.0, (3, 4)),), {}),
)
SQRT = unary(
    "sqrt",
    np.sqrt,
    G.unary(_sqrt_vjp),
    "sqrt{s}({x})",
    "square root",
    sample=lambda rng: ((rng.uniform(0.5, 2.0, (3, 4)),), {}),
)
TANH = unary(
    "tanh",
    np.tanh,
    G.unary(lambda b, x, y, g: b.mul(g, b.sub(b.const(1.0, y), b.mul(y, y)))),
    "lucid_tanh{s}({x})",
    "tanh(x)",
)
STOP_GRADIENT = unary(
    "stop_gradient",
    lambda x: x,
    NOT_DIFFERENTIABLE,
    "{x}",
    "x, with no gradient flowing back (detach)",
    float_only=False,
    lowering="copy",  # on its own a copy, or no code at all where its result can alias x
)


def _pow(x: Array, *, exponent: float) -> Array:
    # the exponent in x's dtype, so f32 stays f32
    return x ** x.dtype.type(exponent)


def _pow_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    (x,), p = xs, number(attrs, "exponent")
    return (b.mul(g, b.mul(b.const(p, x), b.pow(x, exponent=p - 1.0))),)


def _pow_c(node: Any) -> str:
    """NumPy's power has exact fast paths for 2, 0.5 and -1 (x*x, sqrt, 1/x); pow otherwise."""
    special = {2.0: "{x} * {x}", 0.5: "sqrt{s}({x})", -1.0: "({T})1 / {x}"}
    return special.get(float(node.attrs["exponent"]), "pow{s}({x}, {exponent})")


POW = unary(
    "pow",
    _pow,
    _pow_vjp,
    _pow_c,
    "x ** exponent",
    attrs={"exponent": (FLOAT, REQUIRED)},
    sample=lambda rng: ((rng.uniform(0.5, 2.0, (3, 4)),), {"exponent": 3.0}),
)


def _clip_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    out = dict(attrs)
    out["min"] = float_attr_or_inf(attrs.get("min"), -1.0)
    out["max"] = float_attr_or_inf(attrs.get("max"), 1.0)
    return out


def _clip(x: Array, *, min: float, max: float) -> Array:
    return clamp(x, min, max)


def _clip_grad(x: Array, g: Array, *, min: float, max: float) -> Array:
    """g where min <= x <= max (inclusive, as PyTorch's clamp), else 0."""
    return np.where((x >= min) & (x <= max), g, lit(x, 0.0)).astype(x.dtype, copy=False)


def _clip_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # reads x, not y: y lies in [min, max] everywhere, so it cannot tell a clipped element
    return (b.clip_grad(xs[0], g, min=attrs["min"], max=attrs["max"]),)


_BOUNDS = {"min": (FLOAT, REQUIRED), "max": (FLOAT, REQUIRED)}
CLIP = unary(
    "clip",
    _clip,
    _clip_vjp,
    "lucid_clamp{s}({x}, {min}, {max})",
    "x < min ? min : (x > max ? max : x); None bounds become -inf / inf",
    attrs=_BOUNDS,
    prepare=_clip_prepare,
    sample=lambda rng: ((rng.standard_normal((3, 4)),), {"min": -0.5, "max": 0.7}),
)
CLIP_GRAD = grad_of(
    "clip_grad",
    _clip_grad,
    "(({x} >= {min} && {x} <= {max}) ? {g} : ({T})0)",
    "g where min <= x <= max else 0",
    attrs=_BOUNDS,
    prepare=_clip_prepare,
)


# ---------------------------------------------------------------- binary, broadcasting


def _add_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    return G.sum_to(b, g, b.shape(xs[0])), G.sum_to(b, g, b.shape(xs[1]))


def _sub_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    gb = G.sum_to(b, b.neg(g), b.shape(xs[1])) if needs[1] else None
    return G.sum_to(b, g, b.shape(xs[0])), gb


def _mul_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    lhs, rhs = xs
    ga = G.sum_to(b, b.mul(g, rhs), b.shape(lhs)) if needs[0] else None
    gb = G.sum_to(b, b.mul(g, lhs), b.shape(rhs)) if needs[1] else None
    return ga, gb


def _div_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    lhs, rhs = xs
    t = b.div(g, rhs)  # shared by both sides: d/db = -(g/b) * a / b
    ga = G.sum_to(b, t, b.shape(lhs)) if needs[0] else None
    gb = G.sum_to(b, b.neg(b.div(b.mul(t, lhs), rhs)), b.shape(rhs)) if needs[1] else None
    return ga, gb


def _maximum_grad(a: Array, b: Array, g: Array) -> tuple[Array, Array]:
    """Cotangents of maximum(a, b): the larger side gets g, a tie splits it in halves."""
    half = g * lit(g, 0.5)
    ga = np.where(a > b, g, np.where(a == b, half, lit(g, 0.0)))
    gb = np.where(b > a, g, np.where(a == b, half, lit(g, 0.0)))
    return ga.astype(g.dtype, copy=False), gb.astype(g.dtype, copy=False)


def _minimum_grad(a: Array, b: Array, g: Array) -> tuple[Array, Array]:
    """Cotangents of minimum(a, b): the smaller side gets g, a tie splits it in halves."""
    # a is the smaller side exactly where b is the larger one: maximum's rule, arguments swapped
    return _maximum_grad(b, a, g)


def _extremum_vjp(grad_op: str) -> VjpRule:
    def vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
        ga, gb = getattr(b, grad_op)(xs[0], xs[1], g)  # a tie splits the cotangent
        return G.sum_to(b, ga, b.shape(xs[0])), G.sum_to(b, gb, b.shape(xs[1]))

    return vjp


def _wrapping(op: str) -> str:
    """int64 arithmetic wraps in NumPy but is undefined on signed overflow in C: go unsigned."""
    return f"(int64_t)((uint64_t){{a}} {op} (uint64_t){{b}})"


def _any(op: str, t: TensorType, what: str) -> None:
    """Comparisons for equality accept every dtype."""


ADD = binary("add", operator.add, _add_vjp, "{a} + {b}", "a + b", c_int=_wrapping("+"))
SUB = binary("sub", operator.sub, _sub_vjp, "{a} - {b}", "a - b", c_int=_wrapping("-"))
MUL = binary("mul", operator.mul, _mul_vjp, "{a} * {b}", "a * b", c_int=_wrapping("*"))
DIV = binary(
    "div",
    operator.truediv,
    _div_vjp,
    "{a} / {b}",
    "a / b (true division; float only)",
    check=expect_float,
    sample=lambda rng: ((rng.standard_normal((3, 4)), rng.uniform(0.5, 2.0, (4,))), {}),
)
MAXIMUM = binary(
    "maximum",
    np.maximum,  # (a > b || isnan(a)) ? a : b, which is exactly np.maximum (ties return b)
    _extremum_vjp("maximum_grad"),
    "lucid_maximum{s}({a}, {b})",
    "(a > b || isnan(a)) ? a : b",
    c_int="({a} > {b} ? {a} : {b})",
)
MINIMUM = binary(
    "minimum",
    np.minimum,
    _extremum_vjp("minimum_grad"),
    "lucid_minimum{s}({a}, {b})",
    "(a < b || isnan(a)) ? a : b",
    c_int="({a} < {b} ? {a} : {b})",
)


def _extremum_grad(name: str, numpy: Callable[..., Any], c: tuple[str, str]) -> OpDef:
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

    doc = "(ga, gb): cotangents in the broadcast shape (a tie splits g); sum_to them after"
    sample = normal((3, 4), (4,), (3, 4))
    return OpDef(
        name, 3, infer, numpy, None, c=c, inputs=("a", "b", "g"), sample=sample, results=2, doc=doc
    )  # fmt: skip


_TIE = "({a} == {b} ? {g} * ({T})0.5 : ({T})0)"
MAXIMUM_GRAD = _extremum_grad(
    "maximum_grad",
    _maximum_grad,
    (f"({{a}} > {{b}} ? {{g}} : {_TIE})", f"({{b}} > {{a}} ? {{g}} : {_TIE})"),
)
MINIMUM_GRAD = _extremum_grad(
    "minimum_grad",
    _minimum_grad,
    (f"({{a}} < {{b}} ? {{g}} : {_TIE})", f"({{b}} < {{a}} ? {{g}} : {_TIE})"),
)


def _comparison(name: str, numpy: Callable[..., Any], c: str, *, any_dtype: bool = False) -> OpDef:
    check = _any if any_dtype else expect_numeric
    return binary(name, numpy, NOT_DIFFERENTIABLE, c, c, check=check, result=DType.BOOL)


LESS = _comparison("less", operator.lt, "({a} < {b})")
LESS_EQUAL = _comparison("less_equal", operator.le, "({a} <= {b})")
GREATER = _comparison("greater", operator.gt, "({a} > {b})")
GREATER_EQUAL = _comparison("greater_equal", operator.ge, "({a} >= {b})")
EQUAL = _comparison("equal", operator.eq, "({a} == {b})", any_dtype=True)
NOT_EQUAL = _comparison("not_equal", operator.ne, "({a} != {b})", any_dtype=True)


def _where_infer(ts: Types, attrs: Attrs) -> Types:
    c, a, b = ts
    if c.dtype is not DType.BOOL:
        raise IRTypeError(f"where: expected a bool condition, got {c}")
    expect_same_dtype("where", (a, b), ("a", "b"))
    return (TensorType(a.dtype, broadcast_types("where", ts)),)


def _where_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    c, lhs, rhs = xs
    zero = b.const(0.0, g)
    ga = G.sum_to(b, b.where(c, g, zero), b.shape(lhs)) if needs[1] else None
    gb = G.sum_to(b, b.where(c, zero, g), b.shape(rhs)) if needs[2] else None
    return None, ga, gb  # the condition is bool: no gradient


WHERE = OpDef(
    "where",
    3,
    _where_infer,
    np.where,
    _where_vjp,
    c="({c} ? {a} : {b})",
    inputs=("c", "a", "b"),
    sample=lambda rng: (
        (rng.standard_normal((3, 4)) > 0, rng.standard_normal((3, 4)), rng.standard_normal(4)),
        {},
    ),
    elementwise=True,
    doc="c ? a : b, broadcasting all three",
)

OPS = (
    NEG, ABS, SIGN, EXP, LOG, SQRT, TANH, STOP_GRADIENT, POW, CLIP, CLIP_GRAD,
    ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, MAXIMUM_GRAD, MINIMUM_GRAD,
    LESS, LESS_EQUAL, GREATER, GREATER_EQUAL, EQUAL, NOT_EQUAL, WHERE,
)  # fmt: skip
