"""Pooling layers with PyTorch's names, arguments and defaults (no parameters, so no state).

Each holds its arguments as given and calls the functional form under its own class name, so
an error says which layer refused which input shape.
"""

from __future__ import annotations

from typing import Any

from lucid.nn import _pooling as P
from lucid.nn.module import Module
from lucid.tensor import Tensor


class _MaxPoolNd(Module):
    """Max pooling over `_spatial` trailing axes of [N, C, ...] (or unbatched [C, ...])."""

    _spatial = 2

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        if return_indices:
            raise NotImplementedError(
                f"{type(self).__name__}: return_indices=True is not supported (lucid's max "
                "pooling recomputes the argmax in its backward instead of returning indices)"
            )
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        """Max over each window."""
        return P.max_pool2d_impl(
            type(self).__name__,
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.ceil_mode,
            spatial=self._spatial,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool2d(_MaxPoolNd):
    """2-d max pooling of [N, C, H, W]: PyTorch's geometry; NaN propagates."""


class MaxPool1d(_MaxPoolNd):
    """1-d max pooling of [N, C, L] (the 2-d op over [N, C, 1, L])."""

    _spatial = 1


class _AvgPoolNd(Module):
    """Average pooling over `_spatial` trailing axes of [N, C, ...] (or unbatched [C, ...])."""

    _spatial = 2

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad

    def forward(self, x: Tensor) -> Tensor:
        """Mean over each window (PyTorch's divisor)."""
        return P.avg_pool2d_impl(
            type(self).__name__,
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            spatial=self._spatial,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_AvgPoolNd):
    """2-d average pooling of [N, C, H, W]."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Any = None,
    ) -> None:
        if divisor_override is not None:
            raise NotImplementedError("AvgPool2d: divisor_override is not supported")
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)
        self.divisor_override = divisor_override


class AvgPool1d(_AvgPoolNd):
    """1-d average pooling of [N, C, L] (the 2-d op over [N, C, 1, L])."""

    _spatial = 1


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size (an int, a pair, None keeps a size);
    output_size 1 is global average pooling."""

    _spatial = 2

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        """Mean over each adaptive bin."""
        return P.adaptive_avg_pool2d_impl(
            type(self).__name__, x, self.output_size, spatial=self._spatial
        )

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(AdaptiveAvgPool2d):
    """Adaptive average pooling of [N, C, L] to output_size."""

    _spatial = 1


class _PadNd(Module):
    """F.pad with a fixed pad tuple and mode (ZeroPad2d, ReflectionPad2d, ...)."""

    _mode = "constant"
    _dims = 2

    def __init__(self, padding: Any, value: float = 0.0) -> None:
        super().__init__()
        if isinstance(padding, int) and not isinstance(padding, bool):
            padding = (padding,) * (2 * self._dims)
        self.padding = tuple(padding)
        self.value = value

    def forward(self, x: Tensor) -> Tensor:
        """Pad x."""
        value = self.value if self._mode == "constant" else None
        try:
            return P.pad(x, self.padding, self._mode, value)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__}: {e}") from None

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class ZeroPad2d(_PadNd):
    """Zeros around the last two dims: padding (left, right, top, bottom) or an int."""

    def __init__(self, padding: Any) -> None:
        super().__init__(padding, 0.0)


class ConstantPad2d(_PadNd):
    """`value` around the last two dims."""


class ReflectionPad2d(_PadNd):
    """Mirror the last two dims about their edge elements."""

    _mode = "reflect"

    def __init__(self, padding: Any) -> None:
        super().__init__(padding)


class ReplicationPad2d(_PadNd):
    """Repeat the edge elements of the last two dims."""

    _mode = "replicate"

    def __init__(self, padding: Any) -> None:
        super().__init__(padding)
