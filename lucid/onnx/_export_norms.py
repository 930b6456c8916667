"""LayerNorm and eval-mode BatchNorm as ONNX's LayerNormalization and BatchNormalization.

lucid.nn records both spelled out: moments, then scale and shift; or the per-channel scale and
shift computed from the running statistics. ONNX has an op for each, which runtimes run as one
kernel: `recognise_norms` finds exactly the spellings lucid.nn records, and the exporter emits
the ONNX op in their place. Anything else (a value inside the pattern also read outside it,
another order of ops) stays as the plain ops, which export just as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lucid.ir.core import Graph, Node, Value
from lucid.ir.types import DType

__all__ = ["Norm", "recognise_norms"]


@dataclass
class Norm:
    """A recognised normalisation: the ONNX op on `inputs` (None: an absent optional input),
    standing for `nodes` (the last one's result is the op's)."""

    op_type: str
    inputs: list[Value | None]
    attrs: dict[str, Any]
    dtype: DType
    scale_shape: tuple[int, ...] = ()
    nodes: list[Node] = field(default_factory=list)


class _Matcher:
    """Producers and users of a graph's values, and the small questions patterns ask."""

    def __init__(self, graph: Graph) -> None:
        self.producer = graph.producers()
        self.users = graph.users()
        self.params = set(graph.params)
        self.outputs = set(graph.outputs)

    def made_by(self, v: Value, op: str) -> Node | None:
        node = self.producer.get(v)
        return node if node is not None and node.op == op else None

    def scalar(self, v: Value) -> float | None:
        node = self.made_by(v, "constant")
        value = node.attrs["value"] if node is not None else None
        return float(value) if isinstance(value, (int, float)) else None

    def only_user(self, v: Value, op: str) -> Node | None:
        uses = self.users.get(v, [])
        if len(uses) != 1 or v in self.outputs or uses[0][0].op != op:
            return None
        return uses[0][0]

    def other(self, node: Node, v: Value) -> Value:
        """The input of binary `node` that is not `v`."""
        a, b = node.inputs
        return b if a is v else a

    def sealed(self, nodes: list[Node], root: Node) -> bool:
        """Whether no result of `nodes` but the root's is read outside them (or returned)."""
        inside = set(nodes)
        for n in nodes:
            if n is root:
                continue
            for r in n.results:
                if r in self.outputs or any(u not in inside for u, _ in self.users.get(r, [])):
                    return False
        return True


def recognise_norms(graph: Graph) -> dict[Node, Norm]:
    """The LayerNorm and eval BatchNorm spellings in `graph`, keyed by their last node."""
    m = _Matcher(graph)
    found: dict[Node, Norm] = {}
    for node in graph.nodes:
        norm = _layer_norm(m, node) if node.op == "moments" else None
        if norm is None and node.op == "add":
            norm = _batch_norm(m, node)
        if norm is not None and m.sealed(norm.nodes, norm.nodes[-1]):
            found[norm.nodes[-1]] = norm
    return found


