"""The one way passes rebuild a graph: copy it into a Builder through an old -> new value map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lucid.errors import IRError, SourceLoc
from lucid.ir.core import Attr, Builder, Graph, Node, Value, freeze_attrs
from lucid.ir.ops import OPS


@dataclass(frozen=True)
class Def:
    """How a value of the new graph was made: its op, (new) inputs and attrs."""

    op: str
    inputs: tuple[Value, ...]
    attrs: Mapping[str, Attr]
    node_results: int


class Rewriter:
    """Copies `graph` into a fresh Builder node by node; the caller decides each node's fate.

    Invariants: inputs and params are copied first with their hints, in order, so the new
    graph has the same signature; `map` sends every old value handled so far to a new value
    of the same type; `defs` records the op that made each new node result.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.builder = Builder(graph.name)
        self.map: dict[Value, Value] = {}
        self.defs: dict[Value, Def] = {}
        for v in graph.inputs:
            self.map[v] = self.builder.input(v.type, v.hint)
        for v in graph.params:
            self.map[v] = self.builder.param(v.type, v.hint)

    def get(self, old: Value) -> Value:
        """The new value standing for `old`."""
        return self.map[old]

    def copy(self, node: Node) -> tuple[Value, ...]:
        """Copy `node` (op, attrs, loc, body) onto the new values of its inputs."""
        inputs = tuple(self.map[v] for v in node.inputs)
        new = self.builder.clone(node, inputs)
        self._note(node.op, inputs, new, node.attrs)
        self.map.update(zip(node.results, new))
        return new

    def emit(
        self,
        op: str,
        inputs: Sequence[Value],
        attrs: Mapping[str, object] | None = None,
        *,
        loc: SourceLoc | None = None,
    ) -> Value:
        """Add a new single-result node on new values."""
        value = self.builder.op(op, inputs, attrs, loc=loc)
        # the attrs as the builder normalised them (defaults filled, axes sorted...)
        frozen = freeze_attrs(OPS[op].normalize_attrs(attrs or {}, tuple(v.type for v in inputs)))
        self._note(op, tuple(inputs), (value,), frozen)
        return value

    def alias(self, old: Value, new: Value) -> None:
        """Let `new` stand for `old` from now on; the types must agree (a pass bug otherwise)."""
        if old.type != new.type:
            raise IRError(f"rewrite would change a value's type from {old.type} to {new.type}")
        self.map[old] = new

    def producer(self, new: Value) -> Def | None:
        """How the new value `new` was made, or None for an input or param."""
        return self.defs.get(new)

    def finish(self) -> Graph:
        """The new graph, with the old graph's outputs mapped."""
        self.builder.output(*(self.map[v] for v in self.graph.outputs))
        return self.builder.build()

    def _note(
        self,
        op: str,
        inputs: tuple[Value, ...],
        results: tuple[Value, ...],
        attrs: Mapping[str, Attr],
    ) -> None:
        for r in results:
            self.defs[r] = Def(op, inputs, attrs, len(results))


def use_counts(graph: Graph) -> dict[Value, int]:
    """How many times each value is read: once per node input slot, once per output slot."""
    counts: dict[Value, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            counts[v] = counts.get(v, 0) + 1
    for v in graph.outputs:
        counts[v] = counts.get(v, 0) + 1
    return counts
