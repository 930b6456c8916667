"""Normalization layers: BatchNorm1d/2d, LayerNorm, GroupNorm, and their functional forms.

Each is composed from table ops: `moments` (lucid/ir/ops/norm.py: the mean and the variance in
one kernel, two passes per group while it is in cache) and elementwise ops, which the compiler
fuses into one loop (or into a preceding GEMM's epilogue). Names, arguments, defaults, parameters and
buffers are PyTorch's, so state dicts map one to one.

BatchNorm applies the per-channel affine map `x * scale + shift` with `scale = weight / sqrt(var
+ eps)` and `shift = bias - mean * scale` (C values each), as PyTorch's CPU kernel does: two
operations per element. The map is one composite op, `batch_norm` (lucid/ir/ops/norm.py): one
traced node, which the compiler's first pass expands into those table ops. In training it
updates the running statistics through `lucid._hooks.write_buffer`, which lucid.compile turns
into graph outputs written back after each call; in eval mode with running statistics the map
reads only parameters and buffers, so the `fold-affine` pass folds it into a preceding Linear.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lucid import _hooks
from lucid.ir.ops import OPS
from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor, apply, no_grad

_MOMENTS = OPS["moments"]
_BATCH_NORM = OPS["batch_norm"]

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "GroupNorm",
    "LayerNorm",
    "batch_norm",
    "group_norm",
    "layer_norm",
]


def _moments(x: Tensor, axes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """The mean and the biased variance over `axes`, kept as size-1 dims (one op).

    Each is a slice of the [2, ...] result reshaped with -1 for the batch axis (when kept), not
    `stats[0]`, whose reshape would name this batch's size: so a trace on an empty batch
    records the graph of the full one (trace.empty_batch_suffices)."""
    stats = apply(_MOMENTS, (x,), {"axes": axes})
    kept = tuple(stats.data.shape[1:])
    batch_kept = 0 not in axes and math.prod(kept[1:]) > 0  # else -1 would be ambiguous
    shape = ((-1,) + kept[1:]) if batch_kept else kept
    return stats[0:1].reshape(shape), stats[1:2].reshape(shape)


def _float(what: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: expected a Tensor input, got {type(x).__name__}")
    if x.data.dtype.kind != "f":
        raise TypeError(f"{what}: expected a floating-point Tensor, got dtype {x.dtype}")
    return x


def _per_channel(what: str, name: str, t: Any, c: int, dtype: np.dtype[Any]) -> Tensor | None:
    """`t` checked to be a [c] Tensor of `dtype` (None passes)."""
    if t is None:
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{what}: {name} must be a Tensor, got {type(t).__name__}")
    if tuple(t.data.shape) != (c,):
        raise ValueError(
            f"{what}: {name} has shape {tuple(t.data.shape)}, expected ({c},) for an input "
            f"with {c} channels"
        )
    if t.data.dtype != dtype:
        raise TypeError(f"{what}: {name} has dtype {t.dtype}, the input {dtype}")
    return t


def batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float | Tensor = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization of `input` [N, C, *] per channel (torch.nn.functional.batch_norm).

    training: batch statistics (biased variance to normalize), and the running statistics, if
    given, move by `momentum` towards the batch mean and the unbiased batch variance (written in
    place: see lucid._hooks.write_buffer). Otherwise the running statistics normalize."""
    return _batch_norm(
        "batch_norm", input, running_mean, running_var, weight, bias, training, momentum, eps
    )


