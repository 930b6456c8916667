"""Dead-code elimination: drop nodes none of whose results reaches a graph output."""

from __future__ import annotations

from lucid.ir.core import Graph, Value
from lucid.ir.passes._rewrite import Rewriter


def live_nodes(graph: Graph) -> list[bool]:
    """For each top-level node, whether any of its results is needed by an output."""
    live_values: set[Value] = set(graph.outputs)
    live = [False] * len(graph.nodes)
    # one reverse sweep suffices: nodes are topologically ordered, so every user of a value
    # comes after its producer and has been decided by the time the producer is reached
    for i in range(len(graph.nodes) - 1, -1, -1):
        node = graph.nodes[i]
        if any(r in live_values for r in node.results):
            live[i] = True
            live_values.update(node.inputs)
    return live


def eliminate_dead_code(graph: Graph) -> Graph:
    """Remove dead nodes; inputs and params stay (they are the graph's signature).

    IR ops have no side effects, so a node is dead exactly when no output depends on it. A
    fused node's body is kept whole: all its results are the node's, and a body is small.
    """
    live = live_nodes(graph)
    rw = Rewriter(graph)
    for node, keep in zip(graph.nodes, live):
        if keep:
            rw.copy(node)
    return rw.finish()
