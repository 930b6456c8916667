"""lucid's static graph IR: types, graphs, the op table, text form, verifier and interpreter."""

from __future__ import annotations

from typing import Any

from lucid.ir.core import Attr, Builder, Graph, Node, Value
from lucid.ir.ops import OPS, OpDef, register
from lucid.ir.types import DType, TensorType, broadcast_shapes

__all__ = [
    "Attr",
    "Builder",
    "DType",
    "Graph",
    "Node",
    "OPS",
    "OpDef",
    "TensorType",
    "Value",
    "broadcast_shapes",
    "register",
    "trace",
]


# ---------------------------------------------------------------- tracer (lucid/ir/trace.py)
# The tracer is written separately; importing it lazily keeps `import lucid.ir` free of the
# eager library and lets this package work before trace.py exists.
def trace(*args: Any, **kwargs: Any) -> Any:
    """Trace a Module into a Graph; see lucid/ir/trace.py."""
    from lucid.ir.trace import trace as _trace

    return _trace(*args, **kwargs)
