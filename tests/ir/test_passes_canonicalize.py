"""Canonicalization: each rule fires when legal (positive) and stays put when not (negative)."""

from __future__ import annotations

import numpy as np
import pytest

from lucid.ir import Builder, DType, Graph, TensorType, interpret
from lucid.ir.passes.canonicalize import canonicalize
from tests.ir.graphs import f32
from tests.ir.test_passes import ops, run_both

XN3 = f32("N", 3)


def unary(op_chain, in_type: TensorType = XN3) -> Graph:  # type: ignore[no-untyped-def]
    """x -> op_chain(builder, x) -> output."""
    b = Builder()
    x = b.input(in_type, "x")
    b.output(op_chain(b, x))
    return b.build()


def check(graph: Graph, expected_ops: list[str]) -> Graph:
    out = canonicalize(graph)
    assert ops(out) == expected_ops
    run_both(graph, out)
    return out


# ---------------------------------------------------------------- x * 1, x / 1, additive identities


@pytest.mark.parametrize("one", [1.0, [1.0, 1.0, 1.0]])
def test_mul_by_one_is_removed(one) -> None:  # type: ignore[no-untyped-def]
    out = check(unary(lambda b, x: b.op("mul", [b.constant(one), x])), [])
    assert out.outputs == out.inputs
    check(unary(lambda b, x: b.op("div", [x, b.constant(one)])), [])


def test_mul_by_one_that_broadcasts_x_is_kept() -> None:
    # x [3] * ones [2, 3] has shape [2, 3]: not x
    g = unary(lambda b, x: b.op("mul", [x, b.constant([[1.0] * 3] * 2)]), f32(3))
    check(g, ["constant", "mul"])


@pytest.mark.filterwarnings("ignore:invalid value")
def test_mul_by_zero_is_not_folded_to_zero() -> None:
    g = unary(lambda b, x: b.op("mul", [x, b.constant(0.0)]), f32(3))
    check(g, ["constant", "mul"])
    nan_in = np.array([np.nan, np.inf, -1.0], np.float32)
    (y,) = interpret(canonicalize(g), nan_in)
    assert np.isnan(y[0]) and np.isnan(y[1]) and np.signbit(y[2])


def test_x_plus_zero_is_kept_for_floats_but_minus_zero_forms_go() -> None:
    check(unary(lambda b, x: b.op("add", [x, b.constant(0.0)])), ["constant", "add"])
    check(unary(lambda b, x: b.op("add", [b.constant(0.0), x])), ["constant", "add"])
    check(unary(lambda b, x: b.op("add", [x, b.constant(-0.0)])), [])
    check(unary(lambda b, x: b.op("sub", [x, b.constant(0.0)])), [])
    check(unary(lambda b, x: b.op("sub", [x, b.constant(-0.0)])), ["constant", "sub"])
    # the reason: -0.0 + 0.0 is +0.0
    g = unary(lambda b, x: b.op("add", [x, b.constant(0.0)]), f32(1))
    (y,) = interpret(canonicalize(g), np.array([-0.0], np.float32))
    assert not np.signbit(y[0])


def test_integer_plus_zero_goes() -> None:
    i64 = TensorType(DType.I64, (3,))
    check(unary(lambda b, x: b.op("add", [x, b.constant(0, DType.I64)]), i64), [])


# ---------------------------------------------------------------- neg, transpose, reshape, no-ops


def test_double_negation() -> None:
    check(unary(lambda b, x: b.op("neg", [b.op("neg", [x])])), [])
    check(unary(lambda b, x: b.op("neg", [b.op("neg", [b.op("neg", [x])])])), ["neg"])


def test_double_negation_keeps_an_inner_output() -> None:
    b = Builder()
    x = b.input(f32(3), "x")
    inner = b.op("neg", [x])
    b.output(inner, b.op("neg", [inner]))
    out = check(b.build(), ["neg"])
    assert out.outputs == (out.nodes[0].result, out.inputs[0])


def test_transposes_compose_and_identity_goes() -> None:
    g3 = f32(2, 3, 4)
    check(unary(lambda b, x: b.op("transpose", [b.op("transpose", [x])]), g3), [])
    out = check(
        unary(
            lambda b, x: b.op(
                "transpose", [b.op("transpose", [x], {"perm": (1, 2, 0)})], {"perm": (1, 0, 2)}
            ),
            g3,
        ),
        ["transpose"],
    )
    assert out.nodes[0].attrs["perm"] == (2, 1, 0)
    check(unary(lambda b, x: b.op("transpose", [x], {"perm": (0, 1, 2)}), g3), [])


def test_single_transpose_is_kept() -> None:
    check(unary(lambda b, x: b.op("transpose", [x]), f32(2, 3)), ["transpose"])


