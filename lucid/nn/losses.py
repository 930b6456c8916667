"""Losses composed from the op table: NLL, BCE with logits, L1, Huber, and label smoothing.

Each is a few existing ops (`where`, `equal`, `abs`, `exp`, `log`, `maximum`, `sum`, `mean`,
the `cross_entropy` op), so it traces, differentiates and compiles with no op of its own.
Class indices are selected by a one-hot mask, `target[:, None] == arange(C)`, because the table
has no gather. `mse_loss` and `cross_entropy` themselves are ops (lucid/ir/ops/loss.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import functional as LF
from lucid.ir.ops import OPS
from lucid.nn.module import Module
from lucid.tensor import Tensor, apply, operands

_REDUCTIONS = ("mean", "sum", "none")

__all__ = [
    "BCEWithLogitsLoss",
    "HuberLoss",
    "L1Loss",
    "NLLLoss",
    "binary_cross_entropy_with_logits",
    "huber_loss",
    "l1_loss",
    "label_smoothing_term",
    "nll_loss",
]


# ---------------------------------------------------------------- argument checks


def _check_reduction(op: str, reduction: str, allowed: tuple[str, ...] = _REDUCTIONS) -> None:
    if reduction not in allowed:
        names = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{op}: reduction must be one of {names}, got {reduction!r}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def _float(op: str, x: Any, what: str) -> Tensor:
    if not isinstance(x, Tensor) or x.data.dtype.kind != "f":
        got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{op}: {what} must be a floating-point Tensor, got {got}")
    return x


def _same_shape(op: str, pred: Tensor, target: Any) -> tuple[Tensor, Tensor]:
    """pred and target as Tensors of pred's dtype and one shape, or an error naming both."""
    _float(op, pred, "input")
    pred, target = operands(op, pred, target)
    if pred.data.shape != target.data.shape:
        raise ValueError(
            f"{op}: input has shape {pred.data.shape} but target has shape "
            f"{target.data.shape}; they must be equal"
        )
    return pred, target


def _class_mask(op: str, scores: Tensor, target: Any, ignore_index: int | None = None) -> Tensor:
    """The one-hot bool mask [N, C] of integer `target` [N] against `scores` [N, C] (rows whose
    target is `ignore_index` are all False); checks shapes, dtype and, eagerly, the range."""
    if scores.data.ndim != 2:
        raise ValueError(f"{op}: expected input of shape [N, C], got {scores.data.shape}")
    if not isinstance(target, Tensor):
        target = Tensor(np.asarray(target))
    n, c = scores.data.shape
    if target.data.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must hold integer class indices, got dtype {target.data.dtype}"
        )
    if target.data.shape != (n,):
        raise ValueError(
            f"{op}: input of shape {scores.data.shape} needs target of shape ({n},), "
            f"got {target.data.shape}"
        )
    # the range is checked by an op, so that a compiled or exported model checks it at every
    # call too: a class no mask row names would otherwise silently add nothing to the loss
    allow = () if ignore_index is None or 0 <= ignore_index < c else (ignore_index,)
    if target.data.dtype != np.int64:
        target = Tensor(target.data.astype(np.int64))
    target = apply(
        OPS["index_check"], (target,), {"size": c, "allow": allow, "what": f"{op}: target classes"}
    )
    t = target.data
    classes = np.arange(c, dtype=t.dtype)
    if ignore_index is not None and 0 <= ignore_index < c:
        classes[ignore_index] = -1  # a class no target names
    return target.reshape(-1, 1) == Tensor(classes)


def _picked(mask: Tensor, scores: Tensor) -> Tensor:
    """scores[row, target[row]] for each row, [N] (0 for a row with no class)."""
    return LF.where(mask, scores, 0.0).sum(axis=1)


# ---------------------------------------------------------------- functional forms


