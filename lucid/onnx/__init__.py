"""ONNX interchange: `lucid.onnx.load` imports an ONNX model as a lucid Module.

The onnx package is an optional dependency (`pip install 'lucid[onnx]'`), imported
only when a function here is called.
"""

from __future__ import annotations

from lucid.onnx._import import load

__all__ = ["load"]