def _batch_norm(
    what: str,
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
    momentum: float | Tensor,
    eps: float,
) -> Tensor:
    x = _float(what, x)
    if x.data.ndim < 2:
        raise ValueError(f"{what}: expected an input of shape [N, C, *], got {x.shape}")
    shape = x.shape
    c = int(x.data.shape[1])
    dt = x.data.dtype
    running_mean = _per_channel(what, "running_mean", running_mean, c, dt)
    running_var = _per_channel(what, "running_var", running_var, c, dt)
    weight = _per_channel(what, "weight", weight, c, dt)
    bias = _per_channel(what, "bias", bias, c, dt)
    axes = (0, *range(2, x.data.ndim))
    if training:
        n = math.prod(shape[a] for a in axes)  # a SymInt under a dynamic batch: a guard below
        if n <= 1:
            raise ValueError(
                f"{what}: Expected more than 1 value per channel when training, got input "
                f"size {tuple(x.data.shape)}"
            )
        mean, var = _moments(x, axes)
        if running_mean is not None or running_var is not None:
            with no_grad():
                _update(running_mean, mean.detach().reshape(c), momentum)
                unbiased = var.detach().reshape(c) * (n / (n - 1))
                _update(running_var, unbiased, momentum)
        mean_c, var_c = mean.reshape(c), var.reshape(c)
    else:
        if running_mean is None or running_var is None:
            raise ValueError(f"{what}: running_mean and running_var are required when not training")
        mean_c, var_c = running_mean, running_var
    if weight is None and bias is not None:  # a shift alone (rare): normalize, then shift
        y = apply(_BATCH_NORM, (x, mean_c, var_c), {"eps": eps})
        return y + bias.reshape((c,) + (1,) * (x.data.ndim - 2))
    affine = () if weight is None else (weight,) if bias is None else (weight, bias)
    return apply(_BATCH_NORM, (x, mean_c, var_c, *affine), {"eps": eps})


def _update(buffer: Tensor | None, batch: Tensor, momentum: float | Tensor) -> None:
    """buffer <- (1 - momentum) * buffer + momentum * batch, in place."""
    if buffer is None:
        return
    _hooks.write_buffer(buffer, buffer * (1.0 - momentum) + batch * momentum)


def layer_norm(
    input: Tensor,
    normalized_shape: int | tuple[int, ...] | list[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """(x - mean) / sqrt(var + eps) * weight + bias over the last len(normalized_shape) dims
    (torch.nn.functional.layer_norm)."""
    what = "layer_norm"
    x = _float(what, input)
    dims = _shape_arg(what, normalized_shape)
    k = len(dims)
    if x.data.ndim < k or tuple(x.data.shape[x.data.ndim - k :]) != dims:
        raise ValueError(
            f"{what}: expected an input of shape [*, {', '.join(map(str, dims))}] "
            f"(normalized_shape={list(dims)}), got {tuple(x.data.shape)}"
        )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and (tuple(t.data.shape) != dims or t.data.dtype != x.data.dtype):
            raise ValueError(
                f"{what}: {name} has shape {tuple(t.data.shape)} and dtype {t.dtype}, expected "
                f"{dims} and {x.dtype}"
            )
    axes = tuple(range(x.data.ndim - k, x.data.ndim))
    mean, var = _moments(x, axes)
    y = (x - mean) * (1.0 / (var + eps).sqrt())
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _shape_arg(what: str, shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise ValueError(f"{what}: normalized_shape must be positive ints, got {shape!r}")
    return dims


def group_norm(
    input: Tensor,
    num_groups: int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalize each of `num_groups` groups of channels of `input` [N, C, *] over its channels
    and spatial positions, then scale and shift per channel (torch.nn.functional.group_norm)."""
    what = "group_norm"
    x = _float(what, input)
    if x.data.ndim < 2:
        raise ValueError(f"{what}: expected an input of shape [N, C, *], got {x.shape}")
    c = int(x.data.shape[1])
    if num_groups <= 0 or c % num_groups:
        raise ValueError(
            f"{what}: the {c} channels of the input {tuple(x.data.shape)} cannot be split into "
            f"{num_groups} groups"
        )
    dt = x.data.dtype
    weight = _per_channel(what, "weight", weight, c, dt)
    bias = _per_channel(what, "bias", bias, c, dt)
    per_group = (c // num_groups) * math.prod(x.data.shape[2:])
    g = x.reshape(-1, num_groups, per_group)  # -1: the batch, possibly symbolic
    mean, var = _moments(g, (2,))
    y = (g - mean) * (1.0 / (var + eps).sqrt())
    y = y.reshape(x.shape)
    affine_shape = (c,) + (1,) * (x.data.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(affine_shape)
    if bias is not None:
        y = y + bias.reshape(affine_shape)
    return y


# ---------------------------------------------------------------- modules


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d; `_ranks` are the input ranks the class takes.

    Invariants: weight/bias are Parameters [C] iff affine; running_mean/running_var [C] and
    num_batches_tracked (int64, 0-d) are buffers iff track_running_stats, else None."""

    _ranks: tuple[int, ...] = ()
    _expect = ""
    running_mean: Tensor | None
    running_var: Tensor | None
    num_batches_tracked: Tensor | None

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(num_features, int) or num_features <= 0:
            raise ValueError(
                f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}"
            )
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.has_bias = bool(bias)
        self.track_running_stats = bool(track_running_stats)
        dt = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.ones(num_features), dtype=dt) if affine else None
        self.bias = Parameter(np.zeros(num_features), dtype=dt) if affine and bias else None
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dt)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, np.int64)))
        else:
            self.running_mean = None
            self.running_var = None
            self.num_batches_tracked = None

    def reset_running_stats(self) -> None:
        """Running mean 0, variance 1, no batches tracked (in place)."""
        for buffer, value in (
            (self.running_mean, 0),
            (self.running_var, 1),
            (self.num_batches_tracked, 0),
        ):
            if buffer is not None:
                buffer.data[...] = value

    def forward(self, x: Tensor) -> Tensor:
        """Normalize each channel (axis 1) of x; see the module docstring."""
        shape = tuple(getattr(x, "data", np.empty(())).shape)
        if len(shape) not in self._ranks:
            raise ValueError(
                f"{self._label()}: expected {self._expect} input, got {len(shape)}D input of "
                f"shape {shape}"
            )
        if shape[1] != self.num_features:
            raise ValueError(
                f"{self._label()}: expected {self.num_features} channels (axis 1), got input of "
                f"shape {shape}"
            )
        momentum: float | Tensor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.num_batches_tracked is not None:
            with no_grad():
                count = self.num_batches_tracked + 1
                _hooks.write_buffer(self.num_batches_tracked, count)
                if self.momentum is None:  # a cumulative average: 1 / batches, in the graph
                    momentum = 1.0 / count.astype(x.data.dtype)
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return _batch_norm(
            self._label(),
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            momentum,
            self.eps,
        )

    def _label(self) -> str:
        return f"{type(self).__name__}" + (f" at '{self.path}'" if self.path else "")

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.has_bias}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalization of [N, C] or [N, C, L] inputs over N (and L) per channel."""

    _ranks = (2, 3)
    _expect = "2D or 3D"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of [N, C, H, W] inputs over N, H, W per channel."""

    _ranks = (4,)
    _expect = "4D"


