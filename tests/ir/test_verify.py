"""The verifier: one negative test per kind of error, each asserting its message and context."""

from __future__ import annotations

from typing import Any

import pytest

from lucid.errors import SourceLoc, VerifyError
from lucid.ir import Builder, Graph, Node, TensorType, Value, format_graph, parse, verify
from tests.ir.graphs import f32, showcase
from tests.models import seed_graph


def _fails(g: Graph) -> str:
    with pytest.raises(VerifyError) as info:
        verify(g)
    return str(info.value)


def _node(op: str, inputs: list[Value], results: list[Value], **kw: Any) -> Node:
    return Node(op, tuple(inputs), kw.pop("attrs", {}), tuple(results), **kw)


def test_valid_graphs_verify() -> None:
    verify(seed_graph())
    verify(showcase())


def test_use_before_definition_shows_context_with_marker() -> None:
    x = Value(f32(3), "x")
    a, b = Value(f32(3)), Value(f32(3))
    loc = SourceLoc("model.py", 42, "forward")
    g = Graph("g", (x,), (), (_node("relu", [b], [a], loc=loc), _node("neg", [x], [b])), (a,))
    message = _fails(g)
    assert message.splitlines() == [
        "model.py:42: error: relu: input 0 (Value(f32[3])) is used before it is defined",
        "    graph @g(%x: f32[3]) -> (f32[3]) {",
        "  > %0 = relu %1 : f32[3]",
        "    %1 = neg %x : f32[3]",
        "    return %0",
    ]


def test_message_numbering_matches_the_printer() -> None:
    g = seed_graph()
    b = Builder("forward")
    vals = [b.input(v.type, v.hint) for v in g.inputs] + [b.param(v.type, v.hint) for v in g.params]
    h = b.op("linear", vals[:3])
    h2 = b.op("hardswish", [h])
    y = b.op("linear", [h2, *vals[3:]])
    bad = Value(f32("N", 7))  # a result type the type rule disagrees with
    nodes = (*b.nodes, _node("relu", [y], [bad]))
    broken = Graph("forward", tuple(vals[:1]), tuple(vals[1:]), nodes, (bad,))
    message = _fails(broken)
    printed = format_graph(broken).splitlines()
    marked = [line for line in message.splitlines() if line.startswith("  > ")]
    assert marked == ["  > " + printed[4].strip()] and marked[0] == "  > %3 = relu %2 : f32[N,7]"
    assert message.startswith(
        "error: relu: result types (f32[N,7]) disagree with the type rule's (f32[N,2])"
    )


def test_value_defined_twice() -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    g = Graph("g", (x,), (), (_node("neg", [x], [r]), _node("neg", [x], [r])), (r,))
    assert "neg: result Value(f32[3]) is already defined (each value is defined once)" in _fails(g)
    g2 = Graph("g", (x, x), (), (), (x,))
    assert "graph @g: Value(f32[3]) is declared twice as an input or param" in _fails(g2)


def test_unknown_op() -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    g = Graph("g", (x,), (), (_node("frob", [x], [r]),), (r,))
    message = _fails(g)
    assert "error: frob: unknown op 'frob'" in message and "  > %0 = frob %0" not in message
    assert "  > %1 = frob %0 : f32[3]" in message


def test_wrong_arity() -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    g = Graph("g", (x,), (), (_node("add", [x], [r]),), (r,))
    assert "add: expected 2 inputs, got 1" in _fails(g)


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "pow: missing attribute 'exponent' (float)"),
        ({"exponent": 2.0, "base": 1.0}, "pow: unknown attribute 'base'"),
        ({"exponent": "2"}, "pow: attribute 'exponent' must be float, got '2'"),
        ({"exponent": 2}, "pow: attribute 'exponent' must be float, got 2"),
    ],
)
def test_bad_attrs(attrs: dict[str, Any], message: str) -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    g = Graph("g", (x,), (), (_node("pow", [x], [r], attrs=attrs),), (r,))
    assert message in _fails(g)


