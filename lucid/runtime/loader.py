"""`lucid.runtime.load(path)`: call a library written by `lucid.export` from Python.

cffi ABI mode: no compiler needed, and no original model class. Before it runs any code of
the library (even dlopen runs constructors), the loader reads the ELF dynamic symbol table
and looks for the `NAME_lucid_aot_magic` object; only then does it dlopen, check the magic's
bytes and ABI version, and read the model's description through the library's own functions.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import cffi
import numpy as np

from lucid.codegen import aot_abi as abi
from lucid.codegen.emit_c import ERROR_LIST
from lucid.errors import IndexRangeError, InputError, LucidError
from lucid.ir.types import DType
from lucid.runtime import threads as _threads

__all__ = ["LoadedModel", "NotAnExportError", "load"]

_DTYPES = {code: dtype for dtype, code in abi.DTYPE_CODES.items()}
_INDEX_ERRORS = {e.code for e in ERROR_LIST if e.kind is IndexError}
_SHT_DYNSYM = 11
_STT_OBJECT = 1


class NotAnExportError(LucidError):
    """The file is not a shared library written by lucid.export (or for another ABI)."""


def _dynamic_objects(path: Path) -> dict[str, int]:
    """Defined data objects (name -> size) in the ELF dynamic symbol table of `path`."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            raise NotAnExportError(f"{path} is not an ELF shared library")
        if ident[4] != 2 or ident[5] != 1:
            raise NotAnExportError(f"{path} is not a 64-bit little-endian ELF file")
        f.seek(0x28)
        (shoff,) = struct.unpack("<Q", f.read(8))
        f.seek(0x3A)
        shentsize, shnum = struct.unpack("<HH", f.read(4))
        sections = []
        for i in range(shnum):
            f.seek(shoff + i * shentsize)
            _, kind, _, _, off, size, link, _, _, entsize = struct.unpack("<IIQQQQIIQQ", f.read(64))
            sections.append((kind, off, size, link, entsize))
        found: dict[str, int] = {}
        for kind, off, size, link, entsize in sections:
            if kind != _SHT_DYNSYM or entsize != 24:
                continue
            _, str_off, str_size, _, _ = sections[link]
            f.seek(str_off)
            strtab = f.read(str_size)
            f.seek(off)
            table = f.read(size)
            for at in range(0, len(table) - 23, 24):
                st_name, st_info, _, st_shndx, _, st_size = struct.unpack_from("<IBBHQQ", table, at)
                if st_shndx != 0 and st_info & 0xF == _STT_OBJECT:
                    end = strtab.find(b"\0", st_name)
                    found[strtab[st_name:end].decode("ascii", "replace")] = st_size
        return found


def _find_name(path: Path, name: str | None) -> str:
    """The model name of the export at `path`, from its magic symbol (checked, never guessed)."""
    try:
        objects = _dynamic_objects(path)
    except (OSError, struct.error, IndexError) as exc:
        raise NotAnExportError(f"{path}: cannot read it as a shared library ({exc})") from exc
    names = sorted(
        sym[: -len(abi.MAGIC_SUFFIX)]
        for sym, size in objects.items()
        if sym.endswith(abi.MAGIC_SUFFIX) and size == abi.MAGIC_SIZE
    )
    if name is not None:
        if name not in names:
            raise NotAnExportError(
                f"{path} holds no lucid export named {name!r} (found: {names or 'none'})"
            )
        return name
    if not names:
        raise NotAnExportError(
            f"{path} is not a library written by lucid.export: it defines no "
            f"NAME{abi.MAGIC_SUFFIX} symbol"
        )
    if len(names) > 1:
        raise NotAnExportError(f"{path} holds several lucid exports {names}: pass name=")
    return names[0]


