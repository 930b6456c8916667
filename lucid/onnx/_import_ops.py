"""The ONNX op types lucid imports: one converter per op type, in one table.

Each entry (an OpSpec, lucid/onnx/_convert_base.py) holds the converter, the attributes it
reads (any other attribute is refused), the inputs it needs known at import, and `check`:
static conditions on attributes and dtypes. Both `lucid.onnx.load` and the conformance scope
(`_conformance.py`) ask the same entries, so what is "supported" is decided in one place. The
converters live by family: `_convert_math.py` (elementwise, activations, reductions),
`_convert_nn.py` (products, convolution, pooling, normalization, softmax), `_convert_shape.py`
(shapes, slicing, values known at import).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lucid.onnx import _convert_math, _convert_nn, _convert_shape
from lucid.onnx._convert_base import BATCH, DTYPES, ConvertError, Ctx, NodeInfo, OpSpec

OPS_TABLE: Mapping[str, OpSpec] = MappingProxyType(
    {**_convert_math.OPS, **_convert_nn.OPS, **_convert_shape.OPS}
)
# The ONNX op types lucid imports (standard domain).
SUPPORTED_OPS: frozenset[str] = frozenset(OPS_TABLE)
# Op types whose outputs depend only on static shapes: evaluated at import, never traced.
FOLDED_ALWAYS: frozenset[str] = frozenset({"Constant", "Shape", "Size", "EyeLike"})

__all__ = [
    "BATCH",
    "DTYPES",
    "FOLDED_ALWAYS",
    "OPS_TABLE",
    "SUPPORTED_OPS",
    "ConvertError",
    "Ctx",
    "NodeInfo",
    "OpSpec",
]
