"""Guards on the plain Python values traced code read from outside the model.

A trace runs the user's Python once: a module-level `SCALE = 2.0` or a closure's `cfg["lr"]`
that forward (or a compiled training step) reads becomes a constant of the graph. Module
attributes are guarded by the structure snapshot (Module.structure); these values were not,
so changing one after the first call left the compiled model computing with the old value.

`FreeValues.of(functions)` records, for the user's functions among them (code outside the
lucid package), every module global their code names and every closure cell, when the value
is plain data: None, bool, int, float, complex, str, NumPy scalars, tuples/lists/dicts/sets
of those, and NumPy arrays up to MAX_ELEMENTS (a copy). `changed()` says which one differs
now, or None; callers drop their entries and recompile with a warning naming it. Not
covered (documented): values read by helper functions forward calls, objects other than plain
data (their attributes), and arrays larger than MAX_ELEMENTS.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

import numpy as np

from lucid.ir.trace import in_lucid

MAX_ELEMENTS = 1 << 16
_MISSING = object()
_OPAQUE = object()  # not plain data: not guarded


def _frozen(value: Any, depth: int = 0) -> Any:
    """A comparable copy of plain data, or _OPAQUE."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return ("float", value.hex())  # exact: -0.0 is not 0.0, a NaN equals itself
    if isinstance(value, complex):
        return ("complex", value.real.hex(), value.imag.hex())
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, np.ndarray):
        if value.size > MAX_ELEMENTS or value.dtype.hasobject:
            return _OPAQUE
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if depth > 8:
        return _OPAQUE
    if isinstance(value, (tuple, list, set, frozenset)):
        items = [_frozen(v, depth + 1) for v in value]
        if any(v is _OPAQUE for v in items):
            return _OPAQUE
        if isinstance(value, (set, frozenset)):
            return (type(value).__name__, frozenset(items))
        return (type(value).__name__, tuple(items))
    if isinstance(value, dict):
        pairs = [(_frozen(k, depth + 1), _frozen(v, depth + 1)) for k, v in value.items()]
        if any(k is _OPAQUE or v is _OPAQUE for k, v in pairs):
            return _OPAQUE
        return ("dict", tuple(pairs))
    return _OPAQUE


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and the code of every function, lambda and comprehension nested in it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _sources(fn: Any) -> Iterator[tuple[str, Callable[[], Any]]]:
    """(label, read) of each global a user function names and each of its closure cells."""
    fn = getattr(fn, "__func__", fn)
    code = getattr(fn, "__code__", None)
    if code is None or in_lucid(code.co_filename):
        return
    where = getattr(fn, "__qualname__", "?")
    scope = fn.__globals__
    names = {n for c in _codes(code) for n in c.co_names}
    for name in sorted(names & scope.keys()):
        yield f"global {name!r} (read by {where})", partial(_global, scope, name)
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        yield f"closure variable {name!r} of {where}", partial(_cell, cell)


def _global(scope: dict[str, Any], name: str) -> Any:
    return scope.get(name, _MISSING)


def _cell(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:  # not assigned yet
        return _MISSING


class FreeValues:
    """Snapshots of plain values user code reads from outside: label, reader, frozen copy."""

    def __init__(self, items: list[tuple[str, Callable[[], Any], Any]]) -> None:
        self.items = items

    @classmethod
    def of(cls, functions: Iterable[Any]) -> FreeValues | None:
        """The guards of `functions` (each once), or None when there is nothing to guard."""
        items = []
        seen: set[int] = set()
        for fn in functions:
            if id(fn) in seen:
                continue
            seen.add(id(fn))
            for label, read in _sources(fn):
                frozen = _frozen(read())
                if frozen is not _OPAQUE:
                    items.append((label, read, frozen))
        return cls(items) if items else None

    def changed(self) -> str | None:
        """What differs from the snapshot (the first change found), or None."""
        for label, read, frozen in self.items:
            if _frozen(read()) != frozen:
                return f"{label} changed"
        return None


def forwards(module: Any) -> list[Any]:
    """The forward function of every module in `module`'s tree (class or instance)."""
    found = []
    for m in module.modules():
        fwd = vars(m).get("forward") or getattr(type(m), "forward", None)
        if fwd is not None:
            found.append(fwd)
    return found
