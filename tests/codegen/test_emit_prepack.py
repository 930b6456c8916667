"""Prepacked weights at the program level: every GEMM whose B is a graph param gets a slot;
`PREFIX_pack` fills it and `PREFIX_call_packed` reads it instead of packing the weight. Results
must be bitwise those of `PREFIX_call` (same kernels, same K order), fused and unfused, with row
tiles split over threads, and the slots must say which param they pack."""

from __future__ import annotations

import numpy as np
import pytest

from lucid.codegen.gemm import CacheSizes
from lucid.ir import Builder, Graph
from lucid.ir.passes import default_pipeline, run_passes
from tests.codegen.test_c_harness import aligned_empty, assert_same_results, compile_graph
from tests.ir.graphs import f32
from tests.ir.test_fusion import random_arrays

pytestmark = pytest.mark.needs_cc

FUSED = default_pipeline()
UNFUSED = default_pipeline(fusion=False)


def mlp(batch: int | str = "N") -> Graph:
    """x -> Linear(16, 200) -> HardSwish -> Linear(200, 72) -> Linear(72, 20): weights over the
    small-GEMM threshold, widths that are no multiple of any register tile, and more columns
    than gemm.NARROW_N (narrower ones take the row path, which keeps no packed copy)."""
    b = Builder("forward")
    x = b.input(f32(batch, 16), "x")
    w1, b1 = b.param(f32(200, 16), "w1"), b.param(f32(200), "b1")
    w2, b2 = b.param(f32(72, 200), "w2"), b.param(f32(72), "b2")
    w3 = b.param(f32(20, 72), "w3")
    h = b.op("hardswish", [b.op("linear", [x, w1, b1])])
    b.output(b.op("linear", [b.op("linear", [h, w2, b2]), w3]))
    return b.build()


def one_layer() -> Graph:
    """HardSwish(Linear(16, 200)): a fused_gemm (one GEMM with its epilogue)."""
    b = Builder("forward")
    x = b.input(f32("N", 16), "x")
    w1, b1 = b.param(f32(200, 16), "w1"), b.param(f32(200), "b1")
    b.output(b.op("hardswish", [b.op("linear", [x, w1, b1])]))
    return b.build()


def test_fused_gemm_takes_its_weight_prepacked() -> None:
    g = one_layer()
    mod = compile_graph(run_passes(g, FUSED), threads_min_work=1)
    assert [p for p, _ in mod.slots()] == [0]
    for rows in (300, 5):
        arrays = random_arrays(g, rows, batch=rows)
        packed = mod.pack_all(arrays)
        for threads in (1, 2):
            want = mod.run(arrays, nthreads=threads)[0]
            np.testing.assert_array_equal(mod.run_packed(arrays, packed, threads)[0], want)


@pytest.mark.parametrize("pipeline", ["fused", "unfused"])
@pytest.mark.slow
def test_packed_calls_equal_unpacked_calls_bit_for_bit(pipeline: str) -> None:
    g = mlp()
    opt = run_passes(g, FUSED if pipeline == "fused" else UNFUSED)
    # a small L2: 40-row tiles, so batch 1000 splits its tiles over the threads
    mod = compile_graph(opt, caches=CacheSizes(l2=64 * 1024), isa="avx2", threads_min_work=1)
    slots = mod.slots()
    params = [v.hint for v in g.params]
    assert [params[p] for p, _ in slots] == ["w1", "w2", "w3"]
    for p, elems in slots:
        out_f, in_f = g.params[p].type.shape
        # K x N rounded up to whole micro-panels (avx2 f32: 8 or 16 columns)
        assert elems % in_f == 0 and 0 <= elems // in_f - out_f < 16
    for rows in (1000, 37, 1):
        arrays = random_arrays(g, rows, batch=rows)
        packed = mod.pack_all(arrays)
        for threads in (1, 3):
            want = mod.run(arrays, nthreads=threads)
            np.testing.assert_array_equal(mod.run_packed(arrays, packed, threads)[0], want[0])
            # a NULL slot packs that weight in the call
            some = [packed[0], None, packed[2]]
            np.testing.assert_array_equal(mod.run_packed(arrays, some, threads)[0], want[0])


@pytest.mark.slow
def test_the_call_reads_the_packed_copy() -> None:
    """What the caller must keep current: a packed copy of old weights gives the old result."""
    g = mlp()
    mod = compile_graph(run_passes(g, FUSED))
    arrays = random_arrays(g, 64, batch=64)
    packed = mod.pack_all(arrays)
    want = mod.run(arrays)[0]
    changed = [a.copy() for a in arrays]
    n_in = len(g.inputs)
    changed[n_in + 0] += 1  # w1
    assert not np.array_equal(mod.run(changed)[0], want)
    np.testing.assert_array_equal(mod.run_packed(changed, packed)[0], want)


def test_pack_refuses_bad_slots_and_misaligned_buffers() -> None:
    mod = compile_graph(run_passes(mlp(), FUSED))
    (p, elems), *_ = mod.slots()
    w = np.ones(mlp().params[p].type.shape, np.float32)
    buf = aligned_empty(elems + 16, np.float32)
    assert mod.pack(0, w, buf[:elems]) == 0
    assert mod.strerror(mod.pack(0, w, buf[1:])).startswith("prepacked weights")
    assert mod.strerror(mod.pack(99, w, buf)).startswith("prepacked weights")
    assert mod.strerror(mod.pack(-1, w, buf)).startswith("prepacked weights")
    lib, pre, param = mod.module.lib, mod.program.prefix, mod.module.ffi.new("int *", 7)
    for s in (99, -1):
        assert getattr(lib, f"{pre}_pack_slot")(s, param) == -1 and param[0] == 7


@pytest.mark.slow
def test_no_slots_for_small_weights_or_activations() -> None:
    """The seed's weights only take the small path, and a GEMM of two activations has no
    weight: neither gets a slot."""
    from tests.models import seed_graph

    assert compile_graph(run_passes(seed_graph(), FUSED)).slots() == []
    b = Builder("forward")
    x, y = b.input(f32("N", 64), "x"), b.input(f32(64, 64), "y")
    b.output(b.op("matmul", [x, y]))
    assert compile_graph(b.build()).slots() == []


@pytest.mark.parametrize("pipeline", ["fused", "unfused"])
@pytest.mark.slow
def test_split_build_equals_one_unit(pipeline: str) -> None:
    """CodegenOptions.split (lucid.compile's builds): the GEMM machinery in a second unit gives
    bitwise the results of one unit, packed or not, and the program keeps only prototypes."""
    g = mlp()
    opt = run_passes(g, FUSED if pipeline == "fused" else UNFUSED)
    one = compile_graph(opt, threads_min_work=1)
    two = compile_graph(opt, threads_min_work=1, split=True)
    assert one.program.shared_source is None and two.program.shared_source is not None
    assert "_ukernel_" not in two.program.source and "_ukernel_" in two.program.shared_source
    assert two.slots() == one.slots()
    assert_same_results(one, two, lambda n: random_arrays(g, n, batch=n))