def test_result_type_disagrees_with_type_rule() -> None:
    x = Value(f32("N", 3))
    r = Value(f32("N", 4))
    g = Graph("g", (x,), (), (_node("relu", [x], [r]),), (r,))
    assert "relu: result types (f32[N,4]) disagree with the type rule's (f32[N,3])" in _fails(g)
    r2, r3 = Value(f32("N", 3)), Value(f32("N", 3))
    g2 = Graph("g", (x,), (), (_node("relu", [x], [r2, r3]),), (r2,))
    assert "result types (f32[N,3], f32[N,3]) disagree with the type rule's (f32[N,3])" in _fails(
        g2
    )


def test_type_rule_rejects_inputs() -> None:
    x, w = Value(f32("N", 3)), Value(f32(5, 4))
    r = Value(f32("N", 5))
    g = Graph("g", (x,), (w,), (_node("linear", [x, w], [r]),), (r,))
    assert (
        "linear: the type rule rejects the inputs: linear: expected w of shape [out, 3] "
        "matching x's last dim 3, got f32[5,4]"
    ) in _fails(g)


def test_output_not_defined() -> None:
    x = Value(f32(3))
    g = Graph("g", (x,), (), (), (Value(f32(2)),))
    assert "error: graph @g: output 0 (Value(f32[2])) is not defined in the graph" in _fails(g)


def _body(t: TensorType, op: str = "relu", out: TensorType | None = None) -> Graph:
    a = Value(t)
    r = Value(out or t)
    return Graph("body", (a,), (), (_node(op, [a], [r]),), (r,))


@pytest.mark.parametrize(
    ("body", "results", "message"),
    [
        (None, [f32(3)], "fused_elementwise: a fused node needs a body graph"),
        (_body(f32(4)), [f32(4)], "body inputs (f32[4]) do not match the node's inputs (f32[3])"),
        (
            _body(f32(3)),
            [f32(3), f32(3)],
            "result types (f32[3], f32[3]) disagree with the type rule's (f32[3])",
        ),
        (
            _body(f32(3), "frob"),
            [f32(3)],
            "error: in the body of fused_elementwise: frob: unknown op 'frob'",
        ),
        (
            _body(f32(3), "relu", f32(5)),
            [f32(5)],
            "in the body of fused_elementwise: relu: result types (f32[5])",
        ),
        (
            Graph("body", (Value(f32(3)),), (Value(f32(3)),), (), ()),
            [f32(3)],
            "a body graph takes no params",
        ),
    ],
)
def test_fused_body_problems(body: Graph | None, results: list[TensorType], message: str) -> None:
    x = Value(f32(3))
    rs = [Value(t) for t in results]
    g = Graph("g", (x,), (), (_node("fused_elementwise", [x], rs, body=body),), (rs[0],))
    assert message in _fails(g)


def test_body_error_marks_the_body_line() -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    body = _body(f32(3), "frob")
    g = Graph("g", (x,), (), (_node("fused_elementwise", [x], [r], body=body),), (r,))
    marked = [ln for ln in _fails(g).splitlines() if ln.startswith("  > ")]
    assert marked == ["  > %3 = frob %2 : f32[3]"]  # x is %0, r %1, the body arg %2


def test_only_fused_ops_have_bodies() -> None:
    x = Value(f32(3))
    r = Value(f32(3))
    g = Graph("g", (x,), (), (_node("relu", [x], [r], body=_body(f32(3))),), (r,))
    assert "relu: only fused ops have a body" in _fails(g)


def test_parse_verifies_unless_told_not_to() -> None:
    text = "graph @g(%a: f32[3]) -> (f32[4]) {\n  %0 = relu %a : f32[4]\n  return %0\n}\n"
    with pytest.raises(VerifyError, match=r"relu: result types \(f32\[4\]\) disagree"):
        parse(text)
    assert format_graph(parse(text, verify=False)) == text


def test_deep_bodies_verify_without_recursion() -> None:
    t = f32(2)
    body = _body(t)
    for _ in range(3000):  # fused nodes nested 3000 deep: deeper than Python's recursion limit
        a, r = Value(t), Value(t)
        body = Graph("body", (a,), (), (_node("fused_elementwise", [a], [r], body=body),), (r,))
    verify(body)
