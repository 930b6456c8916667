"""One ONNX translation per IR op: the table `TRANSLATIONS` (op name -> function).

A translation gets the emitter (lucid/onnx/_export.py), the IR node and the ONNX names of the
node's inputs, and returns the ONNX names of the node's results. It uses ONNX's own op where
one exists (HardSwish, Conv, MaxPool, Gather, ...) and otherwise the exact expansion of lucid's
NumPy kernel, so ONNX Runtime gives eager lucid's results (LayerNorm and BatchNorm, which span
several IR nodes, are found in lucid/onnx/_export_norms.py). Ops with no entry here (the
gradient companions, which only backward graphs hold) make `export` fail with a list of every
such node; no op is exported approximately (training-mode Dropout draws ONNX Runtime's masks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid.errors import LucidError
from lucid.ir.core import Node
from lucid.ir.types import DType

if TYPE_CHECKING:
    from lucid.onnx._export import Emitter

Translate = Callable[["Emitter", Node, Sequence[str]], "str | tuple[str, ...]"]

_SQRT1_2 = 0.7071067811865476  # 1 / sqrt(2): lucid's gelu constants (lucid/ir/ops/activations.py)
_K = 0.7978845608028654  # sqrt(2 / pi)
_C = 0.044715


def _dtype(node: Node, i: int = 0) -> DType:
    return node.inputs[i].type.dtype


def _ints(node: Node, key: str) -> list[int]:
    value = node.attrs[key]
    assert isinstance(value, tuple)
    return [int(v) for v in value]  # type: ignore[arg-type]


# ------------------------------------------------------------------ one ONNX op, attrs mapped


def _same(op_type: str, **fixed: Any) -> Translate:
    """The ONNX op `op_type` on the node's inputs, with `fixed` attributes."""

    def translate(e: Emitter, node: Node, x: Sequence[str]) -> str:
        return e.node(op_type, x, **fixed)

    return translate


