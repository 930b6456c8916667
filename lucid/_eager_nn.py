"""Eager neural-network primitives: matmul, linear, activations, losses, dropout.

`lucid.nn.functional` re-exports these. Like `_eager_math`, each is one primitive with its
own backward rule and a single record; `linear` in particular is one op (x, w[, b]), not a
matmul plus an add, because the compiler fuses it as a unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import _hooks
from lucid import _np_kernels as K
from lucid import random as _random
from lucid._eager_math import constant, operands, require_float
from lucid.tensor import Array, Tensor, _result


def _rows(a: Array) -> Array:
    """a as a 2-D [rows, last-dim] view, so batched products reduce to one GEMM."""
    return a.reshape(-1, a.shape[-1])


def matmul(a: Any, b: Any) -> Tensor:
    """a @ b for a of shape [..., m, k] (or [k]) and b of shape [k, n]."""
    a, b = operands("matmul", a, b)
    if a.ndim < 1 or b.ndim != 2 or a.shape[-1] != b.shape[0]:
        raise ValueError(
            f"matmul: cannot multiply shapes {a.shape} and {b.shape}: expected a of shape "
            "[..., m, k] or [k] and b of shape [k, n] with matching k"
        )
    x, w = a.data, b.data
    need_a, need_b = a.requires_grad, b.requires_grad

    def backward(g: Array) -> tuple[Array | None, Array | None]:
        ga = g @ w.T if need_a else None
        gb = _rows(x).T @ g.reshape(-1, w.shape[1]) if need_b else None
        return ga, gb

    return _result(x @ w, "matmul", (a, b), {}, backward)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, where: str = "") -> Tensor:
    """x @ weight.T + bias for x [..., in], weight [out, in], bias [out]; one primitive."""
    x, weight = operands("linear", x, weight)
    inputs: tuple[Tensor, ...] = (x, weight)
    if bias is not None:
        bias = constant(bias, weight)
        inputs += (bias,)
    xd, wd = x.data, weight.data  # the arrays, not the properties: this runs per layer call
    if wd.ndim != 2 or xd.ndim < 1 or xd.shape[-1] != wd.shape[1]:
        raise ValueError(
            f"linear{where}: input of shape {xd.shape} does not fit weight of shape "
            f"{wd.shape}: expected input of shape [..., {wd.shape[-1]}]"
        )
    if bias is not None:
        bd = bias.data
        if bd.shape != wd.shape[:1]:
            raise ValueError(f"linear{where}: bias has shape {bd.shape}, expected ({wd.shape[0]},)")
        if bd.dtype != wd.dtype:
            raise TypeError(f"linear{where}: bias dtype {bd.dtype} != weight dtype {wd.dtype}")
    y = xd @ wd.T
    if bias is not None:
        y += bd
    need_x, need_w = x.requires_grad, weight.requires_grad

    def backward(g: Array) -> tuple[Array | None, ...]:
        g2 = _rows(g)
        gx = g @ wd if need_x else None
        gw = g2.T @ _rows(xd) if need_w else None
        return (gx, gw, g2.sum(axis=0)) if bias is not None else (gx, gw)

    return _result(y, "linear", inputs, {}, backward)


# ---------------------------------------------------------------- activations


def hardswish(x: Tensor) -> Tensor:
    """x * clip(x/6 + 1/2, 0, 1); gradient x/3 + 1/2 on [-3, 3], 1 above, 0 below."""
    require_float("hardswish", x)
    d = x.data
    return _result(K.hardswish(d), "hardswish", (x,), {}, lambda g: (K.hardswish_grad(d, g),))


def hardsigmoid(x: Tensor) -> Tensor:
    """clip(x/6 + 1/2, 0, 1); gradient 1/6 on [-3, 3], else 0."""
    require_float("hardsigmoid", x)
    d = x.data
    return _result(K.hardsigmoid(d), "hardsigmoid", (x,), {}, lambda g: (K.hardsigmoid_grad(d, g),))


def relu(x: Tensor) -> Tensor:
    """max(x, 0); gradient [x > 0]."""
    require_float("relu", x)
    d = x.data
    return _result(K.relu(d), "relu", (x,), {}, lambda g: (K.relu_grad(d, g),))


def relu6(x: Tensor) -> Tensor:
    """min(max(x, 0), 6); gradient [0 < x < 6]."""
    require_float("relu6", x)
    d = x.data
    return _result(K.relu6(d), "relu6", (x,), {}, lambda g: (K.relu6_grad(d, g),))


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x))."""
    require_float("sigmoid", x)
    y = K.sigmoid(x.data)
    return _result(y, "sigmoid", (x,), {}, lambda g: (g * y * (1 - y),))


def tanh(x: Tensor) -> Tensor:
    """Elementwise tanh (the same primitive as Tensor.tanh)."""
    return x.tanh()


# ---------------------------------------------------------------- losses


def _reduction(op: str, reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum', got {reduction!r}")


def mse_loss(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """mean((pred - target)**2), or its sum; shapes must be equal."""
    _reduction("mse_loss", reduction)
    require_float("mse_loss", pred)
    pred, target = operands("mse_loss", pred, target)
    p, t = pred.data, target.data
    if p.shape != t.shape:
        raise ValueError(
            f"mse_loss: prediction has shape {p.shape} but target has shape {t.shape}; "
            "they must be equal"
        )
    need_target = target.requires_grad  # a target rarely needs grad: skip its negation then

    def backward(g: Array) -> tuple[Array, Array | None]:
        if type(g) is np.ndarray and g.ndim == 0:
            g = g[()]  # the same dtype's scalar: same arithmetic, a quarter of the 0-d cost
        scale = g * 2 / p.size if reduction == "mean" else g * 2
        gp = (p - t) * scale
        return gp, (-gp if need_target else None)

    return _result(
        K.mse_loss(p, t, reduction), "mse_loss", (pred, target), {"reduction": reduction}, backward
    )


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy of logits [N, C] against int64 class indices [N]."""
    _reduction("cross_entropy", reduction)
    require_float("cross_entropy", logits)
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target))
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}"
        )
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape [N, C], got {logits.shape}")
    z, t = logits.data, target.data
    loss = K.cross_entropy(z, t, reduction)
    return _result(
        loss,
        "cross_entropy",
        (logits, target),
        {"reduction": reduction},
        lambda g: (K.cross_entropy_grad(z, t, g, reduction), None),
    )


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p); identity if not training."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    _hooks.unsupported("Dropout in training mode (call model.eval() before compiling)", (x,))
    require_float("dropout", x)
    keep = _random.generator().random(x.shape) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    mask = keep.astype(x.dtype) * x.dtype.type(scale)
    return _result(x.data * mask, None, (x,), {}, lambda g: (g * mask,))
