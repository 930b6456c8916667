"""Ops that are not computations on inputs: literal constants and the fused region ops."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import DTYPE, NOT_DIFFERENTIABLE, NUMBERS, REQUIRED, OpDef
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _const_shape(value: Attr) -> tuple[int, ...]:
    """The shape of a nest of tuples; IRTypeError if it is ragged. A level at a time, each
    judged by the set of its elements' types (a mask's thousands of leaves: one set, not an
    isinstance per leaf)."""
    shape: list[int] = []
    level: list[Attr] = [value]
    while level:
        rows = [issubclass(kind, tuple) for kind in set(map(type, level))]
        if not any(rows):
            break  # numbers: the leaves
        if not all(rows):
            raise IRTypeError("constant: value mixes numbers and lists at one depth")
        lengths = {len(v) for v in level}  # type: ignore[arg-type]
        if len(lengths) != 1:
            raise IRTypeError("constant: value is ragged (rows of different lengths)")
        shape.append(lengths.pop())
        level = [x for v in level for x in v]  # type: ignore[union-attr]
    return tuple(shape)


def _const_prepare(attrs: dict[str, Attr], ts: Types) -> dict[str, Attr]:
    """Round the values to the dtype, so the attr prints exactly what the tensor holds."""
    out: dict[str, Any] = dict(attrs)  # the value as an array: freeze_attr makes it tuples
    dtype = attrs.get("dtype", DType.F32)
    if isinstance(dtype, str):
        dtype = DType.parse(dtype)
    value = attrs.get("value")
    if isinstance(dtype, DType) and value is not None:
        try:
            with np.errstate(over="ignore"):  # a float beyond f32's range rounds to inf, as in C
                out["value"] = np.asarray(value, dtype=dtype.np)
        except (TypeError, ValueError) as e:
            raise IRTypeError(f"constant: value does not fit {dtype}: {e}") from None
    return out


def _const_infer(ts: Types, attrs: Attrs) -> Types:
    dtype = attrs["dtype"]
    assert isinstance(dtype, DType)
    return (TensorType(dtype, _const_shape(attrs["value"])),)


def _constant(*, value: Attr, dtype: DType) -> np.ndarray:
    return np.array(value, dtype=dtype.np)


CONSTANT = OpDef(
    "constant",
    0,
    _const_infer,
    _constant,
    NOT_DIFFERENTIABLE,
    attrs={"value": (NUMBERS, REQUIRED), "dtype": (DTYPE, DType.F32)},
    lowering="constant",
    sample=lambda rng: ((), {"value": ((1.5, -2.0), (0.25, 3.0)), "dtype": DType.F64}),
    prepare=_const_prepare,
    doc="a literal tensor: a number (scalar) or nested tuples, in `dtype`",
)


def _from_body(ts: Types, attrs: Attrs) -> Types:
    raise IRTypeError("fused ops take their result types from their body graph")


def _region(name: str, doc: str) -> OpDef:
    """A fused op: its body graph is its semantics, made by a fusion pass after autodiff."""
    return OpDef(name, (1, None), _from_body, None, None, lowering=name, region=True, doc=doc)


FUSED_ELEMENTWISE = _region("fused_elementwise", "a chain of elementwise ops run as one loop")
FUSED_GEMM = _region(
    "fused_gemm", "a matmul/linear then an elementwise epilogue (and maybe a column sum)"
)
FUSED_MLP = _region("fused_mlp", "several linear layers with their activations in one kernel")

OPS = (CONSTANT, FUSED_ELEMENTWISE, FUSED_GEMM, FUSED_MLP)
