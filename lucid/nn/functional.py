"""Functional forms of lucid's layers: each checks its arguments and runs one op of the table.

`linear` is one op (x, w[, b]), not a matmul plus an add, because the compiler fuses it as a
unit. The math, gradient and C of each op live in its definition under lucid/ir/ops/.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import _hooks
from lucid import random as _random
from lucid.ir.ops import OPS
from lucid.nn import _attention_functional as _attention
from lucid.nn import _pooling
from lucid.nn import losses as _losses
from lucid.nn import normalization as _norm
from lucid.nn.conv import conv1d, conv2d
from lucid.tensor import Tensor, apply, constant, float_input, operands

# the composed losses (lucid/nn/losses.py), under PyTorch's functional names
binary_cross_entropy_with_logits = _losses.binary_cross_entropy_with_logits
huber_loss = _losses.huber_loss
l1_loss = _losses.l1_loss
nll_loss = _losses.nll_loss
# normalization (lucid/nn/normalization.py), composed from mean, variance and elementwise ops
batch_norm = _norm.batch_norm
group_norm = _norm.group_norm
layer_norm = _norm.layer_norm
# pooling and padding (lucid/nn/_pooling.py)
pad = _pooling.pad
# embedding and attention (lucid/nn/_attention_functional.py)
embedding = _attention.embedding
scaled_dot_product_attention = _attention.scaled_dot_product_attention

# the ops this module applies, looked up once (these functions run once per layer call)
_CROSS_ENTROPY = OPS["cross_entropy"]
_DROPOUT = OPS["dropout"]
_ELU = OPS["elu"]
_GELU = OPS["gelu"]
_HARDSIGMOID = OPS["hardsigmoid"]
_HARDSWISH = OPS["hardswish"]
_HARDTANH = OPS["hardtanh"]
_LEAKY_RELU = OPS["leaky_relu"]
_LINEAR = OPS["linear"]
_MSE_LOSS = OPS["mse_loss"]
_RELU = OPS["relu"]
_RELU6 = OPS["relu6"]
_SIGMOID = OPS["sigmoid"]
_SILU = OPS["silu"]
_SOFTPLUS = OPS["softplus"]

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "conv1d",
    "conv2d",
    "cross_entropy",
    "dropout",
    "elu",
    "embedding",
    "gelu",
    "group_norm",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "log_softmax",
    "max_pool1d",
    "max_pool2d",
    "mse_loss",
    "nll_loss",
    "pad",
    "relu",
    "relu6",
    "scaled_dot_product_attention",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, where: str = "") -> Tensor:
    """x @ weight.T + bias for x [..., in], weight [out, in], bias [out]; one primitive."""
    x, weight = operands("linear", x, weight)
    inputs: tuple[Tensor, ...] = (x, weight)
    xd, wd = x.data, weight.data  # the arrays, not the properties: this runs per layer call
    if wd.ndim != 2 or xd.ndim < 1 or xd.shape[-1] != wd.shape[1]:
        raise ValueError(
            f"linear{where}: input of shape {xd.shape} does not fit weight of shape "
            f"{wd.shape}: expected input of shape [..., {wd.shape[-1]}]"
        )
    if bias is not None:
        bias = constant(bias, weight)
        bd = bias.data
        if bd.shape != wd.shape[:1]:
            raise ValueError(f"linear{where}: bias has shape {bd.shape}, expected ({wd.shape[0]},)")
        if bd.dtype != wd.dtype:
            raise TypeError(f"linear{where}: bias dtype {bd.dtype} != weight dtype {wd.dtype}")
        inputs += (bias,)
    return apply(float_input(_LINEAR, x), inputs)


def hardswish(x: Tensor) -> Tensor:
    """x * clip(x/6 + 1/2, 0, 1); gradient x/3 + 1/2 on [-3, 3], 1 above, 0 below."""
    return apply(float_input(_HARDSWISH, x), (x,))


def hardsigmoid(x: Tensor) -> Tensor:
    """clip(x/6 + 1/2, 0, 1); gradient 1/6 on [-3, 3], else 0."""
    return apply(float_input(_HARDSIGMOID, x), (x,))


def relu(x: Tensor) -> Tensor:
    """max(x, 0); gradient [x > 0]."""
    return apply(float_input(_RELU, x), (x,))


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6); gradient [0 < x < 6]."""
    return apply(float_input(_RELU6, x), (x,))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    return apply(float_input(_SIGMOID, x), (x,))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x) (SiLU, also called swish)."""
    return apply(float_input(_SILU, x), (x,))


def tanh(x: Tensor) -> Tensor:
    """Elementwise tanh (the same op as Tensor.tanh)."""
    return x.tanh()


# the attrs of GELU's two forms, built once
_GELU_ATTRS = {"none": {"approximate": "none"}, "tanh": {"approximate": "tanh"}}


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) with Phi the normal CDF (erf); approximate="tanh" for the tanh formula."""
    attrs = _GELU_ATTRS.get(approximate)
    if attrs is None:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return apply(float_input(_GELU, x), (x,), attrs)


