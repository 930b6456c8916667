"""Element types and tensor types; shapes may hold symbolic dims such as "N" or "N*12".

A symbolic dim is a symbol (an identifier: the batch `N`) or a symbol times a positive int
constant, written `N*12` (canonical: the symbol first, no spaces, the factor >= 2; `N*1` is
`N`). Everything that turns a dim into a number, a binding or a factor goes through the
functions below (`dim_parts`, `dim_value`, `bind_dim`), so the rest of lucid never parses one.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeAlias, cast

import numpy as np
import numpy.typing as npt

from lucid.errors import IRError, IRTypeError

Dim: TypeAlias = int | str
SYMBOL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SCALED_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\*([1-9][0-9]*)\Z")


class DType(enum.Enum):
    """The element types lucid computes in; the value is the short name printed in IR text."""

    F32 = "f32"
    F64 = "f64"
    I64 = "i64"
    BOOL = "bool"

    @property
    def np(self) -> np.dtype[np.generic]:
        """The NumPy dtype."""
        return _NP[self]

    @property
    def c(self) -> str:
        """The C element type."""
        return _C[self]

    @property
    def itemsize(self) -> int:
        """Bytes per element."""
        return int(_NP[self].itemsize)

    @property
    def is_float(self) -> bool:
        """True for f32 and f64."""
        return self in (DType.F32, DType.F64)

    @classmethod
    def from_numpy(cls, dt: npt.DTypeLike) -> DType:
        """The DType of a NumPy dtype; IRTypeError for dtypes lucid does not support."""
        found = _FROM_NP.get(np.dtype(dt))
        if found is None:
            raise IRTypeError(f"unsupported dtype {np.dtype(dt)}; lucid supports {_NAMES}")
        return found

    @classmethod
    def parse(cls, text: str) -> DType:
        """The DType named `text` ("f32", "f64", "i64", "bool")."""
        try:
            return cls(text)
        except ValueError:
            raise IRError(f"unknown dtype {text!r}; expected one of {_NAMES}") from None

    def __str__(self) -> str:
        return self.value


_NP: dict[DType, np.dtype[np.generic]] = {
    DType.F32: np.dtype(np.float32),
    DType.F64: np.dtype(np.float64),
    DType.I64: np.dtype(np.int64),
    DType.BOOL: np.dtype(np.bool_),
}
_C = {DType.F32: "float", DType.F64: "double", DType.I64: "int64_t", DType.BOOL: "uint8_t"}
_FROM_NP = {v: k for k, v in _NP.items()}
_NAMES = ", ".join(d.value for d in DType)


def is_symbol(dim: object) -> bool:
    """True if `dim` is a symbolic dim: a symbol (`N`) or a symbol times a constant (`N*12`)."""
    return isinstance(dim, str) and (
        SYMBOL_RE.match(dim) is not None or _SCALED_RE.match(dim) is not None
    )


def symbolic_dim(symbol: str, factor: int) -> Dim:
    """The dim `symbol * factor` in canonical form: `N` for factor 1, else `N*12`."""
    if not SYMBOL_RE.match(symbol) or isinstance(factor, bool) or factor < 1:
        raise IRError(f"bad symbolic dim {symbol}*{factor}: need a symbol and a factor >= 1")
    return symbol if factor == 1 else f"{symbol}*{int(factor)}"


def dim_parts(dim: Dim) -> tuple[str | None, int]:
    """`(symbol, factor)` of a dim: `(None, 5)` for 5, `("N", 1)` for N, `("N", 12)` for N*12."""
    if isinstance(dim, int):
        return None, dim
    scaled = _SCALED_RE.match(dim)
    if scaled is not None:
        return scaled.group(1), int(scaled.group(2))
    if SYMBOL_RE.match(dim):
        return dim, 1
    raise IRError(f"bad dim {dim!r}: need an int >= 0, a symbol or symbol*int")


def shape_factors(shape: tuple[Dim, ...]) -> tuple[int, tuple[str, ...]]:
    """The number of elements of `shape` as (constant factor, symbols it multiplies, sorted with
    repeats): [N*4, 3, N] is (12, ("N", "N"))."""
    factor, syms = 1, []
    for d in shape:
        symbol, k = dim_parts(d)
        factor *= k
        if symbol is not None:
            syms.append(symbol)
    return factor, tuple(sorted(syms))


def dim_value(dim: Dim, bindings: Mapping[str, int] | None) -> int:
    """The size of `dim` with its symbol bound; IRError naming an unbound symbol."""
    symbol, k = dim_parts(dim)
    if symbol is None:
        return k
    if bindings is None or symbol not in bindings:
        raise IRError(f"symbolic dim {dim} is not bound")
    return int(bindings[symbol]) * k


def bind_dim(dim: Dim, size: int, bindings: dict[str, int]) -> str | None:
    """Bind `dim`'s symbol (if any) so that `dim` is `size`, or say why it cannot: None when
    it fits, else the reason (a static mismatch, a size that is not a multiple of the factor,
    or a symbol bound to another value by an earlier dim)."""
    symbol, k = dim_parts(dim)
    if symbol is None:
        return None if k == size else f"a dim of {k} is {size}"
    if size % k:
        return f"dim {dim} is {size}, which is not a multiple of {k}"
    known = bindings.setdefault(symbol, size // k)
    if known * k != size:
        note = "" if k == 1 else f" ({symbol}={known})"
        return f"dim {dim} is {size} here but {known * k}{note} in an earlier input"
    return None


def format_shape(shape: tuple[Dim, ...]) -> str:
    """`[N,5]`, the shape part of a printed type."""
    return "[" + ",".join(str(d) for d in shape) + "]"


@dataclass(frozen=True, slots=True)
class TensorType:
    """A dtype and a shape. Invariant: every dim is an int >= 0, a symbol, or a symbol times
    an int >= 2 in canonical form (`N*12`)."""

    dtype: DType
    shape: tuple[Dim, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, DType):
            raise IRError(f"TensorType dtype must be a DType, got {self.dtype!r}")
        shape = self.shape
        if type(shape) is tuple and all(type(d) is int and d >= 0 for d in shape):
            return  # already canonical: plain ints, what inference builds (every op, every trace)
        dims: list[Dim] = []
        for d in self.shape:
            if isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) and d >= 0:
                dims.append(int(d))
            elif is_symbol(d):
                symbol, k = dim_parts(str(d))
                assert symbol is not None
                dims.append(symbolic_dim(symbol, k))
            else:
                raise IRError(
                    f"bad dim {d!r} in shape {self.shape!r}: need an int >= 0, a symbol or "
                    "a symbol times an int (N*12)"
                )
        object.__setattr__(self, "shape", tuple(dims))

    def __str__(self) -> str:
        return f"{self.dtype.value}{format_shape(self.shape)}"

    def __repr__(self) -> str:
        return f"TensorType({self})"

    @property
    def rank(self) -> int:
        """Number of dims."""
        return len(self.shape)

    @property
    def is_static(self) -> bool:
        """True if no dim is symbolic."""
        return all(isinstance(d, int) for d in self.shape)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The distinct symbols of the symbolic dims (`N` for N and N*12), in order of first
        appearance."""
        return tuple(dict.fromkeys(dim_parts(d)[0] for d in self.shape if isinstance(d, str)))  # type: ignore[misc]

    def concrete(self, bindings: Mapping[str, int] | None = None) -> TensorType:
        """This type with every symbol replaced by its binding; IRError if one is unbound."""
        return TensorType(self.dtype, concrete_shape(self.shape, bindings))

    def numel(self, bindings: Mapping[str, int] | None = None) -> int:
        """Number of elements, with symbols taken from `bindings`."""
        n = 1
        for d in concrete_shape(self.shape, bindings):
            n *= d
        return n

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        """Same dtype, another shape."""
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        """Same shape, another dtype."""
        return TensorType(dtype, self.shape)


