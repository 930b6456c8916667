"""What every ONNX op converter shares: the Ctx a converter reads its node through, the
static NodeInfo its check sees, the OpSpec entry of the table, and small tensor helpers.

A converter `fn(ctx, xs) -> outputs` receives the node's inputs as lucid Tensors (None for an
omitted optional input) and returns its outputs as Tensors, or as NumPy arrays for values that
are known at import (Shape, Constant, ...), which the importer folds. It calls lucid's eager
ops only, so the same code runs eagerly, under `lucid.compile`'s tracer and at import time
(constant folding). Inputs that lucid needs as compile-time values (a Reshape's shape, Slice's
starts, ...) are read with `ctx.const(i)` / `ctx.dims(i)`; an input that is not known at import
is then an error naming the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import lucid
from lucid.ir.ops import OPS
from lucid.tensor import Tensor, apply

# A symbolic batch inside a folded shape value: Shape of a tensor whose first dim is the batch
# gives this marker there; a consumer reading the value as dims replaces it with the run's batch.
BATCH = -(1 << 40)

# ONNX TensorProto element types lucid handles, and their NumPy dtypes.
DTYPES: Mapping[int, np.dtype[Any]] = {
    1: np.dtype(np.float32),
    11: np.dtype(np.float64),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
}
FLOAT_TYPES = frozenset({1, 11})


class ConvertError(Exception):
    """A node cannot be converted; the importer adds the node's name and op type."""


class NodeInfo:
    """What a static check sees of a node: attributes, input/output element types and shapes
    (from ONNX shape inference, None when unknown), and which inputs are known at import."""

    def __init__(
        self,
        op_type: str,
        attrs: Mapping[str, Any],
        in_types: Sequence[int | None],
        out_types: Sequence[int | None],
        in_shapes: Sequence[tuple[Any, ...] | None],
        known: Sequence[bool],
        n_outputs: int,
        opset: int,
    ) -> None:
        self.op_type = op_type
        self.attrs = attrs
        self.in_types = list(in_types)
        self.out_types = list(out_types)
        self.in_shapes = list(in_shapes)
        self.known = list(known)
        self.n_outputs = n_outputs
        self.opset = opset


class Ctx:
    """A node as its converter sees it: attributes, constant inputs, the run's batch."""

    def __init__(
        self,
        attrs: Mapping[str, Any],
        consts: Sequence[np.ndarray | None],
        names: Sequence[str],
        batch: Any,
        opset: int,
        n_outputs: int,
    ) -> None:
        self.attrs = attrs
        self._consts = consts
        self._names = names
        self.batch = batch
        self.opset = opset
        self.n_outputs = n_outputs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value (ints as int, lists as lists, strings decoded)."""
        return self.attrs.get(name, default)

    def has(self, i: int) -> bool:
        """Whether optional input i is given."""
        return i < len(self._names) and self._names[i] != ""

    def known(self, i: int) -> bool:
        """Whether input i is known at import."""
        return i < len(self._consts) and self._consts[i] is not None

    def const(self, i: int, *, allow_batch: bool = False) -> np.ndarray:
        """Input i as a NumPy array known at import, or a ConvertError."""
        value = self._consts[i] if i < len(self._consts) else None
        if value is None:
            raise ConvertError(
                f"input {i} ({self._names[i]!r}) must be known at import (an initializer, a "
                "Constant or computed from them and static shapes); it is a runtime value"
            )
        if not allow_batch and value.dtype == np.int64 and (value == BATCH).any():
            raise ConvertError(f"input {i} ({self._names[i]!r}) depends on the dynamic batch here")
        return value

    def dims(self, i: int) -> list[Any]:
        """Input i as a list of sizes; the batch marker becomes the run's batch size."""
        value = self.const(i, allow_batch=True)
        if value.dtype != np.int64 or value.ndim > 1:
            raise ConvertError(
                f"input {i} must be a 1-D int64 tensor, got {value.dtype}{list(value.shape)}"
            )
        return [self.batch if int(v) == BATCH else int(v) for v in value.reshape(-1)]

    def ints(self, i: int) -> list[int]:
        """Input i as a list of plain ints (axes, starts, ...)."""
        value = self.const(i)
        if value.dtype.kind not in "iu":
            raise ConvertError(f"input {i} must be an integer tensor, got {value.dtype}")
        return [int(v) for v in value.reshape(-1)]

    def scalar(self, i: int) -> float:
        """Input i as one number."""
        value = self.const(i)
        if value.size != 1:
            raise ConvertError(f"input {i} must hold one value, got shape {list(value.shape)}")
        return float(value.reshape(-1)[0])


