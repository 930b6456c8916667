"""Canonicalization: local rewrites to simpler, equivalent forms, then dead-code elimination.

Rules (each exact in IEEE arithmetic, for every input including NaN, inf and -0.0):
  x * 1, 1 * x, x / 1                      -> x
  x - (+0.0), x + (-0.0), (-0.0) + x        -> x   (floats; x + 0.0 is NOT x: -0.0 + 0.0 = +0.0)
  x + 0, 0 + x, x - 0                       -> x   (integers)
  neg(neg(x))                               -> x
  transpose(transpose(x, p), q)             -> transpose(x, p∘q); an identity transpose -> x
  reshape(reshape(x, s), t)                 -> reshape(x, t);  reshape to x's own type -> x
  cast to x's dtype, broadcast to x's shape -> x
  matmul(x, transpose(w)) + b, b [out]      -> linear(x, w, b)  (the GEMM read only by the add)
  slice_grad(a, [i, j)) + slice_grad(b, [j, k)) on one axis, each read only by the add
                                            -> slice_grad(concat(a + 0.0, b + 0.0), [i, k));
                                               one covering the whole axis -> its concat
     (the backward of x split into parts that are all used, e.g. attention's q, k, v: no
     zero-filled full-size buffers and no sum of them. `+ 0.0` is what adding the other
     part's zeros did: -0.0 becomes +0.0, all else is unchanged; it is left out for integers
     and for a part already made that way, e.g. the concat of an earlier join)
Never rewritten: x * 0 (NaN * 0 is NaN, inf * 0 is NaN), x + 0.0 for floats.
A rule fires only when the replacement has exactly the old value's type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.core import Graph, Node, Value
from lucid.ir.ops import OPS
from lucid.ir.ops.base import dims
from lucid.ir.ops.reduce import ints
from lucid.ir.passes._rewrite import Def, Rewriter, use_counts
from lucid.ir.passes.dce import eliminate_dead_code

MAX_ROUNDS = 8  # each round applies every rule once; chains of rewrites converge in a few


def canonicalize(graph: Graph) -> Graph:
    """Apply the rules above until none fires (at most MAX_ROUNDS sweeps), then run dce."""
    graph = eliminate_dead_code(graph)
    for _ in range(MAX_ROUNDS):
        graph, changed = _sweep(graph)
        # dce between sweeps: a dead reader must not count as a use in the next sweep
        graph = eliminate_dead_code(graph)
        if not changed:
            break
    return graph


class _Sweep:
    """One forward sweep: each node is matched against the rules on the new graph built so far.

    Invariant: a rule returns a new value of the old result's type, or None to keep the node.
    """

    def __init__(self, graph: Graph) -> None:
        self.rw = Rewriter(graph)
        self.uses = use_counts(graph)
        self.origin: dict[Value, Value] = {}  # new value -> the old value it is a copy of
        self.changed = False

    def node(self, node: Node) -> None:
        replacement = None
        if node.body is None and len(node.results) == 1:
            rule = _RULES.get(node.op)
            if rule is not None:
                replacement = rule(self, node, [self.rw.get(v) for v in node.inputs])
        if replacement is None:
            for old, new in zip(node.results, self.rw.copy(node)):
                self.origin[new] = old
            return
        self.rw.alias(node.result, replacement)
        self.changed = True

    # -- helpers for the rules -----------------------------------------------------------
    def const(self, v: Value) -> np.ndarray | None:
        """The array of `v` if a `constant` node made it, else None."""
        d = self.rw.producer(v)
        if d is None or d.op != "constant":
            return None
        return np.asarray(d.attrs["value"], dtype=v.type.dtype.np)

    def single_use(self, old: Value, new: Value) -> bool:
        """True if `new` is the copy of `old` (no alias between) and `old` is read exactly once.

        Only then is the one reader the node being rewritten, so the rewrite leaves no other
        reader of `new` behind (an alias could hide one; the next round sees through it).
        """
        return (
            self.origin.get(new) is old
            and self.uses.get(old, 0) == 1
            and old not in self.rw.graph.outputs
        )

    def make(
        self, op: str, inputs: list[Value], attrs: dict[str, object], node: Node
    ) -> Value | None:
        """A new `op` node standing for node's result, if the type rule gives the same type."""
        try:
            got = OPS[op].infer(
                tuple(v.type for v in inputs),
                OPS[op].normalize_attrs(attrs, tuple(v.type for v in inputs)),
            )
        except IRTypeError:
            return None
        if got != (node.result.type,):
            return None
        return self.rw.emit(op, inputs, attrs, loc=node.loc)


