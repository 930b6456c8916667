"""ONNX interchange: `export` writes a lucid model as an ONNX file; `load` imports an ONNX
model as a lucid Module (which lucid.compile and lucid.export then take like any other).

The onnx package is an optional dependency (`pip install 'lucid[onnx]'`), imported only when
a function here is called.
"""

from __future__ import annotations

from lucid.onnx._export import export
from lucid.onnx._import import load

__all__ = ["export", "load"]
