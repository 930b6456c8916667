"""Layers: Linear, the activations (softmax included), Identity, Flatten, Dropout, and the two losses."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lucid import random as _random
from lucid.nn import functional as F
from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor


class Linear(Module):
    """y = x @ weight.T + bias, weight [out, in], bias [out]; init uniform(+-1/sqrt(in))."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: Any = None
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"Linear: feature counts must be positive, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        self.in_features = in_features
        self.out_features = out_features
        dt = np.dtype(np.float32 if dtype is None else dtype)
        bound = 1.0 / math.sqrt(in_features)
        rng = _random.generator()
        self.weight = Parameter(rng.uniform(-bound, bound, (out_features, in_features)), dtype=dt)
        self.bias = Parameter(rng.uniform(-bound, bound, out_features), dtype=dt) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        """Apply the affine map to the last axis of x."""
        if x.shape[-1:] != (self.in_features,):
            where = f" at '{self.path}'" if self.path else ""
            raise ValueError(
                f"{self!r}{where}: expected input of shape [..., {self.in_features}], got {x.shape}"
            )
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class HardSwish(Module):
    """x * clip(x/6 + 1/2, 0, 1) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply HardSwish."""
        return F.hardswish(x)


class HardSigmoid(Module):
    """clip(x/6 + 1/2, 0, 1) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply HardSigmoid."""
        return F.hardsigmoid(x)


# PyTorch's spellings, so that code written for torch.nn reads unchanged
Hardswish = HardSwish
Hardsigmoid = HardSigmoid


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply ReLU."""
        return F.relu(x)


class ReLU6(Module):
    """min(max(x, 0), 6) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply ReLU6."""
        return F.relu6(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply the logistic sigmoid."""
        return F.sigmoid(x)


class SiLU(Module):
    """x * sigmoid(x) elementwise (also called swish)."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply SiLU."""
        return F.silu(x)


class GELU(Module):
    """x * Phi(x) elementwise (erf form), or its tanh approximation for approximate="tanh"."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        """Apply GELU."""
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    """x > 0 ? x : negative_slope * x elementwise."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        """Apply LeakyReLU."""
        return F.leaky_relu(x, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(Module):
    """x > 0 ? x : alpha * (exp(x) - 1) elementwise."""

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        self.alpha = alpha
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        """Apply ELU."""
        return F.elu(x, self.alpha, self.inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Softplus(Module):
    """log(1 + exp(beta x)) / beta elementwise; x itself where beta x > threshold."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        self.beta = beta
        self.threshold = threshold

    def forward(self, x: Tensor) -> Tensor:
        """Apply Softplus."""
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Hardtanh(Module):
    """clip(x, min_val, max_val) elementwise."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> None:
        super().__init__()
        if not min_val < max_val:
            raise ValueError(
                f"Hardtanh: min_val must be less than max_val, got {min_val} and {max_val}"
            )
        self.min_val = min_val
        self.max_val = max_val
        self.inplace = inplace

    def forward(self, x: Tensor) -> Tensor:
        """Apply Hardtanh."""
        return F.hardtanh(x, self.min_val, self.max_val, self.inplace)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along `dim` (required, as PyTorch asks; negative from the end)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply softmax along dim."""
        return F.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """log(softmax(x)) along `dim`, computed stably."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Apply log_softmax along dim."""
        return F.log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Tanh(Module):
    """tanh(x) elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        """Apply tanh."""
        return F.tanh(x)


class Identity(Module):
    """Returns its input unchanged (records nothing)."""

    def forward(self, x: Tensor) -> Tensor:
        """Return x."""
        return x


class Flatten(Module):
    """Merges the axes start_dim..end_dim (inclusive) into one, as torch.nn.Flatten: by default
    every axis after the first, [N, d1, d2, ...] -> [N, d1*d2*...]."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Tensor) -> Tensor:
        """x.flatten(start_dim, end_dim); a symbolic batch size survives tracing as long as the
        batch axis is not merged with others."""
        if x.ndim < 2 and (self.start_dim, self.end_dim) == (1, -1):
            raise ValueError(
                f"Flatten: expected a tensor with a batch axis and more, got {x.shape}"
            )
        lo = self.start_dim + x.ndim if self.start_dim < 0 else self.start_dim
        hi = self.end_dim + x.ndim if self.end_dim < 0 else self.end_dim
        if not 1 <= lo <= hi < x.ndim:
            return x.flatten(self.start_dim, self.end_dim)  # its checks, or the batch merged
        # the batch axis as -1: the reshape reads the same however many rows come
        shape = x.shape
        return x.reshape((-1, *shape[1:lo], math.prod(shape[lo : hi + 1]), *shape[hi + 1 :]))

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Dropout(Module):
    """Zeros elements with probability p while training (scaling the rest); identity in eval."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must lie in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """Apply dropout when training, else return x."""
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MSELoss(Module):
    """Mean (or summed) squared error between prediction and target."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, pred: Tensor, target: Any) -> Tensor:
        """The loss of pred against target."""
        return F.mse_loss(pred, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class CrossEntropyLoss(Module):
    """Softmax cross-entropy of logits [N, C] against int64 class indices [N]."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.reduction = reduction
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        """The loss of logits against target classes."""
        return F.cross_entropy(logits, target, self.reduction, self.label_smoothing)

    def extra_repr(self) -> str:
        smoothing = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"reduction={self.reduction!r}{smoothing}"
