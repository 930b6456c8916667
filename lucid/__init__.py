"""lucid: a small PyTorch-like library on NumPy, and a compiler for it."""

from __future__ import annotations

__version__ = "0.1.0"

from lucid import random
from lucid._eager_factory import arange, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from lucid.functional import (
    abs,
    argmax,
    argmin,
    astype,
    broadcast_to,
    cat,
    chunk,
    clip,
    detach,
    exp,
    flatten,
    log,
    matmul,
    max,
    maximum,
    mean,
    min,
    minimum,
    permute,
    reshape,
    sigmoid,
    split,
    sqrt,
    squeeze,
    stack,
    std,
    sum,
    tanh,
    transpose,
    unsqueeze,
    var,
    where,
)
from lucid.tensor import Tensor, grad_enabled, no_grad

# Not in __all__: `from lucid import *` must not shadow the builtin compile().
_LAZY = {
    "compile": "lucid.runtime.compiled",
    "set_num_threads": "lucid.runtime.threads",
    "get_num_threads": "lucid.runtime.threads",
    "export": "lucid.runtime.aot",
    "save": "lucid.io",
    "load": "lucid.io",
}


def __getattr__(name: str) -> object:
    """`lucid.compile`, `lucid.export`, `lucid.save`/`load` and the thread setters, imported on first use (light import)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name == "onnx":  # the submodule; it imports the onnx package only when exporting
        import importlib

        return importlib.import_module("lucid.onnx")
    raise AttributeError(f"module 'lucid' has no attribute {name!r}")


__all__ = [
    "Tensor",
    "abs",
    "arange",
    "argmax",
    "argmin",
    "astype",
    "broadcast_to",
    "cat",
    "chunk",
    "clip",
    "detach",
    "exp",
    "flatten",
    "get_num_threads",
    "grad_enabled",
    "log",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "no_grad",
    "ones",
    "ones_like",
    "permute",
    "rand",
    "randn",
    "random",
    "reshape",
    "set_num_threads",
    "sigmoid",
    "split",
    "sqrt",
    "squeeze",
    "stack",
    "std",
    "sum",
    "tanh",
    "tensor",
    "transpose",
    "unsqueeze",
    "var",
    "where",
    "zeros",
    "zeros_like",
]
