"""Kernels laid out for speed that must keep their results: batch_matmul's entries shared out
between threads (each GEMM single-threaded) give the same bits as one thread, for static and
symbolic batch dims and a broadcast operand, and softmax rows and moments groups likewise;
column sums give each column's in-order sum."""

from __future__ import annotations

import numpy as np
import pytest

from lucid.ir import Builder, DType, TensorType
from tests.codegen.test_c_harness import compile_graph

pytestmark = pytest.mark.needs_cc


def _graph(lead: tuple[object, ...], broadcast_b: bool, trans_b: bool):  # type: ignore[no-untyped-def]
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, (*lead, 7, 5)), "x")
    b_shape = (5, 6) if not trans_b else (6, 5)
    w = b.input(TensorType(DType.F32, b_shape if broadcast_b else (*lead, *b_shape)), "w")
    b.output(b.op("batch_matmul", [x, w], {"trans_a": False, "trans_b": trans_b}))
    return b.build()


@pytest.mark.parametrize(
    ("lead", "broadcast_b", "trans_b"),
    [((4, 3), False, False), (("N", 3), False, True), (("N", 2), True, False)],
)
def test_entries_split_between_threads_equal_one_thread(
    lead: tuple[object, ...], broadcast_b: bool, trans_b: bool
) -> None:
    g = _graph(lead, broadcast_b, trans_b)
    mod = compile_graph(g, threads_min_work=1)  # every entry is worth a thread
    rng = np.random.default_rng(0)
    for n in (5, 1) if "N" in lead else (None,):
        shape = tuple(n if d == "N" else d for d in lead)
        x = rng.standard_normal((*shape, 7, 5)).astype(np.float32)
        w_mat = (5, 6) if not trans_b else (6, 5)
        w = rng.standard_normal(w_mat if broadcast_b else (*shape, *w_mat)).astype(np.float32)
        want = x.astype(np.float64) @ (np.swapaxes(w, -1, -2) if trans_b else w)
        one = mod.run([x, w], nthreads=1)[0]
        for threads in (2, 3):
            np.testing.assert_array_equal(mod.run([x, w], nthreads=threads)[0], one)
        np.testing.assert_allclose(one, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["sum", "mean", "sum_to"])
def test_column_sums_read_rows_in_order_and_add_each_column_in_row_order(op: str) -> None:
    """Reductions over leading axes take the column path (reduce_columns.c.j2); every column is
    the float64 sum of its rows in order, rounded once, as a loop per column would give."""
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 5, 7)), "x")
    attrs = {"shape": (7,)} if op == "sum_to" else {"axes": (0, 1)}
    b.output(b.op(op, [x], attrs))
    mod = compile_graph(b.build())
    assert "summed over its rows" in mod.program.source
    for n in (3, 1):
        xs = np.random.default_rng(n).standard_normal((n, 5, 7)).astype(np.float32)
        in_order = np.cumsum(xs.reshape(-1, 7).astype(np.float64), axis=0)
        total = np.float32(in_order[-1])
        want = total / np.float32(5 * n) if op == "mean" else total
        np.testing.assert_array_equal(mod.run([xs])[0], want)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [2, 1])
def test_softmax_rows_split_between_threads_equal_one_thread(op: str, dim: int) -> None:
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 6, 9)), "x")
    b.output(b.op(op, [x], {"dim": dim}))
    mod = compile_graph(b.build(), threads_min_work=1)  # every row is worth a thread
    for n in (5, 1):
        xs = (np.random.default_rng(n).standard_normal((n, 6, 9)) * 4).astype(np.float32)
        one = mod.run([xs], nthreads=1)[0]
        for threads in (2, 3):
            np.testing.assert_array_equal(mod.run([xs], nthreads=threads)[0], one)
        d = xs.astype(np.float64)
        shifted = d - d.max(axis=dim, keepdims=True)
        log = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
        np.testing.assert_allclose(
            one, log if op == "log_softmax" else np.exp(log), rtol=2e-6, atol=1e-6
        )


@pytest.mark.parametrize("axes", [(2,), (0, 2), (1, 2)])
def test_moments_groups_split_between_threads_equal_one_thread(axes: tuple[int, ...]) -> None:
    """LayerNorm's per-row statistics (axes (2,)), BatchNorm's per-channel ones (0, 2)."""
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 6, 300)), "x")
    b.output(b.op("moments", [x], {"axes": axes}))
    mod = compile_graph(b.build(), threads_min_work=1)
    for n in (4, 1):
        xs = (np.random.default_rng(n).standard_normal((n, 6, 300)) + 3).astype(np.float32)
        one = mod.run([xs], nthreads=1)[0]
        for threads in (2, 3):
            np.testing.assert_array_equal(mod.run([xs], nthreads=threads)[0], one)
        d = xs.astype(np.float64)
        want = np.stack([d.mean(axis=axes, keepdims=True), d.var(axis=axes, keepdims=True)])
        np.testing.assert_allclose(one, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("sum_to", {"shape": (6, 1, 1)}),  # BatchNorm's per-channel sums over N, H, W
        ("mean", {"axes": (2, 3)}),  # global average pooling
        ("max", {"axes": (1,)}),
        ("argmax", {"axis": 3}),
    ],
)
def test_reductions_split_kept_axes_between_threads_equal_one_thread(op: str, attrs) -> None:  # type: ignore[no-untyped-def]
    """A reduction's first kept axis longer than 1 splits over threads (loop_split.c.j2); each
    output is accumulated by one thread in one order, so any thread count gives the same bits."""
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, ("N", 6, 5, 7)), "x")
    b.output(b.op(op, [x], attrs))
    mod = compile_graph(b.build(), threads_min_work=1)
    assert "_range(" in mod.program.source
    for n in (4, 1):
        xs = np.random.default_rng(n).standard_normal((n, 6, 5, 7)).astype(np.float32)
        one = mod.run([xs], nthreads=1)[0]
        for threads in (2, 3):
            np.testing.assert_array_equal(mod.run([xs], nthreads=threads)[0], one)
        d = xs.astype(np.float64)
        want = {
            "sum_to": d.sum(axis=(0, 2, 3), keepdims=True)[0],
            "mean": d.mean(axis=(2, 3)),
            "max": d.max(axis=1),
            "argmax": d.argmax(axis=3),
        }[op]
        np.testing.assert_allclose(one, want, rtol=1e-6, atol=1e-6)