def _number(op: str, name: str, value: Any) -> float:
    """A float argument of an activation, or a TypeError naming it (e.g. a Tensor passed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{op}: {name} must be a number, got {type(value).__name__}")
    return float(value)


def _no_inplace(op: str, inplace: bool) -> None:
    if inplace:
        raise ValueError(f"{op}: inplace=True is not supported (lucid tensors are not mutated)")


def leaky_relu(x: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    """x > 0 ? x : negative_slope * x; gradient 1 or negative_slope (negative_slope at 0)."""
    _no_inplace("leaky_relu", inplace)
    slope = _number("leaky_relu", "negative_slope", negative_slope)
    return apply(float_input(_LEAKY_RELU, x), (x,), {"negative_slope": slope})


def elu(x: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    """x > 0 ? x : alpha * (exp(x) - 1)."""
    _no_inplace("elu", inplace)
    return apply(float_input(_ELU, x), (x,), {"alpha": _number("elu", "alpha", alpha)})


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (PyTorch's rule)."""
    b = _number("softplus", "beta", beta)
    if b == 0.0:
        raise ValueError("softplus: beta must not be 0")
    attrs = {"beta": b, "threshold": _number("softplus", "threshold", threshold)}
    return apply(float_input(_SOFTPLUS, x), (x,), attrs)


def hardtanh(
    x: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False
) -> Tensor:
    """clip(x, min_val, max_val); gradient 1 strictly inside, 0 at and beyond the bounds."""
    _no_inplace("hardtanh", inplace)
    lo, hi = _number("hardtanh", "min_val", min_val), _number("hardtanh", "max_val", max_val)
    if not lo < hi:
        raise ValueError(f"hardtanh: min_val must be less than max_val, got {lo} and {hi}")
    return apply(float_input(_HARDTANH, x), (x,), {"min_val": lo, "max_val": hi})


def softmax(x: Tensor, dim: int) -> Tensor:
    """exp(x) / sum(exp(x)) along `dim` (required; negative counts from the end)."""
    return x.softmax(dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    """log(softmax(x, dim)), computed stably as (x - max) - log(sum(exp(x - max)))."""
    return x.log_softmax(dim)


# ---------------------------------------------------------------- losses


# The attrs of each reduction, built once: apply() and the tape only read them
_REDUCTIONS: dict[str, dict[str, Any]] = {
    "mean": {"reduction": "mean"},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
}


def _reduction(op: str, reduction: str) -> dict[str, Any]:
    attrs = _REDUCTIONS.get(reduction)
    if attrs is None:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return attrs


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """mean((pred - target)**2), or its sum; shapes must be equal."""
    attrs = _reduction("mse_loss", reduction)
    float_input(_MSE_LOSS, pred)
    pred, target = operands("mse_loss", pred, target)
    if pred.data.shape != target.data.shape:
        raise ValueError(
            f"mse_loss: prediction has shape {pred.shape} but target has shape {target.shape}; "
            "they must be equal"
        )
    if reduction == "none":  # elementwise: no op of its own (the mse_loss op reduces)
        d = pred - target
        return d * d
    return apply(_MSE_LOSS, (pred, target), attrs)


def cross_entropy(
    logits: Tensor, target: Any, reduction: str = "mean", label_smoothing: float = 0.0
) -> Tensor:
    """Softmax cross-entropy of logits [N, C] against int64 class indices [N], reduced or
    one per row ('none'); label smoothing adds `losses.label_smoothing_term` (existing ops)."""
    attrs = _reduction("cross_entropy", reduction)
    float_input(_CROSS_ENTROPY, logits)
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target))
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}"
        )
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape [N, C], got {logits.shape}")
    loss = apply(_CROSS_ENTROPY, (logits, target), attrs)
    if label_smoothing:
        loss = loss + _losses.label_smoothing_term(logits, target, reduction, label_smoothing)
    return loss


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity if not training.

    One op, `dropout(x, seed){p}`: the mask is a hash of (seed, element index), with one seed
    per call from lucid.random (see lucid/ir/ops/dropout.py), so compiled code computes the
    same mask from the same seed and the backward recomputes it instead of saving it.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    return apply(float_input(_DROPOUT, x), (x, _seed()), {"p": float(p)})


def _seed() -> Tensor:
    """One call's seed: a draw from lucid.random now (eager) or, while a tracer runs, a graph
    input that every compiled call fills with a fresh draw (never a constant of the graph)."""
    seed = _hooks.rng_seed()
    if seed is None:
        seed = Tensor._make(np.array(_random.draw_seed(), dtype=np.int64))
    return seed


# ---------------------------------------------------------------- pooling (lucid/nn/_pooling.py)


def max_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Max over each window of [N, C, H, W]; stride defaults to kernel_size (PyTorch's)."""
    return _pooling.max_pool2d_impl(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices
    )


def max_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Tensor:
    """Max over each window of [N, C, L]."""
    return _pooling.max_pool2d_impl(
        "max_pool1d", input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, 1
    )


def avg_pool2d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Any = None,
) -> Tensor:
    """Mean over each window of [N, C, H, W] with PyTorch's divisor."""
    return _pooling.avg_pool2d_impl(
        "avg_pool2d",
        input,
        kernel_size,
        stride,
        padding,
        ceil_mode,
        count_include_pad,
        divisor_override,
    )


def avg_pool1d(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
) -> Tensor:
    """Mean over each window of [N, C, L]."""
    return _pooling.avg_pool2d_impl(
        "avg_pool1d", input, kernel_size, stride, padding, ceil_mode, count_include_pad, None, 1
    )


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Mean over adaptive bins of [N, C, H, W] to output_size (1: global average pooling)."""
    return _pooling.adaptive_avg_pool2d_impl("adaptive_avg_pool2d", input, output_size)


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    """Mean over adaptive bins of [N, C, L] to output_size."""
    return _pooling.adaptive_avg_pool2d_impl("adaptive_avg_pool1d", input, output_size, 1)