def _not_equal(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("Not", [e.node("Equal", x)])


def _cast(e: Emitter, node: Node, x: Sequence[str]) -> str:
    dtype = node.attrs["dtype"]
    assert isinstance(dtype, DType)
    return e.node("Cast", x, to=e.onnx_dtype(dtype))


def _constant(e: Emitter, node: Node, x: Sequence[str]) -> str:
    dtype = node.attrs["dtype"]
    assert isinstance(dtype, DType)
    return e.const(np.array(node.attrs["value"], dtype=dtype.np), "const")


def _pow(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("Pow", [x[0], e.scalar(node.attrs["exponent"], _dtype(node))])


def _clip(lo_key: str, hi_key: str) -> Translate:
    def translate(e: Emitter, node: Node, x: Sequence[str]) -> str:
        t = _dtype(node)
        return e.node(
            "Clip", [x[0], e.scalar(node.attrs[lo_key], t), e.scalar(node.attrs[hi_key], t)]
        )

    return translate


def _relu6(e: Emitter, node: Node, x: Sequence[str]) -> str:
    t = _dtype(node)
    return e.node("Clip", [x[0], e.scalar(0.0, t), e.scalar(6.0, t)])


# ONNX float attributes are float32, and ONNX Runtime's CPU kernels of HardSigmoid, HardSwish,
# Elu and Softplus take float32 only: in float64 these ops are spelled out as lucid's kernels
# compute them (lucid/ir/ops/activations.py), with float64 constants.


def _f64(node: Node) -> bool:
    return _dtype(node) is DType.F64


def _hardsigmoid_f64(e: Emitter, x: str) -> str:
    """clip(x / 6 + 1/2, 0, 1), lucid's spelling."""
    t = DType.F64
    y = e.node("Add", [e.node("Div", [x, e.scalar(6.0, t)]), e.scalar(0.5, t)])
    return e.node("Clip", [y, e.scalar(0.0, t), e.scalar(1.0, t)])


def _hardsigmoid(e: Emitter, node: Node, x: Sequence[str]) -> str:
    if _f64(node):
        return _hardsigmoid_f64(e, x[0])
    # lucid: clip(x / 6 + 1/2, 0, 1); ONNX: clip(alpha * x + beta, 0, 1)
    return e.node("HardSigmoid", x, alpha=1.0 / 6.0, beta=0.5)


def _hardswish(e: Emitter, node: Node, x: Sequence[str]) -> str:
    if _f64(node):
        return e.node("Mul", [x[0], _hardsigmoid_f64(e, x[0])])
    return e.node("HardSwish", x)


def _leaky_relu(e: Emitter, node: Node, x: Sequence[str]) -> str:
    slope = float(node.attrs["negative_slope"])  # type: ignore[arg-type]
    if _f64(node):
        positive = e.node("Greater", [x[0], e.scalar(0.0, DType.F64)])
        return e.node("Where", [positive, x[0], e.node("Mul", [x[0], e.scalar(slope, DType.F64)])])
    return e.node("LeakyRelu", x, alpha=slope)


def _elu(e: Emitter, node: Node, x: Sequence[str]) -> str:
    alpha = float(node.attrs["alpha"])  # type: ignore[arg-type]
    if _f64(node):  # alpha * (exp(min(x, 0)) - 1) where x <= 0
        t = DType.F64
        zero, one = e.scalar(0.0, t), e.scalar(1.0, t)
        expm1 = e.node("Sub", [e.node("Exp", [e.node("Min", [x[0], zero])]), one])
        negative = e.node("Mul", [e.scalar(alpha, t), expm1])
        return e.node("Where", [e.node("Greater", [x[0], zero]), x[0], negative])
    return e.node("Elu", x, alpha=alpha)


def _silu(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("Mul", [x[0], e.node("Sigmoid", x)])


def _softplus(e: Emitter, node: Node, x: Sequence[str]) -> str:
    # lucid: x where beta * x > threshold, else log1p(exp(beta * x)) / beta
    t = _dtype(node)
    beta, threshold = node.attrs["beta"], node.attrs["threshold"]
    z = e.node("Mul", [x[0], e.scalar(beta, t)])
    if _f64(node):  # log(1 + exp(min(z, threshold))): the branch not taken cannot overflow
        capped = e.node("Min", [z, e.scalar(threshold, t)])
        sp = e.node("Log", [e.node("Add", [e.scalar(1.0, t), e.node("Exp", [capped])])])
    else:
        sp = e.node("Softplus", [z])
    soft = e.node("Div", [sp, e.scalar(beta, t)])
    return e.node("Where", [e.node("Greater", [z, e.scalar(threshold, t)]), x[0], soft])


def _gelu(e: Emitter, node: Node, x: Sequence[str]) -> str:
    approximate = str(node.attrs["approximate"])
    if e.opset >= 20:
        return e.node("Gelu", x, approximate=approximate)
    t = _dtype(node)
    half, one = e.scalar(0.5, t), e.scalar(1.0, t)
    if approximate == "tanh":  # 0.5 x (1 + tanh(K (x + C x^3)))
        cube = e.node("Mul", [e.node("Mul", [x[0], x[0]]), x[0]])
        inner = e.node("Add", [x[0], e.node("Mul", [e.scalar(_C, t), cube])])
        th = e.node("Tanh", [e.node("Mul", [e.scalar(_K, t), inner])])
        return e.node("Mul", [e.node("Mul", [half, x[0]]), e.node("Add", [one, th])])
    erf = e.node("Erf", [e.node("Mul", [x[0], e.scalar(_SQRT1_2, t)])])
    return e.node("Mul", [e.node("Mul", [x[0], half]), e.node("Add", [one, erf])])


def _softmax(op_type: str) -> Translate:
    def translate(e: Emitter, node: Node, x: Sequence[str]) -> str:
        return e.node(op_type, x, axis=int(node.attrs["dim"]))  # type: ignore[arg-type]

    return translate


# ------------------------------------------------------------------ reductions


def _reduce(op_type: str) -> Translate:
    def translate(e: Emitter, node: Node, x: Sequence[str]) -> str:
        axes = node.attrs["axes"]
        if axes == ():  # over no axis: the input itself (ONNX's empty axes mean all of them)
            return e.node("Identity", x)
        chosen = None if axes is None else _ints(node, "axes")
        return e.reduce(op_type, x[0], chosen, keepdims=bool(node.attrs["keepdims"]))

    return translate


def _arg(op_type: str) -> Translate:
    def translate(e: Emitter, node: Node, x: Sequence[str]) -> str:
        axis, keep = int(node.attrs["axis"]), int(bool(node.attrs["keepdims"]))  # type: ignore[arg-type]
        return e.node(op_type, x, axis=axis, keepdims=keep, select_last_index=0)

    return translate


def _moments(e: Emitter, node: Node, x: Sequence[str]) -> str:
    """[mean, var] stacked on a new axis 0; var is biased and two-pass, as lucid computes it."""
    axes = _ints(node, "axes")
    mean = e.reduce("ReduceMean", x[0], axes, keepdims=True)
    d = e.node("Sub", [x[0], mean])
    var = e.reduce("ReduceMean", e.node("Mul", [d, d]), axes, keepdims=True)
    zero = e.i64([0])
    parts = [e.node("Unsqueeze", [mean, zero]), e.node("Unsqueeze", [var, zero])]
    return e.node("Concat", parts, axis=0)


# ------------------------------------------------------------------ linear algebra


def _linear(e: Emitter, node: Node, x: Sequence[str]) -> str:
    if node.inputs[0].type.rank == 2:
        return e.node("Gemm", x, transB=1)
    y = e.node("MatMul", [x[0], e.node("Transpose", [x[1]], perm=[1, 0])])
    return e.node("Add", [y, x[2]]) if len(x) == 3 else y


def _matmul_at(e: Emitter, node: Node, x: Sequence[str]) -> str:
    """a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])."""
    a, b = node.inputs
    ra = e.node("Reshape", [x[0], e.i64([-1, _last(a.type.shape)])])
    rb = e.node("Reshape", [x[1], e.i64([-1, _last(b.type.shape)])])
    return e.node("Gemm", [ra, rb], transA=1)


def _last(shape: tuple[Any, ...]) -> int:
    if not isinstance(shape[-1], int):
        raise LucidError(f"matmul_at: the last dim {shape[-1]} must be static")
    return shape[-1]


def _batch_matmul(e: Emitter, node: Node, x: Sequence[str]) -> str:
    ops = []
    for i, flag in enumerate(("trans_a", "trans_b")):
        rank = node.inputs[i].type.rank
        if node.attrs[flag]:
            perm = [*range(rank - 2), rank - 1, rank - 2]
            ops.append(e.node("Transpose", [x[i]], perm=perm))
        else:
            ops.append(x[i])
    return e.node("MatMul", ops)


# ------------------------------------------------------------------ convolution and pooling


def _conv2d(e: Emitter, node: Node, x: Sequence[str]) -> str:
    top, bottom, left, right = _ints(node, "padding")
    weight = node.inputs[1].type.shape
    return e.node(
        "Conv",
        x,
        kernel_shape=[int(weight[2]), int(weight[3])],
        strides=_ints(node, "stride"),
        pads=[top, left, bottom, right],
        dilations=_ints(node, "dilation"),
        group=int(node.attrs["groups"]),  # type: ignore[arg-type]
    )


def _pool_window(node: Node, extents: Sequence[int]) -> dict[str, Any]:
    """kernel_shape, strides, pads and ceil_mode giving the node's own output size.

    ONNX's ceil_mode keeps a last window that starts in the end padding, which PyTorch (and
    lucid) drop: then the floor formula gives lucid's size. When the axes disagree (one needs
    ceil, the other floor), ceil_mode is off and the ceil axis gets the padding its last window
    needs at the end (for MaxPool, padding never wins; AveragePool counts it, see below)."""
    (ph, pw), (sh, sw) = _ints(node, "padding"), _ints(node, "stride")
    x, y = node.inputs[0].type.shape, node.result.type.shape
    end, needs = [ph, pw], set()
    for axis, (p, s, ext) in enumerate(zip((ph, pw), (sh, sw), extents)):
        n, out = x[2 + axis], y[2 + axis]
        assert isinstance(n, int) and isinstance(out, int)
        floor, ceil = (n + 2 * p - ext) // s + 1, -(-(n + 2 * p - ext) // s) + 1
        if floor != ceil:  # else either mode gives lucid's size
            needs.add("ceil" if out == ceil else "floor")
        if out == ceil != floor:
            end[axis] = (out - 1) * s + ext - n - p  # the end padding the last window needs
    mixed = needs == {"ceil", "floor"}
    return {
        "kernel_shape": _ints(node, "kernel_size"),
        "strides": [sh, sw],
        "pads": [ph, pw, *end] if mixed else [ph, pw, ph, pw],
        "ceil_mode": int(needs == {"ceil"}),
        "_mixed": mixed,
    }


def _max_pool2d(e: Emitter, node: Node, x: Sequence[str]) -> str:
    dilation = _ints(node, "dilation")
    extents = [d * (k - 1) + 1 for d, k in zip(dilation, _ints(node, "kernel_size"))]
    window = _pool_window(node, extents)
    del window["_mixed"]
    return e.node("MaxPool", x, dilations=dilation, **window)


def _avg_pool2d(e: Emitter, node: Node, x: Sequence[str]) -> str:
    window = _pool_window(node, _ints(node, "kernel_size"))
    include = bool(node.attrs["count_include_pad"])
    if window.pop("_mixed") and include:
        raise LucidError(
            "avg_pool2d with ceil_mode and count_include_pad, whose one axis keeps a last "
            "partial window and the other does not, has no ONNX AveragePool form (the divisor "
            "would count the extra padding); use count_include_pad=False, or sizes that both "
            "axes round alike"
        )
    return e.node("AveragePool", x, count_include_pad=int(include), **window)


def _adaptive_avg_pool2d(e: Emitter, node: Node, x: Sequence[str]) -> str:
    oh, ow = _ints(node, "output_size")
    h, w = node.inputs[0].type.shape[2:]
    assert isinstance(h, int) and isinstance(w, int)
    if (oh, ow) == (1, 1):
        return e.node("GlobalAveragePool", x)
    if h % oh == 0 and w % ow == 0:  # equal bins: a plain average pool
        k = [h // oh, w // ow]
        return e.node("AveragePool", x, kernel_shape=k, strides=k)
    # unequal bins (PyTorch's floor/ceil bounds): each bin's mean, then put back together
    rows = []
    for i in range(oh):
        r0, r1 = i * h // oh, -(-(i + 1) * h // oh)
        cells = []
        for j in range(ow):
            c0, c1 = j * w // ow, -(-(j + 1) * w // ow)
            cell = e.node("Slice", [x[0], e.i64([r0, c0]), e.i64([r1, c1]), e.i64([2, 3])])
            cells.append(e.reduce("ReduceMean", cell, [2, 3], keepdims=True))
        rows.append(e.node("Concat", cells, axis=3))
    return e.node("Concat", rows, axis=2)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _pad(e: Emitter, node: Node, x: Sequence[str]) -> str:
    rank = node.inputs[0].type.rank
    pads = _ints(node, "pads")
    before, after = [0] * rank, [0] * rank
    for k in range(len(pads) // 2):  # PyTorch's tuple: last axis first, (before, after) pairs
        before[rank - 1 - k], after[rank - 1 - k] = pads[2 * k], pads[2 * k + 1]
    mode = str(node.attrs["mode"])
    if mode == "circular" and e.opset < 19:
        raise LucidError(
            f"pad mode 'circular' needs ONNX opset 19 or later (Pad's 'wrap'), not {e.opset}"
        )
    inputs = [x[0], e.i64(before + after)]
    if mode == "constant":
        inputs.append(e.scalar(node.attrs["value"], _dtype(node)))
    return e.node("Pad", inputs, mode=_PAD_MODES[mode])


# ------------------------------------------------------------------ shapes


def _reshape(e: Emitter, node: Node, x: Sequence[str]) -> str:
    target = node.attrs["shape"]
    assert isinstance(target, tuple)
    # allowzero: a 0 in the target is a dim of size 0, not ONNX's default "copy the input's"
    zero = {"allowzero": 1} if 0 in target else {}
    return e.node("Reshape", [x[0], e.reshape_target(target)], **zero)  # type: ignore[arg-type]


def _transpose(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("Transpose", x, perm=_ints(node, "perm"))


def _broadcast(e: Emitter, node: Node, x: Sequence[str]) -> str:
    target = node.attrs["shape"]
    assert isinstance(target, tuple)
    return e.node("Expand", [x[0], e.shape_tensor(target)])  # type: ignore[arg-type]


def _dim(e: Emitter, node: Node, x: Sequence[str]) -> str:
    """x.shape[axis] as a 0-d tensor of the node's dtype."""
    axis = int(node.attrs["axis"])  # type: ignore[arg-type]
    size = e.node("Shape", x, start=axis, end=axis + 1)
    scalar = e.node("Reshape", [size, e.i64([])])
    dtype = node.attrs["dtype"]
    assert isinstance(dtype, DType)
    return scalar if dtype is DType.I64 else e.node("Cast", [scalar], to=e.onnx_dtype(dtype))


def _slice(e: Emitter, node: Node, x: Sequence[str]) -> str:
    # the IR's bounds are normalised (0 <= start, stop <= size, step >= 1): ONNX's as they are
    bounds = [e.i64(_ints(node, k)) for k in ("starts", "stops", "axes", "steps")]
    return e.node("Slice", [x[0], *bounds])


def _concat(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("Concat", x, axis=int(node.attrs["axis"]))  # type: ignore[arg-type]


# ------------------------------------------------------------------ indices


def _checked_indices(e: Emitter, indices: str, size: int, allow: Sequence[int] = ()) -> str:
    """`indices`, made to fail in ONNX Runtime when one lies outside [0, size) (and is not in
    `allow`), as eager lucid raises IndexError: ONNX has no assert, but Gather with an index out
    of bounds is an error (the spec's words), and the gathered zeros are added to the indices
    so that no runtime can drop the check."""
    bad = e.node(
        "Or",
        [
            e.node("Less", [indices, e.scalar(0, DType.I64)]),
            e.node("GreaterOrEqual", [indices, e.scalar(size, DType.I64)]),
        ],
    )
    for a in allow:
        bad = e.node(
            "And", [bad, e.node("Not", [e.node("Equal", [indices, e.scalar(a, DType.I64)])])]
        )
    probe = e.node("Where", [bad, e.scalar(size, DType.I64), e.scalar(0, DType.I64)])
    zeros = e.const(np.zeros(size, dtype=np.int64), "zeros")
    return e.node("Add", [indices, e.node("Gather", [zeros, probe], axis=0)])


def _index_check(e: Emitter, node: Node, x: Sequence[str]) -> str:
    allow = _ints(node, "allow")
    return _checked_indices(e, x[0], int(node.attrs["size"]), allow)  # type: ignore[arg-type]


def _embedding(e: Emitter, node: Node, x: Sequence[str]) -> str:
    # ONNX's Gather reads a negative index from the end; lucid refuses it: check first
    rows = node.inputs[1].type.shape[0]
    assert isinstance(rows, int)
    return e.node("Gather", [x[1], _checked_indices(e, x[0], rows)], axis=0)


def _cross_entropy(e: Emitter, node: Node, x: Sequence[str]) -> str:
    return e.node("SoftmaxCrossEntropyLoss", x, reduction=str(node.attrs["reduction"]))


def _mse_loss(e: Emitter, node: Node, x: Sequence[str]) -> str:
    d = e.node("Sub", x)
    sq = e.node("Mul", [d, d])
    op_type = "ReduceMean" if node.attrs["reduction"] == "mean" else "ReduceSum"
    return e.reduce(op_type, sq, None, keepdims=False)


def _dropout(e: Emitter, node: Node, x: Sequence[str]) -> str:
    """Training-mode dropout (the eval module records none): ONNX Runtime draws its own masks,
    so results match eager lucid in distribution, not element by element."""
    p = float(node.attrs["p"])  # type: ignore[arg-type]
    if p >= 1.0:  # ONNX's ratio lies in [0, 1): everything dropped is zeros
        return e.node("Mul", [x[0], e.scalar(0.0, _dtype(node))])
    ratio = e.scalar(p, _dtype(node))
    return e.node("Dropout", [x[0], ratio, e.const(np.array(True), "training")])


TRANSLATIONS: dict[str, Translate] = {
    # elementwise
    "abs": _same("Abs"),
    "add": _same("Add"),
    "sub": _same("Sub"),
    "mul": _same("Mul"),
    "div": _same("Div"),
    "neg": _same("Neg"),
    "exp": _same("Exp"),
    "log": _same("Log"),
    "sqrt": _same("Sqrt"),
    "sign": _same("Sign"),
    "pow": _pow,
    "maximum": _same("Max"),
    "minimum": _same("Min"),
    "equal": _same("Equal"),
    "not_equal": _not_equal,
    "greater": _same("Greater"),
    "greater_equal": _same("GreaterOrEqual"),
    "less": _same("Less"),
    "less_equal": _same("LessOrEqual"),
    "where": _same("Where"),
    "cast": _cast,
    "constant": _constant,
    "clip": _clip("min", "max"),
    "stop_gradient": _same("Identity"),
    # activations
    "relu": _same("Relu"),
    "relu6": _relu6,
    "hardtanh": _clip("min_val", "max_val"),
    "sigmoid": _same("Sigmoid"),
    "tanh": _same("Tanh"),
    "hardswish": _hardswish,
    "hardsigmoid": _hardsigmoid,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "silu": _silu,
    "softplus": _softplus,
    "gelu": _gelu,
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    # reductions
    "sum": _reduce("ReduceSum"),
    "mean": _reduce("ReduceMean"),
    "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"),
    "argmax": _arg("ArgMax"),
    "argmin": _arg("ArgMin"),
    "moments": _moments,
    # linear algebra
    "linear": _linear,
    "matmul": _same("MatMul"),
    "matmul_at": _matmul_at,
    "batch_matmul": _batch_matmul,
    # convolution, pooling, padding
    "conv2d": _conv2d,
    "max_pool2d": _max_pool2d,
    "avg_pool2d": _avg_pool2d,
    "adaptive_avg_pool2d": _adaptive_avg_pool2d,
    "pad": _pad,
    # shapes
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast": _broadcast,
    "dim": _dim,
    "slice": _slice,
    "concat": _concat,
    # indices, losses, randomness
    "index_check": _index_check,
    "embedding": _embedding,
    "cross_entropy": _cross_entropy,
    "mse_loss": _mse_loss,
    "dropout": _dropout,
}
