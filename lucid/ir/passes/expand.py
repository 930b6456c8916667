"""Expand composite ops into the table ops that define them (OpDef.expand).

A composite (BatchNorm's `batch_norm`, lucid/ir/ops/norm.py) is one node in a traced graph,
which keeps tracing and the warm-start memo key cheap; this pass substitutes its definition,
so that the passes after it fuse the table ops as they would have had the trace recorded them
(BatchNorm's per-channel scale and shift into the convolution's epilogue). The expanded nodes
carry the composite's source location. It runs first in every default pipeline; codegen
expands what a pipeline without it leaves (lucid/codegen/emit_c.py).

    %y = batch_norm %x, %m, %v {eps=1e-05}      %0 = constant {value=1e-05}
                                          ==>   %1 = add %v, %0
                                                %2 = sqrt %1 ... %y = add %7, %9
"""

from __future__ import annotations

from lucid.ir.autodiff import IRGrad
from lucid.ir.core import Graph
from lucid.ir.ops import OPS
from lucid.ir.passes._rewrite import Rewriter

COMPOSITES = frozenset(name for name, op in OPS.items() if op.expand is not None)


def has_composites(graph: Graph) -> bool:
    """Whether a node of `graph` is a composite op (fusion never puts one in a body: it fuses
    table ops it knows, and a composite is none of them)."""
    return any(node.op in COMPOSITES for node in graph.nodes)


def expand(graph: Graph) -> Graph:
    """Replace each composite op (an OpDef with `expand`) by its definition in table ops."""
    if not has_composites(graph):
        return graph
    rw = Rewriter(graph)
    builder = rw.builder
    b = IRGrad(builder)
    for node in graph.nodes:
        if node.op not in COMPOSITES:
            rw.copy(node)
            continue
        expansion = OPS[node.op].expand
        assert expansion is not None  # what COMPOSITES holds
        builder.loc = node.loc  # on every node of the expansion
        results = expansion(b, node.attrs, tuple(rw.get(v) for v in node.inputs))
        builder.loc = None
        for old, new in zip(node.results, results, strict=True):
            rw.alias(old, new)
    return rw.finish()
