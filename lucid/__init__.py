"""lucid: a small PyTorch-like library on NumPy, and a compiler for it."""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING

__version__ = "0.1.0"  # the one place the version is written (pyproject reads it)

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

if TYPE_CHECKING:  # the lazy names below, visible to type checkers and IDEs
    from lucid import errors as errors
    from lucid import ir as ir
    from lucid import nn as nn
    from lucid import optim as optim
    from lucid._logging import set_log_level as set_log_level
    from lucid.io import load as load
    from lucid.io import save as save
    from lucid.runtime.aot import export as export
    from lucid.runtime.compiled import compile as compile
    from lucid.runtime.threads import get_num_threads as get_num_threads
    from lucid.runtime.threads import set_num_threads as set_num_threads

# Not in __all__: `from lucid import *` must not shadow the builtin compile().
_LAZY = {
    "compile": "lucid.runtime.compiled",
    "set_num_threads": "lucid.runtime.threads",
    "get_num_threads": "lucid.runtime.threads",
    "export": "lucid.runtime.aot",
    "save": "lucid.io",
    "load": "lucid.io",
    "set_log_level": "lucid._logging",
}


# Subpackages, imported at first use as attributes (`import lucid; lucid.nn.Linear`): lucid's
# modules import `lucid` itself, so importing them here would make an import cycle. None of
# them loads cffi or Jinja2 (the first compile does).
_SUBPACKAGES = frozenset({"errors", "ir", "nn", "onnx", "optim", "runtime"})


def __getattr__(name: str) -> object:
    """`lucid.compile`, `lucid.export`, `lucid.save`/`load` and the thread setters, imported on first use (light import)."""
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"lucid.{name}")
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lucid' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and the lazy ones, for completion in shells and notebooks."""
    return sorted({*globals(), *_SUBPACKAGES, *_LAZY})


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
    "errors",
    "exp",
    "flatten",
    "get_num_threads",
    "grad_enabled",
    "ir",
    "log",
    "matmul",
    "max",
    "maximum",
    "mean",
    "min",
    "minimum",
    "nn",
    "no_grad",
    "ones",
    "ones_like",
    "optim",
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

if _os.environ.get("LUCID_LOG"):  # e.g. LUCID_LOG=info: print lucid's log records (_logging.py)
    from lucid._logging import set_log_level as _set_log_level

    _set_log_level(_os.environ["LUCID_LOG"])
