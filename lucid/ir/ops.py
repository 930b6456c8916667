"""The op table: one OpDef per op (arity, attrs, type rule, NumPy reference, later VJP and C).

The entries live in `_ops_elementwise.py` (ops that fusion chains into loops) and
`_ops_structured.py` (GEMMs, reductions, shape ops, losses, constants, fused ops); both
register into the one `OPS` dict defined here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.core import Attr
from lucid.ir.types import Dim, DType, TensorType, broadcast_shapes, is_symbol

Array = np.ndarray[Any, Any]
InferFn = Callable[[tuple[TensorType, ...], Mapping[str, Attr]], tuple[TensorType, ...]]
ReferenceFn = Callable[[Sequence[Array], Mapping[str, Attr]], tuple[Array, ...]]
PrepareFn = Callable[[dict[str, Attr], tuple[TensorType, ...]], dict[str, Attr]]


class _Required:
    """The default of an attribute that has none."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class AttrKind:
    """A kind of attribute value: `check` says if a frozen value is one, `coerce` makes one."""

    name: str
    check: Callable[[Attr], bool]
    coerce: Callable[[Any], Attr]

    def __repr__(self) -> str:
        return self.name


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _coerce_with(
    check: Callable[[Attr], bool], convert: Callable[[Any], Attr]
) -> Callable[[Any], Attr]:
    def coerce(v: Any) -> Attr:
        out = convert(v)
        if not check(out):
            raise TypeError
        return out

    return coerce


def _to_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _is_nested_number(v: Attr) -> bool:
    """A number, or a nest of tuples with numbers at the leaves (iterative walk)."""
    todo: list[Attr] = [v]
    while todo:
        x = todo.pop()
        if isinstance(x, tuple):
            todo.extend(x)
        elif not isinstance(x, (int, float, bool)):
            return False
    return True


INT = AttrKind("int", _is_int, _coerce_with(_is_int, lambda v: v))
FLOAT = AttrKind(
    "float",
    lambda v: isinstance(v, float),
    _coerce_with(lambda v: isinstance(v, float), lambda v: float(v) if _is_num(v) else v),
)
BOOL = AttrKind(
    "bool", lambda v: isinstance(v, bool), _coerce_with(lambda v: isinstance(v, bool), lambda v: v)
)
STR = AttrKind(
    "str", lambda v: isinstance(v, str), _coerce_with(lambda v: isinstance(v, str), lambda v: v)
)
DTYPE = AttrKind(
    "dtype",
    lambda v: isinstance(v, DType),
    _coerce_with(
        lambda v: isinstance(v, DType), lambda v: DType.parse(v) if isinstance(v, str) else v
    ),
)


def _is_ints(v: Attr) -> bool:
    return isinstance(v, tuple) and all(_is_int(d) for d in v)


def _is_dims(v: Attr) -> bool:
    return isinstance(v, tuple) and all(_is_int(d) or is_symbol(d) for d in v)


INTS = AttrKind("tuple[int, ...]", _is_ints, _coerce_with(_is_ints, _to_tuple))
DIMS = AttrKind("tuple[int | symbol, ...]", _is_dims, _coerce_with(_is_dims, _to_tuple))
NUMBERS = AttrKind(
    "number or nested tuple of numbers",
    _is_nested_number,
    _coerce_with(_is_nested_number, lambda v: v),
)


@dataclass
class OpDef:
    """One op. `infer` is the type rule; `reference` the NumPy semantics (via _np_kernels).

    `arity` is n or (min, max) with max None for "any number". A `region` op (a fused op) has a
    body graph whose outputs give its result types; it has no `infer`/`reference` of its own.
    `vjp` and `c` are filled in by autodiff (issue 6) and codegen (issue 4); they are the only
    fields meant to be set after registration.
    """

    name: str
    arity: int | tuple[int, int | None]
    attrs: Mapping[str, tuple[AttrKind, Any]]
    infer: InferFn
    reference: ReferenceFn | None
    elementwise: bool = False
    vjp: Callable[..., Any] | None = None
    c: Any = None
    doc: str = ""
    region: bool = False
    prepare: PrepareFn | None = field(default=None, repr=False)

    def arity_problem(self, n: int) -> str | None:
        """None if `n` inputs fit the arity, else what is wrong."""
        lo, hi = (self.arity, self.arity) if isinstance(self.arity, int) else self.arity
        if n < lo or (hi is not None and n > hi):
            return f"expected {self.arity_text()} inputs, got {n}"
        return None

    def arity_text(self) -> str:
        """The arity as prose: "2", "2 or 3", "at least 1"."""
        if isinstance(self.arity, int):
            return str(self.arity)
        lo, hi = self.arity
        if hi is None:
            return f"at least {lo}"
        return f"{lo} or {hi}" if hi == lo + 1 else f"{lo} to {hi}"

    def normalize_attrs(
        self, attrs: Mapping[str, object], in_types: tuple[TensorType, ...]
    ) -> dict[str, Attr]:
        """Builder-side attrs: defaults filled, values coerced, op-specific normal form applied."""
        unknown = sorted(set(attrs) - set(self.attrs))
        if unknown:
            raise IRTypeError(f"{self.name}: unknown attribute {unknown[0]!r}; {self._attr_list()}")
        out: dict[str, Attr] = {}
        raw = dict(attrs)
        if self.prepare is not None:
            # prepare sees the user's raw values (e.g. axes=None, negative axes) first
            raw = dict(self.prepare(raw, in_types))  # type: ignore[arg-type]
        for key, (kind, default) in self.attrs.items():
            if key not in raw:
                if default is REQUIRED:
                    raise IRTypeError(f"{self.name}: missing attribute {key!r} ({kind})")
                raw[key] = default
            try:
                out[key] = kind.coerce(_freeze(raw[key]))
            except (TypeError, ValueError):
                raise IRTypeError(
                    f"{self.name}: attribute {key!r} must be {kind}, got {raw[key]!r}"
                ) from None
        return out

    def attr_problems(self, attrs: Mapping[str, Attr]) -> list[str]:
        """What is wrong with a node's (already frozen) attrs: missing, unknown, wrong kind."""
        problems = [f"unknown attribute {k!r}" for k in sorted(set(attrs) - set(self.attrs))]
        for key, (kind, _) in sorted(self.attrs.items()):
            if key not in attrs:
                problems.append(f"missing attribute {key!r} ({kind})")
            elif not kind.check(attrs[key]):
                problems.append(f"attribute {key!r} must be {kind}, got {attrs[key]!r}")
        return problems

    def _attr_list(self) -> str:
        if not self.attrs:
            return "it takes none"
        return "it takes " + ", ".join(f"{k} ({kind})" for k, (kind, _) in self.attrs.items())


