"""Graph -> C: `emit_c` (one translation unit per graph) and the lowering registry."""

from __future__ import annotations

from lucid.codegen._jinja import PACKAGE_BYTECODE, keep_bytecode_in
from lucid.codegen._lower import Kernel, LowerCtx
from lucid.codegen.emit_c import ERRORS, CodegenOptions, CProgram, emit_c, error_for

__all__ = [
    "ERRORS",
    "PACKAGE_BYTECODE",
    "CProgram",
    "CodegenOptions",
    "Kernel",
    "LowerCtx",
    "emit_c",
    "error_for",
    "keep_bytecode_in",
]