class LoadedModel:
    """An exported model loaded in this process; call it with NumPy arrays (or Tensors).

    Invariants: the description (names, dtypes, shapes) comes from the library itself; the
    handle stays open for the life of this object; calls may come from any number of threads.
    """

    def __init__(self, path: Path, name: str, weights: Path | None) -> None:
        self.path = path
        self.name = name
        self.weights = weights  # as given: None for the embedded or the default file
        ffi = cffi.FFI()
        # ABI mode binds symbols on first use: nothing but the magic is touched until it is checked
        ffi.cdef(abi.cdef(name, embedded=True))
        lib = ffi.dlopen(str(path))
        magic = ffi.buffer(getattr(lib, name + abi.MAGIC_SUFFIX), abi.MAGIC_SIZE)[:]
        magic = magic.rstrip(b"\0")
        if not magic.startswith(abi.MAGIC_PREFIX):
            raise NotAnExportError(
                f"{path}: {name}{abi.MAGIC_SUFFIX} is not lucid's magic ({magic!r})"
            )
        if magic != abi.MAGIC:
            raise NotAnExportError(
                f"{path} was exported for {magic.decode('ascii', 'replace')}; this lucid reads "
                f"{abi.MAGIC.decode()}: re-export the model with this lucid"
            )
        self._ffi, self._lib = ffi, lib
        fn = self._fn
        missing: list[str] = []
        while len(missing) < 64 and (lacks := fn("cpu_missing")(len(missing))) != ffi.NULL:
            missing.append(_c_bytes(ffi, lacks).decode("ascii", "replace"))
        if missing:
            raise LucidError(
                f"{path} was compiled for instruction sets this CPU lacks: "
                f"{', '.join(missing)}; export the model again with march='x86-64' (any x86-64 "
                "CPU), march='x86-64-v3' (AVX2, most CPUs since 2015) or march='native' on "
                "this machine"
            )
        self.embedded = bool(fn("has_embedded_weights")())
        self.lucid_version = _c_bytes(ffi, fn("lucid_version")()).decode()
        self.inputs = [self._describe("input", i) for i in range(fn("num_inputs")())]
        self.outputs = [self._describe("output", i) for i in range(fn("num_outputs")())]
        if weights is None and not self.embedded:
            weights = path.with_suffix(".weights")
        err = ffi.new("int *")
        wpath = ffi.NULL if weights is None else os.fsencode(weights)
        handle = fn("open")(wpath, err)
        if handle == ffi.NULL:
            raise LucidError(
                f"{path}: cannot open the weights{f' {weights}' if weights else ''}: "
                f"{self._message(err[0])}"
            )
        self._handle = ffi.gc(handle, fn("close"))
        self._run = fn("model_run_threads")

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as the paths it was loaded from: another process (a multiprocessing or Dask
        worker on this machine, or one that sees the same files) loads the library again."""
        weights = self.weights.resolve() if self.weights is not None else None
        return (LoadedModel, (self.path.resolve(), self.name, weights))

    def _fn(self, suffix: str) -> Any:
        return getattr(self._lib, f"{self.name}_{suffix}")

    def _message(self, code: int) -> str:
        return f"{_c_bytes(self._ffi, self._fn('strerror')(code)).decode()} (code {code})"

    def _describe(self, role: str, i: int) -> tuple[str, DType, tuple[int, ...]]:
        """(name, dtype, shape with -1 for the batch) of input or output i, from the library."""
        fn, ffi = self._fn, self._ffi
        code = fn(f"{role}_dtype")(i)
        if code not in _DTYPES:
            raise NotAnExportError(f"{self.path}: {role} {i} has an unknown dtype code {code}")
        rank = fn(f"{role}_rank")(i)
        shape = fn(f"{role}_shape")(i)
        return (
            _c_bytes(ffi, fn(f"{role}_name")(i)).decode(),
            _DTYPES[code],
            tuple(int(shape[k]) for k in range(rank)),
        )

    def __repr__(self) -> str:
        def sig(items: list[tuple[str, DType, tuple[int, ...]]]) -> str:
            return ", ".join(
                f"{n}: {d}[{','.join(abi.dim_text(s) for s in shape)}]" for n, d, shape in items
            )

        return f"LoadedModel({self.name!r}, ({sig(self.inputs)}) -> ({sig(self.outputs)}))"

    def _check(self, arrays: list[np.ndarray]) -> int:
        """Validate arrays against the library's own description; return the batch size."""
        if len(arrays) != len(self.inputs):
            raise InputError(f"{self.name} takes {len(self.inputs)} input(s), got {len(arrays)}")
        batch: int | None = None
        for i, (a, (name, dtype, shape)) in enumerate(zip(arrays, self.inputs)):
            want = f"{dtype}[{','.join(abi.dim_text(s) for s in shape)}]"
            got = f"{a.dtype}{list(a.shape)}"
            if a.dtype != dtype.np or a.ndim != len(shape):
                raise InputError(f"{self.name} input {i} ({name}): expected {want}, got {got}")
            for d, n in zip(shape, a.shape):
                if d >= 0:
                    if d != n:
                        raise InputError(
                            f"{self.name} input {i} ({name}): expected {want}, got {got}"
                        )
                    continue
                if n % -d:  # a dim N*k: the size must be a multiple of k
                    raise InputError(
                        f"{self.name} input {i} ({name}): expected {want}, got {got}: "
                        f"dim {abi.dim_text(d)} is {n}, which is not a multiple of {-d}"
                    )
                if batch is not None and batch != n // -d:
                    raise InputError(
                        f"{self.name} input {i} ({name}): batch {n // -d}, but {batch} in an "
                        "earlier input"
                    )
                batch = n // -d
        if batch is not None and batch < 1:
            raise InputError(f"{self.name}: the batch size must be at least 1, got {batch}")
        return 1 if batch is None else batch

    def __call__(self, *inputs: Any) -> Any:
        """Run on `inputs`; one ndarray for a single-output model, else a tuple of ndarrays."""
        arrays = [np.ascontiguousarray(getattr(x, "data", x)) for x in inputs]
        batch = self._check(arrays)
        outs = [
            np.empty(tuple(abi.decode_dim(s, batch) for s in shape), dtype.np)
            for _, dtype, shape in self.outputs
        ]
        ffi = self._ffi
        # a.data: the array's memoryview (the same buffer; NumPy's stubs declare ndarray a
        # buffer only for Python >= 3.12, where __buffer__ exists)
        ins = ffi.new("void *[]", [ffi.from_buffer(a.data) for a in arrays] or [ffi.NULL])
        out_ptrs = ffi.new("void *[]", [ffi.from_buffer(o.data) for o in outs])
        code = self._run(self._handle, ins, out_ptrs, batch, _threads.num_threads)
        if code != 0:
            kind = IndexRangeError if code in _INDEX_ERRORS else LucidError
            raise kind(f"{self.name}: {self._message(code)}")
        return outs[0] if len(outs) == 1 else tuple(outs)


def _c_bytes(ffi: cffi.FFI, ptr: Any) -> bytes:
    """The bytes of a NUL-terminated `char *` the library returned."""
    raw = ffi.string(ptr)
    assert isinstance(raw, bytes)  # str comes only from wchar_t *, which the ABI never uses
    return raw


def load(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    weights: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load a library written by lucid.export; `weights` defaults to PATH.weights when needed."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise FileNotFoundError(f"no such library: {p}")
    found = _find_name(p, name)
    return LoadedModel(p, found, Path(os.fspath(weights)) if weights is not None else None)