def _layer_norm(m: _Matcher, moments: Node) -> Norm | None:
    """moments(x) -> mean, var -> (x - mean) * (1 / sqrt(var + eps)) [* weight] [+ bias]."""
    x = moments.inputs[0]
    rank, axes = x.type.rank, list(moments.attrs["axes"])  # type: ignore[arg-type]
    if not axes or axes != list(range(rank - len(axes), rank)):
        return None
    stats = [u for u, _ in m.users[moments.result]]
    if len(stats) != 2 or any(u.op != "slice" for u in stats):
        return None
    by_start = {u.attrs["starts"]: u for u in stats}
    if set(by_start) != {(0,), (1,)} or any(u.attrs["steps"] != (1,) for u in stats):
        return None
    mean_r = m.only_user(by_start[(0,)].result, "reshape")
    var_r = m.only_user(by_start[(1,)].result, "reshape")
    if mean_r is None or var_r is None:
        return None
    sub = m.only_user(mean_r.result, "sub")
    add = m.only_user(var_r.result, "add")
    if sub is None or add is None or sub.inputs != (x, mean_r.result):
        return None
    eps = m.scalar(m.other(add, var_r.result))
    sqrt = m.only_user(add.result, "sqrt")
    if eps is None or sqrt is None:
        return None
    div = m.only_user(sqrt.result, "div")
    if div is None or m.scalar(div.inputs[0]) != 1.0:
        return None
    mul = m.only_user(div.result, "mul")
    if mul is None or m.other(mul, div.result) is not sub.result:
        return None
    nodes = [moments, *stats, mean_r, var_r, sub, add, sqrt, div, mul]
    affine: list[Value | None] = [None, None]
    shape = x.type.shape[rank - len(axes) :]
    for k, op in enumerate(("mul", "add")):
        nxt = m.only_user(nodes[-1].result, op)
        if nxt is None:
            break
        p = m.other(nxt, nodes[-1].result)
        if p not in m.params or p.type.shape != shape or (k == 1 and affine[0] is None):
            break
        affine[k] = p
        nodes.append(nxt)
    if not all(isinstance(d, int) for d in shape):
        return None
    attrs = {"axis": rank - len(axes), "epsilon": eps}
    static = tuple(int(d) for d in shape)
    return Norm("LayerNormalization", [x, *affine], attrs, x.type.dtype, static, nodes)


def _batch_norm(m: _Matcher, root: Node) -> Norm | None:
    """x * s + t, s = (1 / sqrt(var + eps)) * weight, t = bias + -(mean * s), s and t
    reshaped to [C, 1, ...] (or not, for [N, C]): BatchNorm in eval mode."""
    scaled = next((v for v in root.inputs if m.made_by(v, "mul")), None)
    if scaled is None:
        return None
    shift_r = m.other(root, scaled)
    mul = m.producer[scaled]
    x, scale_r = sorted(mul.inputs, key=lambda v: -v.type.rank)  # x: [N, C, ...]
    if x.type.rank < 2 or x.type.rank == scale_r.type.rank or x in m.params:
        return None
    channels = x.type.shape[1]
    nodes: list[Node] = []
    scale, shift = scale_r, shift_r
    if x.type.rank > 2:
        want = (channels, *([1] * (x.type.rank - 2)))
        for r in (m.made_by(scale_r, "reshape"), m.made_by(shift_r, "reshape")):
            if r is None or r.attrs["shape"] != want:
                return None
            nodes.append(r)
        scale, shift = nodes[0].inputs[0], nodes[1].inputs[0]
    s_mul, t_add = m.made_by(scale, "mul"), m.made_by(shift, "add")
    if s_mul is None or t_add is None:
        return None
    inv = next((m.producer.get(v) for v in s_mul.inputs if m.made_by(v, "div")), None)
    if inv is None or m.scalar(inv.inputs[0]) != 1.0:
        return None
    weight = m.other(s_mul, inv.result)
    sqrt = m.made_by(inv.inputs[1], "sqrt")
    if sqrt is None:
        return None
    add_eps = m.made_by(sqrt.inputs[0], "add")
    if add_eps is None:
        return None
    var = next((v for v in add_eps.inputs if v in m.params), None)
    eps = m.scalar(m.other(add_eps, var)) if var is not None else None
    neg = next((m.producer.get(v) for v in t_add.inputs if m.made_by(v, "neg")), None)
    if eps is None or neg is None:
        return None
    bias = m.other(t_add, neg.result)
    mean_mul = m.made_by(neg.inputs[0], "mul")
    if mean_mul is None or scale not in mean_mul.inputs:
        return None
    mean = m.other(mean_mul, scale)
    stats = (weight, bias, mean, var)
    if any(v not in m.params or v.type.shape != (channels,) for v in stats):
        return None
    nodes = [add_eps, sqrt, inv, s_mul, mean_mul, neg, t_add, *nodes, mul, root]
    attrs = {"epsilon": eps}
    return Norm("BatchNormalization", [x, *stats], attrs, x.type.dtype, (), nodes)
