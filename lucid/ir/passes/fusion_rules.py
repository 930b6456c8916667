"""What the fusion passes (and the C lowering of fused ops) share: use facts, the legality
rules, operand classification, and the regroup-and-rebuild step.

Legality, in one place so every fusion pass obeys the same rules:
- A value is *materialised* when it has more than one reader or is a graph output (in an
  augmented forward graph a value saved for the backward pass is an output, so it counts).
  Inside a fused region it is then either a result of the fused node or the end of the fusion;
  each pass says which (`fuse_elementwise` yields it, the GEMM passes stop there).
- A group must stay *convex*: no path may leave the group and come back into it, or the fused
  node would need its own result as an input. `Grouping.can_join` checks this on the graph
  with every group contracted to one node, so two groups can never form a cycle either.
- Fusion never reorders arithmetic: the body holds the original nodes, in order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from lucid.ir.core import Builder, Graph, Node, Value
from lucid.ir.ops import OPS
from lucid.ir.passes._rewrite import Rewriter, use_counts
from lucid.ir.types import DType, TensorType

Broadcast = Literal["scalar", "row", "col", "full"]

GEMM_DTYPES = (DType.F32, DType.F64)


class Uses:
    """Who reads each value of a graph (node input slots, plus graph outputs)."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.counts = use_counts(graph)
        self.outputs = set(graph.outputs)
        self.readers: dict[Value, list[Node]] = {}
        for node in graph.nodes:
            for v in node.inputs:
                self.readers.setdefault(v, []).append(node)
        self.index = {node: i for i, node in enumerate(graph.nodes)}
        self.producer = graph.producers()

    def materialised(self, v: Value) -> bool:
        """True if `v` must exist in memory: several readers, or a graph output."""
        return self.counts.get(v, 0) != 1 or v in self.outputs

    def only_reader(self, v: Value) -> Node | None:
        """The single node reading `v`, if `v` is not materialised."""
        if self.materialised(v):
            return None
        return self.readers[v][0]


def is_elementwise(node: Node) -> bool:
    """A single-result elementwise op without a body (fusable into a loop or an epilogue)."""
    opdef = OPS.get(node.op)
    return opdef is not None and opdef.elementwise and node.body is None and len(node.results) == 1


def classify_operand(operand: TensorType, result: TensorType) -> Broadcast | None:
    """How an extra epilogue input broadcasts against a GEMM result [..., M, N]; None if the
    GEMM epilogue cannot index it (only whole tensor, row, column and scalar are supported)."""
    if operand.dtype != result.dtype:
        return None
    shape, out = operand.shape, result.shape
    if shape == out:
        return "full"
    if all(d == 1 for d in shape):
        return "scalar"
    n = out[-1]
    if shape[-1] == n and all(d == 1 for d in shape[:-1]) and len(shape) <= len(out):
        return "col"
    if len(out) == 2 and shape in ((out[0], 1),):
        return "row"
    return None


def classify_conv_operand(operand: TensorType, result: TensorType) -> Broadcast | None:
    """How an extra epilogue input broadcasts against a conv2d result [N, O, OH, OW]: "full",
    "row" (one value per output channel: [O, 1, 1] or [1, O, 1, 1]), "scalar", or None."""
    if operand.dtype != result.dtype or len(operand.shape) > 4 or result.rank != 4:
        return None
    if operand.shape == result.shape:
        return "full"
    shape = (1,) * (4 - len(operand.shape)) + tuple(operand.shape)
    if all(d == 1 for d in shape):
        return "scalar"
    if shape == (1, result.shape[1], 1, 1):
        return "row"
    return None


Classify = Callable[[TensorType, TensorType], "Broadcast | None"]


def epilogue_operand(
    node: Node, chain: Value, classify: Classify = classify_operand
) -> tuple[int, Value | None] | None:
    """If elementwise `node` can be one GEMM epilogue step applied to `chain`: the input slot of
    `chain` and the other input (or None). The step's result must keep the chain's type."""
    if not is_elementwise(node) or node.result.type != chain.type:
        return None
    slots = [i for i, v in enumerate(node.inputs) if v is chain]
    if len(slots) != 1 or len(node.inputs) > 2:
        return None  # x op x, or where(c, a, b): more than one operand per step
    others = [v for v in node.inputs if v is not chain]
    if others and classify(others[0].type, chain.type) is None:
        return None
    return slots[0], (others[0] if others else None)