def test_reshapes_merge_and_same_shape_goes() -> None:
    out = check(
        unary(
            lambda b, x: b.op(
                "reshape", [b.op("reshape", [x], {"shape": (6,)})], {"shape": (3, 2)}
            ),
            f32(2, 3),
        ),
        ["reshape"],
    )
    assert out.nodes[0].attrs["shape"] == (3, 2)
    check(
        unary(
            lambda b, x: b.op(
                "reshape", [b.op("reshape", [x], {"shape": (6,)})], {"shape": (2, 3)}
            ),
            f32(2, 3),
        ),
        [],
    )
    check(unary(lambda b, x: b.op("reshape", [x], {"shape": (-1, 3)})), [])  # f32[N,3] stays


def test_reshape_that_changes_shape_is_kept() -> None:
    check(unary(lambda b, x: b.op("reshape", [x], {"shape": (3, 2)}), f32(2, 3)), ["reshape"])


def test_inner_reshape_used_twice_survives_the_merge() -> None:
    b = Builder()
    x = b.input(f32(2, 3), "x")
    flat = b.op("reshape", [x], {"shape": (6,)})
    b.output(flat, b.op("reshape", [flat], {"shape": (3, 2)}))
    out = check(b.build(), ["reshape", "reshape"])
    assert all(n.inputs[0] is out.inputs[0] for n in out.nodes)  # both read x directly


def test_noop_cast_and_broadcast_go_real_ones_stay() -> None:
    check(unary(lambda b, x: b.op("cast", [x], {"dtype": DType.F32})), [])
    check(unary(lambda b, x: b.op("cast", [x], {"dtype": DType.F64})), ["cast"])
    check(unary(lambda b, x: b.op("broadcast", [x], {"shape": ("N", 3)})), [])
    check(unary(lambda b, x: b.op("broadcast", [x], {"shape": (2, 3)}), f32(3)), ["broadcast"])


# ---------------------------------------------------------------- matmul + transposed weight + bias


def gemm(
    *, bias_shape: tuple[int | str, ...] = (5,), perm=(1, 0), also_output=False, bias_first=False
) -> Graph:  # type: ignore[no-untyped-def]
    b = Builder()
    x = b.input(f32("N", 3), "x")
    w = b.param(f32(5, 3) if perm == (1, 0) else f32(3, 5), "fc.weight")
    bias = b.param(f32(*bias_shape), "fc.bias")
    wt = b.op("transpose", [w], {"perm": perm})
    m = b.op("matmul", [x, wt])
    y = b.op("add", [bias, m] if bias_first else [m, bias])
    b.output(*([y, m] if also_output else [y]))
    return b.build()


@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_transpose_plus_bias_becomes_linear(bias_first: bool) -> None:
    out = check(gemm(bias_first=bias_first), ["linear"])
    assert out.nodes[0].inputs == (out.inputs[0], *out.params)


def test_no_linear_when_the_matmul_is_also_an_output() -> None:
    check(gemm(also_output=True), ["transpose", "matmul", "add"])


def test_no_linear_when_the_matmul_is_used_twice() -> None:
    b = Builder()
    x = b.input(f32("N", 3), "x")
    w = b.param(f32(5, 3), "w")
    bias = b.param(f32(5), "b")
    m = b.op("matmul", [x, b.op("transpose", [w])])
    b.output(b.op("add", [m, bias]), b.op("relu", [m]))
    check(b.build(), ["transpose", "matmul", "add", "relu"])


def test_no_linear_when_bias_is_not_a_row_vector() -> None:
    check(gemm(bias_shape=("N", 5)), ["transpose", "matmul", "add"])
    check(gemm(bias_shape=(1, 5)), ["transpose", "matmul", "add"])


def test_no_linear_without_a_transposed_weight() -> None:
    b = Builder()
    x = b.input(f32("N", 3), "x")
    w = b.param(f32(3, 5), "w")
    b.output(b.op("add", [b.op("matmul", [x, w]), b.param(f32(5), "b")]))
    check(b.build(), ["matmul", "add"])


def test_rules_chain_within_one_call() -> None:
    # neg(neg(matmul(x, transpose(transpose(transpose(w)))) * 1)) + b  ->  linear(x, w, b)
    def chain(b: Builder, x):  # type: ignore[no-untyped-def]
        w = b.param(f32(5, 3), "w")
        wt = b.op("transpose", [b.op("transpose", [b.op("transpose", [w])])])
        m = b.op("mul", [b.op("matmul", [x, wt]), b.constant(1.0)])
        return b.op("add", [b.op("neg", [b.op("neg", [m])]), b.param(f32(5), "b")])

    check(unary(chain), ["linear"])


def test_no_linear_when_the_matmul_is_read_twice_through_an_alias() -> None:
    # p = matmul * 1 is the matmul itself; p feeds the add and a relu: the GEMM must stay one
    b = Builder()
    x = b.input(f32("N", 3), "x")
    w = b.param(f32(5, 3), "w")
    p = b.op("mul", [b.op("matmul", [x, b.op("transpose", [w])]), b.constant(1.0)])
    b.output(b.op("add", [p, b.param(f32(5), "b")]), b.op("relu", [p]))
    check(b.build(), ["transpose", "matmul", "add", "relu"])