def concrete_shape(shape: tuple[Dim, ...], bindings: Mapping[str, int] | None) -> tuple[int, ...]:
    """`shape` with symbols replaced from `bindings`; IRError naming an unbound symbol."""
    out: list[int] = []
    for d in shape:
        try:
            out.append(dim_value(d, bindings))
        except IRError:
            raise IRError(f"symbolic dim {d} of shape {format_shape(shape)} is not bound") from None
    return tuple(out)


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """NumPy broadcasting over shapes with symbols: a symbol broadcasts only with itself or 1."""
    if shapes and all(s == shapes[0] for s in shapes):
        return tuple(shapes[0])  # the same shape (most elementwise ops): itself
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for axis in range(rank):
        dims = {s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            listed = " and ".join(format_shape(s) for s in shapes)
            raise IRTypeError(
                f"shapes {listed} do not broadcast: axis {axis} (from the right: "
                f"{rank - axis}) has dims {', '.join(sorted(map(str, dims)))}"
            )
        out.append(dims.pop() if dims else 1)
    return tuple(out)


Attr: TypeAlias = int | float | bool | str | DType | None | tuple["Attr", ...]


def freeze_attr(value: object) -> Attr:
    """`value` as an immutable Attr: lists and arrays become tuples, NumPy scalars Python ones."""
    # the common cases first, by exact type (bool, DType and NumPy's kinds take the long way)
    kind = type(value)
    if kind is int or kind is float or kind is str or value is None:
        return cast(Attr, value)
    if kind is tuple and all(type(v) is int for v in cast(tuple[object, ...], value)):
        return cast(Attr, value)  # a shape, axes, a permutation: most ops' attrs
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":  # tolist() gives Python scalars: only nests to freeze
            return _frozen_nest(value.tolist(), value.ndim)
        value = value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return tuple(freeze_attr(v) for v in value)  # attr data nests a few levels, never deep
    if value is None or isinstance(value, (bool, int, float, str, DType)):
        return value
    raise IRTypeError(f"attribute value {value!r} is not an int, float, bool, str, DType or tuple")


def _frozen_nest(value: Any, depth: int) -> Attr:
    """An ndarray's tolist() (`depth` levels of lists around Python scalars) as tuples."""
    if depth == 0:
        return value
    if depth == 1:
        return tuple(value)
    return tuple(_frozen_nest(v, depth - 1) for v in value)


def freeze_attrs(attrs: Mapping[str, object] | None) -> Mapping[str, Attr]:
    """A read-only mapping of frozen attrs, sorted by name."""
    items = {} if attrs is None else {k: freeze_attr(attrs[k]) for k in sorted(attrs)}
    return MappingProxyType(items)
