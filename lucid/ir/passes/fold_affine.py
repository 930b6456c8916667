"""Fold a per-channel scale and shift (eval-mode BatchNorm) into the layer that precedes it.

Eval-mode BatchNorm records `y = x * scale + shift` with `scale` and `shift` one value per
channel, computed from parameters and buffers only (lucid/nn/normalization.py). When `x` is the
result of a linear layer that nothing else reads, the map moves into the layer's weights:

    %y = linear %x, %w, %b            %w2 = mul %w, reshape(%scale, [C, 1])
    %z = mul %y, %scale         ==>   %b2 = add (mul %b, %scale), %shift
    %o = add %z, %shift               %o  = linear %x, %w2, %b2

so the per-element work of the BatchNorm disappears; the per-channel arithmetic on the weights
(C * K multiplications) runs at every call, because parameters and buffers are read live (a
`load_state_dict` after compiling is seen). The result differs from the unfolded graph only by
float rounding (the scale is applied to the weights before the sum, not to the sum).

`FOLDABLE` says, per producer op, the shape a per-channel operand has relative to the
producer's result: `(C,)` for `linear` (channels last). A convolution (weights [C_out, ...],
channels at axis 1 of an [N, C, H, W] result) is one more entry, `(C, 1, 1)`: the weight is
always scaled along its axis 0 and the bias is always [C].
"""

from __future__ import annotations

from lucid.ir.core import Graph, Node, Value
from lucid.ir.passes._rewrite import Rewriter
from lucid.ir.passes.expand import expand
from lucid.ir.types import TensorType

# producer op -> the per-channel operand's shape for C channels, as a function of C
FOLDABLE = {
    "linear": lambda c: (c,),
}
_WEIGHT, _BIAS = 1, 2  # the producer's inputs: x, weight, optional bias


def fold_affine(graph: Graph) -> Graph:
    """Fold `mul` by a per-channel scale (then `add` of a shift) into a preceding linear."""
    graph = expand(graph)  # BatchNorm's map is one `batch_norm` node until expanded
    static = _parameter_only(graph)
    users: dict[Value, list[Node]] = {}
    for node in graph.nodes:
        for v in node.inputs:
            users.setdefault(v, []).append(node)
    outputs = set(graph.outputs)

    def sole_user(v: Value) -> Node | None:
        found = users.get(v, [])
        return found[0] if len(found) == 1 and v not in outputs else None

    plans: dict[Node, tuple[Node, Node, Value, Node | None, Value | None]] = {}
    for node in graph.nodes:
        shape_of = FOLDABLE.get(node.op)
        if shape_of is None or len(node.results) != 1:
            continue
        y = node.result
        channels = node.inputs[_WEIGHT].type.shape[0]
        if not isinstance(channels, int):
            continue
        want = shape_of(channels)
        mul = sole_user(y)
        scale = _other(mul, "mul", y) if mul is not None else None
        if mul is None or scale is None or not _per_channel(scale, want, static):
            continue
        if mul.result.type != y.type:  # the scale must not broadcast the result any wider
            continue
        add = sole_user(mul.result)
        shift = _other(add, "add", mul.result) if add is not None else None
        if (
            add is None
            or shift is None
            or not _per_channel(shift, want, static)
            or add.result.type != y.type
        ):
            add, shift = None, None
        # the folded layer replaces the last node of the chain, where scale and shift exist
        plans[add or mul] = (node, mul, scale, add, shift)

    if not plans:
        return graph
    skip = {n for plan in plans.values() for n in plan[:2]}
    rw = Rewriter(graph)
    for last in graph.nodes:
        plan = plans.get(last)
        if plan is None:
            if last not in skip:
                rw.copy(last)
            continue
        node, mul, scale, add, shift = plan
        loc = mul.loc
        x, w = rw.get(node.inputs[0]), rw.get(node.inputs[_WEIGHT])
        channels = w.type.shape[0]
        assert isinstance(channels, int)  # planned only for a static channel count
        s = _vector(rw, rw.get(scale), channels)
        w2 = rw.emit("mul", [w, _along_axis0(rw, s, w.type)], loc=loc)
        bias = rw.get(node.inputs[_BIAS]) if len(node.inputs) > _BIAS else None
        b2 = rw.emit("mul", [bias, s], loc=loc) if bias is not None else None
        if shift is not None:
            t = _vector(rw, rw.get(shift), channels)
            b2 = t if b2 is None else rw.emit("add", [b2, t], loc=loc)
        ins = [x, w2] if b2 is None else [x, w2, b2]
        folded = rw.emit(node.op, ins, dict(node.attrs), loc=node.loc)
        rw.alias((add or mul).result, folded)
    return rw.finish()


def _parameter_only(graph: Graph) -> set[Value]:
    """The values computed from params and constants alone (no runtime input reaches them)."""
    static: set[Value] = set(graph.params)
    for node in graph.nodes:
        if node.body is None and all(v in static for v in node.inputs):
            static.update(node.results)
    return static


def _other(node: Node, op: str, v: Value) -> Value | None:
    """The operand of binary `node` (of kind `op`) that is not `v`, or None."""
    if node.op != op or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a is v and b is not v:
        return b
    if b is v and a is not v:
        return a
    return None


def _per_channel(v: Value, want: tuple[int, ...], static: set[Value]) -> bool:
    """`v` is parameter-only and has the per-channel shape `want` (leading 1s allowed)."""
    shape = v.type.shape
    while len(shape) > len(want) and shape[0] == 1:
        shape = shape[1:]
    return v in static and shape == want and v.type.dtype.is_float


def _vector(rw: Rewriter, v: Value, channels: int) -> Value:
    """`v` reshaped to [C]."""
    return v if v.type.shape == (channels,) else rw.emit("reshape", [v], {"shape": (channels,)})


def _along_axis0(rw: Rewriter, s: Value, w: TensorType) -> Value:
    """The [C] vector `s` shaped to scale a weight of type `w` along its axis 0."""
    if w.rank == 1:
        return s
    return rw.emit("reshape", [s], {"shape": (s.type.shape[0],) + (1,) * (w.rank - 1)})
