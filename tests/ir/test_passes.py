"""The pass registry, PassManager and default pipeline; helpers shared by the pass tests."""

from __future__ import annotations

import io

import numpy as np
import pytest

from lucid.errors import VerifyError
from lucid.ir import Builder, Graph, Node, format_graph, interpret, passes
from lucid.ir.passes import (
    CLEANUP_PASSES,
    FUSION_PASSES,
    OPTIONAL_PASSES,
    PASSES,
    Pass,
    PassError,
    PassManager,
    default_pipeline,
    get_pass,
    ir_header,
)
from tests.ir.graphs import f32
from tests.models import seed_graph


def run_both(before: Graph, after: Graph, seed: int = 0) -> None:
    """The two graphs compute the same outputs on the same random inputs (N bound to 4)."""
    rng = np.random.default_rng(seed)
    arrays = []
    for v in (*before.inputs, *before.params):
        shape = tuple(4 if isinstance(d, str) else d for d in v.type.shape)
        arrays.append(rng.standard_normal(shape).astype(v.type.dtype.np))
    for a, b in zip(interpret(before, *arrays), interpret(after, *arrays)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def ops(graph: Graph) -> list[str]:
    """The top-level op names of `graph`, in order."""
    return [n.op for n in graph.nodes]


def test_builtin_passes_are_registered() -> None:
    for name in ("dce", "cse", "constfold", "canonicalize"):
        assert get_pass(name).name == name
        assert get_pass(name).doc


def test_unknown_pass_fails_before_running_anything() -> None:
    with pytest.raises(PassError, match="unknown pass 'nope'; known passes: .*dce"):
        PassManager(["dce", "nope"])


def test_the_pass_table_is_read_only_and_complete() -> None:
    with pytest.raises(TypeError):
        PASSES["dce"] = PASSES["cse"]  # type: ignore[index]
    assert set(PASSES) == {*CLEANUP_PASSES, *FUSION_PASSES, *OPTIONAL_PASSES}


def test_default_pipeline_runs_cleanup_then_fusion_then_dce() -> None:
    assert default_pipeline() == [
        "expand",
        "canonicalize",
        "constfold",
        "cse",
        "dce",
        "fuse_mlp",
        "fuse_epilogue",
        "fuse_elementwise",
        "dce",
    ]
    assert default_pipeline(fusion=False) == [
        "expand",
        "canonicalize",
        "constfold",
        "cse",
        "dce",
    ]
    PassManager(default_pipeline())  # every name resolves


def test_run_returns_new_graph_and_report(seed: Graph) -> None:
    text = format_graph(seed)
    out, report = PassManager(default_pipeline()).run(seed)
    assert format_graph(seed) == text  # the input graph is untouched
    assert [t.name for t in report.timings] == default_pipeline()
    assert all(t.seconds >= 0 for t in report.timings)
    assert report.timings[0].nodes_before == 3
    assert "total" in report.format() and "canonicalize" in report.format()
    run_both(seed, out)


def test_print_after_all_writes_a_header_and_the_ir_after_each_pass(seed: Graph) -> None:
    stream = io.StringIO()
    PassManager(["cse", "dce"], print_after_all=True, out=stream).run(seed)
    text = stream.getvalue()
    assert text.count("// -----// IR after") == 2
    assert text.index(ir_header("cse")) < text.index(ir_header("dce"))
    assert ir_header("dce") == "// -----// IR after dce //----- //"
    assert format_graph(seed) in text


def test_verify_each_catches_a_broken_pass(seed: Graph) -> None:
    def broken(g: Graph) -> Graph:
        """Drops the first node but keeps its users: an invalid graph."""
        return Graph(g.name, g.inputs, g.params, g.nodes[1:], g.outputs)

    passes = {**PASSES, "broken_for_test": Pass.of("broken_for_test", broken)}
    with pytest.raises(VerifyError, match="after pass 'broken_for_test'"):
        PassManager(["broken_for_test"], passes=passes).run(seed)
    out, _ = PassManager(["broken_for_test"], passes=passes, verify_each=False).run(seed)
    assert len(out.nodes) == 2


# -------------------------------------------------------------- graphs every pass must handle


def fused_graph() -> Graph:
    """Two identical fused_elementwise nodes and a third with a different body."""

    def body(op: str) -> Graph:
        b = Builder("body")
        x = b.input(f32("N", 5))
        b.output(b.op(op, [x]))
        return b.build()

    b = Builder("forward")
    x = b.input(f32("N", 5), "x")
    y1 = b.op("fused_elementwise", [x], body=body("relu"))
    y2 = b.op("fused_elementwise", [x], body=body("relu"))
    y3 = b.op("fused_elementwise", [x], body=body("tanh"))
    b.output(b.op("add", [b.op("add", [y1, y2]), y3]))
    return b.build()


def backward_graph() -> Graph:
    """A backward-style graph: gradient ops, a two-result op and sum_to with a symbol."""
    b = Builder("backward")
    x = b.input(f32("N", 5), "x")
    w = b.input(f32(5), "w")
    g = b.input(f32("N", 5), "g")
    ga, gb = b.op_multi("maximum_grad", [x, w, g])
    gx = b.op("hardswish_grad", [x, ga])
    gw = b.op("sum_to", [gb], {"shape": (5,)})
    b.output(gx, gw)
    return b.build()


@pytest.mark.parametrize("name", ["dce", "cse", "constfold", "canonicalize"])
@pytest.mark.parametrize("make", [seed_graph, fused_graph, backward_graph])
def test_every_pass_keeps_meaning_and_input(name: str, make) -> None:  # type: ignore[no-untyped-def]
    graph = make()
    text = format_graph(graph)
    nodes = graph.nodes
    out, _ = PassManager([name]).run(graph)
    assert format_graph(graph) == text and graph.nodes == nodes
    assert all(isinstance(n, Node) for n in out.nodes)
    run_both(graph, out)


def test_every_pass_module_is_in_the_table() -> None:
    from pathlib import Path

    modules = {p.stem for p in Path(passes.__file__).parent.glob("*.py")}
    modules -= {"__init__", "manager", "registry", "fusion_rules"}
    assert {m for m in modules if not m.startswith("_")} == set(PASSES)
