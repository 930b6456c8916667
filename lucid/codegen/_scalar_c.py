"""The scalar C expression of every elementwise op, installed into `OpDef.c` of the op table.

Where an op's C lives: `OPS[name].c`. For elementwise ops it is a format string (or a tuple of
them, one per result, or a function of the node returning one) over:
  {0}, {1}, ...  the loaded input elements (already plain C variables, so reuse is free),
  {T}            the C type of the (first) result,
  {s}            the libm suffix of the first input: "f" for float, "" for double (expf/exp),
  {<attr>}       each attribute as a C literal in the result type.
The strings are kept here rather than in `lucid/ir/_ops_*.py` because those modules are edited
by several people at once and ops.py documents `c` as filled in by codegen; an op defined
elsewhere (autodiff, fusion) may set `c=` in its own OpDef, and that wins over this table.
Every formula reproduces lucid/_np_kernels.py with the same selects (docs/DESIGN.md, Numerics);
the inline helpers they call live in templates/helpers.c.j2.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Union

import numpy as np

from lucid.ir.core import Attr, Node
from lucid.ir.ops import OPS
from lucid.ir.types import DType

ScalarC = Union[str, tuple[str, ...], Callable[[Node], Union[str, tuple[str, ...]]]]

SUFFIX = {DType.F32: "f", DType.F64: ""}


def c_literal(value: float | int | bool, dtype: DType) -> str:
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


def _pow(node: Node) -> str:
    """NumPy's power has exact fast paths for 2, 0.5 and -1 (x*x, sqrt, 1/x); pow otherwise."""
    e = node.attrs["exponent"]
    special = {2.0: "{0} * {0}", 0.5: "sqrt{s}({0})", -1.0: "({T})1 / {0}"}
    return special.get(float(e), "pow{s}({0}, {exponent})")  # type: ignore[arg-type]


def _cast(node: Node) -> str:
    """C conversions, except where C is undefined or differs from NumPy's x86 behaviour."""
    src, dst = node.inputs[0].type.dtype, node.result.type.dtype
    if src.is_float and dst is DType.I64:
        return "lucid_to_i64{s}({0})"  # NaN and out-of-range give INT64_MIN, like cvttsd2si
    if dst is DType.BOOL:
        return "({0} != 0)"
    return "({T}){0}"


_FLOAT: dict[str, ScalarC] = {
    "neg": "-{0}",
    "abs": "fabs{s}({0})",
    "sign": "lucid_sign{s}({0})",
    "hardswish": "lucid_hardswish{s}({0})",
    "hardsigmoid": "lucid_hardsigmoid{s}({0})",
    "relu": "lucid_relu{s}({0})",
    "relu6": "lucid_relu6{s}({0})",
    "sigmoid": "lucid_sigmoid{s}({0})",
    "tanh": "tanh{s}({0})",
    "exp": "exp{s}({0})",
    "log": "log{s}({0})",
    "sqrt": "sqrt{s}({0})",
    "stop_gradient": "{0}",
    "pow": _pow,
    "clip": "({0} < {min} ? {min} : ({0} > {max} ? {max} : {0}))",
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "div": "{0} / {1}",
    "maximum": "lucid_maximum{s}({0}, {1})",
    "minimum": "lucid_minimum{s}({0}, {1})",
    "less": "({0} < {1})",
    "less_equal": "({0} <= {1})",
    "greater": "({0} > {1})",
    "greater_equal": "({0} >= {1})",
    "equal": "({0} == {1})",
    "not_equal": "({0} != {1})",
    "where": "({0} ? {1} : {2})",
    "cast": _cast,
    "hardswish_grad": "lucid_hardswish_grad{s}({0}, {1})",
    "hardsigmoid_grad": "lucid_hardsigmoid_grad{s}({0}, {1})",
    "relu_grad": "({0} > 0 ? {1} : ({T})0)",
    "relu6_grad": "(({0} > 0 && {0} < 6) ? {1} : ({T})0)",
    "clip_grad": "(({0} >= {min} && {0} <= {max}) ? {1} : ({T})0)",
    # (a, b, g) -> (ga, gb): the larger side gets g, a tie splits it in halves
    "maximum_grad": (
        "({0} > {1} ? {2} : ({0} == {1} ? {2} * ({T})0.5 : ({T})0))",
        "({1} > {0} ? {2} : ({0} == {1} ? {2} * ({T})0.5 : ({T})0))",
    ),
    "minimum_grad": (
        "({0} < {1} ? {2} : ({0} == {1} ? {2} * ({T})0.5 : ({T})0))",
        "({1} < {0} ? {2} : ({0} == {1} ? {2} * ({T})0.5 : ({T})0))",
    ),
}

# Integer (and bool) overrides: int64 arithmetic wraps in NumPy but is undefined on signed
# overflow in C, so it goes through uint64_t; selects replace the NaN-aware float helpers.
_INT: dict[str, ScalarC] = {
    "neg": "(int64_t)(0 - (uint64_t){0})",
    "abs": "({0} < 0 ? (int64_t)(0 - (uint64_t){0}) : {0})",
    "sign": "(int64_t)(({0} > 0) - ({0} < 0))",
    "add": "(int64_t)((uint64_t){0} + (uint64_t){1})",
    "sub": "(int64_t)((uint64_t){0} - (uint64_t){1})",
    "mul": "(int64_t)((uint64_t){0} * (uint64_t){1})",
    "maximum": "({0} > {1} ? {0} : {1})",
    "minimum": "({0} < {1} ? {0} : {1})",
}


def scalar_exprs(node: Node, args: list[str]) -> tuple[str, ...] | None:
    """The C expression of each result of elementwise `node` over the C variables `args`;
    None if the op has no scalar lowering."""
    opdef = OPS.get(node.op)
    entry: ScalarC | None = opdef.c if opdef is not None else None
    first = node.inputs[0].type.dtype if node.inputs else node.results[0].type.dtype
    if first in (DType.I64, DType.BOOL) and node.op in _INT:
        entry = _INT[node.op]
    if entry is None:
        return None
    if callable(entry):
        entry = entry(node)
    forms = (entry,) if isinstance(entry, str) else tuple(entry)
    out_dtype = node.results[0].type.dtype
    fields: dict[str, str] = {"T": out_dtype.c, "s": SUFFIX.get(first, "")}
    fields.update(_attr_literals(node.attrs, out_dtype))
    return tuple(form.format(*args, **fields) for form in forms)


def _attr_literals(attrs: Mapping[str, Attr], dtype: DType) -> dict[str, str]:
    """Numeric attributes as C literals of the result type (other attrs are not for C)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = c_literal(v, dtype if dtype.is_float else DType.F64)
    return out


def install() -> None:
    """Fill `OpDef.c` for the ops of this table that do not define their own."""
    for name, entry in _FLOAT.items():
        opdef = OPS.get(name)
        if opdef is not None and opdef.c is None:
            opdef.c = entry
