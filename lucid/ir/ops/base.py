"""What every op definition is made of: OpDef, attribute kinds, and helpers for type rules.

The op families (elementwise.py, activations.py, ...) build OpDefs from these; the package's
__init__ gathers them into the one read-only table `OPS`. Nothing here knows any op.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.types import Attr, Dim, DType, TensorType, broadcast_shapes, freeze_attr, is_symbol

if TYPE_CHECKING:  # annotations only: core imports the op table
    from lucid.ir.core import Node

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


_NUMBER_TYPES = frozenset((int, float, bool))


def _is_nested_number(v: Attr) -> bool:
    """A number, or a nest of tuples with numbers at the leaves.

    A level at a time while each level is all tuples or all plain numbers (a constant's
    value, thousands of leaves: one type set per level, not an isinstance per leaf); a nest
    of mixed depth or of subclasses takes the walk below."""
    level: list[Attr] = [v]
    while True:
        kinds = set(map(type, level))
        if kinds <= _NUMBER_TYPES:
            return True
        if kinds != {tuple}:
            break
        level = [x for t in level for x in t]  # type: ignore[union-attr]
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


def dims(attrs: Mapping[str, Attr], key: str) -> tuple[Dim, ...]:
    """A shape attribute (kind DIMS or INTS: ints and symbols) with its static type."""
    value = attrs[key]
    out: list[Dim] = []
    for d in value if isinstance(value, tuple) else (None,):
        if not isinstance(d, (int, str)):
            raise IRTypeError(f"attribute {key!r} must be a tuple of dims, got {value!r}")
        out.append(d)
    return tuple(out)


def number(attrs: Mapping[str, Attr], key: str) -> float:
    """A number attribute (kind FLOAT or INT) as a float."""
    value = attrs[key]
    if not isinstance(value, (int, float)):
        raise IRTypeError(f"attribute {key!r} must be a number, got {value!r}")
    return float(value)


NUMBERS = AttrKind(
    "number or nested tuple of numbers",
    _is_nested_number,
    _coerce_with(_is_nested_number, lambda v: v),
)


class NotDifferentiable:
    """The `vjp` of an op whose results carry no gradient (comparisons, sign, stop_gradient).

    Autodiff treats such results as constants, so no work upstream is spent on cotangents that
    would stop here; the eager tape records no backward for them.
    """

    def __repr__(self) -> str:
        return "NOT_DIFFERENTIABLE"


NOT_DIFFERENTIABLE: Any = NotDifferentiable()

# A VJP rule, run by eager backward and by the IR reverse pass alike (see lucid/ir/ops/grad.py):
#   rule(b, attrs, xs, ys, needs, *gs) -> one cotangent (or None) per input
VjpRule = Callable[..., tuple[Any, ...]]
# The C of an elementwise op: a format string, a tuple of them (one per result), or a function of
# the node returning one; lucid/codegen/_scalar_c.py says which fields the strings may use.
ScalarC: TypeAlias = "str | tuple[str, ...] | Callable[[Node], str | tuple[str, ...]] | None"
# A composite op's definition in table ops: expand(b, attrs, xs) -> its results, built through
# the VJP builder interface (grad.py), so the IR `expand` pass and the eager kernel share it.
ExpandFn = Callable[..., tuple[Any, ...]]
# A test case: arrays (float64 unless the op needs another dtype) and attrs, from a generator.
SampleFn = Callable[[np.random.Generator], tuple[tuple[Array, ...], dict[str, Any]]]


@dataclass(frozen=True)
class OpDef:
    """Everything about one op, in one place: the op table's entry.

    - `infer`: the type rule; `numpy(*arrays, **attrs)`: the kernel of eager lucid and of the IR
      interpreter (one array, or a tuple for several results);
    - `vjp`: the one reverse-mode rule, or NOT_DIFFERENTIABLE (None only for region ops and
      gradient-only companions that nothing differentiates again);
    - `c` (elementwise ops): the one scalar C spelling, used by plain loops, fused loops and GEMM
      epilogues; `c_int` overrides it for int64/bool inputs; `lowering` (structured ops): the name
      of the C lowering in lucid/codegen/lowerings.py; `inputs` names the inputs (the C fields);
    - `expand` (composite ops): the op's definition in table ops. The trace records one node
      (one Python call where the spelled-out form would make a dozen), the `expand` pass
      (lucid/ir/passes/expand.py) substitutes the definition before the other passes, so
      fusion sees table ops, and codegen expands whatever a pipeline without it left; the
      NumPy kernel runs the same definition eagerly (`expanded_kernel`);
    - `sample`: inputs and attrs for the op-table meta-test (tests/ir/test_op_table.py).
    `arity` is n or (min, max) with max None for "any number". A `region` op (a fused op) has a
    body graph whose outputs give its result types.
    """

    name: str
    arity: int | tuple[int, int | None]
    infer: InferFn
    numpy: Callable[..., Any] | None
    vjp: VjpRule | NotDifferentiable | None
    attrs: Mapping[str, tuple[AttrKind, Any]] = field(default_factory=dict)
    c: ScalarC = None
    c_int: ScalarC = None
    lowering: str | None = None
    inputs: tuple[str, ...] = ()
    sample: SampleFn | None = field(default=None, repr=False)
    elementwise: bool = False
    results: int = 1
    region: bool = False
    prepare: PrepareFn | None = field(default=None, repr=False)
    expand: ExpandFn | None = field(default=None, repr=False)
    doc: str = ""

    # whether gradients flow through the op: it has a rule, and not NOT_DIFFERENTIABLE
    differentiable: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rule = self.vjp
        object.__setattr__(self, "differentiable", callable(rule))

    def reference(self, xs: Sequence[Array], attrs: Mapping[str, Attr]) -> tuple[Array, ...]:
        """The NumPy results as a tuple of ndarrays (the interpreter's and constfold's form)."""
        if self.numpy is None:
            raise TypeError(f"op {self.name!r} has no NumPy kernel")
        out = self.numpy(*xs, **attrs)
        return tuple(np.asarray(o) for o in out) if self.results > 1 else (np.asarray(out),)

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
                out[key] = kind.coerce(freeze_attr(raw[key]))
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


def float_attr_or_inf(v: Attr, sign: float) -> Attr:
    """clip's None bound as +-inf; other values unchanged."""
    return sign * math.inf if v is None else v