@dataclass
class Group:
    """Nodes that become one fused node; `force` lists results to yield even if unread outside."""

    op: str
    nodes: list[Node] = field(default_factory=list)
    force: list[Value] = field(default_factory=list)


class Grouping:
    """Groups of a graph's nodes, grown one node at a time, and the rebuild that fuses them.

    Invariants: a node belongs to at most one group; every group is convex in the graph where
    all groups are contracted (so the rebuilt graph has no cycle).
    """

    def __init__(self, graph: Graph, uses: Uses | None = None) -> None:
        self.graph = graph
        self.uses = uses or Uses(graph)
        self.groups: list[Group] = []
        self.group_of: dict[Node, int] = {}

    def new(self, op: str, node: Node) -> int:
        """Start a group with `node`; returns its id."""
        self.groups.append(Group(op, [node]))
        self.group_of[node] = len(self.groups) - 1
        return len(self.groups) - 1

    def add(self, gid: int, node: Node) -> None:
        """Put `node` in group `gid` (the caller has checked `can_join`)."""
        self.groups[gid].nodes.append(node)
        self.group_of[node] = gid

    def drop(self, gid: int) -> None:
        """Dissolve group `gid` (it turned out not worth fusing); its nodes stay as they are."""
        for node in self.groups[gid].nodes:
            del self.group_of[node]
        self.groups[gid].nodes = []

    def can_join(self, gid: int, node: Node) -> bool:
        """True if adding `node` keeps group `gid` convex: none of `node`'s inputs from outside
        the group may depend on the group (through other nodes or other groups)."""
        if node in self.group_of:
            return False
        members = set(self.groups[gid].nodes)
        todo = [v for v in node.inputs if self.uses.producer.get(v) not in members]
        seen: set[Value] = set()
        seen_groups: set[int] = set()
        while todo:  # explicit worklist: graphs may be deep
            v = todo.pop()
            if v in seen:
                continue
            seen.add(v)
            p = self.uses.producer.get(v)
            if p is None:
                continue
            if p in members:
                return False
            other = self.group_of.get(p)
            if other is None:
                todo.extend(p.inputs)
            elif other not in seen_groups:
                seen_groups.add(other)
                for q in self.groups[other].nodes:
                    todo.extend(q.inputs)
        return True

    def rebuild(self) -> Graph:
        """The graph with every non-empty group replaced by one fused node (a new Graph)."""
        live = [g for g in self.groups if g.nodes]
        if not live:
            return self.graph
        items: list[list[Node]] = [g.nodes for g in live]
        items += [[n] for n in self.graph.nodes if n not in self.group_of]
        ops = [g.op for g in live] + [""] * (len(items) - len(live))
        forced = [g.force for g in live] + [[] for _ in range(len(items) - len(live))]
        order = _schedule(items, self.uses)
        rw = Rewriter(self.graph)
        for k in order:
            if ops[k]:
                _emit_fused(rw, ops[k], items[k], forced[k], self.uses)
            else:
                rw.copy(items[k][0])
        return rw.finish()


