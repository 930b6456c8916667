"""Run-time checks: ops that pass their input through unchanged, or stop the call with an error.

A check sits in the dataflow (its result replaces its input downstream), so no pass can drop it
while the value is used. It is how a compiled or exported model refuses what eager refuses on
values it cannot see at trace time, instead of silently computing something else.

    index_check   integer indices must lie in [0, size) (or be one of `allow`): the targets of
                  nll_loss and of label smoothing, whose one-hot masks would otherwise turn an
                  out-of-range class into a silently zero loss
"""

from __future__ import annotations

from collections.abc import Mapping

from lucid.errors import IRTypeError
from lucid.ir.ops.base import INT, INTS, NOT_DIFFERENTIABLE, REQUIRED, STR, Array, OpDef
from lucid.ir.ops.reduce import ints
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _index_check_infer(ts: Types, attrs: Attrs) -> Types:
    (x,) = ts
    if x.dtype is not DType.I64:
        raise IRTypeError(f"index_check: expected i64 indices, got {x}")
    size = attrs["size"]
    assert isinstance(size, int)
    if size < 0:
        raise IRTypeError(f"index_check: size must be >= 0, got {size}")
    ints(attrs, "allow")
    return (x,)


def _index_check(x: Array, *, size: int, allow: tuple[int, ...] = (), what: str = "index") -> Array:
    bad = (x < 0) | (x >= size)
    for a in allow:
        bad &= x != a
    if bad.any():
        also = f" ({', '.join(map(str, allow))} also allowed)" if allow else ""
        raise IndexError(f"{what} must lie in [0, {size}), got {int(x[bad].flat[0])}{also}")
    return x


INDEX_CHECK = OpDef(
    "index_check",
    1,
    _index_check_infer,
    _index_check,
    NOT_DIFFERENTIABLE,  # integer indices carry no gradient
    attrs={"size": (INT, REQUIRED), "allow": (INTS, ()), "what": (STR, "index")},
    lowering="index_check",
    inputs=("x",),
    sample=lambda rng: ((rng.integers(0, 5, (4, 3)),), {"size": 5, "allow": (-100,)}),
    doc="x unchanged if every element lies in [0, size) or in `allow`, else an IndexError "
    "(LUCID_E_INDEX from C); `what` names the indices in the eager message",
)

OPS = (INDEX_CHECK,)
