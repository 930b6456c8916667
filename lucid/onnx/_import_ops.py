"""The ONNX op types lucid imports: one converter per op type, in one table.

A converter `fn(ctx, xs) -> outputs` receives the node's inputs as lucid Tensors (None for an
omitted optional input) and returns its outputs as Tensors, or as NumPy arrays for values that
are known at import (Shape, Constant, ...), which the importer folds. It calls lucid's eager
ops only, so the same code runs eagerly, under `lucid.compile`'s tracer and at import time
(constant folding). Inputs that lucid needs as compile-time values (a Reshape's shape, Slice's
starts, ...) are read with `ctx.const(i)` / `ctx.dims(i)`; an input that is not known at import
is then an error naming the node.

Each entry also states its attributes (an attribute outside the list is refused), the inputs
it needs as constants, and `check`: static conditions on attributes and dtypes, which both
`lucid.onnx.load` and the conformance scope (`_conformance.py`) use, so what is "supported" is
decided in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import lucid
from lucid.ir.ops import OPS
from lucid.nn import functional as F
from lucid.tensor import Tensor, apply

# A symbolic batch inside a folded shape value: Shape of a tensor whose first dim is the batch
# gives this marker there; a consumer reading the value as dims replaces it with the run's batch.
BATCH = -(1 << 40)

# ONNX TensorProto element types lucid handles, and their NumPy dtypes.
DTYPES: Mapping[int, np.dtype[Any]] = {
    1: np.dtype(np.float32),
    11: np.dtype(np.float64),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
}
FLOAT_TYPES = frozenset({1, 11})


class ConvertError(Exception):
    """A node cannot be converted; the importer adds the node's name and op type."""


class NodeInfo:
    """What a static check sees of a node: attributes, input/output element types and shapes
    (from ONNX shape inference, None when unknown), and which inputs are known at import."""

    def __init__(
        self,
        op_type: str,
        attrs: Mapping[str, Any],
        in_types: Sequence[int | None],
        out_types: Sequence[int | None],
        in_shapes: Sequence[tuple[Any, ...] | None],
        known: Sequence[bool],
        n_outputs: int,
        opset: int,
    ) -> None:
        self.op_type = op_type
        self.attrs = attrs
        self.in_types = list(in_types)
        self.out_types = list(out_types)
        self.in_shapes = list(in_shapes)
        self.known = list(known)
        self.n_outputs = n_outputs
        self.opset = opset


class Ctx:
    """A node as its converter sees it: attributes, constant inputs, the run's batch."""

    def __init__(
        self,
        attrs: Mapping[str, Any],
        consts: Sequence[np.ndarray | None],
        names: Sequence[str],
        batch: Any,
        opset: int,
        n_outputs: int,
    ) -> None:
        self.attrs = attrs
        self._consts = consts
        self._names = names
        self.batch = batch
        self.opset = opset
        self.n_outputs = n_outputs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value (ints as int, lists as lists, strings decoded)."""
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        """Whether optional input i is given."""
        return i < len(self._names) and self._names[i] != ""

    def const(self, i: int, *, allow_batch: bool = False) -> np.ndarray:
        """Input i as a NumPy array known at import, or a ConvertError."""
        value = self._consts[i] if i < len(self._consts) else None
        if value is None:
            raise ConvertError(
                f"input {i} ({self._names[i]!r}) must be known at import (an initializer, a "
                "Constant or computed from them and static shapes); it is a runtime value"
            )
        if not allow_batch and value.dtype == np.int64 and (value == BATCH).any():
            raise ConvertError(f"input {i} ({self._names[i]!r}) depends on the dynamic batch here")
        return value

    def dims(self, i: int) -> list[Any]:
        """Input i as a list of sizes; the batch marker becomes the run's batch size."""
        value = self.const(i, allow_batch=True)
        if value.dtype != np.int64 or value.ndim > 1:
            raise ConvertError(
                f"input {i} must be a 1-D int64 tensor, got {value.dtype}{list(value.shape)}"
            )
        return [self.batch if int(v) == BATCH else int(v) for v in value.reshape(-1)]

    def ints(self, i: int) -> list[int]:
        """Input i as a list of plain ints (axes, starts, ...)."""
        value = self.const(i)
        if value.dtype.kind not in "iu":
            raise ConvertError(f"input {i} must be an integer tensor, got {value.dtype}")
        return [int(v) for v in value.reshape(-1)]

    def scalar(self, i: int) -> float:
        """Input i as one number."""
        value = self.const(i)
        if value.size != 1:
            raise ConvertError(f"input {i} must hold one value, got shape {list(value.shape)}")
        return float(value.reshape(-1)[0])


Converter = Callable[[Ctx, list[Any]], Sequence[Any]]
Check = Callable[[NodeInfo], str | None]


@dataclass(frozen=True)
class OpSpec:
    """One ONNX op type: its converter, the attributes it reads, the inputs it needs known at
    import, its static check, and the dtypes its (first) input may have."""

    fn: Converter
    attrs: frozenset[str] = frozenset()
    const_inputs: tuple[int, ...] = ()
    check: Check | None = None
    dtypes: frozenset[int] = frozenset(DTYPES)
    outputs: int = 1  # outputs it can produce (more: the rest are refused)


# ---------------------------------------------------------------- helpers


def _axis(axis: int, ndim: int) -> int:
    """A possibly negative axis as non-negative, or a ConvertError."""
    if not -ndim <= axis < max(ndim, 1):
        raise ConvertError(f"axis {axis} is out of range for a tensor of rank {ndim}")
    return axis % max(ndim, 1)


def _like(value: float, x: Tensor) -> Tensor:
    """A 0-d constant in x's dtype."""
    return Tensor(np.asarray(value, dtype=x.data.dtype))


def _shape(x: Tensor) -> tuple[Any, ...]:
    return tuple(x.shape)


