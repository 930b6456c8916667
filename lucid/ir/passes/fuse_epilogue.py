"""GEMM epilogue fusion: linear/matmul + its elementwise tail (+ a column sum) -> `fused_gemm`.

Pattern (on any graph, forward or backward):

    [transpose] -> linear | matmul -> elementwise step* -> [sum over axis 0]

- A 2-D `transpose` feeding the GEMM is absorbed (the GEMM reads its input transposed:
  trans_a / trans_b) when the transposed value has no other reader.
- Each step is an elementwise op of the running value and at most one other tensor that the
  epilogue can index: whole [M, N], a row [M, 1], a column [N] (e.g. a bias) or a scalar.
  The chain stops at a materialised value (several readers, or a graph output: this includes
  values saved for the backward pass); that value is the GEMM's stored result.
- A `sum` over axis 0 of the stored 2-D result becomes the kernel's column sum, a second
  result (the bias gradient of a backward graph).
- A tail that reads the GEMM's result more than once (Adam's update reads a weight gradient
  three times) is absorbed whole when nothing outside it reads that result: every elementwise
  op of the result's type that reads a value of the group and at most one indexable operand
  joins, in program order, while the group stays convex. The values read outside become the
  fused node's results (the first is the GEMM's C, the others extra outputs the epilogue
  stores), and the GEMM's own result is never stored: a training step's weight gradient that
  only its optimizer update reads is never materialized.

A `conv2d` grows the same elementwise tail into a `fused_conv` (its kernel, a GEMM per image
and group or the direct depthwise loop, applies the steps to each finished output); its extra
operands may be whole [N, O, OH, OW] tensors, per-channel values or scalars.

The body of the fused node holds the original nodes in order, so the interpreter computes
exactly what the unfused graph did; a GEMM with nothing to absorb is left alone.
"""

from __future__ import annotations

from lucid.ir.core import Graph, Node, Value
from lucid.ir.ops.reduce import ints
from lucid.ir.passes.fusion_rules import (
    Grouping,
    absorbable_transpose,
    classify_conv_operand,
    classify_operand,
    grow_epilogue,
    is_conv,
    is_elementwise,
    is_gemm,
)


def _is_colsum(node: Node) -> bool:
    """sum over axis 0 of a 2-D value: the column sum the GEMM kernel can produce."""
    return node.op == "sum" and node.inputs[0].type.rank == 2 and ints(node.attrs, "axes") == (0,)


def _tail_step(grouping: Grouping, gid: int, node: Node, inside: set[Value], want: Value) -> bool:
    """Whether `node` can join group `gid` as a step of a tail: elementwise, of `want`'s type,
    reading a value of the group and at most one other input the epilogue can index."""
    if node in grouping.group_of or not is_elementwise(node) or node.result.type != want.type:
        return False
    outside = [v for v in node.inputs if v not in inside]
    if len(outside) == len(node.inputs) or len(set(outside)) > 1:
        return False
    if outside and classify_operand(outside[0].type, want.type) is None:
        return False
    return grouping.can_join(gid, node)


def _grow_tail(grouping: Grouping, gid: int, stored: Value) -> bool:
    """Absorb the elementwise tail of `stored` (a 2-D GEMM result read several times, by the
    tail only) into group `gid`; False, with the group unchanged, if it cannot all join."""
    uses = grouping.uses
    if stored.type.rank != 2 or stored in uses.outputs or not uses.materialised(stored):
        return False
    group = grouping.groups[gid]
    before = len(group.nodes)
    inside = {r for n in group.nodes for r in n.results}
    candidates = sorted(
        {r for v in inside for r in uses.readers.get(v, [])}, key=uses.index.__getitem__
    )
    while candidates:
        joined = None
        for n in candidates:
            if _tail_step(grouping, gid, n, inside, stored):
                joined = n
                break
        if joined is None:
            break
        grouping.add(gid, joined)
        inside.add(joined.result)
        fresh = {r for r in uses.readers.get(joined.result, [])}
        candidates = sorted(
            {n for n in (*candidates, *fresh) if n not in grouping.group_of},
            key=uses.index.__getitem__,
        )
    members = set(group.nodes)
    if len(group.nodes) == before or any(r not in members for r in uses.readers[stored]):
        for n in group.nodes[before:]:  # some reader of the GEMM result stays outside
            del grouping.group_of[n]
        del group.nodes[before:]
        return False
    return True


def fuse_epilogue(graph: Graph) -> Graph:
    """Fold each GEMM's transposed inputs, elementwise tail and column sum into one fused_gemm."""
    grouping = Grouping(graph)
    for node in graph.nodes:
        if node not in grouping.group_of and is_conv(node):
            gid = grouping.new("fused_conv", node)
            grow_epilogue(grouping, gid, node.result, classify_conv_operand)
            if len(grouping.groups[gid].nodes) == 1:
                grouping.drop(gid)  # a bare conv: its own lowering already adds the bias
            continue
        if node in grouping.group_of or not is_gemm(node):
            continue
        gid = grouping.new("fused_gemm", node)
        for slot in (0, 1):
            t = absorbable_transpose(node.inputs[slot], grouping)
            if t is not None and grouping.can_join(gid, t):
                grouping.add(gid, t)
        stored = grow_epilogue(grouping, gid, node.result)
        if _grow_tail(grouping, gid, stored):
            continue
        if stored.type.rank == 2:
            for reader in grouping.uses.readers.get(stored, []):
                if _is_colsum(reader) and grouping.can_join(gid, reader):
                    grouping.add(gid, reader)
                    # the stored result is the kernel's C even if only the sum reads it
                    grouping.groups[gid].force = [stored, reader.result]
                    break
        if len(grouping.groups[gid].nodes) == 1:
            grouping.drop(gid)  # a bare GEMM: its own lowering already handles the bias
    return grouping.rebuild()
