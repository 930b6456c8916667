"""Value, Node, Graph and Builder: identity, immutability, helpers, builder checks."""

from __future__ import annotations

import sys

import pytest

from lucid.errors import IRError, IRTypeError, SourceLoc
from lucid.ir import Builder, DType, Graph, Node, TensorType, Value
from tests.ir.graphs import f32


def test_values_have_identity_equality() -> None:
    a, b = Value(f32(3)), Value(f32(3))
    assert a != b and a.__eq__(a) is True and len({a, b}) == 2


def test_seed_model_structure(seed: Graph) -> None:
    assert [n.op for n in seed.nodes] == ["linear", "hardswish", "linear"]
    assert seed.output_types == (f32("N", 2),)
    assert [p.hint for p in seed.params] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert len(seed.all_values()) == 1 + 4 + 3


def test_graph_and_node_are_immutable(seed: Graph) -> None:
    node = seed.nodes[0]
    with pytest.raises(AttributeError):
        node.op = "matmul"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        seed.nodes = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        node.attrs["x"] = 1  # type: ignore[index]
    assert isinstance(seed.nodes, tuple)


def test_attrs_are_frozen_and_sorted() -> None:
    b = Builder()
    x = b.input(f32(2, 3))
    y = b.op("sum", [x], {"keepdims": True, "axes": [-1, 0]})
    node = b.nodes[-1]
    assert list(node.attrs) == ["axes", "keepdims"]
    assert node.attrs["axes"] == (0, 1) and y.type == f32(1, 1)
    assert b.op("sum", [x], {"axes": None}).type == f32()


def test_users_and_producers(seed: Graph) -> None:
    users = seed.users()
    lin1, hsw, lin2 = seed.nodes
    assert users[seed.inputs[0]] == [(lin1, 0)]
    assert users[lin1.result] == [(hsw, 0)]
    assert users[seed.params[2]] == [(lin2, 1)]
    assert users[lin2.result] == []
    assert seed.producers()[hsw.result] is hsw


def test_users_on_a_deep_graph_do_not_recurse() -> None:
    b = Builder()
    v = b.input(f32(2))
    for _ in range(sys.getrecursionlimit() + 100):
        v = b.op("relu", [v])
    b.output(v)
    g = b.build()
    assert len(g.users()) == len(g.nodes) + 1
    assert sum(1 for _ in g.walk()) == len(g.nodes)


def test_node_result_requires_single_result() -> None:
    b = Builder()
    a, c = b.input(f32(3)), b.input(f32(3))
    ga, _ = b.op_multi("maximum_grad", [a, c, b.op("add", [a, c])])
    with pytest.raises(IRError, match="maximum_grad has 2 results"):
        _ = b.nodes[-1].result
    with pytest.raises(IRError, match="use Builder.op_multi"):
        b.op("maximum_grad", [a, c, ga])


def test_builder_rejects_foreign_values_and_unknown_ops() -> None:
    other = Builder("other").input(f32(3))
    b = Builder("main")
    x = b.input(f32(3))
    with pytest.raises(IRError, match="input 1 .* not defined in builder @main"):
        b.op("add", [x, other])
    with pytest.raises(IRError, match="unknown op 'frobnicate'"):
        b.op("frobnicate", [x])
    with pytest.raises(IRError, match="output .* not defined"):
        b.output(other)
    with pytest.raises(IRTypeError, match="relu: expected 1 inputs, got 2"):
        b.op("relu", [x, x])
    with pytest.raises(IRTypeError, match="input 0 is int, not a Value"):
        b.op("relu", [3])  # type: ignore[list-item]


def test_builder_attr_errors() -> None:
    b = Builder()
    x = b.input(f32(3))
    with pytest.raises(IRTypeError, match="pow: missing attribute 'exponent' \\(float\\)"):
        b.op("pow", [x])
    with pytest.raises(IRTypeError, match="relu: unknown attribute 'alpha'; it takes none"):
        b.op("relu", [x], {"alpha": 0.1})
    with pytest.raises(IRTypeError, match="pow: attribute 'exponent' must be float, got 'two'"):
        b.op("pow", [x], {"exponent": "two"})
    assert b.nodes == ()
    b.op("pow", [x], {"exponent": 2})
    assert b.nodes[-1].attrs["exponent"] == 2.0 and isinstance(b.nodes[-1].attrs["exponent"], float)


def test_clone_copies_op_attrs_and_loc() -> None:
    b = Builder()
    x = b.input(f32("N", 4))
    loc = SourceLoc("model.py", 7, "forward")
    b.op("clip", [x], {"min": -1.0, "max": None}, loc=loc)
    node = b.nodes[-1]
    b2 = Builder()
    y = b2.input(f32(2, 4))
    (z,) = b2.clone(node, [y])
    copy = b2.nodes[-1]
    assert copy is not node and copy.op == "clip" and copy.loc == loc
    assert dict(copy.attrs) == {"min": -1.0, "max": float("inf")} and z.type == f32(2, 4)


def _elementwise_body(t: TensorType) -> Graph:
    b = Builder("body")
    x = b.input(t)
    b.output(b.op("relu", [b.op("neg", [x])]))
    return b.build()


def test_fused_node_takes_types_from_body() -> None:
    b = Builder()
    x = b.input(f32("N", 4))
    y = b.op("fused_elementwise", [x], body=_elementwise_body(f32("N", 4)))
    assert y.type == f32("N", 4) and b.nodes[-1].body is not None
    with pytest.raises(IRTypeError, match=r"body inputs \(f32\[2,4\]\) do not match .*f32\[N,4\]"):
        b.op("fused_elementwise", [x], body=_elementwise_body(f32(2, 4)))
    with pytest.raises(IRError, match="needs a body graph"):
        b.op("fused_elementwise", [x])
    with pytest.raises(IRError, match="relu takes no body"):
        b.op("relu", [x], body=_elementwise_body(f32("N", 4)))


def test_node_repr_and_graph_repr(seed: Graph) -> None:
    assert repr(seed) == "<Graph @forward: 1 inputs, 4 params, 3 nodes, 1 outputs>"
    assert repr(seed.nodes[1]) == "<Node hardswish (1 inputs) -> f32[N,5]>"
    assert repr(seed.inputs[0]) == "Value(f32[N,3], hint='x')"
    assert isinstance(seed.nodes[0], Node) and TensorType(DType.BOOL) == TensorType(DType.BOOL, ())