def _where(c: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return lucid.where(c, a, b)


def _op(name: str, *xs: Tensor, **attrs: Any) -> Tensor:
    """An op of lucid's table applied directly (for ops with no functional form)."""
    return apply(OPS[name], tuple(xs), attrs)


def _float_only(info: NodeInfo) -> str | None:
    t = info.in_types[0] if info.in_types else None
    if t is not None and t not in FLOAT_TYPES:
        return f"input dtype {_TYPE_NAMES.get(t, t)} (only float32/float64)"
    return None


_TYPE_NAMES = {1: "float32", 11: "float64", 7: "int64", 9: "bool", 6: "int32", 10: "float16"}


def _one(fn: Callable[[Tensor], Tensor]) -> Converter:
    return lambda ctx, xs: [fn(xs[0])]


# ---------------------------------------------------------------- elementwise


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> Converter:
    return lambda ctx, xs: [fn(xs[0], xs[1])]


def _div(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [xs[0] / xs[1]]


def _pow(ctx: Ctx, xs: list[Any]) -> list[Any]:
    e = ctx.scalar(1)
    x = xs[0]
    if e == 1.0:
        return [x]
    if e == 2.0:
        return [x * x]
    return [_op("pow", x, exponent=e)]


def _pow_check(info: NodeInfo) -> str | None:
    if info.in_types[1] is not None and info.in_types[1] != info.in_types[0]:
        return "Pow with an exponent of another dtype"
    if not info.known[1]:
        return "Pow with a runtime exponent (only an exponent known at import)"
    return _float_only(info)


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
    return [out / _like(len(xs), out)]


def _not(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [xs[0] == Tensor(np.asarray(False))]


def _and(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    shape = np.broadcast_shapes(a.data.shape, b.data.shape)
    return [_where(a, b.broadcast_to(shape), Tensor(np.zeros(shape, bool)))]


def _or(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    shape = np.broadcast_shapes(a.data.shape, b.data.shape)
    return [_where(a, Tensor(np.ones(shape, bool)), b.broadcast_to(shape))]


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
    known_lo = ctx._consts[1] is not None if ctx.has(1) else True
    known_hi = ctx._consts[2] is not None if len(xs) > 2 and ctx.has(2) else True
    if x.data.dtype.kind == "f" and known_lo and known_hi:
        return [
            x.clip(
                ctx.scalar(1) if lo is not None else None, ctx.scalar(2) if hi is not None else None
            )
        ]
    # clip(x) = x < lo ? lo : (x > hi ? hi : x), with tensor bounds (NaN passes through)
    if lo is not None:
        x = _where(x < lo, lo.broadcast_to(_shape(x)), x)
    if hi is not None:
        x = _where(x > hi, hi.broadcast_to(_shape(x)), x)
    return [x]


def _cast_to(ctx: Ctx, x: Tensor, to: int) -> Tensor:
    if to not in DTYPES:
        raise ConvertError(
            f"cast to {_TYPE_NAMES.get(to, to)} (lucid has float32, float64, int64, bool)"
        )
    return x if x.data.dtype == DTYPES[to] else x.astype(DTYPES[to])


def _cast(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [_cast_to(ctx, xs[0], int(ctx.attr("to")))]


def _cast_check(info: NodeInfo) -> str | None:
    to = int(info.attrs.get("to", 0))
    if to not in DTYPES:
        return f"Cast to {_TYPE_NAMES.get(to, to)}"
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
    return [(x * _like(alpha, x) + _like(beta, x)).clip(0.0, 1.0)]


def _selu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    x = xs[0]
    return [F.elu(x, alpha) * _like(gamma, x)]


def _celu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    alpha = float(ctx.attr("alpha", 1.0))
    x = xs[0]
    return [F.elu(x / _like(alpha, x), 1.0) * _like(alpha, x)]


def _thresholded_relu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    return [
        _where(
            x > _like(float(ctx.attr("alpha", 1.0)), x), x, _like(0.0, x).broadcast_to(_shape(x))
        )
    ]


def _prelu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, slope = xs
    shape = np.broadcast_shapes(x.data.shape, slope.data.shape)
    if shape != x.data.shape:
        raise ConvertError(
            f"PRelu slope of shape {slope.data.shape} does not broadcast to x's {x.data.shape}"
        )
    return [_where(x < _like(0.0, x), x * slope, x)]


def _shrink(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    lambd, bias = float(ctx.attr("lambd", 0.5)), float(ctx.attr("bias", 0.0))
    zero = _like(0.0, x).broadcast_to(_shape(x))
    upper = _where(x > _like(lambd, x), x - _like(bias, x), zero)
    return [_where(x < _like(-lambd, x), x + _like(bias, x), upper)]


def _gelu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ConvertError(f"Gelu approximate={approximate!r}")
    return [F.gelu(xs[0], approximate)]


def _swish(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    alpha = float(ctx.attr("alpha", 1.0))
    return [F.silu(x) if alpha == 1.0 else x * F.sigmoid(x * _like(alpha, x))]


def _is_inf(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    if pos and neg:
        return [x.abs() == _like(math.inf, x)]
    if pos:
        return [x == _like(math.inf, x)]
    if neg:
        return [x == _like(-math.inf, x)]
    return [x != x.abs() + _like(math.inf, x)]  # never: x != x + inf is False unless NaN


def _is_inf_check(info: NodeInfo) -> str | None:
    if not info.attrs.get("detect_positive", 1) and not info.attrs.get("detect_negative", 1):
        return "IsInf detecting neither sign"
    return _float_only(info)


# ---------------------------------------------------------------- linear algebra


def _matmul(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs
    if a.ndim == 0 or b.ndim == 0:
        raise ConvertError("MatMul of a 0-d tensor")
    if b.ndim == 1:
        out = lucid.matmul(a, b.reshape(b.data.shape[0], 1))
        return [out.reshape(*_shape(out)[:-1])]
    if a.ndim == 1:
        out = lucid.matmul(a.reshape(1, a.data.shape[0]), b)
        return [out.reshape(*(_shape(out)[:-2] + _shape(out)[-1:]))]
    if a.ndim < b.ndim:  # batch_matmul wants a's batch dims too
        a = a.broadcast_to((*_shape(b)[:-2], *_shape(a)[-2:]))
    return [a @ b]


def _gemm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    a, b = xs[0], xs[1]
    c = xs[2] if ctx.has(2) else None
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    if a.ndim != 2 or b.ndim != 2:
        raise ConvertError(
            f"Gemm needs 2-D A and B, got {list(a.data.shape)} and {list(b.data.shape)}"
        )
    if ctx.attr("transA", 0):
        a = a.transpose(1, 0)
    if ctx.attr("transB", 0):
        w = b  # [N, K]: lucid's linear takes the weight as stored (torch's nn.Linear export)
    else:
        w = b.transpose(1, 0)
    if (
        alpha == 1.0
        and c is not None
        and beta == 1.0
        and c.ndim == 1
        and c.data.shape[0] == w.data.shape[0]
    ):
        return [F.linear(a, w, c)]
    y = F.linear(a, w)
    if alpha != 1.0:
        y = y * _like(alpha, y)
    if c is not None:
        y = y + (c if beta == 1.0 else c * _like(beta, c))
    return [y]


# ---------------------------------------------------------------- convolution and pooling


def _auto_pads(
    ctx: Ctx,
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dil: Sequence[int],
) -> list[int]:
    """ONNX pads [b1, b2, ..., e1, e2, ...] from pads or auto_pad."""
    n = len(spatial)
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto == "NOTSET":
        pads = list(ctx.attr("pads", [0] * 2 * n))
        if len(pads) != 2 * n:
            raise ConvertError(f"pads has {len(pads)} values, expected {2 * n}")
        return pads
    if auto == "VALID":
        return [0] * 2 * n
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ConvertError(f"auto_pad={auto!r}")
    begin, end = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dil):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, big = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else big)
        end.append(big if auto == "SAME_UPPER" else small)
    return begin + end


def _spatial_attrs(
    ctx: Ctx, x: Tensor, kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    n = len(kernel)
    strides = list(ctx.attr("strides", [1] * n))
    dil = list(ctx.attr("dilations", [1] * n))
    if len(strides) != n or len(dil) != n:
        raise ConvertError(f"strides/dilations must have {n} values")
    spatial = [int(d) for d in x.data.shape[2:]]
    return strides, dil, _auto_pads(ctx, spatial, kernel, strides, dil)


def _to_2d(x: Tensor, n: int) -> Tensor:
    """A 1-d [N, C, L] tensor viewed as [N, C, 1, L]; 2-d unchanged."""
    return x.unsqueeze(2) if n == 1 else x


def _torch_pads(pads: Sequence[int], n: int) -> tuple[int, ...]:
    """ONNX [b..., e...] as F.pad's (before, after) pairs from the last dim back (2 dims)."""
    begin, end = list(pads[:n]), list(pads[n:])
    if n == 1:
        begin, end = [0, *begin], [0, *end]
    return (begin[1], end[1], begin[0], end[0])


def _conv(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, w = xs[0], xs[1]
    b = xs[2] if ctx.has(2) else None
    n = x.ndim - 2
    if n not in (1, 2) or w.ndim != x.ndim:
        raise ConvertError(f"Conv over {n} spatial dims (lucid has 1-D and 2-D convolution)")
    kernel = [int(k) for k in w.data.shape[2:]]
    if "kernel_shape" in ctx.attrs and list(ctx.attr("kernel_shape")) != kernel:
        raise ConvertError(f"kernel_shape {ctx.attr('kernel_shape')} != the weight's {kernel}")
    strides, dil, pads = _spatial_attrs(ctx, x, kernel)
    x2, w2 = _to_2d(x, n), _to_2d(w, n)
    s2, d2 = ([1, *strides], [1, *dil]) if n == 1 else (strides, dil)
    tp = _torch_pads(pads, n)
    if tp[0] == tp[1] and tp[2] == tp[3]:
        y = F.conv2d(x2, w2, b, tuple(s2), (tp[2], tp[0]), tuple(d2), int(ctx.attr("group", 1)))
    else:
        x2 = F.pad(x2, tp)
        y = F.conv2d(x2, w2, b, tuple(s2), 0, tuple(d2), int(ctx.attr("group", 1)))
    return [y.squeeze(2) if n == 1 else y]


def _pool(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        n = x.ndim - 2
        kernel = list(ctx.attr("kernel_shape"))
        if n not in (1, 2) or len(kernel) != n:
            raise ConvertError(f"{kind} pooling over {n} spatial dims (lucid has 1-D and 2-D)")
        strides, dil, pads = _spatial_attrs(ctx, x, kernel)
        ceil = bool(ctx.attr("ceil_mode", 0))
        x2 = _to_2d(x, n)
        k2, s2, d2 = ([1, *kernel], [1, *strides], [1, *dil]) if n == 1 else (kernel, strides, dil)
        tp = _torch_pads(pads, n)
        sym = tp[0] == tp[1] and tp[2] == tp[3] and tp[0] <= k2[0] // 2 and tp[2] <= k2[1] // 2
        if kind == "max":
            if sym:
                y = F.max_pool2d(x2, tuple(k2), tuple(s2), (tp[0], tp[2]), tuple(d2), ceil)
            else:
                if ceil:
                    raise ConvertError("MaxPool with ceil_mode and asymmetric or large pads")
                x2 = F.pad(x2, tp, value=-math.inf)
                y = F.max_pool2d(x2, tuple(k2), tuple(s2), 0, tuple(d2), False)
        else:
            include = bool(ctx.attr("count_include_pad", 0))
            if any(d != 1 for d in d2):
                raise ConvertError("AveragePool with dilations")
            if sym:
                y = F.avg_pool2d(x2, tuple(k2), tuple(s2), (tp[0], tp[2]), ceil, include)
            elif not ceil:  # explicit zero padding; without count_include_pad, divide by the
                # count of real elements in each window (an average of a padded ones mask)
                y = F.avg_pool2d(F.pad(x2, tp), tuple(k2), tuple(s2), 0, False, True)
                if not include:
                    ones = Tensor(np.ones((1, 1, *x2.data.shape[2:]), x2.data.dtype))
                    y = y / F.avg_pool2d(F.pad(ones, tp), tuple(k2), tuple(s2), 0, False, True)
            else:
                raise ConvertError("AveragePool with ceil_mode and asymmetric or large pads")
        return [y.squeeze(2) if n == 1 else y]

    return convert


def _pool_check(info: NodeInfo) -> str | None:
    if info.attrs.get("storage_order", 0) != 0:
        return "storage_order=1"
    if info.n_outputs > 1:
        return "MaxPool's Indices output"
    if info.op_type == "AveragePool" and any(d != 1 for d in info.attrs.get("dilations", [])):
        return "AveragePool with dilations"
    shape = info.in_shapes[0]
    if shape is not None and len(shape) not in (3, 4):
        return f"pooling over {len(shape) - 2} spatial dims"
    return _float_only(info)


def _conv_check(info: NodeInfo) -> str | None:
    shape = info.in_shapes[0]
    if shape is not None and len(shape) not in (3, 4):
        return f"Conv over {len(shape) - 2} spatial dims"
    return _float_only(info)


def _global_pool(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        axes = tuple(range(2, x.ndim))
        if kind == "avg":
            return [x.mean(axes, keepdims=True)]
        return [_op("max", x, axes=axes, keepdims=True)]

    return convert


# ---------------------------------------------------------------- normalization


def _channel(v: Tensor, ndim: int) -> Tensor:
    """A per-channel [C] vector shaped to broadcast over [N, C, ...]."""
    return v.reshape(v.data.shape[0], *([1] * (ndim - 2)))


def _batch_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias, mean, var = xs[:5]
    if ctx.attr("training_mode", 0):
        raise ConvertError("BatchNormalization training_mode=1")
    eps = float(ctx.attr("epsilon", 1e-5))
    # PyTorch's CPU formula: x * (s / sqrt(var + eps)) + (b - mean * s / sqrt(var + eps))
    k = scale / (var + _like(eps, var)).sqrt()
    shift = bias - mean * k
    return [x * _channel(k, x.ndim) + _channel(shift, x.ndim)]


def _layer_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale = xs[0], xs[1]
    bias = xs[2] if ctx.has(2) else None
    axis = _axis(int(ctx.attr("axis", -1)), x.ndim)
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axes, keepdims=True)
    y = d / (var + _like(eps, x)).sqrt() * scale
    return [y + bias if bias is not None else y]


def _norm_check(info: NodeInfo) -> str | None:
    if info.n_outputs > 1:
        return f"{info.op_type}'s optional statistics outputs"
    if info.attrs.get("stash_type", 1) != 1:
        return "stash_type other than float32"
    return _float_only(info)


def _instance_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias = xs
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axes, keepdims=True)
    d = x - mean
    var = (d * d).mean(axes, keepdims=True)
    y = d / (var + _like(eps, x)).sqrt()
    return [y * _channel(scale, x.ndim) + _channel(bias, x.ndim)]


def _group_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x, scale, bias = xs
    groups = int(ctx.attr("num_groups"))
    eps = float(ctx.attr("epsilon", 1e-5))
    shape = _shape(x)
    c = int(x.data.shape[1])
    if c % groups:
        raise ConvertError(f"GroupNormalization: {c} channels in {groups} groups")
    g = x.reshape(shape[0], groups, -1)
    mean = g.mean(2, keepdims=True)
    d = g - mean
    var = (d * d).mean(2, keepdims=True)
    y = (d / (var + _like(eps, x)).sqrt()).reshape(*shape)
    if int(scale.data.shape[0]) == groups and groups != c:  # opset 18: one scale per group
        scale = scale.reshape(groups, 1).broadcast_to((groups, c // groups)).reshape(c)
        bias = bias.reshape(groups, 1).broadcast_to((groups, c // groups)).reshape(c)
    return [y * _channel(scale, x.ndim) + _channel(bias, x.ndim)]


def _lp_norm(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = _axis(int(ctx.attr("axis", -1)), x.ndim)
    p = int(ctx.attr("p", 2))
    if p == 1:
        norm = x.abs().sum(axis, keepdims=True)
    elif p == 2:
        norm = (x * x).sum(axis, keepdims=True).sqrt()
    else:
        raise ConvertError(f"LpNormalization p={p}")
    # a zero norm means x is zero there: divide by 1 so the result is 0, as ONNX's reference
    one = _like(1.0, norm).broadcast_to(_shape(norm))
    return [x / _where(norm == _like(0.0, norm), one, norm)]


def _softmax(log: bool) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        default = -1 if ctx.opset >= 13 else 1
        axis = _axis(int(ctx.attr("axis", default)), x.ndim)
        fn = F.log_softmax if log else F.softmax
        if ctx.opset >= 13 or axis == x.ndim - 1:
            return [fn(x, axis)]
        shape = _shape(x)  # opset < 13: softmax over the flattened dims from axis on
        flat = x.reshape(*shape[:axis], math.prod(int(d) for d in x.data.shape[axis:]))
        return [fn(flat, axis).reshape(*shape)]

    return convert


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
    return tuple(sorted({_axis(a, x.ndim) for a in axes}))


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
            return [_op(kind, x, axes=axes, keepdims=keep)]
        if kind == "l1":
            return [x.abs().sum(axes, keep)]
        if kind == "l2":
            return [(x * x).sum(axes, keep).sqrt()]
        if kind == "sumsquare":
            return [(x * x).sum(axes, keep)]
        if kind == "logsum":
            return [x.sum(axes, keep).log()]
        # logsumexp, stable: max + log(sum(exp(x - max)))
        m = _op("max", x, axes=axes, keepdims=True)
        finite = _where(m.abs() == _like(math.inf, m), _like(0.0, m).broadcast_to(_shape(m)), m)
        s = (x - finite).exp().sum(axes, True).log() + finite
        return [s if keep else s.reshape(*[d for i, d in enumerate(_shape(s)) if i not in axes])]

    return convert


def _reduce_check(kind: str) -> Check:
    def check(info: NodeInfo) -> str | None:
        t = info.in_types[0]
        if kind in ("mean", "l2", "logsum", "logsumexp") and t is not None and t not in FLOAT_TYPES:
            return f"Reduce{kind} of {_TYPE_NAMES.get(t, t)}"
        if t == 9:
            return "reduction of bool"
        return None

    return check


def _arg(kind: str) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        axis = _axis(int(ctx.attr("axis", 0)), x.ndim)
        keep = bool(ctx.attr("keepdims", 1))
        return [_op(kind, x, axis=axis, keepdims=keep)]

    return convert


def _arg_check(info: NodeInfo) -> str | None:
    if info.attrs.get("select_last_index", 0):
        return "select_last_index=1"
    if info.in_types[0] == 9:
        return "ArgMax/ArgMin of bool"
    return None


# ---------------------------------------------------------------- shapes


def _reshape(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dims = ctx.dims(1)
    if not ctx.attr("allowzero", 0):
        dims = [_shape(x)[i] if isinstance(d, int) and d == 0 else d for i, d in enumerate(dims)]
    elif 0 in dims and -1 in dims:
        raise ConvertError("Reshape allowzero=1 with both 0 and -1")
    return [x.reshape(*dims)]


def _flatten(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = int(ctx.attr("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ConvertError(f"Flatten axis {axis} out of range for rank {x.ndim}")
    if axis < 0:
        axis += x.ndim
    inner = math.prod(int(d) for d in x.data.shape[axis:])
    if axis == 0:
        return [x.reshape(1, -1)]
    if axis == 1:
        return [x.reshape(-1, inner)]  # keeps a dynamic batch symbolic
    outer = math.prod(int(d) for d in x.data.shape[:axis])
    return [x.reshape(outer, inner)]


def _transpose(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    perm = ctx.attr("perm")
    return [x.transpose(*perm) if perm is not None else x.transpose()]


def _axes_arg(ctx: Ctx, since: int) -> list[int] | None:
    if ctx.opset >= since:
        return ctx.ints(1) if ctx.has(1) else None
    axes = ctx.attr("axes")
    return None if axes is None else list(axes)


def _squeeze(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axes = _axes_arg(ctx, 13)
    if axes is None:
        return [x.squeeze()]
    axes = [_axis(a, x.ndim) for a in axes]
    for a in axes:
        if int(x.data.shape[a]) != 1:
            raise ConvertError(f"Squeeze of axis {a} of size {x.data.shape[a]}")
    return [x.reshape(*[d for i, d in enumerate(_shape(x)) if i not in axes])]


def _unsqueeze(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axes = _axes_arg(ctx, 13)
    if axes is None:
        raise ConvertError("Unsqueeze without axes")
    rank = x.ndim + len(axes)
    axes = sorted(_axis(a, rank) for a in axes)
    shape = list(_shape(x))
    for a in axes:
        shape.insert(a, 1)
    return [x.reshape(*shape)]


def _concat(ctx: Ctx, xs: list[Any]) -> list[Any]:
    axis = _axis(int(ctx.attr("axis")), xs[0].ndim)
    parts = [x for x in xs if x is not None and int(x.data.shape[axis]) != 0] or [xs[0]]
    return [lucid.cat(parts, axis) if len(parts) > 1 else parts[0]]


def _split(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    axis = _axis(int(ctx.attr("axis", 0)), x.ndim)
    n = int(x.data.shape[axis])
    if ctx.opset >= 13 and ctx.has(1):
        sizes = ctx.ints(1)
    elif ctx.opset < 13 and "split" in ctx.attrs:
        sizes = list(ctx.attr("split"))
    else:
        k = int(ctx.attr("num_outputs", ctx.n_outputs))
        size = -(-n // k)
        sizes = [min(size, n - i * size) for i in range(k)]
    if sum(sizes) != n:
        raise ConvertError(f"Split sizes {sizes} do not add up to {n}")
    return list(x.split(sizes, axis))


def _slice(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = list(ctx.attr("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = ctx.ints(1), ctx.ints(2)
        axes = ctx.ints(3) if ctx.has(3) else list(range(len(starts)))
        steps = ctx.ints(4) if ctx.has(4) else [1] * len(starts)
    out = x
    for a, lo, hi, st in zip(axes, starts, ends, steps):
        a = _axis(a, x.ndim)
        n = int(x.data.shape[a])
        if st == 0:
            raise ConvertError("Slice step 0")
        if st > 0:
            lo = min(max(lo + n if lo < 0 else lo, 0), n)
            hi = min(max(hi + n if hi < 0 else hi, 0), n)
            cut = {"axes": (a,), "starts": (lo,), "stops": (max(lo, hi),), "steps": (st,)}
            out = _op("slice", out, **cut)
        else:  # a negative step: the picked indices, one slice each, joined
            lo = min(max(lo + n if lo < 0 else lo, -1), n - 1)
            hi = min(max(hi + n if hi < 0 else hi, -1), n - 1)
            picks = list(range(lo, hi, st))
            if not picks:
                raise ConvertError("Slice with a negative step selecting nothing")
            parts = [
                _op("slice", out, axes=(a,), starts=(i,), stops=(i + 1,), steps=(1,)) for i in picks
            ]
            out = lucid.cat(parts, a) if len(parts) > 1 else parts[0]
    return [out]


def _gather(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    idx = ctx.const(1)
    axis = _axis(int(ctx.attr("axis", 0)), x.ndim)
    n = int(x.data.shape[axis])
    if idx.dtype.kind not in "iu":
        raise ConvertError(f"Gather indices of dtype {idx.dtype}")
    flat = [int(i) for i in idx.reshape(-1)]
    if any(not -n <= i < n for i in flat):
        raise ConvertError(f"Gather index out of range for a dim of size {n}: {flat}")
    if not flat:
        raise ConvertError("Gather with no indices")
    parts = [
        _op("slice", x, axes=(axis,), starts=(i % n,), stops=(i % n + 1,), steps=(1,)) for i in flat
    ]
    out = lucid.cat(parts, axis) if len(parts) > 1 else parts[0]
    shape = _shape(x)
    return [out.reshape(*shape[:axis], *idx.shape, *shape[axis + 1 :])]


def _expand(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dims = ctx.dims(1)
    shape = _shape(x)
    rank = max(len(shape), len(dims))
    a = [1] * (rank - len(shape)) + list(shape)
    b = [1] * (rank - len(dims)) + list(dims)
    out = []
    for p, q in zip(a, b):
        if isinstance(q, int) and q == 1:
            out.append(p)
        elif isinstance(p, int) and p == 1:
            out.append(q)
        elif p is q or p == q:
            out.append(p)
        else:
            raise ConvertError(f"Expand of shape {list(shape)} to {dims}")
    if len(a) > len(shape):
        x = x.reshape(*a)
    return [x if tuple(out) == tuple(a) else x.broadcast_to(tuple(out))]


def _tile(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    reps = ctx.ints(1)
    if len(reps) != x.ndim:
        raise ConvertError(f"Tile repeats {reps} for rank {x.ndim}")
    for a, r in enumerate(reps):
        if r != 1:
            x = lucid.cat([x] * r, a)
    return [x]


def _pad(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11:
        pads = list(ctx.attr("pads"))
        value = float(ctx.attr("value", 0.0))
    else:
        pads = ctx.ints(1)
        value = ctx.scalar(2) if ctx.has(2) else 0.0
    n = x.ndim
    axes = ctx.ints(3) if ctx.has(3) else list(range(n))
    axes = [_axis(a, n) for a in axes]
    if len(pads) != 2 * len(axes):
        raise ConvertError(f"Pad has {len(pads)} pads for {len(axes)} axes")
    full = [(0, 0)] * n
    for k, a in enumerate(axes):
        full[a] = (pads[k], pads[k + len(axes)])
    first = next((i for i, p in enumerate(full) if p != (0, 0)), n)
    torch_pads: list[int] = []
    for a in range(n - 1, first - 1, -1):
        torch_pads += list(full[a])
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}
    if mode not in modes:
        raise ConvertError(f"Pad mode {mode!r}")
    if not torch_pads:
        return [x]
    return [F.pad(x, tuple(torch_pads), modes[mode], value if mode == "constant" else None)]


def _trilu(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    k = int(ctx.scalar(1)) if ctx.has(1) else 0
    return [x.triu(k) if ctx.attr("upper", 1) else x.tril(k)]


def _trilu_check(info: NodeInfo) -> str | None:
    shape = info.in_shapes[0]
    if shape is not None and any(d == 0 for d in shape):
        return "Trilu of an empty tensor"
    return None


def _where_op(ctx: Ctx, xs: list[Any]) -> list[Any]:
    c, a, b = xs
    shape = np.broadcast_shapes(c.data.shape, a.data.shape, b.data.shape)
    sym = np.broadcast_shapes(a.data.shape, b.data.shape) == shape
    if not sym:  # lucid's where broadcasts its operands to the condition's shape
        a, b = a.broadcast_to(shape), b.broadcast_to(shape)
    return [_where(c, a, b)]


def _identity(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [xs[0]]


def _dropout(ctx: Ctx, xs: list[Any]) -> list[Any]:
    if ctx.has(2) and bool(ctx.const(2).reshape(-1)[0]):
        raise ConvertError("Dropout training_mode=True")
    return [xs[0]]


def _dropout_check(info: NodeInfo) -> str | None:
    if info.n_outputs > 1:
        return "Dropout's mask output"
    return None


# ---------------------------------------------------------------- values known at import


def _constant(ctx: Ctx, xs: list[Any]) -> list[Any]:
    from onnx import numpy_helper

    for key in ("value_float", "value_floats"):
        if key in ctx.attrs:
            return [np.asarray(ctx.attr(key), np.float32)]
    for key in ("value_int", "value_ints"):
        if key in ctx.attrs:
            return [np.asarray(ctx.attr(key), np.int64)]
    if "value" not in ctx.attrs:
        raise ConvertError(
            f"Constant with attributes {sorted(ctx.attrs)} (lucid reads value, value_float(s), value_int(s))"
        )
    value = numpy_helper.to_array(ctx.attr("value"))
    if value.dtype not in DTYPES.values():
        raise ConvertError(f"Constant of dtype {value.dtype}")
    return [value]


def _shape_op(ctx: Ctx, xs: list[Any]) -> list[Any]:
    shape = [int(d) for d in xs[0].data.shape]
    start, end = ctx.attr("start", 0), ctx.attr("end")
    return [np.asarray(shape[start:end] if end is not None else shape[start:], np.int64)]


def _size(ctx: Ctx, xs: list[Any]) -> list[Any]:
    return [np.asarray(xs[0].data.size, np.int64)]


def _constant_of_shape(ctx: Ctx, xs: list[Any]) -> list[Any]:
    from onnx import numpy_helper

    shape = ctx.ints(0)
    value = (
        numpy_helper.to_array(ctx.attr("value"))
        if "value" in ctx.attrs
        else np.zeros(1, np.float32)
    )
    if value.dtype not in DTYPES.values():
        raise ConvertError(f"ConstantOfShape of dtype {value.dtype}")
    return [np.full(shape, value.reshape(-1)[0], value.dtype)]


def _range(ctx: Ctx, xs: list[Any]) -> list[Any]:
    start, limit, delta = (ctx.const(i) for i in range(3))
    n = max(int(np.ceil((limit - start) / delta)), 0)
    return [(start + np.arange(n) * delta).astype(start.dtype)]


def _eye_like(ctx: Ctx, xs: list[Any]) -> list[Any]:
    x = xs[0]
    dtype = (
        DTYPES.get(int(ctx.attr("dtype", 0)), x.data.dtype)
        if "dtype" in ctx.attrs
        else x.data.dtype
    )
    rows, cols = (int(d) for d in x.data.shape)
    return [np.eye(rows, cols, int(ctx.attr("k", 0)), dtype=dtype)]


def _space_depth(to_depth: bool) -> Converter:
    def convert(ctx: Ctx, xs: list[Any]) -> list[Any]:
        x = xs[0]
        b = int(ctx.attr("blocksize"))
        n, c, h, w = _shape(x)
        if to_depth:
            y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
            return [y.reshape(n, c * b * b, h // b, w // b)]
        if ctx.attr("mode", "DCR") == "DCR":
            y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        return [y.reshape(n, c // (b * b), h * b, w * b)]

    return convert


# ---------------------------------------------------------------- the table

_FLOAT = frozenset(FLOAT_TYPES)
_NUM = frozenset({1, 11, 7})
_ANY = frozenset(DTYPES)
_BOOL = frozenset({9})
_SPATIAL = frozenset({"auto_pad", "pads", "strides", "dilations", "kernel_shape"})
_REDUCE = frozenset({"axes", "keepdims", "noop_with_empty_axes"})


def _unary(fn: Callable[[Tensor], Tensor], dtypes: frozenset[int] = _FLOAT) -> OpSpec:
    return OpSpec(_one(fn), dtypes=dtypes)


def _relu(x: Tensor) -> Tensor:
    return F.relu(x)


OPS_TABLE: Mapping[str, OpSpec] = {
    # elementwise
    "Add": OpSpec(_binary(lambda a, b: a + b), dtypes=_NUM),
    "Sub": OpSpec(_binary(lambda a, b: a - b), dtypes=_NUM),
    "Mul": OpSpec(_binary(lambda a, b: a * b), dtypes=_NUM),
    "Div": OpSpec(_div, dtypes=_FLOAT),
    "Pow": OpSpec(_pow, const_inputs=(1,), check=_pow_check, dtypes=_FLOAT),
    "Neg": _unary(lambda x: -x, _NUM),
    "Abs": _unary(lambda x: x.abs(), _NUM),
    "Sign": _unary(lambda x: _op("sign", x), _FLOAT),
    "Sqrt": _unary(lambda x: x.sqrt()),
    "Exp": _unary(lambda x: x.exp()),
    "Log": _unary(lambda x: x.log()),
    "Reciprocal": _unary(lambda x: _like(1.0, x) / x),
    "Tanh": _unary(lambda x: x.tanh()),
    "Sigmoid": _unary(lambda x: x.sigmoid()),
    "Relu": _unary(_relu),
    "LeakyRelu": OpSpec(
        lambda ctx, xs: [F.leaky_relu(xs[0], float(ctx.attr("alpha", 0.01)))],
        frozenset({"alpha"}),
        dtypes=_FLOAT,
    ),
    "Elu": OpSpec(
        lambda ctx, xs: [F.elu(xs[0], float(ctx.attr("alpha", 1.0)))],
        frozenset({"alpha"}),
        dtypes=_FLOAT,
    ),
    "Selu": OpSpec(_selu, frozenset({"alpha", "gamma"}), dtypes=_FLOAT),
    "Celu": OpSpec(_celu, frozenset({"alpha"}), dtypes=_FLOAT),
    "ThresholdedRelu": OpSpec(_thresholded_relu, frozenset({"alpha"}), dtypes=_FLOAT),
    "PRelu": OpSpec(_prelu, dtypes=_FLOAT),
    "Shrink": OpSpec(_shrink, frozenset({"lambd", "bias"}), dtypes=_FLOAT),
    "Softplus": _unary(lambda x: F.softplus(x)),
    "Softsign": _unary(lambda x: x / (x.abs() + _like(1.0, x))),
    "Mish": _unary(lambda x: x * F.softplus(x).tanh()),
    "HardSigmoid": OpSpec(_hardsigmoid, frozenset({"alpha", "beta"}), dtypes=_FLOAT),
    "HardSwish": _unary(lambda x: F.hardswish(x)),
    "Gelu": OpSpec(_gelu, frozenset({"approximate"}), dtypes=_FLOAT),
    "Swish": OpSpec(_swish, frozenset({"alpha"}), dtypes=_FLOAT),
    "Clip": OpSpec(_clip, frozenset({"min", "max"}), dtypes=_NUM),
    "Max": OpSpec(_variadic(lucid.maximum), dtypes=_NUM),
    "Min": OpSpec(_variadic(lucid.minimum), dtypes=_NUM),
    "Sum": OpSpec(_variadic(lambda a, b: a + b), dtypes=_NUM),
    "Mean": OpSpec(_mean, dtypes=_FLOAT),
    "Where": OpSpec(_where_op, dtypes=_BOOL),
    "Equal": OpSpec(_binary(lambda a, b: a == b), dtypes=_ANY),
    "Less": OpSpec(_binary(lambda a, b: a < b), dtypes=_NUM),
    "Greater": OpSpec(_binary(lambda a, b: a > b), dtypes=_NUM),
    "LessOrEqual": OpSpec(_binary(lambda a, b: a <= b), dtypes=_NUM),
    "GreaterOrEqual": OpSpec(_binary(lambda a, b: a >= b), dtypes=_NUM),
    "Not": OpSpec(_not, dtypes=_BOOL),
    "And": OpSpec(_and, check=_bool_only, dtypes=_BOOL),
    "Or": OpSpec(_or, check=_bool_only, dtypes=_BOOL),
    "Xor": OpSpec(_binary(lambda a, b: a != b), check=_bool_only, dtypes=_BOOL),
    "IsNaN": _unary(lambda x: x != x),  # noqa: PLR0124  (NaN is the one value != itself)
    "IsInf": OpSpec(
        _is_inf,
        frozenset({"detect_positive", "detect_negative"}),
        check=_is_inf_check,
        dtypes=_FLOAT,
    ),
    "Cast": OpSpec(_cast, frozenset({"to", "saturate", "round_mode"}), check=_cast_check),
    "CastLike": OpSpec(_cast_like, frozenset({"saturate", "round_mode"})),
    "Identity": OpSpec(_identity),
    "Dropout": OpSpec(_dropout, frozenset({"seed", "ratio", "is_test"}), check=_dropout_check),
    # linear algebra, convolution, pooling
    "MatMul": OpSpec(_matmul, dtypes=_FLOAT),
    "Gemm": OpSpec(_gemm, frozenset({"alpha", "beta", "transA", "transB"}), dtypes=_FLOAT),
    "Conv": OpSpec(_conv, _SPATIAL | {"group"}, check=_conv_check, dtypes=_FLOAT),
    "MaxPool": OpSpec(
        _pool("max"), _SPATIAL | {"ceil_mode", "storage_order"}, check=_pool_check, dtypes=_FLOAT
    ),
    "AveragePool": OpSpec(
        _pool("avg"),
        _SPATIAL | {"ceil_mode", "count_include_pad"},
        check=_pool_check,
        dtypes=_FLOAT,
    ),
    "GlobalAveragePool": _unary(lambda x: x.mean(tuple(range(2, x.ndim)), keepdims=True)),
    "GlobalMaxPool": OpSpec(_global_pool("max"), dtypes=_FLOAT),
    # normalization
    "BatchNormalization": OpSpec(
        _batch_norm,
        frozenset({"epsilon", "momentum", "training_mode"}),
        check=_norm_check,
        dtypes=_FLOAT,
    ),
    "LayerNormalization": OpSpec(
        _layer_norm, frozenset({"axis", "epsilon", "stash_type"}), check=_norm_check, dtypes=_FLOAT
    ),
    "InstanceNormalization": OpSpec(_instance_norm, frozenset({"epsilon"}), dtypes=_FLOAT),
    "GroupNormalization": OpSpec(
        _group_norm,
        frozenset({"num_groups", "epsilon", "stash_type"}),
        check=_norm_check,
        dtypes=_FLOAT,
    ),
    "LpNormalization": OpSpec(_lp_norm, frozenset({"axis", "p"}), dtypes=_FLOAT),
    "Softmax": OpSpec(_softmax(False), frozenset({"axis"}), dtypes=_FLOAT),
    "LogSoftmax": OpSpec(_softmax(True), frozenset({"axis"}), dtypes=_FLOAT),
    # reductions
    "ReduceSum": OpSpec(_reduce("sum", 13), _REDUCE, (1,), _reduce_check("sum"), _NUM),
    "ReduceMean": OpSpec(_reduce("mean", 18), _REDUCE, (1,), _reduce_check("mean"), _FLOAT),
    "ReduceMax": OpSpec(_reduce("max", 18), _REDUCE, (1,), _reduce_check("max"), _NUM),
    "ReduceMin": OpSpec(_reduce("min", 18), _REDUCE, (1,), _reduce_check("min"), _NUM),
    "ReduceL1": OpSpec(_reduce("l1", 18), _REDUCE, (1,), _reduce_check("l1"), _NUM),
    "ReduceL2": OpSpec(_reduce("l2", 18), _REDUCE, (1,), _reduce_check("l2"), _FLOAT),
    "ReduceSumSquare": OpSpec(
        _reduce("sumsquare", 18), _REDUCE, (1,), _reduce_check("sumsquare"), _NUM
    ),
    "ReduceLogSum": OpSpec(_reduce("logsum", 18), _REDUCE, (1,), _reduce_check("logsum"), _FLOAT),
    "ReduceLogSumExp": OpSpec(
        _reduce("logsumexp", 18), _REDUCE, (1,), _reduce_check("logsumexp"), _FLOAT
    ),
    "ArgMax": OpSpec(
        _arg("argmax"),
        frozenset({"axis", "keepdims", "select_last_index"}),
        check=_arg_check,
        dtypes=_NUM,
    ),
    "ArgMin": OpSpec(
        _arg("argmin"),
        frozenset({"axis", "keepdims", "select_last_index"}),
        check=_arg_check,
        dtypes=_NUM,
    ),
    # shapes
    "Reshape": OpSpec(_reshape, frozenset({"allowzero"}), (1,)),
    "Flatten": OpSpec(_flatten, frozenset({"axis"})),
    "Transpose": OpSpec(_transpose, frozenset({"perm"})),
    "Squeeze": OpSpec(_squeeze, frozenset({"axes"}), (1,)),
    "Unsqueeze": OpSpec(_unsqueeze, frozenset({"axes"}), (1,)),
    "Concat": OpSpec(_concat, frozenset({"axis"})),
    "Split": OpSpec(_split, frozenset({"axis", "split", "num_outputs"}), (1,), outputs=1 << 30),
    "Slice": OpSpec(_slice, frozenset({"starts", "ends", "axes"}), (1, 2, 3, 4)),
    "Gather": OpSpec(_gather, frozenset({"axis"}), (1,)),
    "Expand": OpSpec(_expand, const_inputs=(1,)),
    "Tile": OpSpec(_tile, const_inputs=(1,)),
    "Pad": OpSpec(_pad, frozenset({"mode", "pads", "value"}), (1, 2, 3), dtypes=_FLOAT),
    "Trilu": OpSpec(_trilu, frozenset({"upper"}), (1,), check=_trilu_check),
    "SpaceToDepth": OpSpec(_space_depth(True), frozenset({"blocksize"})),
    "DepthToSpace": OpSpec(_space_depth(False), frozenset({"blocksize", "mode"})),
    # values known at import
    "Constant": OpSpec(
        _constant, frozenset({"value", "value_float", "value_floats", "value_int", "value_ints"})
    ),
    "Shape": OpSpec(_shape_op, frozenset({"start", "end"})),
    "Size": OpSpec(_size),
    "ConstantOfShape": OpSpec(_constant_of_shape, frozenset({"value"}), (0,), dtypes=_NUM),
    "Range": OpSpec(_range, const_inputs=(0, 1, 2), dtypes=_NUM),
    "EyeLike": OpSpec(_eye_like, frozenset({"dtype", "k"})),
}

# The ONNX op types lucid imports (standard domain).
SUPPORTED_OPS: frozenset[str] = frozenset(OPS_TABLE)
# Op types whose outputs depend only on inputs known at import or on static shapes: they
# are evaluated at import and never reach the traced graph.
FOLDED_ALWAYS: frozenset[str] = frozenset({"Constant", "Shape", "Size", "EyeLike"})

__all__ = [
    "BATCH",
    "DTYPES",
    "FOLDED_ALWAYS",
    "OPS_TABLE",
    "SUPPORTED_OPS",
    "ConvertError",
    "Ctx",
    "NodeInfo",
    "OpSpec",
]