Converter = Callable[[Ctx, list[Any]], Sequence[Any]]
Check = Callable[[NodeInfo], str | None]


@dataclass(frozen=True)
class OpSpec:
    """One ONNX op type: its converter, the attributes it reads, the inputs it needs known at
    import, its static check, and the dtypes its (first) input may have."""

    fn: Converter
    attrs: frozenset[str] = frozenset()
    const_inputs: tuple[int, ...] = ()
    check: Check | None = None
    dtypes: frozenset[int] = frozenset(DTYPES)
    outputs: int = 1  # outputs it can produce (more: the rest are refused)


# ---------------------------------------------------------------- helpers

FLOAT = frozenset(FLOAT_TYPES)
NUM = frozenset({1, 11, 7})
ANY = frozenset(DTYPES)
BOOL = frozenset({9})


def axis_of(axis: int, ndim: int) -> int:
    """A possibly negative axis as non-negative, or a ConvertError."""
    if not -ndim <= axis < max(ndim, 1):
        raise ConvertError(f"axis {axis} is out of range for a tensor of rank {ndim}")
    return axis % max(ndim, 1)


def like(value: float, x: Tensor) -> Tensor:
    """A 0-d constant in x's dtype."""
    return Tensor(np.asarray(value, dtype=x.data.dtype))


def shape_of(x: Tensor) -> tuple[Any, ...]:
    """x's shape (its first dim a SymInt while a dynamic batch is traced)."""
    return tuple(x.shape)


def where(c: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """lucid.where: a where c, else b."""
    return lucid.where(c, a, b)


def table_op(name: str, *xs: Tensor, **attrs: Any) -> Tensor:
    """An op of lucid's table applied directly (for ops with no functional form)."""
    return apply(OPS[name], tuple(xs), attrs)


# Converters that unroll into one lucid op per element (reversal, CumSum, Gather by slices,
# Tile) refuse more than this many pieces: the graph would be too large to build in useful time.
MAX_PIECES = 1024


def pieces(what: str, n: int) -> int:
    """n, or a ConvertError when a converter would unroll into more than MAX_PIECES ops."""
    if n > MAX_PIECES:
        raise ConvertError(
            f"{what} would unroll into {n} lucid ops (one per element; at most {MAX_PIECES})"
        )
    return n


# Constant one-hot masks (a loss's targets, GatherElements' indices) hold at most this many
# elements: a larger one would be a graph constant of hundreds of megabytes.
MAX_MASK = 1 << 24


def mask_size(what: str, n: int) -> int:
    """n, or a ConvertError when a constant mask would exceed MAX_MASK elements."""
    if n > MAX_MASK:
        raise ConvertError(f"{what} would be a constant mask of {n} elements (at most {MAX_MASK})")
    return n


def reverse(x: Tensor, axis: int) -> Tensor:
    """x reversed along `axis` (lucid's slices step forwards: one slice per index, joined)."""
    n = pieces("reversing an axis", int(x.data.shape[axis]))
    parts = [
        table_op("slice", x, axes=(axis,), starts=(i,), stops=(i + 1,), steps=(1,))
        for i in range(n - 1, -1, -1)
    ]
    return lucid.cat(parts, axis) if len(parts) > 1 else x


def float_only(info: NodeInfo) -> str | None:
    """A check: the first input is float32 or float64."""
    t = info.in_types[0] if info.in_types else None
    if t is not None and t not in FLOAT_TYPES:
        return f"input dtype {TYPE_NAMES.get(t, t)} (only float32/float64)"
    return None


TYPE_NAMES = {1: "float32", 11: "float64", 7: "int64", 9: "bool", 6: "int32", 10: "float16"}


def unary_fn(fn: Callable[[Tensor], Tensor]) -> Converter:
    """The converter of a one-input, one-output op."""
    return lambda ctx, xs: [fn(xs[0])]


def unary(fn: Callable[[Tensor], Tensor], dtypes: frozenset[int] = FLOAT) -> OpSpec:
    """The entry of a one-input elementwise op."""
    return OpSpec(unary_fn(fn), dtypes=dtypes)
