"""Elementwise-chain fusion: connected elementwise ops of one output shape -> `fused_elementwise`.

A node joins the group of one of its producers when both are elementwise, its result has the
group's shape (inputs may broadcast; dtypes may differ, e.g. a comparison feeding `where`) and
the group stays convex. A value with several readers does not end the group: readers inside
the group read it from a register, and it is also a result of the fused node when anything
outside reads it or it is a graph output (fused nodes may have several results). The lowering
runs one loop over the shape; the body keeps the original nodes, so the fused loop computes
each element with exactly the unfused expressions (bit-exact).
"""

from __future__ import annotations

from lucid.ir.core import Graph
from lucid.ir.passes.fusion_rules import Grouping, is_elementwise
from lucid.ir.types import Dim


def fuse_elementwise(graph: Graph) -> Graph:
    """Merge each connected run of same-shape elementwise ops into one fused_elementwise."""
    grouping = Grouping(graph)
    shape: dict[int, tuple[Dim, ...]] = {}
    for node in graph.nodes:
        if not is_elementwise(node):
            continue
        want = node.result.type.shape
        # candidate groups: those of this node's producers, the most recent first
        candidates = []
        for v in node.inputs:
            p = grouping.uses.producer.get(v)
            gid = grouping.group_of.get(p) if p is not None else None
            if gid is not None and shape[gid] == want and gid not in candidates:
                candidates.append(gid)
        for gid in sorted(candidates, reverse=True):
            if grouping.can_join(gid, node):
                grouping.add(gid, node)
                break
        else:
            gid = grouping.new("fused_elementwise", node)
            shape[gid] = want
    for gid, group in enumerate(grouping.groups):
        if len(group.nodes) == 1:
            grouping.drop(gid)  # a lone op is already one loop
    return grouping.rebuild()
