"""C lowerings of fused nodes: goldens, one kernel per region, and fused == unfused == interpreter."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lucid.codegen import CodegenOptions, emit_c
from lucid.codegen.fused import rows_per_tile
from lucid.codegen.gemm import CacheSizes
from lucid.ir import Builder, Graph, interpret
from lucid.ir.passes import default_pipeline, run_passes
from lucid.ir.passes.fusion_rules import body_summary
from tests.codegen.test_c_harness import compile_graph
from tests.ir.graphs import f32
from tests.ir.test_fusion import (
    backward_graph,
    mlps,
    random_arrays,
    training_forward,
)
from tests.models import seed_graph

FUSED = default_pipeline()
UNFUSED = default_pipeline(fusion=False)


def elide_gemms(source: str) -> str:
    """The source with each GEMM fragment (golden-tested by the GEMM generator's tests) cut."""
    return re.sub(
        r"/\* begin GEMM (\w+) .*?/\* end GEMM \1 \*/",
        r"/* GEMM \1: see lucid/codegen/gemm/ */",
        source,
        flags=re.DOTALL,
    )


def kernel_functions(source: str) -> list[str]:
    """Names of the per-node kernels (`static __attribute__((noinline)) int kN_op(`), GEMM
    internals excluded."""
    return re.findall(
        r"^static __attribute__\(\(noinline\)\) int (k\d+_[a-z_]+)\(",
        elide_gemms(source),
        flags=re.MULTILINE,
    )


def program(graph: Graph) -> str:
    """The C of the optimised graph, with machine-independent choices."""
    return emit_c(run_passes(graph, FUSED), CodegenOptions(isa="avx2", caches=CacheSizes())).source


def test_seed_c_golden_one_mlp_kernel_and_no_hidden_buffer(golden) -> None:
    opt = run_passes(seed_graph(), FUSED)
    prog = emit_c(opt, CodegenOptions(isa="avx2", caches=CacheSizes()))
    assert kernel_functions(prog.source) == ["k0_fused_mlp"]
    # the hidden [N, 5] activation never gets a buffer: not in the arena (no arena at all),
    # and the tile buffer is sized by the tile's rows, never by the batch
    assert prog.arena_slots == ()
    assert "malloc((size_t)job->tile * 5 * 1" in prog.source
    assert not re.search(r"alloc\([^;]*batch", elide_gemms(prog.source))
    # each kernel starts with the IR it implements
    assert "/* %0 = fused_mlp %x, %fc1.weight" in prog.source
    golden("fused_seed.c", elide_gemms(prog.source))


def test_backward_c_golden_colsum_and_transposed_gemm(golden) -> None:
    src = program(backward_graph())
    assert kernel_functions(src) == ["k0_fused_gemm", "k1_fused_gemm", "k2_matmul"]
    assert "y1 = column sums of y0" in src
    assert "x0^T @ x1" in src  # dW = transpose(dZ) @ x read in place
    golden("fused_backward.c", elide_gemms(src))


def elementwise_graph() -> Graph:
    b = Builder("g")
    x, y = b.input(f32("N", 4), "x"), b.input(f32(4), "y")
    a = b.op("exp", [b.op("neg", [x])])
    c = b.op("mul", [a, y])
    b.output(b.op("tanh", [b.op("add", [a, c])]), c)
    return b.build()


def test_elementwise_c_golden_one_loop(golden) -> None:
    src = program(elementwise_graph())
    assert kernel_functions(src) == ["k0_fused_elementwise"]
    body = src[src.index("int k0_fused_elementwise_range(") :]
    body = body[: body.index("\n}\n")]
    # one loop nest over [N, 4] (y broadcasts along N), every body op inside it, its rows
    # split across threads
    assert body.count("for (") == 2 and "for (int64_t i0 = begin; i0 < end; ++i0)" in body
    assert all(f in body for f in ("-a0", "expf(", "tanhf(", "y0[", "y1["))
    golden("fused_elementwise.c", elide_gemms(src))


def run_c(graph: Graph, pipeline: list[str], arrays: list[np.ndarray], nthreads: int = 1):
    """Optimise `graph` with `pipeline`, compile, run."""
    return compile_graph(run_passes(graph, pipeline)).run(arrays, nthreads=nthreads)


CASES = {
    "seed": seed_graph,
    "training_forward": training_forward,
    "backward": backward_graph,
    "elementwise": elementwise_graph,
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("batch", [1, 37, 1000])
@pytest.mark.needs_cc
def test_fused_equals_unfused_bit_for_bit(name: str, batch: int) -> None:
    g = CASES[name]()
    arrays = random_arrays(g, batch, batch=batch)
    fused = run_c(g, FUSED, arrays)
    unfused = run_c(g, UNFUSED, arrays)
    ref = interpret(g, *arrays)
    for f, u, r in zip(fused, unfused, ref, strict=True):
        if name == "backward" and f.ndim == 1:
            # the GEMM's column sum adds in another order than the `sum` kernel
            np.testing.assert_allclose(f, u, rtol=1e-5, atol=1e-4 * np.sqrt(batch))
        else:
            # same GEMM kernel (same blocking, same K order) + the same scalar C per element
            np.testing.assert_array_equal(f, u)
        np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-4 * np.sqrt(batch))


@pytest.mark.parametrize("batch", ["N", 1000])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_mlp_tiles_and_threads_do_not_change_results(batch: int | str) -> None:
    # hidden 200 wide: with a small L2 a tile is at most 40 rows, so batch 1000 walks 25 tiles
    # split over 1 and 3 threads, and batch 50 two tiles in turn with threaded GEMMs; every element must come out identical. A static batch
    # still gives the per-tile GEMMs a runtime M (a tile is not the batch).
    b = Builder("forward")
    x = b.input(f32(batch, 16), "x")
    w1, b1 = b.param(f32(200, 16), "w1"), b.param(f32(200), "b1")
    w2 = b.param(f32(8, 200), "w2")
    h = b.op("hardswish", [b.op("linear", [x, w1, b1])])
    b.output(b.op("relu", [b.op("linear", [h, w2])]))
    g = b.build()
    opt = run_passes(g, FUSED)
    assert body_summary(opt) == [("fused_mlp", ["linear", "hardswish", "linear", "relu"])]
    small = CacheSizes(l2=64 * 1024)
    assert rows_per_tile(200, 1, 4, small.l2, 6) == 40
    mod = compile_graph(opt, caches=small, isa="avx2", threads_min_work=1)
    unfused = compile_graph(run_passes(g, UNFUSED), caches=small, isa="avx2")
    for rows in [1000] if batch == 1000 else [1000, 50, 1]:
        arrays = random_arrays(g, 3, batch=rows)
        one = mod.run(arrays, nthreads=1)
        three = mod.run(arrays, nthreads=3)
        np.testing.assert_array_equal(one[0], three[0])
        np.testing.assert_array_equal(one[0], unfused.run(arrays)[0])


@settings(
    derandomize=True,
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mlps(), st.integers(1, 300))
@pytest.mark.needs_cc
@pytest.mark.slow
def test_random_mlps_compiled_fused_equals_unfused_and_interpreter(case, batch: int) -> None:
    g, expected = case
    assert body_summary(run_passes(g, FUSED)) == expected
    arrays = random_arrays(g, batch, batch=batch)
    fused = run_c(g, FUSED, arrays, nthreads=2)
    unfused = run_c(g, UNFUSED, arrays, nthreads=2)
    for f, u, r in zip(fused, unfused, interpret(g, *arrays), strict=True):
        np.testing.assert_array_equal(f, u)
        np.testing.assert_allclose(f, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pipeline", ["none", "default"])
@pytest.mark.parametrize("lead", ["N", 37, 1])
def test_broadcast_nests_split_their_outer_axis_bit_for_bit(pipeline: str, lead: str | int) -> None:
    """An elementwise nest with broadcast operands (one loop per axis: LayerNorm's apply, a
    masked `where`) splits its outermost axis longer than 1 across threads (the rows, or a
    batch of one's channels): every thread count gives the one-thread result bit for bit, with
    fewer rows than threads and uneven ranges; and NumPy's within rounding. A static nest too
    small to pay for a thread stays on one."""
    b = Builder("g")
    x = b.input(f32(lead, 12, 5), "x")
    mean, scale = b.input(f32(lead, 12, 1), "mean"), b.input(f32(5), "scale")
    centred = b.op("sub", [x, mean])
    b.output(b.op("mul", [b.op("tanh", [centred]), scale]), b.op("exp", [centred]))
    graph = b.build()
    passes = [] if pipeline == "none" else default_pipeline()
    mod = compile_graph(run_passes(graph, passes), threads_min_work=16)
    assert "the outermost loop longer than 1, [0, n), split" in mod.program.source
    rng = np.random.default_rng(1)
    for rows in (1, 5, 37, 300) if lead == "N" else (lead,):
        arrays = [
            rng.standard_normal(shape).astype(np.float32)
            for shape in ((rows, 12, 5), (rows, 12, 1), (5,))
        ]
        want = mod.run(arrays, nthreads=1)
        for threads in (2, 3, 8, 13):
            for got, one in zip(mod.run(arrays, nthreads=threads), want):
                np.testing.assert_array_equal(got, one)
        for got, ref in zip(want, interpret(graph, *arrays)):
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=3e-7)
    small = compile_graph(run_passes(graph, passes))  # 37 * 60 elements: below the default
    assert ("the outermost loop longer than 1" in small.program.source) == (lead == "N")


@pytest.mark.parametrize("lead", ["N", 1])
def test_copy_nests_split_their_outer_axis(lead: str | int) -> None:
    """Transposes, slices and broadcasts (strided copies, one loop per axis) split their rows
    across threads too: every thread count copies exactly what NumPy does."""
    b = Builder("g")
    x = b.input(f32(lead, 12, 10), "x")
    t = b.op("transpose", [x], {"perm": (0, 2, 1)})
    s = b.op("slice", [x], {"axes": (1, 2), "starts": (1, 0), "stops": (12, 10), "steps": (2, 3)})
    w = b.op(
        "broadcast",
        [b.op("slice", [x], {"axes": (2,), "starts": (0,), "stops": (1,), "steps": (1,)})],
        {"shape": (lead, 12, 10)},
    )
    b.output(t, s, w)
    graph = b.build()
    mod = compile_graph(graph, threads_min_work=8)
    assert mod.program.source.count("the outermost loop longer than 1, [0, n), split") >= 3
    rng = np.random.default_rng(2)
    for rows in (1, 3, 40) if lead == "N" else (1,):
        arrays = [rng.standard_normal((rows, 12, 10)).astype(np.float32)]
        want = interpret(graph, *arrays)
        for threads in (1, 2, 3, 8):
            for got, ref in zip(mod.run(arrays, nthreads=threads), want):
                np.testing.assert_array_equal(got, ref)


def test_a_split_nest_whose_strides_read_the_batch() -> None:
    """A [1, N, 6] slice splits its N axis (the first longer than 1), and its strides outside
    the range (axis 0's) read the batch: the range function is passed it."""
    b = Builder("g")
    x = b.input(f32(1, "N", 6), "x")
    b.output(b.op("slice", [x], {"axes": (2,), "starts": (1,), "stops": (6,), "steps": (2,)}))
    graph = b.build()
    mod = compile_graph(graph, threads_min_work=4)
    assert "_range(const float *restrict x0, float *restrict y0, int64_t batch," in (
        mod.program.source
    )
    for rows in (1, 7, 50):
        arrays = [np.arange(rows * 6, dtype=np.float32).reshape(1, rows, 6)]
        for threads in (1, 2, 3):
            (got,) = mod.run(arrays, nthreads=threads)
            np.testing.assert_array_equal(got, arrays[0][:, :, 1:6:2])


@pytest.mark.parametrize("pipeline", ["none", "default"])
def test_flat_loops_split_across_threads_bit_for_bit(pipeline: str) -> None:
    """A flat elementwise loop, plain (no passes) or fused, splits its range across threads
    (loop_split.c.j2): every thread count gives the one-thread result bit for bit, at sizes
    with partial 16-element lines and fewer elements than threads; and NumPy's within
    rounding."""
    b = Builder("g")
    x, y = b.input(f32("N", 7), "x"), b.input(f32("N", 7), "y")
    a = b.op("exp", [b.op("neg", [x])])
    b.output(b.op("tanh", [b.op("add", [a, y])]), b.op("mul", [a, y]))
    graph = b.build()
    passes = [] if pipeline == "none" else default_pipeline()
    mod = compile_graph(run_passes(graph, passes), threads_min_work=16)
    assert "_range(" in mod.program.source and "lucid_parallel_run(" in mod.program.source
    rng = np.random.default_rng(0)
    for rows in (1, 5, 37, 300):
        arrays = [rng.standard_normal((rows, 7)).astype(np.float32) for _ in range(2)]
        want = mod.run(arrays, nthreads=1)
        for threads in (2, 3, 8):
            for got, one in zip(mod.run(arrays, nthreads=threads), want):
                np.testing.assert_array_equal(got, one)
        for got, ref in zip(want, interpret(graph, *arrays)):
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=3e-7)  # 1 ulp at 1.0: 1.2e-7
