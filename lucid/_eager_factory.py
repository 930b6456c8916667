"""Tensor factories: tensor, zeros, ones, *_like, randn, rand, arange."""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import _hooks
from lucid import random as _random
from lucid._args import shape_args
from lucid._symbolic import any_symbolic, concrete
from lucid.tensor import Tensor


def _dtype(dtype: Any) -> np.dtype:
    return np.dtype(np.float32 if dtype is None else dtype)


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new Tensor from data (the same rules as the Tensor constructor)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def _filled(shape: tuple[Any, ...], fill: float, dtype: np.dtype, requires_grad: bool) -> Tensor:
    """A Tensor of `fill`; a shape holding SymInts (a traced dynamic batch) is told to the
    tracer, so the graph fills the run-time shape instead of baking in the traced one."""
    out = Tensor(np.full(concrete(shape), fill, dtype), requires_grad)
    if _hooks.active is not None and any_symbolic(shape):
        _hooks.active.bind_fill(out, shape, fill)
    return out


def zeros(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A Tensor of zeros (float32 unless dtype is given)."""
    return _filled(shape_args("zeros", shape), 0, _dtype(dtype), requires_grad)


def ones(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """A Tensor of ones (float32 unless dtype is given)."""
    return _filled(shape_args("ones", shape), 1, _dtype(dtype), requires_grad)


def zeros_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Zeros of t's shape and (unless given) dtype."""
    return _filled(t.shape, 0, np.dtype(t.dtype if dtype is None else dtype), requires_grad)


def ones_like(t: Tensor, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Ones of t's shape and (unless given) dtype."""
    return _filled(t.shape, 1, np.dtype(t.dtype if dtype is None else dtype), requires_grad)


def randn(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from lucid's generator."""
    _hooks.random_source("lucid.randn()")
    data = _random.generator().standard_normal(shape_args("randn", shape))
    return Tensor(data.astype(_dtype(dtype)), requires_grad)


def rand(*shape: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from lucid's generator."""
    _hooks.random_source("lucid.rand()")
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
