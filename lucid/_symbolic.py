"""Symbolic sizes: what `x.shape[0]` is while lucid traces a model under a dynamic batch.

`SymInt` is a size whose value varies between calls: the batch symbol `N`, or arithmetic on
it (`N * 4`, `N // 2 + 1`, `N / 3`). It carries the value it has in the trace (`hint`), so eager
code that runs during the trace computes with real numbers, and an expression (`expr`) that the
tracer turns into graph values or into a dim of a shape.

Every Python decision taken on a SymInt becomes a guard: `if x.shape[0] > 4:` takes the branch
the hint takes and records `N > 4 is True`, which a compiled call checks before it runs that
trace. Turning a SymInt into a plain Python int (`int(n)`, `range(n)`, NumPy's `__index__`)
records `N == hint`: that trace is then valid for one batch size only, and others recompile.
Outside a trace, where no tracer collects guards, a SymInt behaves as its hint.

Expressions are trees of tuples: an int or float constant, the symbol name (a str), or
`(op, a, b)` with op one of `+ - * / // %` (and `neg` with one operand); comparisons are
`(cmp, a, b)` with cmp one of `< <= > >= == !=`. They hold only numbers and symbol names, so
their Python text (`python`) is safe to compile into the guard checks of the fast path.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from lucid import _hooks

Expr: TypeAlias = Any  # int | float | str | tuple[str, Expr, Expr] | tuple[str, Expr]

_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_OPS = {**_ARITH, **_COMPARE}


def evaluate(expr: Expr, bindings: Mapping[str, int]) -> Any:
    """The value of `expr` with its symbols bound (a KeyError names an unbound one)."""
    if isinstance(expr, str):
        return bindings[expr]
    if not isinstance(expr, tuple):
        return expr
    if expr[0] == "neg":
        return -evaluate(expr[1], bindings)
    op, a, b = expr
    return _OPS[op](evaluate(a, bindings), evaluate(b, bindings))


def text(expr: Expr) -> str:
    """`expr` as people read it: `N * 4 + 1`, parenthesised only where needed."""
    return _text(expr, 0)


_PRECEDENCE = {"<": 1, "<=": 1, ">": 1, ">=": 1, "==": 1, "!=": 1, "+": 2, "-": 2}
_PRECEDENCE.update({"*": 3, "/": 3, "//": 3, "%": 3, "neg": 4})


def _text(expr: Expr, outer: int) -> str:
    if not isinstance(expr, tuple):
        return str(expr)
    op = expr[0]
    mine = _PRECEDENCE[op]
    if op == "neg":
        inner = "-" + _text(expr[1], mine)
    else:  # left-associative: the right operand needs parentheses at equal precedence
        inner = f"{_text(expr[1], mine)} {op} {_text(expr[2], mine + 1)}"
    return f"({inner})" if mine < outer else inner


def python(expr: Expr, symbol_names: Mapping[str, str]) -> str:
    """`expr` as Python source with each symbol spelled as `symbol_names` says (numbers and
    operators only: no user text reaches it)."""
    if isinstance(expr, str):
        return symbol_names[expr]
    if isinstance(expr, bool) or not isinstance(expr, tuple):
        if not isinstance(expr, (int, float)):
            raise TypeError(f"not a symbolic expression: {expr!r}")
        return repr(expr)
    if expr[0] == "neg":
        return f"(-{python(expr[1], symbol_names)})"
    op, a, b = expr
    if op not in _OPS:
        raise TypeError(f"not a symbolic operator: {op!r}")
    return f"({python(a, symbol_names)} {op} {python(b, symbol_names)})"


def symbols(expr: Expr) -> set[str]:
    """The symbol names `expr` mentions."""
    found: set[str] = set()
    work = [expr]
    while work:
        e = work.pop()
        if isinstance(e, str):
            found.add(e)
        elif isinstance(e, tuple):
            work.extend(e[1:])
    return found


class SymInt:
    """A size that varies between calls (see the module doc). Immutable."""

    __slots__ = ("expr", "hint")

    def __init__(self, expr: Expr, hint: Any) -> None:
        self.expr = expr
        self.hint = hint

    def __repr__(self) -> str:  # shapes in messages read `(N=8, 3)`
        return f"{text(self.expr)}={self.hint}"

    def __str__(self) -> str:
        return str(self.hint)

    # -- arithmetic stays symbolic ---------------------------------------------------------
    def _arith(self, op: str, other: Any, reflected: bool = False) -> Any:
        if isinstance(other, SymInt):
            expr, hint = other.expr, other.hint
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            expr = hint = other
        else:
            return NotImplemented
        a, b = (expr, self.expr) if reflected else (self.expr, expr)
        ha, hb = (hint, self.hint) if reflected else (self.hint, hint)
        return SymInt(_simplify(op, a, b), _ARITH[op](ha, hb))

    def __add__(self, other: Any) -> Any:
        return self._arith("+", other)

    def __radd__(self, other: Any) -> Any:
        return self._arith("+", other, True)

    def __sub__(self, other: Any) -> Any:
        return self._arith("-", other)

    def __rsub__(self, other: Any) -> Any:
        return self._arith("-", other, True)

    def __mul__(self, other: Any) -> Any:
        return self._arith("*", other)

    def __rmul__(self, other: Any) -> Any:
        return self._arith("*", other, True)

    def __truediv__(self, other: Any) -> Any:
        return self._arith("/", other)

    def __rtruediv__(self, other: Any) -> Any:
        return self._arith("/", other, True)

    def __floordiv__(self, other: Any) -> Any:
        return self._arith("//", other)

    def __rfloordiv__(self, other: Any) -> Any:
        return self._arith("//", other, True)

    def __mod__(self, other: Any) -> Any:
        return self._arith("%", other)

    def __rmod__(self, other: Any) -> Any:
        return self._arith("%", other, True)

    def __neg__(self) -> SymInt:
        return SymInt(("neg", self.expr), -self.hint)

    def __pos__(self) -> SymInt:
        return self

    # -- decisions become guards -----------------------------------------------------------
    def _compare(self, op: str, other: Any) -> Any:
        if isinstance(other, SymInt):
            expr, hint = other.expr, other.hint
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            expr = hint = other
        else:
            return NotImplemented
        outcome = _COMPARE[op](self.hint, hint)
        if expr == self.expr:  # N == N: true for every N, nothing to guard
            return outcome
        decide((op, self.expr, expr), outcome)
        return outcome

    def __lt__(self, other: Any) -> Any:
        return self._compare("<", other)

    def __le__(self, other: Any) -> Any:
        return self._compare("<=", other)

    def __gt__(self, other: Any) -> Any:
        return self._compare(">", other)

    def __ge__(self, other: Any) -> Any:
        return self._compare(">=", other)

    def __eq__(self, other: object) -> Any:
        return self._compare("==", other)

    def __ne__(self, other: object) -> Any:
        return self._compare("!=", other)

    def __hash__(self) -> int:
        return hash(self.hint)  # equal keys then compare with __eq__, which guards

    def __bool__(self) -> bool:
        return bool(self._compare("!=", 0))

    # -- leaving symbolic form specializes ---------------------------------------------------
    def specialize(self) -> Any:
        """The hint, recording that the trace is valid only while this expression equals it."""
        decide(("==", self.expr, self.hint), True)
        return self.hint

    def __index__(self) -> int:
        return operator.index(self.specialize())

    def __int__(self) -> int:
        return int(self.specialize())

    def __float__(self) -> float:
        return float(self.specialize())


def _simplify(op: str, a: Expr, b: Expr) -> Expr:
    """`(op, a, b)` with constants folded and identities (x + 0, x * 1, x / 1) dropped."""
    const_a, const_b = not isinstance(a, (str, tuple)), not isinstance(b, (str, tuple))
    if const_a and const_b:
        return _ARITH[op](a, b)
    if const_b and ((op in "+-" and b == 0) or (op in ("*", "/", "//") and b == 1)):
        return a
    if const_a and op in "+*" and a == (0 if op == "+" else 1):
        return b
    return (op, a, b)


def decide(test: Expr, outcome: bool) -> None:
    """Tell the active tracer (if any) that Python took `outcome` for the comparison `test`."""
    hook = _hooks.active
    if hook is not None and symbols(test):
        hook.guard(test, outcome)


def concrete(dims: tuple[Any, ...]) -> tuple[int, ...]:
    """`dims` with each SymInt replaced by its hint (for the eager computation in a trace)."""
    return tuple(d.hint if isinstance(d, SymInt) else d for d in dims)


def any_symbolic(values: tuple[Any, ...]) -> bool:
    """Whether any of `values` is a SymInt."""
    return any(isinstance(v, SymInt) for v in values)
