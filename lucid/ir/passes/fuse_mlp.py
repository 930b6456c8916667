"""MLP fusion: linear -> elementwise chain -> linear (-> ...) -> `fused_mlp`.

Pattern (on any graph):

    linear|matmul (x [M, K]) -> step* -> linear|matmul -> step* [-> linear|matmul -> step*]...

where every hidden value (each GEMM result and each step inside the chain) has exactly one
reader and is not a graph output, and each later GEMM reads the chain as its row operand
(x of linear, a of matmul). Steps are the GEMM epilogue steps of `fuse_epilogue`. The fused
kernel then walks row tiles of the batch and keeps each tile's hidden activation in a small
tile-local buffer: the hidden tensor is never written to memory, which is only correct because
nothing else reads it. If a hidden value is materialised (read twice, returned, or saved for
the backward pass), the layers are not MLP-fused; `fuse_epilogue` then fuses each GEMM with
its tail instead. Elementwise steps after the last GEMM join as its epilogue.
"""

from __future__ import annotations

from lucid.ir.core import Graph, Node, Value
from lucid.ir.passes.fusion_rules import Grouping, grow_epilogue, is_gemm


def _next_layer(grouping: Grouping, gid: int, hidden: Value) -> Node | None:
    """The GEMM reading the (unmaterialised) hidden value as its rows, if it can join `gid`."""
    reader = grouping.uses.only_reader(hidden)
    if reader is None or not is_gemm(reader) or reader.inputs[0] is not hidden:
        return None
    if any(v is hidden for v in reader.inputs[1:]):
        return None
    if reader.result.type.dtype != hidden.type.dtype or not grouping.can_join(gid, reader):
        return None
    return reader


def fuse_mlp(graph: Graph) -> Graph:
    """Fuse each chain of GEMMs joined by single-use elementwise chains into one fused_mlp."""
    grouping = Grouping(graph)
    for node in graph.nodes:
        if node in grouping.group_of or not is_gemm(node) or node.inputs[0].type.rank != 2:
            continue
        gid = grouping.new("fused_mlp", node)
        layers = 1
        value = node.result
        while True:
            value = grow_epilogue(grouping, gid, value)
            nxt = _next_layer(grouping, gid, value)
            if nxt is None:
                break
            grouping.add(gid, nxt)
            layers += 1
            value = nxt.result
        if layers < 2:
            grouping.drop(gid)  # one GEMM and its tail: fuse_epilogue's job
    return grouping.rebuild()
