"""Elementwise ops (the ones fusion chains into one loop) and their gradient-only companions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from lucid import _np_kernels as K
from lucid.errors import IRTypeError
from lucid.ir import _vjp as V
from lucid.ir.core import Attr, Builder, Node, Value
from lucid.ir.ops import (
    FLOAT,
    REQUIRED,
    Array,
    OpDef,
    arr,
    broadcast_types,
    defvjp,
    expect_float,
    expect_numeric,
    expect_same_dtype,
    float_attr_or_inf,
    no_gradient,
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

# VJP rules of the unary ops above. Where the derivative is a function of the result (relu,
# sigmoid, tanh, exp, sqrt) the rule reads the output y, so the forward saves y, which the next
# layer's weight gradient needs anyway, instead of a second buffer for x.
defvjp("sign")(no_gradient)


@defvjp("neg")
@V.unary
def _neg_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("neg", [g])


@defvjp("abs")
@V.unary
def _abs_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("mul", [g, b.op("sign", [x])])  # sign(0) = 0, as K.abs_grad


@defvjp("hardswish")
@V.unary
def _hardswish_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    # recomputed from the pre-activation: one select in the GEMM epilogue of dY @ W
    return b.op("hardswish_grad", [x, g])


@defvjp("hardsigmoid")
@V.unary
def _hardsigmoid_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("hardsigmoid_grad", [x, g])


@defvjp("relu")
@V.unary
def _relu_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("relu_grad", [y, g])  # y > 0 exactly where x > 0 (NaN included)


@defvjp("relu6")
@V.unary
def _relu6_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("relu6_grad", [y, g])  # 0 < y < 6 exactly where 0 < x < 6


@defvjp("sigmoid")
@V.unary
def _sigmoid_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("mul", [b.op("mul", [g, y]), b.op("sub", [V.const(b, 1.0, y), y])])


@defvjp("tanh")
@V.unary
def _tanh_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("mul", [g, b.op("sub", [V.const(b, 1.0, y), b.op("mul", [y, y])])])


@defvjp("exp")
@V.unary
def _exp_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("mul", [g, y])


@defvjp("log")
@V.unary
def _log_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("div", [g, x])


@defvjp("sqrt")
@V.unary
def _sqrt_vjp(b: Builder, x: Value, y: Value, g: Value) -> Value:
    return b.op("div", [g, b.op("add", [y, y])])


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
defvjp("stop_gradient")(no_gradient)


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


@defvjp("pow")
def _pow_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (x,), g, p = xs, gs[0], float(node.attrs["exponent"])  # type: ignore[arg-type]
    assert g is not None
    slope = b.op("mul", [V.const(b, p, x), b.op("pow", [x], {"exponent": p - 1.0})])
    return (b.op("mul", [g, slope]),)


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


@defvjp("clip")
def _clip_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    # reads x, not y: y lies in [min, max] everywhere, so it cannot tell a clipped element
    return (b.op("clip_grad", [xs[0], gs[0]], dict(node.attrs)),)


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

# VJP rules of the arithmetic ops above; each cotangent is summed back to its input's shape
# (sum_to) when broadcasting stretched that input. Comparisons have bool results: no gradient.


@defvjp("add")
def _add_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    g = gs[0]
    assert g is not None
    return V.sum_to(b, g, xs[0].type), V.sum_to(b, g, xs[1].type)


@defvjp("sub")
def _sub_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    g = gs[0]
    assert g is not None
    gb = V.sum_to(b, b.op("neg", [g]), xs[1].type) if needs[1] else None
    return V.sum_to(b, g, xs[0].type), gb


@defvjp("mul")
def _mul_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (lhs, rhs), g = xs, gs[0]
    assert g is not None
    ga = V.sum_to(b, b.op("mul", [g, rhs]), lhs.type) if needs[0] else None
    gb = V.sum_to(b, b.op("mul", [g, lhs]), rhs.type) if needs[1] else None
    return ga, gb


@defvjp("div")
def _div_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (lhs, rhs), g = xs, gs[0]
    assert g is not None
    t = b.op("div", [g, rhs])  # shared by both sides, as eager computes it: -(g/b) * a / b
    gb = b.op("neg", [b.op("div", [b.op("mul", [t, lhs]), rhs])]) if needs[1] else None
    return V.sum_to(b, t, lhs.type), None if gb is None else V.sum_to(b, gb, rhs.type)


def _extremum_vjp(grad_op: str) -> V.VjpFn:
    def vjp(
        b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
    ) -> V.Grads:
        # a tie splits the cotangent in halves (DESIGN.md, "Numerics")
        ga, gb = b.op_multi(grad_op, [xs[0], xs[1], gs[0]])  # type: ignore[list-item]
        return V.sum_to(b, ga, xs[0].type), V.sum_to(b, gb, xs[1].type)

    return vjp


defvjp("maximum")(_extremum_vjp("maximum_grad"))
defvjp("minimum")(_extremum_vjp("minimum_grad"))


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


@defvjp("where")
def _where_vjp(
    b: Builder, node: Node, xs: V.Values, ys: V.Values, gs: V.Cotangents, needs: V.Needs
) -> V.Grads:
    (c, lhs, rhs), g = xs, gs[0]
    assert g is not None
    zero = V.const(b, 0.0, g)
    ga = V.sum_to(b, b.op("where", [c, g, zero]), lhs.type) if needs[1] else None
    gb = V.sum_to(b, b.op("where", [c, zero, g]), rhs.type) if needs[2] else None
    return None, ga, gb  # the condition is bool: no gradient


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
