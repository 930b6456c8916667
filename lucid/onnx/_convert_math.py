"""ONNX converters: elementwise ops, activations and reductions.

Each entry of `OPS` maps an ONNX op type to its OpSpec (lucid/onnx/_convert_base.py);
lucid/onnx/_import_ops.py joins the families into the one table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

import lucid
from lucid.nn import functional as F
from lucid.onnx._convert_base import (
    ANY,
    BOOL,
    DTYPES,
    FLOAT,
    FLOAT_TYPES,
    NUM,
    TYPE_NAMES,
    Check,
    Converter,
    ConvertError,
    Ctx,
    NodeInfo,
    OpSpec,
    axis_of,
    float_only,
    like,
    reverse,
    shape_of,
    table_op,
    unary,
    where,
)
from lucid.tensor import Tensor

# ---------------------------------------------------------------- elementwise


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Converter:
    return lambda ctx, xs: [fn(xs[0], xs[1])]


def _div(ctx: Ctx, xs: list[Any]) -> list[Any]:
    if xs[0].data.dtype.kind == "f":
        return [xs[0] / xs[1]]
    # integer division (shape arithmetic, e.g. channels // heads): evaluated at import,
    # truncating toward zero as ONNX does
    a, b = ctx.const(0), ctx.const(1)
    if (b == 0).any():
        raise ConvertError("integer division by zero")
    q = np.abs(a) // np.abs(b)
    return [np.where((a < 0) != (b < 0), -q, q).astype(a.dtype)]


def _mod(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = ctx.const(0), ctx.const(1)  # integer remainders are shape arithmetic: at import
    if (b == 0).any():
        raise ConvertError("Mod by zero")
    return [(np.fmod(a, b) if ctx.attr("fmod", 0) else np.mod(a, b)).astype(a.dtype)]


def _known_if_int(info: NodeInfo) -> str | None:
    """Integer inputs are accepted only known at import (lucid has no integer division)."""
    if info.in_types[0] == 7 and not all(info.known[: len(info.in_types)]):
        return f"{info.op_type} of int64 runtime values (only values known at import)"
    return None


def _mod_check(info: NodeInfo) -> str | None:
    if info.in_types[0] != 7:
        return f"Mod of {TYPE_NAMES.get(info.in_types[0] or 0, info.in_types[0])} (int64 known at import only)"
    return _known_if_int(info)


def _pow(ctx: Ctx, xs: list[Any]) -> list[Any]:
    e = ctx.scalar(1)
    x = xs[0]
    if e == 1.0:
        return [x]
    if e == 2.0:
        return [x * x]
    return [table_op("pow", x, exponent=e)]


def _pow_check(info: NodeInfo) -> str | None:
    if info.in_types[1] is not None and info.in_types[1] != info.in_types[0]:
        return "Pow with an exponent of another dtype"
    if not info.known[1]:
        return "Pow with a runtime exponent (only an exponent known at import)"
    return float_only(info)


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        out = xs[0]
        for x in xs[1:]:
            out = fn(out, x)
        return [out]

    return convert


def _mean(ctx: Ctx, xs: list[Any]) -> list[Any]:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return [out / like(len(xs), out)]


def _not(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [xs[0] == Tensor(np.asarray(False))]


def _and(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    shape = np.broadcast_shapes(a.data.shape, b.data.shape)
    return [where(a, b.broadcast_to(shape), Tensor(np.zeros(shape, bool)))]


def _or(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    shape = np.broadcast_shapes(a.data.shape, b.data.shape)
    return [where(a, Tensor(np.ones(shape, bool)), b.broadcast_to(shape))]


def _bool_only(info: NodeInfo) -> str | None:
    if any(t is not None and t != 9 for t in info.in_types):
        return "non-bool inputs"
    return None


def _clip(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    if ctx.opset < 11:
        return [x.clip(float(ctx.attr("min", -math.inf)), float(ctx.attr("max", math.inf)))]
    lo = xs[1] if ctx.has(1) else None
    hi = xs[2] if len(xs) > 2 and ctx.has(2) else None
    known_lo = ctx.known(1) if ctx.has(1) else True
    known_hi = ctx.known(2) if len(xs) > 2 and ctx.has(2) else True
    if x.data.dtype.kind == "f" and known_lo and known_hi:
        return [
            x.clip(
                ctx.scalar(1) if lo is not None else None, ctx.scalar(2) if hi is not None else None
            )
        ]
    # clip(x) = x < lo ? lo : (x > hi ? hi : x), with tensor bounds (NaN passes through)
    if lo is not None:
        x = where(x < lo, lo.broadcast_to(shape_of(x)), x)
    if hi is not None:
        x = where(x > hi, hi.broadcast_to(shape_of(x)), x)
    return [x]


def _cast_to(ctx: Ctx, x: Tensor, to: int) -> Tensor:
    if to not in DTYPES:
        raise ConvertError(
            f"cast to {TYPE_NAMES.get(to, to)} (lucid has float32, float64, int64, bool)"
        )
    return x if x.data.dtype == DTYPES[to] else x.astype(DTYPES[to])


def _cast(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [_cast_to(ctx, xs[0], int(ctx.attr("to")))]


def _cast_check(info: NodeInfo) -> str | None:
    to = int(info.attrs.get("to", 0))
    if to not in DTYPES:
        return f"Cast to {TYPE_NAMES.get(to, to)}"
    if info.attrs.get("saturate", 1) != 1:
        return "Cast saturate=0"
    return None


def _cast_like(ctx: Ctx, xs: list[Any]) -> list[Any]:
    target = xs[1].data.dtype
    return [xs[0] if xs[0].data.dtype == target else xs[0].astype(target)]


# ---------------------------------------------------------------- activations


def _hardsigmoid(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    if alpha == 1 / 6 and beta == 0.5:
        return [F.hardsigmoid(x)]
    return [(x * like(alpha, x) + like(beta, x)).clip(0.0, 1.0)]


def _selu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    x = xs[0]
    return [F.elu(x, alpha) * like(gamma, x)]


def _celu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    alpha = float(ctx.attr("alpha", 1.0))
    x = xs[0]
    return [F.elu(x / like(alpha, x), 1.0) * like(alpha, x)]


def _thresholded_relu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    return [
        where(x > like(float(ctx.attr("alpha", 1.0)), x), x, like(0.0, x).broadcast_to(shape_of(x)))
    ]


def _prelu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, slope = xs
    shape = np.broadcast_shapes(x.data.shape, slope.data.shape)
    if shape != x.data.shape:
        raise ConvertError(
            f"PRelu slope of shape {slope.data.shape} does not broadcast to x's {x.data.shape}"
        )
    return [where(x < like(0.0, x), x * slope, x)]


def _shrink(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    lambd, bias = float(ctx.attr("lambd", 0.5)), float(ctx.attr("bias", 0.0))
    zero = like(0.0, x).broadcast_to(shape_of(x))
    upper = where(x > like(lambd, x), x - like(bias, x), zero)
    return [where(x < like(-lambd, x), x + like(bias, x), upper)]


def _gelu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ConvertError(f"Gelu approximate={approximate!r}")
    return [F.gelu(xs[0], approximate)]


def _swish(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    alpha = float(ctx.attr("alpha", 1.0))
    return [F.silu(x) if alpha == 1.0 else x * F.sigmoid(x * like(alpha, x))]


def _is_inf(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    if pos and neg:
        return [x.abs() == like(math.inf, x)]
    if pos:
        return [x == like(math.inf, x)]
    if neg:
        return [x == like(-math.inf, x)]
    raise ConvertError("IsInf detecting neither sign")


def _is_inf_check(info: NodeInfo) -> str | None:
    if not info.attrs.get("detect_positive", 1) and not info.attrs.get("detect_negative", 1):
        return "IsInf detecting neither sign"
    return float_only(info)


# ---------------------------------------------------------------- reductions


def _reduce_axes(ctx: Ctx, x: Tensor, *, input_axes: bool) -> tuple[int, ...] | None:
    """The reduced axes (None: nothing to reduce, the input passes through)."""
    if input_axes:
        axes = ctx.ints(1) if ctx.has(1) else []
    else:
        axes = list(ctx.attr("axes", []))
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return None
        return tuple(range(x.ndim))
    return tuple(sorted({axis_of(a, x.ndim) for a in axes}))


def _reduce(kind: str, since: int) -> Converter:
    """ReduceX: `since` is the opset from which axes are an input instead of an attribute."""

    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        axes = _reduce_axes(ctx, x, input_axes=ctx.opset >= since)
        if axes is None:
            return [x]
        keep = bool(ctx.attr("keepdims", 1))
        if kind == "sum":
            return [x.sum(axes, keep)]
        if kind == "mean":
            return [x.mean(axes, keep)]
        if kind in ("max", "min"):
            return [table_op(kind, x, axes=axes, keepdims=keep)]
        if kind == "l1":
            return [x.abs().sum(axes, keep)]
        if kind == "l2":
            return [(x * x).sum(axes, keep).sqrt()]
        if kind == "sumsquare":
            return [(x * x).sum(axes, keep)]
        if kind == "logsum":
            return [x.sum(axes, keep).log()]
        # logsumexp, stable: max + log(sum(exp(x - max)))
        m = table_op("max", x, axes=axes, keepdims=True)
        finite = where(m.abs() == like(math.inf, m), like(0.0, m).broadcast_to(shape_of(m)), m)
        s = (x - finite).exp().sum(axes, True).log() + finite
        return [s if keep else s.reshape(*[d for i, d in enumerate(shape_of(s)) if i not in axes])]

    return convert


def _reduce_check(kind: str) -> Check:
    def check(info: NodeInfo) -> str | None:
        t = info.in_types[0]
        if kind in ("mean", "l2", "logsum", "logsumexp") and t is not None and t not in FLOAT_TYPES:
            return f"Reduce{kind} of {TYPE_NAMES.get(t, t)}"
        if t == 9:
            return "reduction of bool"
        return None

    return check


def _arg(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        axis = axis_of(int(ctx.attr("axis", 0)), x.ndim)
        keep = bool(ctx.attr("keepdims", 1))
        if not ctx.attr("select_last_index", 0):
            return [table_op(kind, x, axis=axis, keepdims=keep)]
        # the last extreme is the first one of x reversed along the axis
        first = table_op(kind, reverse(x, axis), axis=axis, keepdims=keep)
        return [Tensor(np.asarray(int(x.data.shape[axis]) - 1, np.int64)) - first]

    return convert


def _arg_check(info: NodeInfo) -> str | None:
    if info.in_types[0] == 9:
        return "ArgMax/ArgMin of bool"
    return None


def _where_op(ctx: Ctx, xs: list[Any]) -> list[Any]:
    c, a, b = xs
    shape = np.broadcast_shapes(c.data.shape, a.data.shape, b.data.shape)
    sym = np.broadcast_shapes(a.data.shape, b.data.shape) == shape
    if not sym:  # lucid's where broadcasts its operands to the condition's shape
        a, b = a.broadcast_to(shape), b.broadcast_to(shape)
    return [where(c, a, b)]


# ---------------------------------------------------------------- the table

_SPATIAL = frozenset({"auto_pad", "pads", "strides", "dilations", "kernel_shape"})
_REDUCE = frozenset({"axes", "keepdims", "noop_with_empty_axes"})


def _relu(x: Tensor) -> Tensor:
    return F.relu(x)


OPS: Mapping[str, OpSpec] = {
    "Add": OpSpec(_binary(lambda a, b: a + b), dtypes=NUM),
    "Sub": OpSpec(_binary(lambda a, b: a - b), dtypes=NUM),
    "Mul": OpSpec(_binary(lambda a, b: a * b), dtypes=NUM),
    "Div": OpSpec(_div, check=_known_if_int, dtypes=NUM),
    "Mod": OpSpec(_mod, frozenset({"fmod"}), check=_mod_check, dtypes=NUM),
    "Pow": OpSpec(_pow, const_inputs=(1,), check=_pow_check, dtypes=FLOAT),
    "Neg": unary(lambda x: -x, NUM),
    "Abs": unary(lambda x: x.abs(), NUM),
    "Sign": unary(lambda x: table_op("sign", x), FLOAT),
    "Sqrt": unary(lambda x: x.sqrt()),
    "Exp": unary(lambda x: x.exp()),
    "Log": unary(lambda x: x.log()),
    "Reciprocal": unary(lambda x: like(1.0, x) / x),
    "Tanh": unary(lambda x: x.tanh()),
    "Sigmoid": unary(lambda x: x.sigmoid()),
    "Relu": unary(_relu),
    "LeakyRelu": OpSpec(
        lambda ctx, xs: [F.leaky_relu(xs[0], float(ctx.attr("alpha", 0.01)))],
        frozenset({"alpha"}),
        dtypes=FLOAT,
    ),
    "Elu": OpSpec(
        lambda ctx, xs: [F.elu(xs[0], float(ctx.attr("alpha", 1.0)))],
        frozenset({"alpha"}),
        dtypes=FLOAT,
    ),
    "Selu": OpSpec(_selu, frozenset({"alpha", "gamma"}), dtypes=FLOAT),
    "Celu": OpSpec(_celu, frozenset({"alpha"}), dtypes=FLOAT),
    "ThresholdedRelu": OpSpec(_thresholded_relu, frozenset({"alpha"}), dtypes=FLOAT),
    "PRelu": OpSpec(_prelu, dtypes=FLOAT),
    "Shrink": OpSpec(_shrink, frozenset({"lambd", "bias"}), dtypes=FLOAT),
    "Softplus": unary(lambda x: F.softplus(x)),
    "Softsign": unary(lambda x: x / (x.abs() + like(1.0, x))),
    "Mish": unary(lambda x: x * F.softplus(x).tanh()),
    "HardSigmoid": OpSpec(_hardsigmoid, frozenset({"alpha", "beta"}), dtypes=FLOAT),
    "HardSwish": unary(lambda x: F.hardswish(x)),
    "Gelu": OpSpec(_gelu, frozenset({"approximate"}), dtypes=FLOAT),
    "Swish": OpSpec(_swish, frozenset({"alpha"}), dtypes=FLOAT),
    "Clip": OpSpec(_clip, frozenset({"min", "max"}), dtypes=NUM),
    "Max": OpSpec(_variadic(lucid.maximum), dtypes=NUM),
    "Min": OpSpec(_variadic(lucid.minimum), dtypes=NUM),
    "Sum": OpSpec(_variadic(lambda a, b: a + b), dtypes=NUM),
    "Mean": OpSpec(_mean, dtypes=FLOAT),
    "Where": OpSpec(_where_op, dtypes=BOOL),
    "Equal": OpSpec(_binary(lambda a, b: a == b), dtypes=ANY),
    "Less": OpSpec(_binary(lambda a, b: a < b), dtypes=NUM),
    "Greater": OpSpec(_binary(lambda a, b: a > b), dtypes=NUM),
    "LessOrEqual": OpSpec(_binary(lambda a, b: a <= b), dtypes=NUM),
    "GreaterOrEqual": OpSpec(_binary(lambda a, b: a >= b), dtypes=NUM),
    "Not": OpSpec(_not, dtypes=BOOL),
    "And": OpSpec(_and, check=_bool_only, dtypes=BOOL),
    "Or": OpSpec(_or, check=_bool_only, dtypes=BOOL),
    "Xor": OpSpec(_binary(lambda a, b: a != b), check=_bool_only, dtypes=BOOL),
    "IsNaN": unary(lambda x: x != x),  # noqa: PLR0124  (NaN is the one value != itself)
    "IsInf": OpSpec(
        _is_inf,
        frozenset({"detect_positive", "detect_negative"}),
        check=_is_inf_check,
        dtypes=FLOAT,
    ),
    "Cast": OpSpec(_cast, frozenset({"to", "saturate", "round_mode"}), check=_cast_check),
    "CastLike": OpSpec(_cast_like, frozenset({"saturate", "round_mode"})),
    "ReduceSum": OpSpec(_reduce("sum", 13), _REDUCE, (1,), _reduce_check("sum"), NUM),
    "ReduceMean": OpSpec(_reduce("mean", 18), _REDUCE, (1,), _reduce_check("mean"), FLOAT),
    "ReduceMax": OpSpec(_reduce("max", 18), _REDUCE, (1,), _reduce_check("max"), NUM),
    "ReduceMin": OpSpec(_reduce("min", 18), _REDUCE, (1,), _reduce_check("min"), NUM),
    "ReduceL1": OpSpec(_reduce("l1", 18), _REDUCE, (1,), _reduce_check("l1"), NUM),
    "ReduceL2": OpSpec(_reduce("l2", 18), _REDUCE, (1,), _reduce_check("l2"), FLOAT),
    "ReduceSumSquare": OpSpec(
        _reduce("sumsquare", 18), _REDUCE, (1,), _reduce_check("sumsquare"), NUM
    ),
    "ReduceLogSum": OpSpec(_reduce("logsum", 18), _REDUCE, (1,), _reduce_check("logsum"), FLOAT),
    "ReduceLogSumExp": OpSpec(
        _reduce("logsumexp", 18), _REDUCE, (1,), _reduce_check("logsumexp"), FLOAT
    ),
    "ArgMax": OpSpec(
        _arg("argmax"),
        frozenset({"axis", "keepdims", "select_last_index"}),
        check=_arg_check,
        dtypes=NUM,
    ),
    "ArgMin": OpSpec(
        _arg("argmin"),
        frozenset({"axis", "keepdims", "select_last_index"}),
        check=_arg_check,
        dtypes=NUM,
    ),
}