Rule = Callable[[_Sweep, Node, list[Value]], "Value | None"]


def _sweep(graph: Graph) -> tuple[Graph, bool]:
    s = _Sweep(graph)
    for node in graph.nodes:
        s.node(node)
    return s.rw.finish(), s.changed


def _all_equal(a: np.ndarray | None, value: float, *, negative_zero: bool | None = None) -> bool:
    """True if every element of `a` equals `value` (and has the given sign bit, for zeros)."""
    if a is None or a.size == 0 or not bool(np.all(a == value)):
        return False
    if negative_zero is not None:
        return bool(np.all(np.signbit(a) == negative_zero))
    return True


def _same(node: Node, x: Value) -> Value | None:
    """`x` if it can replace node's result (same type: no broadcast or dtype change)."""
    return x if x.type == node.result.type else None


def _mul(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    if _all_equal(s.const(b), 1):
        return _same(node, a)
    if _all_equal(s.const(a), 1):
        return _same(node, b)
    return None


def _div(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    return _same(node, ins[0]) if _all_equal(s.const(ins[1]), 1) else None


def _add(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    a, b = ins
    floating = node.result.type.dtype.is_float
    sign = True if floating else None  # only -0.0 is an additive identity in IEEE
    if _all_equal(s.const(b), 0, negative_zero=sign):
        return _same(node, a)
    if _all_equal(s.const(a), 0, negative_zero=sign):
        return _same(node, b)
    old_a, old_b = node.inputs
    return (
        _linear(s, node, old_a, a, b)
        or _linear(s, node, old_b, b, a)
        or _joined_slice_grads(s, node, ins)
    )


def _sub(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    floating = node.result.type.dtype.is_float
    if _all_equal(s.const(ins[1]), 0, negative_zero=False if floating else None):
        return _same(node, ins[0])
    return None


def _linear(s: _Sweep, node: Node, old_m: Value, m: Value, bias: Value) -> Value | None:
    """matmul(x, transpose(w)) + bias -> linear(x, w, bias) when bias is [out] over rows."""
    mm = s.rw.producer(m)
    if mm is None or mm.op != "matmul" or not s.single_use(old_m, m):
        return None
    x, wt = mm.inputs
    tr = s.rw.producer(wt)
    if tr is None or tr.op != "transpose" or ints(tr.attrs, "perm") != (1, 0):
        return None
    (w,) = tr.inputs
    if bias.type.shape != (w.type.shape[0],):
        return None
    return s.make("linear", [x, w, bias], {}, node)


def _slice_grad_part(s: _Sweep, old: Value, new: Value) -> tuple[Def, int, int, int] | None:
    """(its slice_grad, axis, start, stop) if `new` is a slice_grad of one step-1 range on
    one axis that only the node being rewritten reads."""
    d = s.rw.producer(new)
    if d is None or d.op != "slice_grad" or not s.single_use(old, new):
        return None
    axes, starts, stops = (ints(d.attrs, k) for k in ("axes", "starts", "stops"))
    if len(axes) != 1 or ints(d.attrs, "steps") != (1,):
        return None
    return d, axes[0], starts[0], stops[0]


def _joined_slice_grads(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    """slice_grad(a, [i, j)) + slice_grad(b, [j, k)) -> slice_grad(concat(a', b'), [i, k)),
    a' = a + 0.0 (see the module doc); the whole axis -> the concat itself."""
    first, second = (_slice_grad_part(s, old, new) for old, new in zip(node.inputs, ins))
    if first is None or second is None:
        return None
    (da, axis, a0, a1), (db, axis_b, b0, b1) = first, second
    shape = dims(da.attrs, "shape")
    if axis_b != axis or dims(db.attrs, "shape") != shape:
        return None
    if a1 == b0:
        low, high, pieces = a0, b1, (da.inputs[0], db.inputs[0])
    elif b1 == a0:
        low, high, pieces = b0, a1, (db.inputs[0], da.inputs[0])
    else:
        return None  # overlapping, or a gap of zeros between them
    flat = [p for piece in pieces for p in _concat_parts(s, piece, axis)]
    joined = s.rw.emit("concat", flat, {"axis": axis}, loc=node.loc)
    if (low, high) == (0, shape[axis]):
        return _same(node, joined)
    whole: dict[str, object] = {
        "shape": shape,
        "axes": (axis,),
        "starts": (low,),
        "stops": (high,),
        "steps": (1,),
    }
    return s.make("slice_grad", [joined], whole, node)


def _plus_zero(s: _Sweep, v: Value) -> bool:
    """Whether `v` is already x + 0.0 (no -0.0 in it): an add of a +0.0 constant, or a concat
    of such values."""
    d = s.rw.producer(v)
    if d is None:
        return False
    if d.op == "add":
        return any(_all_equal(s.const(x), 0, negative_zero=False) for x in d.inputs)
    return d.op == "concat" and all(_plus_zero(s, x) for x in d.inputs)


def _concat_parts(s: _Sweep, v: Value, axis: int) -> list[Value]:
    """What a concat along `axis` takes for the part `v`: the parts of `v` itself when it is
    such a concat already made + 0.0, else [v + 0.0] (just [v] for integers)."""
    d = s.rw.producer(v)
    if d is not None and d.op == "concat" and d.attrs["axis"] == axis and _plus_zero(s, v):
        return list(d.inputs)
    if not v.type.dtype.is_float or _plus_zero(s, v):
        return [v]
    zero = s.rw.emit("constant", [], {"value": 0.0, "dtype": v.type.dtype})
    return [s.rw.emit("add", [v, zero])]


def _neg(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    d = s.rw.producer(ins[0])
    return _same(node, d.inputs[0]) if d is not None and d.op == "neg" else None


def _transpose(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    perm = ints(node.attrs, "perm")
    x = ins[0]
    d = s.rw.producer(x)
    if d is not None and d.op == "transpose":
        inner = ints(d.attrs, "perm")
        perm = tuple(inner[p] for p in perm)  # y[i] = x[inner[i]], z[i] = y[perm[i]]
        x = d.inputs[0]
    if perm == tuple(range(len(perm))):
        return _same(node, x)
    if x is ins[0]:
        return None  # nothing to compose
    return s.make("transpose", [x], {"perm": perm}, node)


def _reshape(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    x = ins[0]
    if x.type == node.result.type:
        return x
    d = s.rw.producer(x)
    if d is not None and d.op == "reshape":
        inner = d.inputs[0]
        if inner.type == node.result.type:
            return inner
        return s.make("reshape", [inner], {"shape": node.attrs["shape"]}, node)
    return None


def _noop(s: _Sweep, node: Node, ins: list[Value]) -> Value | None:
    return _same(node, ins[0])  # cast to the same dtype, broadcast to the same shape


_RULES: dict[str, Rule] = {
    "mul": _mul,
    "div": _div,
    "add": _add,
    "sub": _sub,
    "neg": _neg,
    "transpose": _transpose,
    "reshape": _reshape,
    "cast": _noop,
    "broadcast": _noop,
}
