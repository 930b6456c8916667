"""The optional `onnx` package, imported where lucid.onnx first needs it."""

from __future__ import annotations

from typing import Any


def require_onnx(what: str) -> Any:
    """The `onnx` module, or ModuleNotFoundError (name "onnx") saying how to install it: an
    ImportError, and also what code that skips on a missing optional package looks for."""
    try:
        import onnx
    except ImportError:
        raise ModuleNotFoundError(
            f"{what} needs the onnx package: pip install 'lucid[onnx]' (or pip install onnx)",
            name="onnx",
        ) from None
    return onnx
