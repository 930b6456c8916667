"""Dead-code elimination."""

from __future__ import annotations

from lucid.ir import Builder
from lucid.ir.passes.dce import eliminate_dead_code
from tests.ir.graphs import f32
from tests.ir.test_passes import backward_graph, ops, run_both


def test_removes_a_chain_nobody_reads() -> None:
    b = Builder()
    x = b.input(f32("N", 3), "x")
    dead = b.op("exp", [x])
    b.op("tanh", [dead])
    b.output(b.op("relu", [x]))
    g = b.build()
    out = eliminate_dead_code(g)
    assert ops(out) == ["relu"]
    assert ops(g) == ["exp", "tanh", "relu"]  # input untouched
    run_both(g, out)


def test_keeps_outputs_even_if_an_output_is_also_read() -> None:
    b = Builder()
    x = b.input(f32(3), "x")
    y = b.op("exp", [x])
    z = b.op("tanh", [y])
    b.output(y, z)
    out = eliminate_dead_code(b.build())
    assert ops(out) == ["exp", "tanh"]
    assert out.outputs[0] is out.nodes[0].result


def test_keeps_unused_inputs_and_params_in_the_signature() -> None:
    b = Builder()
    x = b.input(f32(3), "x")
    b.input(f32(3), "unused")
    b.param(f32(3), "p.unused")
    b.output(x)
    out = eliminate_dead_code(b.build())
    assert [v.hint for v in out.inputs] == ["x", "unused"]
    assert [v.hint for v in out.params] == ["p.unused"]
    assert out.outputs == (out.inputs[0],) and not out.nodes


def test_multi_result_node_stays_when_one_result_is_live() -> None:
    g = backward_graph()
    b = Builder("bw")
    x, w, gg = (b.input(v.type, v.hint) for v in g.inputs)
    ga, _gb = b.op_multi("maximum_grad", [x, w, gg])
    b.output(ga)
    out = eliminate_dead_code(b.build())
    assert ops(out) == ["maximum_grad"]


def test_deep_chain_does_not_recurse() -> None:
    b = Builder()
    v = b.input(f32(2), "x")
    for _ in range(5000):
        v = b.op("neg", [v])
    b.op("exp", [v])  # dead
    b.output(v)
    assert len(eliminate_dead_code(b.build()).nodes) == 5000
