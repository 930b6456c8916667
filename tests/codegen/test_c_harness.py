"""Helpers shared by the emit_c tests (compile a graph, call it on arrays), and their own tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid.codegen import CodegenOptions, CProgram, emit_c, error_for
from lucid.codegen.emit_c import packed_cdef
from lucid.codegen.gemm import CacheSizes
from lucid.ir.core import Graph
from lucid.runtime.build import BuiltModule, build

# Fixed blocking inputs, so generated text never depends on the machine's caches.
FIXED = {"caches": CacheSizes()}


@dataclass
class Compiled:
    """A graph, its generated program and the loaded module."""

    graph: Graph
    program: CProgram
    module: BuiltModule

    def call(
        self,
        arrays: Sequence[np.ndarray],
        batch: int | None = None,
        nthreads: int = 1,
        flat: bool = True,
    ) -> tuple[int, list[np.ndarray]]:
        """Run with `arrays` (inputs then params); returns (code, output arrays)."""
        if batch is None:
            batch = _infer_batch(self.graph, arrays)
        nb = batch if 0 < batch < 2**31 else 1  # an invalid batch is refused before any write
        outs = [
            np.empty(tuple(nb if isinstance(d, str) else d for d in t.shape), t.dtype.np)
            for t in self.program.output_types
        ]
        arrays = [np.ascontiguousarray(a) for a in arrays]
        ptrs = [_ptr(a) for a in (*arrays, *outs)]
        lib, ffi = self.module.lib, self.module.ffi
        if flat:
            rc = getattr(lib, self.program.call_symbol)(*ptrs, batch, nthreads)
        else:
            ins = ffi.new(
                "const void *[]",
                [ffi.cast("const void *", p) for p in ptrs[: len(arrays)]] or [ffi.NULL],
            )
            out = ffi.new(
                "void *[]", [ffi.cast("void *", p) for p in ptrs[len(arrays) :]] or [ffi.NULL]
            )
            rc = getattr(lib, self.program.run_symbol)(ins, out, batch, nthreads)
        return rc, outs

    def slots(self) -> list[tuple[int, int]]:
        """(graph param index, elements) of each prepacked weight slot."""
        from lucid.runtime.backends import pack_slots

        return list(pack_slots(self.module.ffi, self.module.lib, self.program.prefix))

    def pack(self, slot: int, w: np.ndarray, out: np.ndarray) -> int:
        """PREFIX_pack(slot, w, out): its return code."""
        ffi = self.module.ffi
        w_p, out_p = (ffi.cast("void *", _ptr(a)) for a in (w, out))
        return int(getattr(self.module.lib, f"{self.program.prefix}_pack")(slot, w_p, out_p))

    def pack_all(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Every slot packed from `arrays` (inputs then params), in 64-byte aligned buffers."""
        n_in = len(self.graph.inputs)
        out = []
        for s, (param, elems) in enumerate(self.slots()):
            w = np.ascontiguousarray(arrays[n_in + param])
            buf = aligned_empty(elems, w.dtype)
            assert self.pack(s, w, buf) == 0
            out.append(buf)
        return out

    def run_packed(
        self, arrays: Sequence[np.ndarray], packed: Sequence[np.ndarray | None], nthreads: int = 1
    ) -> list[np.ndarray]:
        """PREFIX_call_packed with one buffer (or None: NULL) per slot."""
        batch = _infer_batch(self.graph, arrays)
        outs = [
            np.empty(tuple(batch if isinstance(d, str) else d for d in t.shape), t.dtype.np)
            for t in self.program.output_types
        ]
        arrays = [np.ascontiguousarray(a) for a in arrays]
        table = np.array([0 if b is None else _ptr(b) for b in packed] or [0], dtype=np.uintp)
        ptrs = [_ptr(a) for a in (*arrays, *outs)]
        fn = getattr(self.module.lib, f"{self.program.prefix}_call_packed")
        rc = fn(*ptrs, int(table.ctypes.data), batch, nthreads)
        if rc != 0:
            raise error_for(rc)
        return outs

    def run(self, arrays: Sequence[np.ndarray], **kw: Any) -> list[np.ndarray]:
        """Run and raise the mapped Python exception on a nonzero code."""
        rc, outs = self.call(arrays, **kw)
        if rc != 0:
            raise error_for(rc)
        return outs

    def strerror(self, code: int) -> str:
        """The C message of `code`."""
        lib, ffi = self.module.lib, self.module.ffi
        return ffi.string(getattr(lib, self.program.strerror_symbol)(code)).decode()


def aligned_empty(n: int, dtype: Any) -> np.ndarray:
    """n elements of dtype starting at a 64-byte boundary."""
    raw = np.empty(n * np.dtype(dtype).itemsize + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + n * np.dtype(dtype).itemsize].view(dtype)


def _ptr(a: np.ndarray) -> int:
    # a zero-size array may have a NULL-ish data pointer; the C rejects NULL, so give it a byte
    return int(a.ctypes.data) if a.size else int(np.empty(1, np.uint8).ctypes.data) or 1


def _infer_batch(graph: Graph, arrays: Sequence[np.ndarray]) -> int:
    for v, a in zip((*graph.inputs, *graph.params), arrays):
        for d, n in zip(v.type.shape, np.shape(a)):
            if isinstance(d, str):
                return int(n)
    return 1


def compile_graph(graph: Graph, **options: Any) -> Compiled:
    """emit_c + lucid.runtime.build (cached per test run)."""
    program = emit_c(graph, CodegenOptions(**{**FIXED, **options}))
    n_pointers = len(graph.inputs) + len(graph.params) + len(graph.outputs)
    cdef = program.cdef + packed_cdef(program.prefix, n_pointers)
    module = build(
        program.source,
        cdef,
        second_source=program.shared_source,
        unit_sources=program.kernel_sources,
    )
    return Compiled(graph, program, module)


def assert_same_results(
    want: Compiled,
    got: Compiled,
    arrays_of: Callable[[int], list[np.ndarray]],
    rows: Sequence[int] = (300, 3),
) -> None:
    """`got` computes exactly what `want` does (output 0) for `arrays_of(n)` at each row count
    n, on 1 and 2 threads, called plain and with its weights prepacked."""
    for n in rows:
        arrays = arrays_of(n)
        for threads in (1, 2):
            expected = want.run(arrays, nthreads=threads)[0]
            np.testing.assert_array_equal(got.run(arrays, nthreads=threads)[0], expected)
            packed = got.pack_all(arrays)
            np.testing.assert_array_equal(got.run_packed(arrays, packed, threads)[0], expected)


def test_error_mapping_covers_every_c_code() -> None:
    from lucid.codegen.emit_c import ERROR_LIST, ERRORS

    assert [e.code for e in ERROR_LIST] == list(range(len(ERROR_LIST)))
    assert set(ERRORS) == {e.code for e in ERROR_LIST if e.code}
    assert isinstance(error_for(5), IndexError) and isinstance(error_for(3), MemoryError)
    assert isinstance(error_for(99), RuntimeError)