# ---------------------------------------------------------------- the backward of a split: joined


def split_backward(ranges, width: int = 6, order=None, dtype: DType = DType.F32) -> Graph:  # type: ignore[no-untyped-def]
    """One input g_k [N, stop - start] per range, slice_grad into [N, width] at the range,
    summed in `order` (default: the ranges' order), as autodiff writes the backward of
    x[:, a:b], x[:, b:c], ... all used."""
    b = Builder()
    grads = []
    for k, (start, stop) in enumerate(ranges):
        g = b.input(TensorType(dtype, ("N", stop - start)), f"g{k}")
        attrs = {
            "shape": ("N", width),
            "axes": (1,),
            "starts": (start,),
            "stops": (stop,),
            "steps": (1,),
        }
        grads.append(b.op("slice_grad", [g], attrs))
    order = range(len(grads)) if order is None else order
    total = None
    for k in order:
        total = grads[k] if total is None else b.op("add", [total, grads[k]])
    b.output(total)
    return b.build()


def test_the_backward_of_a_split_becomes_one_concat_of_the_parts() -> None:
    # q, k, v = x[:, 0:2], x[:, 2:5], x[:, 5:6]; their grads summed v + k + q, as autodiff does
    g = split_backward([(0, 2), (2, 5), (5, 6)], order=[2, 1, 0])
    out = check(g, ["constant", "add", "constant", "add", "constant", "add", "concat"])
    (concat,) = [n for n in out.nodes if n.op == "concat"]
    # the parts in axis order (q's first), each + 0.0, the + 0.0 reading the graph's input
    assert [out.inputs.index(n.inputs[0]) for n in out.nodes if n.op == "add"] == [1, 2, 0]
    assert concat.result is out.outputs[0] and concat.attrs["axis"] == 1
    plus_zero = {n.result: out.inputs.index(n.inputs[0]) for n in out.nodes if n.op == "add"}
    assert [plus_zero[v] for v in concat.inputs] == [0, 1, 2]


def test_the_joined_split_keeps_the_sign_of_zero_and_non_finite_values_of_the_sum() -> None:
    # slice_grad(g) + (the other part's zeros) turns -0.0 into +0.0: the join must as well
    g = split_backward([(0, 3), (3, 6)])
    parts = (
        np.array([[-0.0, np.nan, np.inf]] * 2, np.float32),
        np.array([[-np.inf, -0.0, 1.5]] * 2, np.float32),
    )
    want, got = interpret(g, *parts)[0], interpret(canonicalize(g), *parts)[0]
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want)) and not np.signbit(got[0, 0])


def test_a_split_that_covers_part_of_the_axis_keeps_one_slice_grad_of_the_concat() -> None:
    g = split_backward([(1, 3), (3, 4)], width=6)
    check(g, ["constant", "add", "constant", "add", "concat", "slice_grad"])


def test_integer_parts_are_joined_without_the_plus_zero() -> None:
    check(split_backward([(0, 2), (2, 6)], dtype=DType.I64), ["concat"])


@pytest.mark.parametrize("ranges", [[(0, 2), (3, 6)], [(0, 4), (2, 6)]], ids=["gap", "overlap"])
def test_parts_that_are_not_adjacent_are_not_joined(ranges) -> None:  # type: ignore[no-untyped-def]
    check(split_backward(ranges), ["slice_grad", "slice_grad", "add"])


def test_a_part_read_twice_is_not_joined() -> None:
    # the slice_grad also goes out: joining would keep it and add a concat
    g = split_backward([(0, 2), (2, 6)])
    b = Builder()
    x0, x1 = b.input(f32("N", 2), "g0"), b.input(f32("N", 4), "g1")
    common = {"shape": ("N", 6), "axes": (1,), "steps": (1,)}
    s0 = b.op("slice_grad", [x0], {**common, "starts": (0,), "stops": (2,)})
    s1 = b.op("slice_grad", [x1], {**common, "starts": (2,), "stops": (6,)})
    b.output(b.op("add", [s0, s1]), s0)
    assert ops(canonicalize(g)) != ops(g)  # the same sum without the second reader joins
    check(b.build(), ["slice_grad", "slice_grad", "add"])


def test_parts_on_different_axes_are_not_joined() -> None:
    b = Builder()
    x0, x1 = b.input(f32(2, 6), "g0"), b.input(f32(4, 2), "g1")
    s0 = b.op(
        "slice_grad",
        [x0],
        {"shape": (4, 6), "axes": (0,), "starts": (0,), "stops": (2,), "steps": (1,)},
    )
    s1 = b.op(
        "slice_grad",
        [x1],
        {"shape": (4, 6), "axes": (1,), "starts": (2,), "stops": (4,), "steps": (1,)},
    )
    b.output(b.op("add", [s0, s1]))
    check(b.build(), ["slice_grad", "slice_grad", "add"])
