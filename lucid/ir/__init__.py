"""lucid's static graph IR: types, graphs, the op table, text form, verifier and interpreter."""

from __future__ import annotations

from typing import Any

from lucid.ir.autodiff import GradResult, Saved, autodiff, grad
from lucid.ir.core import Attr, Builder, Graph, Node, Value
from lucid.ir.interpret import interpret
from lucid.ir.ops import OPS, OpDef
from lucid.ir.parser import parse, parse_module
from lucid.ir.printer import format, format_module, to_dot
from lucid.ir.types import DType, TensorType, broadcast_shapes
from lucid.ir.verify import verify

format_graph = format  # an alias that does not shadow the builtin in `from lucid.ir import *`

__all__ = [
    "OPS",
    "Attr",
    "Builder",
    "DType",
    "GradResult",
    "Graph",
    "Node",
    "OpDef",
    "Saved",
    "TensorType",
    "Value",
    "autodiff",
    "broadcast_shapes",
    "format_graph",
    "format_module",
    "grad",
    "interpret",
    "parse",
    "parse_module",
    "to_dot",
    "trace",
    "verify",
]


# ---------------------------------------------------------------- tracer (lucid/ir/trace.py)
# The tracer is written separately; importing it lazily keeps `import lucid.ir` free of the
# eager library and lets this package work before trace.py exists.
def trace(*args: Any, **kwargs: Any) -> Any:
    """Trace a Module into a Graph; see lucid/ir/trace.py."""
    from lucid.ir.trace import trace as _trace

    return _trace(*args, **kwargs)


from lucid.ir.trace import trace  # noqa: F811  (importing the submodule rebinds lucid.ir.trace to the module; this binds the function for good)
