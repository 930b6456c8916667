"""Kernel units (CodegenOptions.kernel_units) and kernels shared by equal layers.

A split program's kernels can be spread over more translation units that a build compiles at
once: the program's unit declares what moved (and the packing routines of moved GEMMs, through
exported wrappers), and the results must be bitwise those of one unit. Equal layers share one
kernel whatever the IR their comments quote, each call with its own weights."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.codegen._lower import Kernel, Prepack
from lucid.ir import Builder, Graph
from lucid.ir.passes import default_pipeline, run_passes
from tests.codegen.test_c_harness import assert_same_results, compile_graph
from tests.codegen.test_emit_prepack import mlp
from tests.ir.graphs import f32
from tests.ir.test_fusion import random_arrays

EMIT = sys.modules["lucid.codegen.emit_c"]  # the package re-exports the function emit_c


def _kernel(name: str, chars: int, prepacks: tuple[Prepack, ...] = ()) -> Kernel:
    return Kernel(name, "comment", "float *y0", "x" * chars, prepacks=prepacks)


def test_units_split_kernels_into_contiguous_runs_of_about_equal_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernels = [_kernel(f"k{i}", 10_000) for i in range(40)]  # 400 KB of kernels
    got = EMIT._assign_units(kernels, 2, 200)
    # the program's own unit counts its body and its pointer arguments: it gets fewer kernels
    assert got == sorted(got) and 0 < got.count(0) < got.count(1)
    monkeypatch.setattr(EMIT, "_MAIN_CHARS", 0)
    for units in (2, 3, 4):
        got = EMIT._assign_units(kernels, units, 0)
        assert got == sorted(got) and set(got) == set(range(units))
        sizes = [got.count(u) for u in range(units)]
        assert max(sizes) - min(sizes) <= 1, sizes


def test_small_programs_stay_in_one_unit() -> None:
    kernels = [_kernel(f"k{i}", 1_000) for i in range(20)]  # 20 KB: not worth a process
    assert EMIT._assign_units(kernels, 4, 10) == [0] * 20
    assert EMIT._assign_units([], 4, 10) == []
    big = [_kernel(f"k{i}", 30_000) for i in range(3)]
    assert max(EMIT._assign_units(big, 8, 0)) <= 2  # a unit per _UNIT_MIN_CHARS at most


def test_kernel_key_ignores_comments_but_not_literals() -> None:
    code = EMIT._code
    assert code("a /* it's %1 */ b") == code("a /* the node's %7 */ b")
    assert code('s = "/* x */";') != code('s = "/* y */";')
    assert code("c = '/'; /* z */ d") == code("c = '/'; /* w */ d")
    assert code("a // %1\nb") == code("a // %2\nb")
    assert code("a + b") != code("a - b")


def _equal_layers(width: int = 48) -> Graph:
    """Three residual layers h + HardSwish(Linear(width, width)(h)) with weights of their own
    (each a GEMM with its epilogue: the residual keeps them from fusing into one MLP), then a
    head."""
    b = Builder("forward")
    h = b.input(f32("N", width), "x")
    for i in range(3):
        w, bias = b.param(f32(width, width), f"w{i}"), b.param(f32(width), f"b{i}")
        h = b.op("add", [h, b.op("hardswish", [b.op("linear", [h, w, bias])])])
    b.output(b.op("linear", [h, b.param(f32(5, width), "head")]))
    return b.build()


def _reference(arrays: list[np.ndarray]) -> np.ndarray:
    x, *params = (a.astype(np.float64) for a in arrays)
    for i in range(3):
        w, bias = params[2 * i], params[2 * i + 1]
        z = x @ w.T + bias
        x = x + z * np.clip(z + 3, 0, 6) / 6
    return np.asarray(x @ params[6].T)


@pytest.mark.needs_cc
def test_equal_layers_share_a_kernel_each_call_with_its_own_weights() -> None:
    g = run_passes(_equal_layers(), default_pipeline())
    compiled = compile_graph(g, threads_min_work=1, split=True)
    program = compiled.program
    gemms = [n for n in g.nodes if n.op == "fused_gemm"]
    assert len(gemms) == 2  # the last layer fuses with the head
    shared = [k for k in program.kernels if "fused_gemm" in k]
    assert len(shared) == 1, program.kernels  # one kernel, two calls
    assert program.source.count(f"{shared[0]}(") == 3  # its definition and two calls
    slots = compiled.slots()
    assert len({param for param, _ in slots}) == len(slots)  # each call packs its own weight
    for rows in (70, 1):
        arrays = random_arrays(g, rows, batch=rows)
        want = _reference(arrays)
        got = compiled.run(arrays)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        packed = compiled.pack_all(arrays)
        np.testing.assert_array_equal(compiled.run_packed(arrays, packed, 2)[0], got)


@pytest.mark.parametrize("pipeline", ["fused", "unfused"])
@pytest.mark.needs_cc
@pytest.mark.slow
def test_kernel_units_equal_one_unit(pipeline: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels in three units (every program made worth splitting) give bitwise the results of
    one unit, with weights packed in the call or ahead of it by the moved kernels' wrappers."""
    monkeypatch.setattr(EMIT, "_UNIT_MIN_CHARS", 1)
    monkeypatch.setattr(EMIT, "_MAIN_CHARS", 0)
    monkeypatch.setattr(EMIT, "_POINTER_CHARS", 0)
    g = mlp()
    opt = run_passes(g, default_pipeline(fusion=pipeline == "fused"))
    one = compile_graph(opt, threads_min_work=1, split=True)
    three = compile_graph(opt, threads_min_work=1, split=True, kernel_units=3)
    assert one.program.kernel_sources == ()
    units = three.program.kernel_sources
    # fused, the MLP is one kernel: it moves (the program's unit counts as 0 C here)
    assert len(units) == min(2, len(three.program.kernels))
    moved = [line for line in three.program.source.splitlines() if "/* unit " in line]
    assert moved and all(line.startswith("LUCID_SHARED_FN int lucid_k") for line in moved)
    for text in units:
        assert "LUCID_SHARED_FN __attribute__((noinline)) int lucid_k" in text
        assert "int lucid_run(" not in text  # the run function stays in the program's unit
    wrappers = [t for t in units if "_pack_b(const float *restrict w" in t]
    assert wrappers, "no GEMM with a weight slot moved: the test no longer covers the wrappers"
    assert three.slots() == one.slots()
    assert_same_results(one, three, lambda n: random_arrays(g, n, batch=n))