def _freeze(v: object) -> Any:
    from lucid.ir.core import freeze_attr

    return freeze_attr(v)


OPS: dict[str, OpDef] = {}


def register(opdef: OpDef, *, replace: bool = False) -> OpDef:
    """Add `opdef` to OPS; registering a name twice is an error unless `replace`."""
    if opdef.name in OPS and not replace:
        raise ValueError(f"op {opdef.name!r} is already registered")
    OPS[opdef.name] = opdef
    return opdef


# A VJP rule: (builder, node, inputs, outputs, cotangents, needs) -> one cotangent (or None)
# per input; the contract is documented in lucid/ir/autodiff.py.
VjpRule = Callable[..., tuple[Any, ...]]


def defvjp(name: str) -> Callable[[VjpRule], VjpRule]:
    """Decorator: make `rule` the VJP of the registered op `name` (placed beside the op)."""

    def attach(rule: VjpRule) -> VjpRule:
        OPS[name].vjp = rule
        return rule

    return attach


def no_gradient(
    b: Any, node: Any, inputs: Any, outputs: Any, cts: Any, needs: Any
) -> tuple[None, ...]:
    """The VJP of an op whose result carries no gradient (stop_gradient, sign): nothing flows back.

    Autodiff also treats the results of such ops as constants, so no work upstream is spent
    on cotangents that would stop here.
    """
    return (None,) * len(inputs)


# ---------------------------------------------------------------- helpers for type rules


def expect_float(op: str, t: TensorType, what: str) -> None:
    """IRTypeError unless `t` is a float tensor."""
    if not t.dtype.is_float:
        raise IRTypeError(f"{op}: expected a float tensor for {what}, got {t}")


def expect_numeric(op: str, t: TensorType, what: str) -> None:
    """IRTypeError for bool tensors."""
    if t.dtype is DType.BOOL:
        raise IRTypeError(f"{op}: expected a numeric tensor for {what}, got {t}")


def expect_same_dtype(op: str, types: Sequence[TensorType], names: Sequence[str]) -> None:
    """IRTypeError unless all `types` share a dtype (lucid never promotes implicitly)."""
    if len({t.dtype for t in types}) > 1:
        listed = ", ".join(f"{n}: {t}" for n, t in zip(names, types))
        raise IRTypeError(f"{op}: inputs must have the same dtype (insert a cast), got {listed}")


def broadcast_types(op: str, types: Sequence[TensorType]) -> tuple[Dim, ...]:
    """The broadcast shape of `types`, as an IRTypeError naming `op` if there is none."""
    try:
        return broadcast_shapes(*(t.shape for t in types))
    except IRTypeError as e:
        raise IRTypeError(f"{op}: {e}") from None


def scalar(dtype: DType) -> TensorType:
    """The rank-0 type of `dtype`."""
    return TensorType(dtype, ())


def arr(x: Any, dtype: np.dtype[Any] | None = None) -> Array:
    """`x` as an ndarray: NumPy returns scalars, not 0-d arrays, from ops on 0-d arrays."""
    return np.asarray(x, dtype=dtype)


def float_attr_or_inf(v: object, sign: float) -> object:
    """clip's None bound as +-inf; other values unchanged."""
    return sign * math.inf if v is None else v


# The tables register themselves into OPS; they import this module, so they come last.
from lucid.ir import _ops_elementwise, _ops_structured  # noqa: F401
