"""Tensor factories: tensor, zeros, ones, *_like, randn, rand, arange."""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import random as _random
from lucid._args import shape_args
from lucid.tensor import Tensor


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(np.float32 if dtype is None else dtype)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new Tensor from data (the same rules as the Tensor constructor)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A Tensor of zeros (float32 unless dtype is given)."""
    return Tensor(np.zeros(shape_args("zeros", shape), _dtype(dtype)), requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A Tensor of ones (float32 unless dtype is given)."""
    return Tensor(np.ones(shape_args("ones", shape), _dtype(dtype)), requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of t's shape and (unless given) dtype."""
    return Tensor(np.zeros(t.shape, t.dtype if dtype is None else dtype), requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of t's shape and (unless given) dtype."""
    return Tensor(np.ones(t.shape, t.dtype if dtype is None else dtype), requires_grad)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from lucid's generator."""
    data = _random.generator().standard_normal(shape_args("randn", shape))
    return Tensor(data.astype(_dtype(dtype)), requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from lucid's generator."""
    data = _random.generator().random(shape_args("rand", shape))
    return Tensor(data.astype(_dtype(dtype)), requires_grad)


def arange(start: float, stop: float | None = None, step: float = 1, dtype: Any = None) -> Tensor:
    """Evenly spaced values in [start, stop); int64 for integer arguments, else float32."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        dtype = np.int64 if ints else np.float32
    return Tensor(np.arange(start, stop, step, dtype=np.dtype(dtype)))
