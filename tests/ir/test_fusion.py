"""Fusion passes on IR: which nodes fuse and which must not, goldens, and exactness by interpreter."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucid.ir import Builder, Graph, format_graph, interpret, parse, verify
from lucid.ir.passes import default_pipeline, run_passes
from lucid.ir.passes.fusion_rules import body_summary
from tests.ir.graphs import f32
from tests.models import seed_graph


def optimise(graph: Graph, names: list[str] | None = None) -> Graph:
    """Run `names` (default: the default pipeline); check verify and the text round trip."""
    out = run_passes(graph, names or default_pipeline())
    verify(out)
    text = format_graph(out)
    assert format_graph(parse(text)) == text
    return out


def random_arrays(graph: Graph, seed: int, batch: int = 7) -> list[np.ndarray]:
    """Inputs then params of `graph`, normal with a few kinks hit exactly (N bound to `batch`)."""
    rng = np.random.default_rng(seed)
    out = []
    for v in (*graph.inputs, *graph.params):
        shape = tuple(batch if isinstance(d, str) else d for d in v.type.shape)
        a = (rng.standard_normal(shape) * 4).astype(v.type.dtype.np)
        flat = a.reshape(-1)
        flat[: min(3, flat.size)] = np.array([-3.0, 3.0, 0.0], v.type.dtype.np)[: min(3, flat.size)]
        out.append(a)
    return out


def assert_same(before: Graph, after: Graph, seed: int = 0) -> None:
    """Bit-identical outputs: a fused body holds the unfused nodes, in order."""
    arrays = random_arrays(before, seed)
    for a, b in zip(interpret(before, *arrays), interpret(after, *arrays), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ seed model


def test_seed_model_becomes_one_fused_mlp(golden) -> None:
    g = seed_graph()
    out = optimise(g)
    assert body_summary(out) == [("fused_mlp", ["linear", "hardswish", "linear"])]
    assert [n.op for n in out.nodes] == ["fused_mlp"]
    assert_same(g, out)
    golden("opt_seed.lir", format_graph(out))


def test_print_after_all_shows_each_fusion_pass() -> None:
    import io

    buf = io.StringIO()
    run_passes(seed_graph(), default_pipeline(), print_after_all=True, out=buf)
    text = buf.getvalue()
    for name in ("fuse_mlp", "fuse_epilogue", "fuse_elementwise"):
        assert f"IR after {name} " in text
    assert default_pipeline().index("fuse_mlp") < default_pipeline().index("fuse_epilogue")
    assert default_pipeline()[-1] == "dce"
    assert default_pipeline(fusion=False) == [n for n in default_pipeline() if "fuse" not in n][:-1]


def training_forward() -> Graph:
    """The augmented forward of the seed model: Z and H are saved for backward (outputs)."""
    b = Builder("forward")
    x = b.input(f32("N", 3), "x")
    w1, b1 = b.param(f32(5, 3), "fc1.weight"), b.param(f32(5), "fc1.bias")
    w2, b2 = b.param(f32(2, 5), "fc2.weight"), b.param(f32(2), "fc2.bias")
    z = b.op("linear", [x, w1, b1])
    h = b.op("hardswish", [z])
    b.output(b.op("linear", [h, w2, b2]), z, h)
    return b.build()


def test_values_saved_for_backward_block_mlp_fusion() -> None:
    g = training_forward()
    out = optimise(g)
    # Z is an output: it is the GEMM's stored result, so no epilogue, no MLP; H is an output too
    assert body_summary(out) == []
    assert [n.op for n in out.nodes] == ["linear", "hardswish", "linear"]
    assert_same(g, out)


def test_hidden_read_twice_ends_the_mlp_but_keeps_the_epilogue() -> None:
    b = Builder("forward")
    x = b.input(f32("N", 3), "x")
    w1, w2 = b.param(f32(5, 3), "w1"), b.param(f32(2, 5), "w2")
    h = b.op("hardswish", [b.op("linear", [x, w1])])
    y = b.op("linear", [h, w2])
    b.output(y, b.op("sum", [h], {"axes": (1,)}))
    g = b.build()
    out = optimise(g)
    assert body_summary(out) == [("fused_gemm", ["linear", "hardswish"])]
    assert [n.op for n in out.nodes] == ["fused_gemm", "linear", "sum"]
    assert_same(g, out)


def test_three_layers_fuse_into_one_mlp_with_trailing_epilogue() -> None:
    b = Builder("forward")
    x = b.input(f32("N", 4), "x")
    ws = [b.param(f32(o, i), f"w{k}") for k, (o, i) in enumerate([(8, 4), (8, 8), (3, 8)])]
    bias = b.param(f32(8), "b")
    v = b.op("relu", [b.op("linear", [x, ws[0], bias])])
    v = b.op("hardswish", [b.op("add", [b.op("linear", [v, ws[1]]), bias])])
    b.output(b.op("sigmoid", [b.op("linear", [v, ws[2]])]))
    g = b.build()
    out = optimise(g)
    assert body_summary(out) == [
        ("fused_mlp", ["linear", "relu", "linear", "add", "hardswish", "linear", "sigmoid"])
    ]
    assert_same(g, out)


# ------------------------------------------------------------------------------ backward graphs


def backward_graph() -> Graph:
    """The backward of layer 1 of the seed model, as autodiff writes it."""
    b = Builder("backward")
    dy = b.input(f32("N", 2), "dy")
    z = b.input(f32("N", 5), "z")
    x = b.input(f32("N", 3), "x")
    w1, w2 = b.param(f32(5, 3), "fc1.weight"), b.param(f32(2, 5), "fc2.weight")
    dz = b.op("hardswish_grad", [z, b.op("matmul", [dy, w2])])
    db = b.op("sum", [dz], {"axes": (0,)})
    dw = b.op("matmul", [b.op("transpose", [dz], {"perm": (1, 0)}), x])
    dx = b.op("matmul", [dz, w1])
    b.output(dx, dw, db)
    return b.build()


def test_backward_gradient_gemm_gets_its_colsum(golden) -> None:
    g = backward_graph()
    out = optimise(g)
    assert body_summary(out) == [
        ("fused_gemm", ["matmul", "hardswish_grad", "sum"]),
        ("fused_gemm", ["transpose", "matmul"]),
    ]
    first = out.nodes[0]
    assert [str(r.type) for r in first.results] == ["f32[N,5]", "f32[5]"]  # dZ and db
    assert "transpose" not in [n.op for n in out.nodes]  # never materialised
    assert_same(g, out)
    golden("opt_backward.lir", format_graph(out))


def test_transpose_read_elsewhere_is_not_absorbed() -> None:
    b = Builder("g")
    a, c = b.input(f32(4, 3), "a"), b.input(f32(4, 5), "c")
    t = b.op("transpose", [a], {"perm": (1, 0)})
    b.output(b.op("matmul", [t, c]), t)
    out = optimise(b.build())
    assert body_summary(out) == []


def test_matmul_plus_vector_is_a_bias_epilogue_and_row_operands_are_supported() -> None:
    b = Builder("g")
    x, w = b.input(f32("N", 3), "x"), b.param(f32(3, 4), "w")
    bias, row, full = b.param(f32(4), "b"), b.input(f32("N", 1), "r"), b.input(f32("N", 4), "f")
    y = b.op("add", [b.op("matmul", [x, w]), bias])
    y = b.op("clip", [b.op("sub", [row, y])], {"min": -1.0, "max": 2.0})
    y = b.op("div", [b.op("mul", [y, full]), b.constant(3.0)])
    b.output(b.op("relu6", [y]))
    g = b.build()
    out = optimise(g)
    assert body_summary(out) == [
        ("fused_gemm", ["matmul", "add", "sub", "clip", "mul", "div", "relu6"])
    ]
    assert_same(g, out)


def test_operand_the_epilogue_cannot_index_ends_the_chain() -> None:
    b = Builder("g")
    x, w = b.input(f32("N", 3), "x"), b.param(f32(4, 3), "w")
    odd = b.input(f32(2, "N", 4), "odd")  # broadcasts the result up a rank: not one step
    y = b.op("relu", [b.op("linear", [x, w])])
    b.output(b.op("add", [y, odd]))
    out = optimise(b.build())
    assert body_summary(out) == [("fused_gemm", ["linear", "relu"])]
    assert [n.op for n in out.nodes] == ["fused_gemm", "add"]


# ------------------------------------------------------------------------------ elementwise


def test_elementwise_chain_with_shared_and_output_values() -> None:
    b = Builder("g")
    x, y = b.input(f32("N", 4), "x"), b.input(f32(4), "y")
    a = b.op("exp", [x])
    c = b.op("mul", [a, y])
    d = b.op("add", [a, c])  # a read twice inside the group: no materialisation needed
    e = b.op("tanh", [d])
    b.output(e, c)  # c is an output: it stays a result of the fused node
    g = b.build()
    out = optimise(g)
    assert body_summary(out) == [("fused_elementwise", ["exp", "mul", "add", "tanh"])]
    assert len(out.nodes[0].results) == 2
    assert_same(g, out)


def test_elementwise_fusion_stays_convex() -> None:
    # softmax-like: sub reads exp(x) directly and through a reduction; fusing exp with sub
    # would make the fused node depend on its own result through the sum
    b = Builder("g")
    x = b.input(f32("N", 4), "x")
    a = b.op("exp", [b.op("neg", [x])])
    s = b.op("sum", [a], {"axes": (1,), "keepdims": True})
    b.output(b.op("relu", [b.op("sub", [a, s])]))
    g = b.build()
    out = optimise(g)
    assert body_summary(out) == [
        ("fused_elementwise", ["neg", "exp"]),
        ("fused_elementwise", ["sub", "relu"]),
    ]
    assert_same(g, out)


def test_different_shapes_do_not_share_a_loop() -> None:
    b = Builder("g")
    x, v = b.input(f32("N", 4), "x"), b.input(f32(4), "v")
    w = b.op("exp", [b.op("neg", [v])])  # [4]
    b.output(b.op("add", [b.op("relu", [x]), w]))  # [N, 4]
    out = optimise(b.build())
    assert sorted(body_summary(out)) == [
        ("fused_elementwise", ["neg", "exp"]),
        ("fused_elementwise", ["relu", "add"]),
    ]


# ------------------------------------------------------------------------------ random MLPs

ACTS = ["hardswish", "relu", "relu6", "hardsigmoid", "sigmoid", "tanh"]


@st.composite
def mlps(draw: st.DrawFn) -> tuple[Graph, list[tuple[str, list[str]]]]:
    """A random MLP and the fused nodes expected from it: the layers split into runs wherever
    a hidden value is materialised (returned, or read again by a `mul`); a run of several
    layers is one fused_mlp, a lone layer with activations one fused_gemm."""
    widths = draw(st.lists(st.integers(1, 6), min_size=3, max_size=5))
    b = Builder("forward")
    v = b.input(f32("N", widths[0]), "x")
    extra = []
    runs: list[list[str]] = [[]]
    for k, (i, o) in enumerate(itertools.pairwise(widths)):
        w = b.param(f32(o, i), f"fc{k}.weight")
        args = [v, w, b.param(f32(o), f"fc{k}.bias")] if draw(st.booleans()) else [v, w]
        v = b.op("linear", args)
        runs[-1].append("linear")
        if k == len(widths) - 2:
            break
        for act in draw(st.lists(st.sampled_from(ACTS), min_size=1, max_size=2)):
            v = b.op(act, [v])
            runs[-1].append(act)
        what = draw(st.sampled_from(["none", "none", "output", "shared"]))
        if what == "output":
            extra.append(v)
        elif what == "shared":
            extra.append(b.op("mul", [v, v]))
        if what != "none":
            runs.append([])
    b.output(v, *extra)
    expected = []
    for run in runs:
        layers = run.count("linear")
        if layers >= 2:
            expected.append(("fused_mlp", run))
        elif len(run) > 1:
            expected.append(("fused_gemm", run))
    return b.build(), expected


@settings(
    derandomize=True,
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mlps(), st.integers(0, 2**16))
def test_random_mlps_fuse_exactly(
    case: tuple[Graph, list[tuple[str, list[str]]]], seed: int
) -> None:
    g, expected = case
    out = optimise(g)
    assert body_summary(out) == expected, format_graph(out)
    assert_same(g, out, seed)


def test_autodiff_graphs_of_the_seed_model(golden) -> None:
    from lucid.ir.autodiff import grad

    r = grad(seed_graph())
    fwd = optimise(r.forward)
    # the augmented forward saves Z and H for backward: both materialised, nothing fuses
    assert body_summary(fwd) == []
    bwd = optimise(r.backward)
    assert body_summary(bwd) == [
        ("fused_gemm", ["transpose", "matmul"]),  # dW2 = dY^T @ H
        ("fused_gemm", ["matmul", "hardswish_grad", "sum"]),  # dZ and db1 = colsum(dZ)
        ("fused_gemm", ["transpose", "matmul"]),  # dW1 = dZ^T @ x
    ]
    assert_same(r.backward, bwd)
    golden("opt_seed_backward.lir", format_graph(bwd))


def test_cli_opt_runs_the_fusion_passes(tmp_path, capsys) -> None:
    from lucid.cli import main

    path = tmp_path / "seed.lir"
    path.write_text(format_graph(seed_graph()))
    assert main(["opt", str(path), "--print-after-all"]) == 0
    captured = capsys.readouterr()
    out = captured.err + captured.out  # the per-pass dumps go to stderr, the result to stdout
    assert out.index("IR after fuse_mlp") < out.index("IR after fuse_elementwise")
    assert "fused_mlp" in out.split("IR after fuse_mlp")[1]
    assert "fused_mlp" not in out.split("IR after fuse_mlp")[0]
