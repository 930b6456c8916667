"""The text form: golden files, print -> parse -> print identity, parse errors, DOT."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucid.errors import IRTypeError, ParseError, SourceLoc
from lucid.ir import (
    Builder,
    DType,
    Graph,
    TensorType,
    format_graph,
    format_module,
    interpret,
    parse,
    parse_module,
    to_dot,
    verify,
)
from tests.ir.graphs import f32, showcase
from tests.models import seed_graph


def test_seed_golden(golden: Callable[[str, str], None]) -> None:
    golden("ir_seed.lir", format_graph(seed_graph()))


def test_showcase_golden(golden: Callable[[str, str], None]) -> None:
    golden("ir_showcase.lir", format_graph(showcase(), locs=True))


def test_seed_text_matches_design_header() -> None:
    text = str(seed_graph())
    assert text.splitlines()[0] == (
        "graph @forward(%x: f32[N,3]) params(%fc1.weight: f32[5,3], %fc1.bias: f32[5], "
        "%fc2.weight: f32[2,5], %fc2.bias: f32[2]) -> (f32[N,2]) {"
    )
    assert "  %1 = hardswish %0 : f32[N,5]" in text.splitlines()


@pytest.mark.parametrize("locs", [False, True])
@pytest.mark.parametrize("make", [seed_graph, showcase])
def test_round_trip(make: Callable[[], Graph], locs: bool) -> None:
    text = format_graph(make(), locs=locs)
    again = parse(text)
    assert format_graph(again, locs=locs) == text
    assert [n.op for n in again.nodes] == [n.op for n in make().nodes]


def test_round_trip_keeps_locs_hints_and_constants() -> None:
    g = parse(format_graph(showcase(), locs=True))
    assert g.nodes[0].loc == SourceLoc("model.py", 12)
    assert g.nodes[1].loc == SourceLoc('dir with "quotes"/m.py', 3)
    assert [v.hint for v in (*g.inputs, *g.params)] == ["x", "target", "fc.weight", 'head "bias"']
    const = next(n for n in g.nodes if n.op == "constant")
    assert const.attrs["value"] == (
        (float(np.float32(0.1)), float(np.float32(-2.5e-08))),
        (float("inf"), -0.0),
    )
    assert np.signbit(const.attrs["value"][1][1])  # type: ignore[index]


def test_names_are_unique_and_quoted() -> None:
    b = Builder("weird name")
    vals = [b.input(f32(2), h) for h in ("x", "x", "x_1", None, "2", "a-b", None)]
    b.output(b.op("add", [vals[0], vals[-1]]))
    text = format_graph(b.build())
    assert text.startswith(
        'graph @"weird name"(%x: f32[2], %x_1: f32[2], %x_1_1: f32[2], %0: f32[2], %"2": f32[2], '
        '%"a-b": f32[2], %1: f32[2]) -> (f32[2]) {'
    )
    assert "%2 = add %x, %1 : f32[2]" in text
    assert format_graph(parse(text)) == text


def test_module_with_several_graphs() -> None:
    text = format_module([seed_graph(), showcase()])
    graphs = parse_module(text)
    assert [g.name for g in graphs] == ["forward", "showcase"]
    assert format_module(graphs) == text


def test_parser_accepts_comments_loc_after_region_and_int_floats() -> None:
    text = """
    // a comment
    graph @g(%a: f32[3]) -> (f32[3]) {
      %0 = pow %a {exponent=2} : f32[3]   loc("f.py":4)
      %1 = fused_elementwise %0 : f32[3] {
        ^(%2: f32[3]):
        %3 = neg %2 : f32[3]
        yield %3
      } loc("g.py":9)
      return %1
    }
    """
    g = parse(text)
    assert g.nodes[0].attrs["exponent"] == 2.0 and isinstance(g.nodes[0].attrs["exponent"], float)
    assert g.nodes[1].loc == SourceLoc("g.py", 9)


# ---------------------------------------------------------------- parse errors


def _parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text)
    return info.value


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("graph @g(%a: f32[3]) -> (f32[3]) {\n  return $a\n}", "unexpected character '$'", 2, 10),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  %0 = neg %7 : f32[3]\n  return %0\n}",
            "use of undefined value %7",
            2,
            12,
        ),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  %a = neg %a : f32[3]\n  return %a\n}",
            "value %a is defined twice",
            2,
            3,
        ),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  %0, %1 = neg %a : f32[3]\n  return %0\n}",
            "2 result names but 1 result types",
            2,
            12,
        ),
        ("graph @g(%a: f16[3]) -> (f32[3]) {\n  return %a\n}", "unknown dtype 'f16'", 1, 14),
        (
            "graph @g(%a: f32[3]) -> (f32[4]) {\n  return %a\n}",
            r"return types (f32[3]) differ from the header's (f32[4])",
            2,
            3,
        ),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  %0 = neg %a f32[3]\n  return %0\n}",
            "expected ':' before the result types, found 'f32'",
            2,
            15,
        ),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  %0 = pow %a {exponent=} : f32[3]\n  return %0\n}",
            "expected an attribute value",
            2,
            25,
        ),
        (
            "graph @g(%a: f32[-1]) -> (f32[3]) {\n  return %a\n}",
            "expected a dim (an int >= 0, a symbol, or a symbol times an int: N*12)",
            1,
            18,
        ),
        (
            "graph @g(%a: f32[3]) -> (f32[3]) {\n  return %a\n",
            "expected '}' closing the graph, found the end of the text",
            3,
            1,
        ),
        (
            "graph @g() -> () {\n  return\n}\ngraph @h() -> () {\n  return\n}",
            "expected the end of the text after the graph",
            4,
            1,
        ),
    ],
)
def test_parse_errors_point_at_the_problem(text: str, message: str, line: int, column: int) -> None:
    err = _parse_error(text)
    assert err.reason == message and (err.line, err.column) == (line, column)
    source = text.split("\n")[line - 1]
    assert err.source_line == source
    assert str(err) == f"{line}:{column}: error: {message}\n  {source}\n  {' ' * (column - 1)}^"


# ---------------------------------------------------------------- DOT


def test_to_dot_sanity() -> None:
    dot = to_dot(showcase())
    assert dot.startswith('digraph "showcase" {') and dot.rstrip().endswith("}")
    assert 'v3 [shape=ellipse, label="%\\"head \\\\\\"bias\\\\\\"\\": f32[2]"];' in dot
    assert 'n0 [label="fused_gemm\\nf32[N,2], f32[2]\\n[linear -> relu -> sum]"];' in dot
    assert "v0 -> n0" in dot and "v2 -> n0" in dot
    # every IR node is one DOT node; every input use one edge; every output one edge into ret
    g = showcase()
    assert len(re.findall(r"^  n\d+ \[", dot, re.MULTILINE)) == len(g.nodes)
    uses = sum(len(n.inputs) for n in g.nodes) + len(g.outputs)
    assert len(re.findall(r"^  \w+ -> \w+ \[label=", dot, re.MULTILINE)) == uses
    assert dot.count('"') % 2 == 0


# ---------------------------------------------------------------- random graphs

SHAPES = [("N", 3), (3,), (1, 3), ("N", 1), (2, 3), ()]
FLOATS = st.floats(width=32, allow_nan=True, allow_infinity=True)
UNARY = [
    "neg",
    "abs",
    "sign",
    "hardswish",
    "hardsigmoid",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "exp",
    "log",
    "sqrt",
    "stop_gradient",
]
BINARY = [
    "add",
    "sub",
    "mul",
    "div",
    "maximum",
    "minimum",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "equal",
    "not_equal",
    "relu_grad",
    "hardswish_grad",
    "mse_loss",
]


def _attrs_for(draw: Any, op: str, t: TensorType) -> dict[str, Any]:
    """Attributes that often (not always) fit `op` on an input of type `t`."""
    if op == "pow":
        return {"exponent": draw(FLOATS)}
    if op in ("clip", "clip_grad"):
        return {"min": draw(st.none() | FLOATS), "max": draw(st.none() | FLOATS)}
    if op in ("sum", "mean"):
        axes = draw(st.lists(st.integers(0, max(t.rank - 1, 0)), max_size=t.rank, unique=True))
        return {"axes": axes, "keepdims": draw(st.booleans())}
    if op == "reshape":
        return {"shape": draw(st.sampled_from([(-1,), (-1, 3), (3, -1), (1, -1, 1)]))}
    if op == "transpose":
        return {"perm": draw(st.permutations(range(t.rank)))}
    if op in ("broadcast", "sum_to"):
        return {"shape": draw(st.sampled_from(SHAPES + [("N", 2, 3)]))}
    if op == "cast":
        return {"dtype": draw(st.sampled_from(list(DType)))}
    if op == "mse_loss":
        return {"reduction": draw(st.sampled_from(["mean", "sum"]))}
    return {}


@st.composite
def random_graphs(draw: Any) -> Graph:
    """A random valid graph: random ops on random earlier values, type errors skipped."""
    b = Builder(draw(st.sampled_from(["g", "forward", "with space"])))
    pool = []
    for _ in range(draw(st.integers(1, 3))):
        hint = draw(st.sampled_from(["x", "x", "fc1.weight", "é", 'q"', None]))
        pool.append(b.input(f32(*draw(st.sampled_from(SHAPES))), hint))
    if draw(st.booleans()):
        pool.append(b.param(f32(*draw(st.sampled_from(SHAPES[1:]))), "p.w"))
    for step in range(draw(st.integers(0, 10))):
        op = draw(
            st.sampled_from(
                UNARY
                + BINARY
                + [
                    "pow",
                    "clip",
                    "sum",
                    "mean",
                    "reshape",
                    "transpose",
                    "broadcast",
                    "sum_to",
                    "cast",
                    "where",
                    "linear",
                    "matmul",
                    "constant",
                    "fused_elementwise",
                    "maximum_grad",
                ]
            )
        )
        loc = draw(
            st.none()
            | st.builds(SourceLoc, st.sampled_from(["a.py", 'b "c".py']), st.integers(1, 999))
        )
        try:
            if op == "constant":
                value = draw(st.one_of(FLOATS, st.lists(FLOATS, min_size=1, max_size=3)))
                pool.append(b.constant(value, loc=loc))
                continue
            if op == "fused_elementwise":
                x = draw(st.sampled_from(pool))
                body = Builder("body")
                bx = body.input(x.type)
                body.output(body.op("relu", [bx]), body.op("neg", [bx]))
                pool.extend(b.op_multi(op, [x], body=body.build(), loc=loc))
                continue
            n = (
                3
                if op in ("where", "maximum_grad")
                else 2
                if op in BINARY + ["linear", "matmul"]
                else 1
            )
            ins = [draw(st.sampled_from(pool)) for _ in range(n)]
            attrs = _attrs_for(draw, op, ins[0].type)
            pool.extend(b.op_multi(op, ins, attrs, loc=loc))
        except IRTypeError:
            continue
    b.output(*draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3)))
    return b.build()


@settings(
    derandomize=True, max_examples=100, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(random_graphs())
def test_random_graphs_round_trip(g: Graph) -> None:
    verify(g)
    for locs in (False, True):
        text = format_graph(g, locs=locs)
        again = parse(text)
        assert format_graph(again, locs=locs) == text
    # the parsed graph computes exactly what the built one does (attrs survived exactly)
    arrays = []
    for v in (*g.inputs, *g.params):
        shape = v.type.concrete({"N": 2}).shape
        arrays.append(np.linspace(-4, 4, int(np.prod(shape))).astype(np.float32).reshape(shape))
    with np.errstate(all="ignore"):
        want = interpret(g, *arrays)
        got = interpret(again, *arrays)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