def nll_loss(
    input: Tensor,
    target: Any,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """-input[row, target[row]] for log-probabilities input [N, C] and class indices [N],
    weighted by weight[target] ('mean' divides by the summed weights of counted rows)."""
    _check_reduction("nll_loss", reduction)
    _float("nll_loss", input, "input")
    mask = _class_mask("nll_loss", input, target, ignore_index)
    if weight is None:
        w_rows = mask.astype(input.dtype).sum(axis=1)
        loss = -_picked(mask, input)
    else:
        weight = _float("nll_loss", weight, "weight")
        if weight.data.shape != input.data.shape[1:]:
            raise ValueError(
                f"nll_loss: weight must have shape ({input.data.shape[1]},) for input of "
                f"shape {input.data.shape}, got {weight.data.shape}"
            )
        w_rows = _picked(mask, weight)
        loss = -(w_rows * _picked(mask, input))
    if reduction == "mean":
        return loss.sum() / w_rows.sum()
    return _reduce(loss, reduction)


def label_smoothing_term(logits: Tensor, target: Any, reduction: str, eps: float) -> Tensor:
    """What label smoothing eps adds to the reduced softmax cross-entropy: with the target
    (1 - eps) one-hot + eps / C uniform, each row's loss grows by
    eps * (logits[row, target] - mean(logits[row])) (the log-sum-exp terms cancel)."""
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must lie in [0, 1], got {eps}")
    mask = _class_mask("cross_entropy", logits, target)
    return _reduce(_picked(mask, logits) - logits.mean(axis=1), reduction) * eps


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Any,
    weight: Any = None,
    reduction: str = "mean",
    pos_weight: Any = None,
) -> Tensor:
    """-[pos_weight * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x))], in the stable form
    (1 - y) * x + (1 + (pos_weight - 1) * y) * (max(-x, 0) + log(1 + exp(-|x|)))."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    x, y = _same_shape("binary_cross_entropy_with_logits", input, target)
    softplus_neg = LF.maximum(-x, 0.0) + (LF.exp(-x.abs()) + 1.0).log()  # -log sigmoid(x)
    if pos_weight is not None:
        pos_weight = operands("binary_cross_entropy_with_logits", x, pos_weight)[1]
        softplus_neg = softplus_neg * ((pos_weight - 1.0) * y + 1.0)
    loss = (1.0 - y) * x + softplus_neg
    if weight is not None:
        loss = loss * operands("binary_cross_entropy_with_logits", x, weight)[1]
    return _reduce(loss, reduction)


def l1_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """|input - target|, reduced; the gradient at 0 is 0."""
    _check_reduction("l1_loss", reduction)
    x, y = _same_shape("l1_loss", input, target)
    return _reduce((x - y).abs(), reduction)


def huber_loss(input: Tensor, target: Any, reduction: str = "mean", delta: float = 1.0) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta * (|d| - delta / 2), with d = input - target."""
    _check_reduction("huber_loss", reduction)
    if not delta > 0:
        raise ValueError(f"huber_loss: delta must be positive, got {delta}")
    x, y = _same_shape("huber_loss", input, target)
    d = x - y
    ad = d.abs()
    loss = LF.where(ad < delta, d * d * 0.5, (ad - 0.5 * delta) * delta)
    return _reduce(loss, reduction)


# ---------------------------------------------------------------- modules


class _Loss(Module):
    """A loss module: holds its reduction; subclasses call their functional form in forward."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities [N, C] against class indices [N]."""

    def __init__(
        self, weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        self.weight = weight
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Any) -> Tensor:
        """The loss of input against target classes."""
        return nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid plus binary cross-entropy in one numerically stable expression."""

    def __init__(self, weight: Any = None, reduction: str = "mean", pos_weight: Any = None):
        super().__init__(reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def forward(self, input: Tensor, target: Any) -> Tensor:
        """The loss of logits input against probabilities target."""
        return binary_cross_entropy_with_logits(
            input, target, self.weight, self.reduction, self.pos_weight
        )


class L1Loss(_Loss):
    """Mean (or summed, or elementwise) absolute error."""

    def forward(self, input: Tensor, target: Any) -> Tensor:
        """The loss of input against target."""
        return l1_loss(input, target, self.reduction)


class HuberLoss(_Loss):
    """Quadratic below delta, linear above (smooth L1 scaled by delta)."""

    def __init__(self, reduction: str = "mean", delta: float = 1.0) -> None:
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input: Tensor, target: Any) -> Tensor:
        """The loss of input against target."""
        return huber_loss(input, target, self.reduction, self.delta)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, delta={self.delta}"
