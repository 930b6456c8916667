"""Common-subexpression elimination."""

from __future__ import annotations

import math

from lucid.ir import Builder, DType
from lucid.ir.passes.cse import eliminate_common_subexpressions as cse
from tests.ir.graphs import f32
from tests.ir.test_passes import fused_graph, ops, run_both


def test_merges_same_op_same_inputs_same_attrs() -> None:
    b = Builder()
    x = b.input(f32("N", 3), "x")
    s1 = b.op("sum", [x], {"axes": 1})
    s2 = b.op("sum", [x], {"axes": (-1,)})  # normalised to the same attrs
    b.output(b.op("add", [s1, s2]))
    g = b.build()
    out = cse(g)
    assert ops(out) == ["sum", "add"]
    assert out.nodes[1].inputs[0] is out.nodes[1].inputs[1]
    run_both(g, out)


def test_merging_cascades_to_users() -> None:
    b = Builder()
    x = b.input(f32(3), "x")
    a1, a2 = b.op("exp", [x]), b.op("exp", [x])
    b.output(b.op("tanh", [a1]), b.op("tanh", [a2]))
    out = cse(b.build())
    assert ops(out) == ["exp", "tanh"]
    assert out.outputs[0] is out.outputs[1]  # both outputs stay, now the same value


def test_does_not_merge_different_attrs_or_inputs_or_order() -> None:
    b = Builder()
    x = b.input(f32(2, 3), "x")
    y = b.input(f32(2, 3), "y")
    outs = [
        b.op("sum", [x], {"axes": 0}),
        b.op("sum", [x], {"axes": 1}),
        b.op("sum", [x], {"axes": 1, "keepdims": True}),
        b.op("sub", [x, y]),
        b.op("sub", [y, x]),  # not commutative: never merged with x - y
    ]
    b.output(*outs)
    out = cse(b.build())
    assert len(out.nodes) == 5


def test_constants_merge_only_with_identical_values() -> None:
    b = Builder()
    vals = [0.0, -0.0, 0.0, 1.0, math.nan, math.nan]
    consts = [b.constant(v) for v in vals]
    ints = [b.constant(1, DType.I64), b.constant(1.0, DType.F64)]
    b.output(*consts, *ints)
    out = cse(b.build())
    values = [n.attrs["value"] for n in out.nodes]
    # +0.0 and -0.0 are different constants; the two NaNs are one; 1 (i64) is not 1.0 (f64)
    assert len(out.nodes) == 6
    assert repr(values[:4]) == repr([0.0, -0.0, 1.0, math.nan])
    assert out.outputs[0] is out.outputs[2] and out.outputs[0] is not out.outputs[1]
    assert out.outputs[4] is out.outputs[5]


def test_fused_bodies_compared_structurally() -> None:
    g = fused_graph()
    out = cse(g)
    # two relu bodies (separate but equal Graphs) merge; the tanh body does not
    assert ops(out) == ["fused_elementwise", "fused_elementwise", "add", "add"]
    assert [n.body.nodes[0].op for n in out.nodes[:2]] == ["relu", "tanh"]  # type: ignore[union-attr]
    run_both(g, out)
