"""ONNX interchange: `export` writes a model as an ONNX file (needs `pip install 'lucid[onnx]'`)."""

from __future__ import annotations

from lucid.onnx._export import export

__all__ = ["export"]
