"""Convolutions: `conv2d` / `conv1d` and the modules `Conv2d` / `Conv1d`, with PyTorch's names,
arguments, defaults, parameter shapes and initialisation (so state dicts map one to one).

Both run the one table op `conv2d` (lucid/ir/ops/conv.py); conv1d is conv2d on a [N, C, 1, L]
view of its input and a [O, C/groups, 1, k] view of its weight. Every argument is checked here,
so a bad input raises an error naming the layer and the shapes instead of reaching a kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lucid import random as _random
from lucid.ir.ops import OPS
from lucid.ir.ops.conv import out_size
from lucid.nn._pooling import pad
from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor, apply, constant, float_input

_CONV2D = OPS["conv2d"]
# padding_mode -> F.pad's mode; "zeros" pads inside the convolution itself
_PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
                  "circular": "circular"}  # fmt: skip

__all__ = ["Conv1d", "Conv2d", "conv1d", "conv2d"]


def _pair(name: str, value: Any, n: int, what: str, least: int) -> tuple[int, ...]:
    """`value` (an int or a tuple of `n` ints) as a tuple of `n` ints >= least."""
    vals = (value,) * n if isinstance(value, (int, np.integer)) else tuple(value)
    if len(vals) != n or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals
    ):
        raise TypeError(f"{name}: {what} must be an int or a tuple of {n} ints, got {value!r}")
    if min(vals) < least:
        raise ValueError(f"{name}: {what} must be >= {least}, got {value!r}")
    return tuple(int(v) for v in vals)


def _padding(
    name: str, padding: Any, kernel: tuple[int, ...], stride: tuple[int, ...], dil: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """PyTorch's padding argument as (top, bottom, left, right) for the 2-D op."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(
                f"{name}: padding must be an int, a tuple, 'valid' or 'same', got {padding!r}"
            )
        if any(s != 1 for s in stride):
            raise ValueError(
                f"{name}: padding='same' is not supported for strided convolutions (stride={stride})"
            )
        pads: list[int] = []
        for k, d in zip(kernel, dil):
            total = d * (k - 1)  # PyTorch puts the odd one on the far side
            pads += [total // 2, total - total // 2]
        return (pads[0], pads[1], pads[2], pads[3])
    p = _pair(name, padding, len(kernel), "padding", 0)
    return (p[0], p[0], p[1], p[1]) if len(p) == 2 else (0, 0, p[0], p[0])


def _check(name: str, x: Tensor, w: Tensor, b: Tensor | None, attrs: dict[str, Any]) -> None:
    """ValueError/TypeError naming `name` and the shapes for anything the op cannot take."""
    xs, ws, groups = tuple(x.data.shape), tuple(w.data.shape), attrs["groups"]
    if x.data.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point input, got dtype {x.dtype}")
    if x.data.dtype != w.data.dtype:
        raise TypeError(f"{name}: input dtype {x.dtype} != weight dtype {w.dtype}")
    if len(xs) != 4 or len(ws) != 4:
        raise ValueError(
            f"{name}: expected input [N, C, H, W] or [C, H, W] and weight [O, C/groups, kh, kw], got input "
            f"of shape {xs} and weight of shape {ws}"
        )
    o, cg, kh, kw = ws
    if o % groups or xs[1] % groups:
        raise ValueError(
            f"{name}: groups={groups} must divide the input channels ({xs[1]}) and the output "
            f"channels ({o})"
        )
    if cg * groups != xs[1]:
        raise ValueError(
            f"{name}: expected input with {cg * groups} channels (weight {ws}, groups={groups}), "
            f"got input of shape {xs}"
        )
    pt, pb, pl, pr = attrs["padding"]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    if out_size(xs[2], pt, pb, kh, sh, dh) < 1 or out_size(xs[3], pl, pr, kw, sw, dw) < 1:
        raise ValueError(
            f"{name}: kernel size {kh}x{kw} (dilation {dh}x{dw}) is larger than the padded input "
            f"{xs[2] + pt + pb}x{xs[3] + pl + pr} (input of shape {xs})"
        )
    if b is not None and (tuple(b.data.shape) != (o,) or b.data.dtype != w.data.dtype):
        raise ValueError(
            f"{name}: bias must have shape ({o},) and dtype {w.dtype}, got {b.shape} {b.dtype}"
        )


def _conv(name: str, x: Tensor, w: Tensor, b: Any, attrs: dict[str, Any]) -> Tensor:
    bias = None if b is None else constant(b, w)
    _check(name, x, w, bias, attrs)
    inputs = (x, w) if bias is None else (x, w, bias)
    return apply(float_input(_CONV2D, x), inputs, attrs)


def conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    where: str = "conv2d",
) -> Tensor:
    """2-D cross-correlation of input [N, C, H, W] (or unbatched [C, H, W]) with weight
    [O, C/groups, kh, kw] (+ bias)."""
    if input.ndim == 3 and weight.ndim == 4:  # unbatched, as PyTorch: a batch of one
        return conv2d(
            input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, where
        ).squeeze(0)
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{where}: groups must be a positive int, got {groups!r}")
    kernel = tuple(weight.shape[2:]) if weight.ndim == 4 else (1, 1)
    s = _pair(where, stride, 2, "stride", 1)
    d = _pair(where, dilation, 2, "dilation", 1)
    attrs = {
        "stride": s,
        "padding": _padding(where, padding, kernel, s, d),
        "dilation": d,
        "groups": int(groups),
    }
    return _conv(where, input, weight, bias, attrs)


