"""Common-subexpression elimination: one node per (op, inputs, attrs, body)."""

from __future__ import annotations

from lucid.ir.core import Graph, Node, Value
from lucid.ir.passes._rewrite import Rewriter

Key = tuple[object, ...]


def node_key(node: Node, inputs: tuple[Value, ...]) -> Key:
    """What makes two nodes compute the same thing: op, inputs (by identity), attrs, body.

    Attrs are compared by `repr`, not `==`: `0.0 == -0.0` and `1 == 1.0 == True` in Python
    but they are different constants, while `nan != nan` would stop two equal NaN constants
    from merging. Float reprs round-trip exactly, so equal reprs mean equal bits (up to NaN
    payloads, which lucid never distinguishes). Bodies are compared by their printed text,
    which names values by position and so is a structural comparison.
    """
    attrs = tuple((k, repr(v)) for k, v in sorted(node.attrs.items()))
    body: str | None = None
    if node.body is not None:
        from lucid.ir.printer import format as format_graph

        body = format_graph(node.body)
    return (node.op, tuple(id(v) for v in inputs), attrs, body)


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Replace each node equal to an earlier one by the earlier node's results.

    Every IR op is a pure function of its inputs and attrs, so merging is always legal; the
    first node in program order survives, which keeps the graph topologically ordered.
    """
    rw = Rewriter(graph)
    seen: dict[Key, tuple[Value, ...]] = {}
    for node in graph.nodes:
        inputs = tuple(rw.get(v) for v in node.inputs)
        key = node_key(node, inputs)
        earlier = seen.get(key)
        if earlier is None:
            seen[key] = rw.copy(node)
            continue
        for old, new in zip(node.results, earlier):
            rw.alias(old, new)
    return rw.finish()
