"""The C of a graph as lucid.compile builds it: emit_c's program plus a cffi shim.

`PREFIX_call` takes data pointers as integers, but getting one from Python costs 0.4-0.9 us per
array (`a.ctypes.data`, `__array_interface__`, `int(ffi.cast("intptr_t", ffi.from_buffer(a)))`)
while `id(a)` costs 30 ns. So Python passes the address of each ndarray object and the shim
(`shim.c.j2`) reads its data pointer, which NumPy's ABI keeps right after PyObject_HEAD
(PyArrayObject_fields.data). The cffi module includes Python.h before the shim's text; the
runtime has checked every array's type, dtype and contiguity before a call.

The parameters' arrays are the ones the runtime validated when it cached them, but an array
keeps its identity through an in-place `a.shape = ...`: rather than read every parameter's
shape in Python at every call (a tuple built and compared per array, most of the fast path's
38 us per call for MobileNetV3-Small's 210 parameters, AMD EPYC), the shim compares each
one's dims and layout flags (the fields after `data` in the same struct) with the program's
and returns -1 (lucid.runtime.backends.SHIM_CHANGED; no PREFIX_run code is
negative), before anything runs, when one differs; the fast path then takes the slow path,
which validates everything again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lucid.codegen._jinja import render
from lucid.codegen.emit_c import VECTOR_ARITY, CProgram, entry_cdef, profile_cdef

__all__ = ["cffi_module", "with_other_units"]


@dataclass(frozen=True)
class _Shim:
    """What `shim.c.j2` lays out: the entry points of `prefix` for `arity` arrays."""

    prefix: str
    arity: int  # inputs, params, outputs
    n_in: int  # inputs and params: the arrays `PREFIX_run_packed` takes as `inputs`
    cdef: bool  # the declarations only
    # the parameters' arrays: the index of the first, and each one's static shape
    first_param: int = 0
    param_shapes: tuple[tuple[int, ...], ...] = ()
    pool_code: int = 0  # CProgram.pool_code: the program's thread pool can be shared

    @property
    def param_dims(self) -> str:
        """Every parameter's dims, in order, as a C initializer (one 0 when there are none)."""
        dims = [d for shape in self.param_shapes for d in shape]
        return ", ".join(map(str, dims or [0]))

    @property
    def vector(self) -> bool:
        """Whether the addresses come as one array (see VECTOR_ARITY)."""
        return self.arity > VECTOR_ARITY


def cffi_module(program: CProgram) -> tuple[str, str]:
    """(C source, cdef) of the cffi module of `program`: the program followed by the shim's
    `PREFIX_call_objects`, `PREFIX_call_objects_packed` and `PREFIX_call_objects_back` (each
    fills the arrays of `PREFIX_run_packed` and calls it; `PREFIX_call_vector*` instead past
    VECTOR_ARITY arrays), and the declarations of those and of the program's entry points but
    `PREFIX_call` (lucid.compile calls the shim's instead)."""
    n_in = len(program.input_types) + len(program.param_types)
    arity = n_in + len(program.output_types)
    shapes = tuple(tuple(d for d in t.shape if isinstance(d, int)) for t in program.param_types)
    if any(len(s) != t.rank for s, t in zip(shapes, program.param_types)):  # params are static
        raise ValueError(f"a parameter of a symbolic shape: {program.param_types}")
    shim = _Shim(
        program.prefix, arity, n_in, False, len(program.input_types), shapes, program.pool_code
    )
    source = render("shim.c.j2", s=shim)
    cdef = render("shim.c.j2", s=_Shim(program.prefix, arity, n_in, cdef=True))
    entries = entry_cdef(program.prefix, arity, call=False)  # the shim's calls replace PREFIX_call
    if program.profiled:
        entries += profile_cdef(program.prefix)
    return program.source + source, entries + "\n" + cdef


@dataclass(frozen=True)
class _Units:
    source: str  # without trailing whitespace
    second: str | None
    kernels: tuple[str, ...]


def with_other_units(source: str, second: str | None, kernels: Sequence[str] = ()) -> str:
    """A program's C followed by its kernel units and its second translation unit (the GEMM
    machinery), for reading (`c_source`)."""
    return render("units.c.j2", r=_Units(source.rstrip(), second, tuple(kernels)))