def conv1d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    where: str = "conv1d",
) -> Tensor:
    """1-D cross-correlation of input [N, C, L] (or unbatched [C, L]) with weight
    [O, C/groups, k] (+ bias)."""
    if input.ndim == 2 and weight.ndim == 3:  # unbatched, as PyTorch: a batch of one
        return conv1d(
            input.unsqueeze(0), weight, bias, stride, padding, dilation, groups, where
        ).squeeze(0)
    if input.ndim != 3 or weight.ndim != 3:
        raise ValueError(
            f"{where}: expected input [N, C, L] or [C, L] and weight [O, C/groups, k], got input of shape "
            f"{tuple(input.shape)} and weight of shape {tuple(weight.shape)}"
        )
    s = _pair(where, stride, 1, "stride", 1)
    d = _pair(where, dilation, 1, "dilation", 1)
    if isinstance(padding, str):
        pads = _padding(where, padding, (1, weight.shape[2]), (1, s[0]), (1, d[0]))
    else:
        p = _pair(where, padding, 1, "padding", 0)
        pads = (0, 0, p[0], p[0])
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"{where}: groups must be a positive int, got {groups!r}")
    attrs = {"stride": (1, s[0]), "padding": pads, "dilation": (1, d[0]), "groups": int(groups)}
    y = _conv(where, input.unsqueeze(2), weight.unsqueeze(2), bias, attrs)
    return y.squeeze(2)


class _ConvNd(Module):
    """Shared by Conv1d and Conv2d: PyTorch's constructor arguments and initialisation."""

    _n = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        dtype: Any = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        n = self._n
        if not all(
            isinstance(v, (int, np.integer)) and v > 0 for v in (in_channels, out_channels, groups)
        ):
            raise ValueError(
                f"{name}: in_channels, out_channels and groups must be positive ints, got "
                f"{in_channels!r}, {out_channels!r}, {groups!r}"
            )
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels}"
            )
        if padding_mode not in _PADDING_MODES:
            raise ValueError(
                f"{name}: padding_mode must be one of {sorted(_PADDING_MODES)}, got {padding_mode!r}"
            )
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(name, kernel_size, n, "kernel_size", 1)
        self.stride = _pair(name, stride, n, "stride", 1)
        self.dilation = _pair(name, dilation, n, "dilation", 1)
        if isinstance(padding, str):
            kernel2, stride2, dil2 = (
                (1,) * (2 - n) + t for t in (self.kernel_size, self.stride, self.dilation)
            )
            _padding(name, padding, kernel2, stride2, dil2)  # checks "same" against stride now
            self.padding: str | tuple[int, ...] = padding
        else:
            self.padding = _pair(name, padding, n, "padding", 0)
        self.groups, self.padding_mode = int(groups), padding_mode
        dt = np.dtype(np.float32 if dtype is None else dtype)
        # kaiming_uniform_(a=sqrt(5)) as PyTorch: bound = 1/sqrt(fan_in) for weight and bias
        fan_in = (self.in_channels // self.groups) * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan_in)
        rng = _random.generator()
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(rng.uniform(-bound, bound, shape), dtype=dt)
        self.bias = (
            Parameter(rng.uniform(-bound, bound, self.out_channels), dtype=dt) if bias else None
        )

    def _where(self) -> str:
        return f"{self!r}" + (f" at '{self.path}'" if self.path else "")

    def _padded(self, x: Tensor) -> tuple[Tensor, str | tuple[int, ...]]:
        """(input, padding) for the convolution: a padding_mode other than zeros pads x first
        with F.pad in that mode and convolves unpadded, as PyTorch does."""
        if self.padding_mode == "zeros":
            return x, self.padding
        n = self._n
        kernel, stride, dil = (
            (1,) * (2 - n) + t for t in (self.kernel_size, self.stride, self.dilation)
        )
        padding = self.padding if isinstance(self.padding, str) else (0,) * (2 - n) + self.padding
        top, bottom, left, right = _padding(type(self).__name__, padding, kernel, stride, dil)
        pads = (left, right) if n == 1 else (left, right, top, bottom)
        return pad(x, pads, mode=_PADDING_MODES[self.padding_mode]), (0,) * n

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding not in ("valid", (0,) * self._n):
            s += f", padding={self.padding!r}"
        if self.dilation != (1,) * self._n:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s


class Conv2d(_ConvNd):
    """y = conv2d(x, weight, bias) for x [N, C, H, W]; weight [O, C/groups, kh, kw], bias [O]."""

    _n = 2

    def forward(self, x: Tensor) -> Tensor:
        """Convolve x [N, in_channels, H, W]."""
        x, padding = self._padded(x)
        return conv2d(
            x,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self._where(),
        )


class Conv1d(_ConvNd):
    """y = conv1d(x, weight, bias) for x [N, C, L]; weight [O, C/groups, k], bias [O]."""

    _n = 1

    def forward(self, x: Tensor) -> Tensor:
        """Convolve x [N, in_channels, L]."""
        x, padding = self._padded(x)
        return conv1d(
            x,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            self.groups,
            self._where(),
        )
