"""Storage planning: where every value of a graph lives during one call of the compiled code.

A value lives in one of: the caller's input array (inputs and params, read in place), the
caller's output array (graph outputs are written where the caller wants them), static const data
(constants), another value's storage (an alias: reshape and stop_gradient of a contiguous
buffer are free), or a slot of the per-call arena.

Arena algorithm (linear scan over the nodes in program order, greedy reuse):
1. Byte sizes are polynomials in the batch symbol (`Poly`); a slot's size is the coefficientwise
   maximum of the sizes of every value placed in it, so it is large enough for each of them at
   *every* batch size (all coefficients are >= 0 and batch >= 1).
2. A value is live from its defining node to the last node that reads it or any alias of it.
   Before placing the results of node i, the slots whose values died before node i are freed;
   a node never writes into a slot that one of its own inputs occupies (no in-place kernels).
3. A result takes the free slot that already dominates its size with the smallest size; if none
   dominates, the free slot whose growth is smallest grows (growing a free slot never costs
   more than a new one); with no free slot, a new slot is opened.
4. Slot offsets are not fixed here: the C computes them at entry from the slot sizes evaluated
   at the call's batch, each rounded up to 64 bytes, with int64 overflow checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lucid.ir.core import Graph, Value
from lucid.ir.types import Dim, dim_parts

ALIAS_OPS = frozenset({"reshape", "stop_gradient"})
ALIGN = 64


@dataclass(frozen=True)
class Poly:
    """A polynomial in the batch with int coefficients; coefs[d] multiplies batch**d."""

    coefs: tuple[int, ...] = (0,)

    @staticmethod
    def of_dims(dims: tuple[Dim, ...], scale: int = 1) -> Poly:
        """The product of `dims` (ints, the one batch symbol, or it times an int: N*8) times
        `scale`."""
        static, degree = scale, 0
        for d in dims:
            symbol, factor = dim_parts(d)
            static *= factor
            degree += symbol is not None
        return Poly(tuple([0] * degree + [static]))

    def dominates(self, other: Poly) -> bool:
        """True if self >= other for every batch >= 1 (coefficientwise, a sufficient test)."""
        n = max(len(self.coefs), len(other.coefs))
        return all(self.coef(d) >= other.coef(d) for d in range(n))

    def max(self, other: Poly) -> Poly:
        """The coefficientwise maximum, which dominates both."""
        n = max(len(self.coefs), len(other.coefs))
        return Poly(tuple(max(self.coef(d), other.coef(d)) for d in range(n))).trimmed()

    def coef(self, d: int) -> int:
        """The coefficient of batch**d."""
        return self.coefs[d] if d < len(self.coefs) else 0

    def trimmed(self) -> Poly:
        """Without high zero coefficients (at least the constant term remains)."""
        coefs = list(self.coefs)
        while len(coefs) > 1 and coefs[-1] == 0:
            coefs.pop()
        return Poly(tuple(coefs))

    def sort_key(self) -> tuple[int, ...]:
        """Orders polys by their size at large batch: degree first, then coefficients."""
        t = self.trimmed().coefs
        return (len(t), *reversed(t))

    def __str__(self) -> str:
        terms = []
        for d in reversed(range(len(self.coefs))):
            c = self.coefs[d]
            if c == 0:
                continue
            var = "" if d == 0 else ("N" if d == 1 else f"N^{d}")
            terms.append(str(c) if not var else (var if c == 1 else f"{c}*{var}"))
        return " + ".join(terms) or "0"


StorageKind = Literal["input", "output", "arena", "const", "alias"]


@dataclass(frozen=True)
class Storage:
    """Where a value lives: `index` is the input/output/slot number, or the aliased value."""

    kind: StorageKind
    index: int = 0
    base: Value | None = None  # for aliases: the value whose storage this one shares


@dataclass
class Slot:
    """One arena slot: its size in bytes and the values it holds over the call (in order)."""

    index: int
    size: Poly
    values: list[Value] = field(default_factory=list)


@dataclass
class MemoryPlan:
    """The storage of every value, the arena slots, and the outputs needing a final copy."""

    storage: dict[Value, Storage]
    slots: list[Slot]
    copies: list[tuple[int, Value]]  # (output position, value): outputs not written in place

    def summary(self) -> str:
        """One line per slot: `slot 0: 20*N bytes <- 2 values`."""
        lines = [f"slot {s.index}: {s.size} bytes <- {len(s.values)} values" for s in self.slots]
        return "\n".join(lines) if lines else "no arena"


def plan_memory(graph: Graph) -> MemoryPlan:
    """Assign storage to every value of `graph` (see the module docstring for the algorithm)."""
    storage: dict[Value, Storage] = {}
    for i, v in enumerate((*graph.inputs, *graph.params)):
        storage[v] = Storage("input", i)
    out_pos: dict[Value, int] = {}
    copies: list[tuple[int, Value]] = []
    producers = graph.producers()
    for j, v in enumerate(graph.outputs):
        node = producers.get(v)
        if v in out_pos or node is None or node.op == "constant":
            copies.append((j, v))  # a duplicate, an input/param or a constant: copied at exit
        else:
            out_pos[v] = j
    for node in graph.nodes:
        if node.op == "constant":
            storage[node.result] = Storage("const")
        elif node.op in ALIAS_OPS and node.result not in out_pos:
            src = node.inputs[0]
            known = storage.get(src)  # None: an arena value, placed by _plan_arena below
            base = known.base if known is not None and known.kind == "alias" else src
            storage[node.result] = Storage("alias", base=base)
        else:
            for r in node.results:
                if r in out_pos:
                    storage[r] = Storage("output", out_pos[r])
    return _plan_arena(graph, storage, copies)


def _plan_arena(
    graph: Graph, storage: dict[Value, Storage], copies: list[tuple[int, Value]]
) -> MemoryPlan:
    """Place the remaining node results into arena slots by liveness (greedy linear scan)."""
    last_use: dict[Value, int] = {}
    for i, node in enumerate(graph.nodes):
        for v in node.inputs:
            st = storage.get(v)
            root = st.base if st is not None and st.kind == "alias" and st.base else v
            last_use[root] = i
    slots: list[Slot] = []
    free: list[Slot] = []
    live: list[tuple[int, Slot]] = []  # (last node index reading it, slot)
    for i, node in enumerate(graph.nodes):
        still = []
        for end, held in live:
            if end < i:
                free.append(held)
            else:
                still.append((end, held))
        live = still
        for r in node.results:
            if r in storage:
                continue
            need = Poly.of_dims(r.type.shape, r.type.dtype.itemsize)
            slot = _take(free, need)
            if slot is None:
                slot = Slot(len(slots), need)
                slots.append(slot)
            slot.size = slot.size.max(need)
            slot.values.append(r)
            storage[r] = Storage("arena", slot.index)
            live.append((last_use.get(r, i), slot))
    return MemoryPlan(storage, slots, copies)


def _take(free: list[Slot], need: Poly) -> Slot | None:
    """Remove and return the best free slot for `need` (rule 3 of the module docstring)."""
    if not free:
        return None
    fitting = [s for s in free if s.size.dominates(need)]
    if fitting:
        best = min(fitting, key=lambda s: s.size.sort_key())
    else:
        best = min(free, key=lambda s: _growth(s.size, need).sort_key())
    free.remove(best)
    return best


def _growth(size: Poly, need: Poly) -> Poly:
    """How much a slot of `size` grows to hold `need`."""
    grown = size.max(need)
    return Poly(tuple(grown.coef(d) - size.coef(d) for d in range(len(grown.coefs))))