@pytest.mark.needs_cc
def test_compiled_source_shows_every_unit_also_after_a_warm_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """c_source is the C that was compiled, kernel units included, also when a later
    lucid.compile of the same model finds its build through the warm-start index."""
    monkeypatch.setattr(EMIT, "_UNIT_MIN_CHARS", 1)
    monkeypatch.setattr(EMIT, "_MAIN_CHARS", 0)
    monkeypatch.setattr(EMIT, "_POINTER_CHARS", 0)
    lucid.random.seed(3)
    model = nn.Sequential(nn.Linear(24, 40), nn.HardSwish(), nn.Linear(40, 7))
    x = lucid.randn(9, 24)
    with lucid.no_grad():
        want = model(x).numpy()
        first = lucid.compile(model, options={"build_jobs": 2})
        np.testing.assert_allclose(first(x).numpy(), want, rtol=1e-5, atol=1e-6)
        again = lucid.compile(model, options={"build_jobs": 2})
        np.testing.assert_allclose(again(x).numpy(), want, rtol=1e-5, atol=1e-6)
    info = again.build_info
    assert info is not None and info.from_cache
    for cm in (first, again):
        text = cm.c_source
        assert text is not None and "==== kernel unit 1 (compiled separately) ====" in text
        assert "LUCID_SHARED_FN __attribute__((noinline)) int lucid_k" in text