def _schedule(items: list[list[Node]], uses: Uses) -> list[int]:
    """A topological order of the items (a group or one node), otherwise in program order of
    each item's last node (Kahn's algorithm with a heap)."""
    made_by: dict[Value, int] = {}
    for k, nodes in enumerate(items):
        for n in nodes:
            for r in n.results:
                made_by[r] = k
    deps: list[set[int]] = []
    for k, nodes in enumerate(items):
        d = {made_by[v] for n in nodes for v in n.inputs if v in made_by}
        d.discard(k)
        deps.append(d)
    users: list[list[int]] = [[] for _ in items]
    for k, d in enumerate(deps):
        for j in d:
            users[j].append(k)
    key = [max(uses.index[n] for n in nodes) for nodes in items]
    waiting = [len(d) for d in deps]
    ready = [(key[k], k) for k in range(len(items)) if waiting[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(k)
        for u in users[k]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, (key[u], u))
    if len(order) != len(items):
        raise AssertionError("fusion made a cycle: a group was not convex")  # a pass bug
    return order


def region_io(
    nodes: Sequence[Node], force: Sequence[Value], uses: Uses
) -> tuple[list[Value], list[Value]]:
    """A group's external inputs (first-use order) and its yielded values (program order):
    every result read outside the group, every graph output, and the forced ones."""
    inside = {r for n in nodes for r in n.results}
    members = set(nodes)
    inputs: list[Value] = []
    for n in nodes:
        for v in n.inputs:
            if v not in inside and v not in inputs:
                inputs.append(v)
    forced = set(force)
    yields = [
        r
        for n in nodes
        for r in n.results
        if r in forced
        or r in uses.outputs
        or any(u not in members for u in uses.readers.get(r, []))
    ]
    return inputs, yields


def make_body(nodes: Sequence[Node], inputs: Sequence[Value], yields: Sequence[Value]) -> Graph:
    """The body graph of a fused node: one input per external input, the nodes copied in order."""
    b = Builder("body")
    env = {v: b.input(v.type) for v in inputs}
    for n in nodes:
        env.update(zip(n.results, b.clone(n, [env[v] for v in n.inputs])))
    b.output(*(env[v] for v in yields))
    return b.build()


def _emit_fused(rw: Rewriter, op: str, nodes: list[Node], force: list[Value], uses: Uses) -> None:
    """Add the fused node of a group to the rewriter and map its yielded values."""
    nodes = sorted(nodes, key=uses.index.__getitem__)  # the body keeps program order
    inputs, yields = region_io(nodes, force, uses)
    body = make_body(nodes, inputs, yields)
    loc = nodes[-1].loc or nodes[0].loc
    new = rw.builder.op_multi(op, [rw.get(v) for v in inputs], loc=loc, body=body)
    for old, v in zip(yields, new):
        rw.alias(old, v)


def body_summary(graph: Graph) -> list[tuple[str, list[str]]]:
    """(op, [body ops]) for every fused node at the top level: what tests assert on."""
    return [(n.op, [m.op for m in n.body.nodes]) for n in graph.nodes if n.body is not None]


# ------------------------------------------------------------------ GEMM patterns (both GEMM passes)


def is_conv(node: Node) -> bool:
    """A conv2d whose kernel can take an epilogue (float; every conv2d lowering can)."""
    return node.op == "conv2d" and node.body is None and node.result.type.dtype in GEMM_DTYPES


def is_gemm(node: Node) -> bool:
    """A linear/matmul that the GEMM generator can run: float, a 2-D (or batched-rows) A."""
    if node.op not in ("linear", "matmul") or node.body is not None:
        return False
    a, r = node.inputs[0].type, node.result.type
    return r.dtype in GEMM_DTYPES and a.rank >= 2 and r.rank >= 2


def absorbable_transpose(v: Value, grouping: Grouping) -> Node | None:
    """The 2-D `transpose` producing `v`, if a GEMM can read its input transposed instead
    (the transposed copy is then never made): only when `v` has no other reader."""
    p = grouping.uses.producer.get(v)
    if p is None or p.op != "transpose" or p in grouping.group_of:
        return None
    if p.inputs[0].type.rank != 2 or grouping.uses.materialised(v):
        return None
    return p


def grow_epilogue(
    grouping: Grouping, gid: int, v: Value, classify: Classify = classify_operand
) -> Value:
    """Add to group `gid` the chain of epilogue steps that start from `v` and read no
    materialised value; return the chain's last value (the GEMM's stored result). `classify`
    says which extra operands the kernel can index (a conv's differ from a GEMM's)."""
    while True:
        reader = grouping.uses.only_reader(v)
        if reader is None or epilogue_operand(reader, v, classify) is None:
            return v
        if not grouping.can_join(gid, reader):
            return v
        grouping.add(gid, reader)
        v = reader.result