class LayerNorm(Module):
    """Normalize over the last dims `normalized_shape`; weight (ones) and bias (zeros) of that
    shape when elementwise_affine (bias only if `bias`)."""

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...] | list[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape_arg("LayerNorm", normalized_shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        self.has_bias = bool(bias)
        dt = np.dtype(np.float32 if dtype is None else dtype)
        shape = self.normalized_shape
        self.weight = Parameter(np.ones(shape), dtype=dt) if elementwise_affine else None
        self.bias = Parameter(np.zeros(shape), dtype=dt) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        """layer_norm over the last len(normalized_shape) dims."""
        try:
            return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        except ValueError as e:
            where = f" at '{self.path}'" if self.path else ""
            raise ValueError(f"LayerNorm{where}: {e}") from None

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, "
            f"elementwise_affine={self.elementwise_affine}, bias={self.has_bias}"
        )


class GroupNorm(Module):
    """Normalize `num_groups` groups of the `num_channels` channels; weight and bias [C]."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: Any = None,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if num_groups <= 0 or num_channels <= 0 or num_channels % num_groups:
            raise ValueError(
                f"GroupNorm: num_channels ({num_channels}) must be a positive multiple of "
                f"num_groups ({num_groups})"
            )
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = float(eps)
        self.affine = bool(affine)
        self.has_bias = bool(bias)
        dt = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.ones(num_channels), dtype=dt) if affine else None
        self.bias = Parameter(np.zeros(num_channels), dtype=dt) if affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        """group_norm with this module's groups, weight and bias."""
        shape = tuple(getattr(x, "data", np.empty(())).shape)
        where = f" at '{self.path}'" if self.path else ""
        if len(shape) < 2 or shape[1] != self.num_channels:
            raise ValueError(
                f"GroupNorm{where}: expected an input of shape [N, {self.num_channels}, *], "
                f"got {shape}"
            )
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}, "
            f"bias={self.has_bias}"
        )
