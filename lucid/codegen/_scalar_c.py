"""Turning an elementwise op's one C spelling (`OpDef.c`, in the op table) into C text.

`OpDef.c` is a format string (or a tuple of them, one per result, or a function of the node
returning one); `OpDef.c_int` replaces it when the first input is int64 or bool. Its fields:
  {x}, {a}, ...  the inputs by their names in `OpDef.inputs` ({0}, {1}, ... by position), each
                 already a plain C variable, so using one twice costs nothing;
  {T}            the C type of the (first) result;
  {s}            the libm suffix of the first input: "f" for float, "" for double (expf/exp);
  {<attr>}       each numeric attribute as a C literal in the result type.
The op-agnostic helpers the spellings call (lucid_clamp, lucid_maximum, ...) are in
templates/helpers.c.j2. The same text serves plain loops, fused loops and GEMM epilogues.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lucid.ir.core import Attr, Node
from lucid.ir.ops import OPS
from lucid.ir.types import DType

SUFFIX = {DType.F32: "f", DType.F64: ""}

HELPERS = Path(__file__).resolve().parent / "templates" / "helpers.c.j2"
# the float exp, tanh and erf of HELPERS (with the FMA macro they use) lie between these two
# lines, a stretch that holds no template syntax: plain C that compiles on its own
_FLOAT_MATH_BEGIN = "/* a * b + c: one rounding"
_FLOAT_MATH_END = "/* (float)x for a double x"


def c_literal(value: float | bool, dtype: DType) -> str:
    """`value` as a C literal of `dtype` that reads back bit for bit (NaN and infinities too)."""
    if dtype is DType.BOOL:
        return "1" if value else "0"
    if dtype is DType.I64:
        v = int(value)
        return "INT64_MIN" if v == -(2**63) else f"INT64_C({v})"
    x = float(np.asarray(value, dtype=dtype.np))
    if math.isnan(x):
        return f"(({dtype.c})NAN)"
    if math.isinf(x):
        return f"(({dtype.c})INFINITY)" if x > 0 else f"(-({dtype.c})INFINITY)"
    text = str(np.float32(x)) if dtype is DType.F32 else repr(x)
    if "." not in text and "e" not in text:
        text += ".0"
    return text + ("f" if dtype is DType.F32 else "")


def scalar_exprs(node: Node, args: list[str]) -> tuple[str, ...] | None:
    """The C expression of each result of elementwise `node` over the C variables `args`;
    None if the op has no scalar lowering."""
    opdef = OPS.get(node.op)
    if opdef is None:
        return None
    first = node.inputs[0].type.dtype if node.inputs else node.results[0].type.dtype
    entry = opdef.c
    if first in (DType.I64, DType.BOOL) and opdef.c_int is not None:
        entry = opdef.c_int
    if entry is None:
        return None
    if callable(entry):
        entry = entry(node)
    forms = (entry,) if isinstance(entry, str) else tuple(entry)
    out_dtype = node.results[0].type.dtype
    fields: dict[str, str] = {"T": out_dtype.c, "s": SUFFIX.get(first, "")}
    fields.update(_attr_literals(node.attrs, out_dtype))
    fields.update(zip(opdef.inputs, args))
    return tuple(form.format(*args, **fields) for form in forms)


def _attr_literals(attrs: Mapping[str, Attr], dtype: DType) -> dict[str, str]:
    """Numeric attributes as C literals of the result type (other attrs are not for C)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = c_literal(v, dtype if dtype.is_float else DType.F64)
    return out


def float_math_source() -> str:
    """The C of lucid's own float exp, tanh and erf (lucid_expf, lucid_tanhf, lucid_erff, their
    helpers and LUCID_FMAF), as the helpers template has it: what tools/vector_math_ulps.py
    checks over every float and tests/codegen/test_vector_math.py on a sample. It needs
    <math.h>, <stdint.h> and <string.h>."""
    text = HELPERS.read_text(encoding="utf-8")
    begin, end = text.find(_FLOAT_MATH_BEGIN), text.find(_FLOAT_MATH_END)
    if begin < 0 or end < begin:
        raise RuntimeError(f"{HELPERS}: the float math's markers are gone")
    return text[begin:end]
