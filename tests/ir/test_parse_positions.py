"""The parser remembers where each node is in the text: verify errors found after parsing point
at the node's line and column with the source line and a caret, and with a file name each node
without a `loc(...)` carries SourceLoc(file, line, column) for errors found later."""

from __future__ import annotations

import pytest

from lucid.errors import SourceLoc, VerifyError
from lucid.ir import parse, parse_module

# %w should be f32[3,5]: matmul's type rule rejects line 3, column 3
BAD = """\
graph @f(%x: f32[N,3], %w: f32[5,4]) -> (f32[N,5]) {
  %0 = relu %x : f32[N,3]
  %1 = matmul %0, %w : f32[N,5]
  return %1
}
"""


def test_verify_error_points_at_the_node_with_file_line_column_and_caret() -> None:
    with pytest.raises(VerifyError) as info:
        parse(BAD, filename="bad.lir")
    head, source, caret = str(info.value).splitlines()
    assert head.startswith("bad.lir:3:3: error: matmul: the type rule rejects the inputs")
    assert source == "    %1 = matmul %0, %w : f32[N,5]"
    assert caret == "    ^"
    assert info.value.reason.startswith("matmul: the type rule rejects")
    assert info.value.node is not None and info.value.node.op == "matmul"


def test_verify_error_without_a_file_name_still_has_line_and_column() -> None:
    with pytest.raises(VerifyError, match=r"\A3:3: error: matmul: "):
        parse(BAD)


def test_verify_error_in_a_later_graph_of_a_module() -> None:
    good = BAD.replace("f32[5,4]", "f32[3,5]")
    with pytest.raises(VerifyError, match=r"\Am.lir:8:3: error: matmul: "):
        parse_module(good + BAD, filename="m.lir")


def test_verify_error_in_a_fused_body_points_into_the_body() -> None:
    text = """\
graph @g(%a: f32[3]) -> (f32[3]) {
  %0 = fused_elementwise %a : f32[3] {
  ^(%b: f32[3]):
    %c = relu %b : f32[4]
    %d = neg %b : f32[3]
    yield %d
  }
  return %0
}
"""
    with pytest.raises(
        VerifyError, match=r"\Ag.lir:4:5: error: in the body of fused_elementwise: relu: "
    ):
        parse(text, filename="g.lir")


def test_nodes_read_from_a_file_carry_their_position_unless_the_text_gives_a_loc() -> None:
    text = BAD.replace("f32[5,4]", "f32[3,5]").replace(
        ": f32[N,3]\n", ': f32[N,3] loc("model.py":7)\n'
    )
    g = parse(text, filename="ok.lir")
    assert g.nodes[0].loc == SourceLoc("model.py", 7)
    assert g.nodes[1].loc == SourceLoc("ok.lir", 3, column=3)
    assert str(g.nodes[1].loc) == "ok.lir:3:3"
    assert parse(text).nodes[1].loc is None  # no file name: no position is invented
