"""The seed graph (linear -> hardswish -> linear): golden C, numerics, batch sizes, threads."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from lucid.codegen import CodegenOptions, emit_c
from lucid.codegen.gemm import CacheSizes
from lucid.errors import CompileError
from lucid.ir import Builder, DType, TensorType, interpret
from tests.codegen.test_c_harness import compile_graph

F32 = DType.F32


def seed_graph(dtype: DType = F32, hint: str = "fc1") -> object:
    b = Builder("forward")
    x = b.input(TensorType(dtype, ("N", 3)), "x")
    w1 = b.param(TensorType(dtype, (5, 3)), f"{hint}.weight")
    b1 = b.param(TensorType(dtype, (5,)), f"{hint}.bias")
    w2 = b.param(TensorType(dtype, (2, 5)), "fc2.weight")
    b2 = b.param(TensorType(dtype, (2,)), "fc2.bias")
    h = b.op("hardswish", [b.op("linear", [x, w1, b1])])
    b.output(b.op("linear", [h, w2, b2]))
    return b.build()


def _params(rng: np.random.Generator, dtype: type = np.float32) -> list[np.ndarray]:
    return [rng.standard_normal(s).astype(dtype) for s in [(5, 3), (5,), (2, 5), (2,)]]


def elide_gemms(source: str) -> str:
    """The source with each GEMM fragment (owned and golden-tested by the GEMM generator) cut."""
    return re.sub(
        r"/\* begin GEMM (\w+) .*?/\* end GEMM \1 \*/",
        r"/* GEMM \1: see lucid/codegen/gemm/ */",
        source,
        flags=re.DOTALL,
    )


def test_seed_golden(golden) -> None:
    program = emit_c(seed_graph(), CodegenOptions(isa="scalar", caches=CacheSizes()))
    golden("seed_forward.c", elide_gemms(program.source))
    assert program.batch_symbol == "N"
    assert program.kernels == ("k0_linear", "k1_hardswish", "k2_linear")
    # two [N,5] intermediates that are live at once: two slots of 20 bytes per row
    assert program.arena_slots == ((0, 20), (0, 20))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.needs_cc
def test_seed_matches_interpreter_at_several_batches(dtype: type) -> None:
    graph = seed_graph(DType.from_numpy(dtype))
    c = compile_graph(graph)
    rng = np.random.default_rng(1)
    params = _params(rng, dtype)
    for batch in (1, 2, 7, 33, 1000):
        x = rng.standard_normal((batch, 3)).astype(dtype) * 4
        (ref,) = interpret(graph, x, *params)
        ref64 = interpret(
            seed_graph(DType.F64), x.astype(np.float64), *(p.astype(np.float64) for p in params)
        )[0]
        for flat in (True, False):
            (got,) = c.run([x, *params], flat=flat, nthreads=2)
            assert got.shape == (batch, 2)
            tol = (
                {"rtol": 1.3e-6, "atol": 1e-5}
                if dtype == np.float32
                else {"rtol": 1e-7, "atol": 1e-12}
            )
            np.testing.assert_allclose(got, ref, **tol)
            np.testing.assert_allclose(got, ref64, **tol)


@pytest.mark.needs_cc
def test_seed_error_codes() -> None:
    c = compile_graph(seed_graph())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    rc, _ = c.call([x, *_params(rng)], batch=0)
    assert rc == 2 and "batch" in c.strerror(rc)
    rc, _ = c.call([x, *_params(rng)], batch=-5)
    assert rc == 2
    # batch so large that the arena size overflows int64
    rc, _ = c.call([x, *_params(rng)], batch=2**62)
    assert rc == 4 and "overflow" in c.strerror(rc)
    lib, ffi = c.module.lib, c.module.ffi
    ptrs = [int(a.ctypes.data) for a in [x, *_params(rng)]]
    assert lib.lucid_call(*ptrs, 0, 4, 1) == 1  # NULL output
    assert lib.lucid_run(ffi.NULL, ffi.NULL, 4, 1) == 1
    assert c.strerror(0) == "ok" and c.strerror(12345) == "unknown error code"


@pytest.mark.needs_cc
def test_reentrant_from_two_threads() -> None:
    c = compile_graph(seed_graph())
    rng = np.random.default_rng(3)
    params = _params(rng)
    xs = [rng.standard_normal((257, 3)).astype(np.float32) for _ in range(2)]
    want = [c.run([x, *params])[0] for x in xs]
    bad: list[int] = []

    def worker(k: int) -> None:
        for _ in range(200):
            (got,) = c.run([xs[k], *params])
            if not np.array_equal(got, want[k]):
                bad.append(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


@pytest.mark.needs_cc
def test_hint_cannot_inject_c() -> None:
    evil = "fc1 */ int x = 1; /*"
    graph = seed_graph(hint=evil)
    program = emit_c(graph, CodegenOptions(isa="scalar", caches=CacheSizes(), prefix="m0"))
    assert evil not in program.source
    code = re.sub(r"/\*.*?\*/", "", program.source, flags=re.DOTALL)  # C without its comments
    assert "int x = 1" not in code and "fc1" not in code
    assert "int x = 1" in program.source  # it is there, escaped, in comments
    c = compile_graph(graph, prefix="m0")
    assert c.program.cdef.startswith("int m0_run(")
    rng = np.random.default_rng(4)
    (got,) = c.run([rng.standard_normal((3, 3)).astype(np.float32), *_params(rng)])
    assert got.shape == (3, 2)


@pytest.mark.parametrize("prefix", ["", "1abc", "a-b", "x y", "a" * 65, "m;int"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(CompileError):
        CodegenOptions(prefix=prefix)


def test_two_symbols_rejected() -> None:
    b = Builder("g")
    x = b.input(TensorType(F32, ("N", 3)))
    y = b.input(TensorType(F32, ("M", 3)))
    b.output(b.op("relu", [x]), b.op("relu", [y]))
    with pytest.raises(CompileError, match="symbolic dims M, N"):
        emit_c(b.build())


@pytest.mark.needs_cc
def test_loading_and_calling_keeps_the_fp_mode() -> None:
    """No flush-to-zero/denormals-are-zero after the module runs (no crtfastmath, no -ffast-math)."""
    c = compile_graph(seed_graph())
    rng = np.random.default_rng(7)
    c.run([rng.standard_normal((5, 3)).astype(np.float32), *_params(rng)])
    tiny = np.array([1e-40], np.float32)
    assert (tiny * np.float32(1.0))[0] == tiny[0] != 0
    assert "-ffast-math" not in c.module.command and "-Ofast" not in c.module.command


def test_int_calls_are_left_out_when_asked() -> None:
    """PREFIX_call and PREFIX_call_packed (one argument per array) by default; lucid.compile's
    and the AOT builds call PREFIX_run_packed and leave them out (CodegenOptions.int_calls)."""
    import lucid
    from lucid import nn

    with_calls = emit_c(seed_graph())
    without = emit_c(seed_graph(), CodegenOptions(int_calls=False))
    for name in ("lucid_call", "lucid_call_packed"):
        assert f"\nint {name}(" in with_calls.source
        assert f"\nint {name}(" not in without.source
    assert "lucid_call(" in with_calls.cdef and "lucid_call(" not in without.cdef
    assert "lucid_run_packed(" in without.source
    model = nn.Sequential(nn.Linear(3, 5), nn.HardSwish(), nn.Linear(5, 2))
    compiled = lucid.compile(model)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_allclose(compiled(x).data, model(lucid.Tensor(x)).data, rtol=1e-6)
    assert "_call_packed(" not in compiled.c_source
