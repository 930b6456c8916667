"""Execution backends: one small interface (`Backend.prepare(graph) -> Executable`) and a registry.

`lucid.compile` never looks inside a backend beyond this interface, except for the fast path:
an Executable that has `call_objects` (the C backend) is called directly from the compiled
module's `__call__` with its arrays passed as object addresses (see lucid/codegen/shim.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from lucid._logging import log as _log
from lucid.errors import LucidError
from lucid.ir.core import Graph
from lucid.ir.printer import format as format_graph
from lucid.ir.types import TensorType, concrete_shape, dim_parts
from lucid.runtime import _index
from lucid.runtime import threads as _threads
from lucid.runtime.build import BuildOptions, build, load_cached, unit_file
from lucid.runtime.cache import INDEX_DIR, cache_root

__all__ = [
    "Backend",
    "BackendOptions",
    "BuildInfo",
    "CBackend",
    "Executable",
    "InterpreterBackend",
    "available_backends",
    "get_backend",
    "register_backend",
]


# What the shim's entry points (lucid/codegen/shim.py) return, before running anything, when a
# parameter array was reshaped in place since the runtime validated it: the fast path then
# takes the slow path. No PREFIX_run code is negative.
SHIM_CHANGED = -1


class BackendOptions(NamedTuple):
    """How to prepare one graph: target ISA, compiler options, where to keep debug output, and
    whether GEMM blockings are tuned (`autotune`, timed with `tune_rows` for the batch)."""

    isa: str = "auto"
    build: BuildOptions = BuildOptions()
    debug_dir: Path | None = None
    prefix: str = "lucid"
    autotune: bool = False
    tune_rows: int | None = None  # the batch size seen at trace time; None: autotune's default
    # The C backend compiles the GEMM machinery as a second unit on the other core; off when
    # another build already runs beside this one (a grad entry's forward and backward).
    split: bool = True
    # The kernels of a split program spread over up to this many units compiled at once (the
    # program's own and kernel units): 0 is one per available core, at most 4 (options
    # "build_jobs").
    kernel_units: int = 0
    # What the warm-start index may key `graph` by instead of its printed IR: the pass memo's
    # key and the graph's role in it. The memo's graph is a function of that key (it is served
    # by it), and printing a MobileNetV3 training pair cost ~60 ms of every warm start. None:
    # print the graph (no memo: a debug build, or a graph that did not come through one).
    graph_key: str | None = None
    # the C times every kernel call (CExecutable.profile); lucid.compile's options["profile"]
    profile: bool = False


class BuildInfo(NamedTuple):
    """How the C of one graph was obtained: built (`from_cache=False`) or loaded from the cache."""

    path: Path
    key: str
    from_cache: bool
    seconds: float  # build or load time
    codegen_seconds: float
    command: list[str]


@runtime_checkable
class Executable(Protocol):
    """A prepared graph. `run` takes inputs then params, already checked against the graph's
    types by the caller, and returns fresh arrays that alias none of them."""

    backend: str
    graph: Graph
    build_info: BuildInfo | None

    @property
    def source(self) -> str | None:
        """The generated code, if any (read-only: the C backend reads it from its cache)."""

    def run(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]: ...

    def describe(self) -> str: ...


class Backend(Protocol):
    """Turns a graph into an Executable; `name` is its key in the registry."""

    name: str

    def prepare(self, graph: Graph, options: BackendOptions) -> Executable: ...


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Make `backend` available to `lucid.compile(backend=backend.name)`."""
    if backend.name in _BACKENDS and not replace:
        raise LucidError(f"backend {backend.name!r} is already registered")
    _BACKENDS[backend.name] = backend
    return backend


def get_backend(name: str) -> Backend:
    """The backend registered as `name`; an error listing the registered names otherwise."""
    found = _BACKENDS.get(name)
    if found is None:
        raise ValueError(
            f"unknown backend {name!r}; available backends: {', '.join(available_backends())}"
        )
    return found


def available_backends() -> list[str]:
    """Names of the registered backends, sorted."""
    return sorted(_BACKENDS)


def _owned(outs: tuple[np.ndarray, ...], given: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """`outs` with any array that is, or is a view of, a given array replaced by a copy."""
    ids = {id(a) for a in given}
    return tuple(
        o.copy() if id(o) in ids or o.base is not None or not o.flags.c_contiguous else o
        for o in outs
    )


# ------------------------------------------------------------------------------ interpreter


class InterpreterExecutable:
    """Runs the graph with lucid.ir.interpret (the op table's NumPy references): the oracle."""

    def __init__(
        self,
        graph: Graph,
        backend: str = "interpreter",
        source: str | None = None,
        build_info: BuildInfo | None = None,
    ) -> None:
        self.graph = graph
        self.backend = backend
        self.source = source
        self.build_info = build_info

    def run(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Interpret the graph on `arrays` (inputs then params)."""
        from lucid.ir.interpret import interpret

        return _owned(interpret(self.graph, *arrays), arrays)

    def describe(self) -> str:
        """One line: backend and graph size."""
        return f"interpreter: @{self.graph.name}, {len(self.graph.nodes)} nodes"


class InterpreterBackend:
    """Needs no compiler: for debugging, and as the oracle the C backend is tested against."""

    name = "interpreter"

    def prepare(self, graph: Graph, options: BackendOptions) -> Executable:
        """Nothing to build: the graph is interpreted at every call."""
        return InterpreterExecutable(graph)


# ------------------------------------------------------------------------------ C


# One thread pool per process: the pool code's hash (CProgram.pool_code) -> the address of the
# pool state of the first module loaded with that code. Every later module of the same code is
# handed it before its first call, so a forward and its backward (two modules) or several
# models never keep two sets of workers spinning for the same two cores: on the 2-vCPU EPYC a
# compiled Linear(2048, 10) training step at batch 512 spent 29% of its samples in the two
# modules' spinning workers (perf) and took 2.2-2.8 ms per step; 1.2-1.3 ms with one pool.
_POOLS: dict[int, int] = {}
_POOLS_LOCK = threading.Lock()


def share_pool(lib: Any, prefix: str) -> None:
    """Make the freshly loaded module `lib` use the process's pool for its code (or make its
    own that pool when it is the first), before anything calls it. Modules loaded again (the
    same library) are handed the pool they already use."""
    code = getattr(lib, f"{prefix}_pool_code")()
    if not code:
        return
    share = getattr(lib, f"{prefix}_pool_share")
    with _POOLS_LOCK:
        state = _POOLS.get(code)
        if state is None:
            _POOLS[code] = share(0)
        else:
            share(state)


def pack_slots(ffi: Any, lib: Any, prefix: str) -> tuple[tuple[int, int], ...]:
    """(graph param index, elements) of each prepacked weight slot of a loaded program."""
    slot, param = getattr(lib, f"{prefix}_pack_slot"), ffi.new("int *")
    out: list[tuple[int, int]] = []
    while (elems := slot(len(out), param)) >= 0:
        out.append((int(param[0]), int(elems)))
    return tuple(out)


class CExecutable:
    """A graph compiled to C and loaded.

    Invariants: `call_objects(*ids, batch, nthreads)` takes id() of inputs, params, outputs
    (in that order), each a C-contiguous aligned ndarray of its declared type; `dynamic` says
    whether `batch` binds a symbol (else the C ignores it); `batch_from` is the (input, axis,
    factor) whose size is factor times the batch (None when no input has the symbol). `pack_slots` lists the
    prepacked weight slots as (graph param index, elements), read from the module itself;
    `call_objects_packed(*ids, id(table), batch, nthreads)` runs with them (see _prepack.py).
    `call_objects_back(*ids, id(plan), batch, nthreads)` runs, then copies outputs into other
    arrays by the int64 `plan` (shim.c.j2; built by _faststep.py from validated arrays).
    """

    backend = "c"

    def __init__(
        self,
        graph: Graph,
        prefix: str,
        batch_symbol: str | None,
        source: str | None,
        built: Any,
        codegen_seconds: float,
        program: Any = None,
    ) -> None:
        self.graph = graph
        self.program = program  # codegen's CProgram; None when served by the warm-start index
        self.prefix = prefix
        self._source = source  # what was compiled (the program and the shim); None: read lazily
        self.lib = built.lib
        self.ffi = built.ffi
        self.array_data: Callable[[int], int] = getattr(built.lib, f"{prefix}_array_data")
        share_pool(built.lib, prefix)
        # call_objects_back: the same, then copies outputs into other arrays (see shim.c.j2; a
        # training step's new parameters into the parameters' arrays)
        self.call_objects, self.call_objects_packed, self.call_objects_back = _object_calls(
            built.lib, prefix
        )
        self.pack_slots = pack_slots(built.ffi, built.lib, prefix)
        self._pack = getattr(built.lib, f"{prefix}_pack")
        self.dynamic = batch_symbol is not None
        self.batch_symbol: str | None = batch_symbol
        self.build_info: BuildInfo | None = BuildInfo(
            built.path,
            built.key,
            built.from_cache,
            built.seconds,
            codegen_seconds,
            list(built.command),
        )
        # (input, axis, factor) whose size is factor * batch: axis 0 of input 0 for a traced
        # forward, but a backward graph's first inputs may be saved values of static shape.
        self.batch_from = batch_source(graph.input_types, batch_symbol)
        self._outs = [(t.dtype.np, t.shape) for t in graph.output_types]

    @property
    def source(self) -> str | None:
        """The C that was compiled: the program (and shim), then the GEMM machinery's second
        unit if it has one; after an index hit, read from the cache entry (once)."""
        info = self.build_info  # set by __init__; optional only in the Executable protocol
        if self._source is None and info is not None:
            entry = info.path.parent
            try:
                text = (entry / "source.c").read_text(encoding="utf-8")
                module = f"_lucid_{info.key[:16]}"
                second = entry / f"{module}_gemm.c"
                kernels: list[str] = []
                while (unit := entry / unit_file(module, len(kernels))).exists():
                    kernels.append(unit.read_text(encoding="utf-8"))
                if second.exists() or kernels:
                    from lucid.codegen.shim import with_other_units  # for reading: imports Jinja

                    gemm = second.read_text(encoding="utf-8") if second.exists() else None
                    text = with_other_units(text, gemm, kernels)
            except OSError:
                return None  # the entry was cleared since it was loaded
            self._source = text
        return self._source

    def error(self, code: int) -> Exception:
        """The exception for C return code `code` (codegen's mapping), naming the graph."""
        from lucid.codegen.emit_c import error_for

        if code == SHIM_CHANGED:
            return ValueError(
                f"compiled @{self.graph.name}: a parameter array's shape or layout changed in "
                "place since it was checked (nothing ran); call the model again"
            )
        exc = error_for(code)
        return type(exc)(f"compiled @{self.graph.name} failed (code {code}): {exc}")

    def pack(self, slot: int, w: np.ndarray, out: np.ndarray) -> None:
        """Pack weight `w` (the checked, C-contiguous array of param `pack_slots[slot][0]`)
        into `out` (`pack_slots[slot][1]` elements of its dtype, 64-byte aligned)."""
        param, elems = self.pack_slots[slot]
        want = self.graph.params[param].type
        if (
            w.dtype != want.dtype.np
            or w.shape != want.shape
            or not w.flags.c_contiguous
            or out.dtype != want.dtype.np
            or out.size != elems
            or not out.flags.c_contiguous
        ):
            raise ValueError(
                f"pack slot {slot}: expected a C-contiguous {want} and {elems} elements of "
                f"{want.dtype} to pack into, got {w.dtype}{list(w.shape)} and {out.size} of "
                f"{out.dtype}"
            )
        ptr = self.ffi.cast("void *", w.ctypes.data), self.ffi.cast("void *", out.ctypes.data)
        code = self._pack(slot, *ptr)
        if code:
            raise self.error(code)

    def run(self, *arrays: np.ndarray, packed: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Run on checked arrays (inputs then params); makes them contiguous if they are not.
        `packed`: the slot table of `PackedWeights.refresh` for these very param arrays."""
        arrays = tuple(
            a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C")
            for a in arrays
        )
        where = self.batch_from
        batch = (
            arrays[where[0]].shape[where[1]] // where[2]
            if self.dynamic and where is not None
            else 1
        )
        bind = {self.batch_symbol: batch} if self.batch_symbol is not None else {}
        outs = tuple(np.empty(concrete_shape(shape, bind), dt) for dt, shape in self._outs)
        if packed is not None:
            ids = (*map(id, arrays), *map(id, outs), id(packed))
            code = self.call_objects_packed(*ids, batch, _threads.num_threads)
        else:
            code = self.call_objects(*map(id, arrays), *map(id, outs), batch, _threads.num_threads)
        if code:
            raise self.error(code)
        return outs

    def profile(self) -> list[tuple[str, int, int]]:
        """(kernel and IR, calls, nanoseconds) of each kernel call site of the program, summed
        over every run since it was loaded. Only a program built with BackendOptions.profile
        keeps them: others raise a LucidError."""
        read = getattr(self.lib, f"{self.prefix}_profile", None)
        if read is None:
            raise LucidError(
                "this program does not time its kernels: compile with options={'profile': True}"
            )
        n = read(self.ffi.NULL, self.ffi.NULL, 0)
        calls, ns = self.ffi.new("int64_t[]", max(n, 1)), self.ffi.new("int64_t[]", max(n, 1))
        read(calls, ns, n)
        label = getattr(self.lib, f"{self.prefix}_profile_label")
        return [
            (self.ffi.string(label(i)).decode("utf-8", "replace"), int(calls[i]), int(ns[i]))
            for i in range(n)
        ]

    def describe(self) -> str:
        """One line: backend, graph size, where the module came from."""
        info = self.build_info
        where = f"{'cache' if info and info.from_cache else 'built'} {info.path}" if info else ""
        return f"c: @{self.graph.name}, {len(self.graph.nodes)} nodes, {where}"


def _object_calls(lib: Any, prefix: str) -> tuple[Callable[..., int], ...]:
    """(call_objects, call_objects_packed, call_objects_back) of a module: its shim's entry
    points, or past emit_c.VECTOR_ARITY arrays adapters of the same signatures that hand the
    addresses to PREFIX_call_vector* as one tuple (with their count, which the C checks)."""
    vector = getattr(lib, f"{prefix}_call_vector", None)
    if vector is None:
        return tuple(getattr(lib, f"{prefix}_call_objects{s}") for s in ("", "_packed", "_back"))
    packed = getattr(lib, f"{prefix}_call_vector_packed")
    back = getattr(lib, f"{prefix}_call_vector_back")

    def call_objects(*a: int) -> int:
        return vector(a[:-2], len(a) - 2, a[-2], a[-1])

    def call_objects_packed(*a: int) -> int:
        return packed(a[:-3], len(a) - 3, a[-3], a[-2], a[-1])

    def call_objects_back(*a: int) -> int:
        return back(a[:-3], len(a) - 3, a[-3], a[-2], a[-1])

    return call_objects, call_objects_packed, call_objects_back


class CBackend:
    """Generates C with lucid.codegen.emit_c and builds it with lucid.runtime.build (cached)."""

    name = "c"

    def prepare(self, graph: Graph, options: BackendOptions) -> Executable:
        """Load the C for `graph` through the warm-start index, else generate and build it."""
        found, ikey = self._lookup(graph, options)
        return found if found is not None else self._generate(graph, options, ikey)

    def prepare_pair(
        self, graphs: tuple[Graph, Graph], options: tuple[BackendOptions, BackendOptions]
    ) -> tuple[Executable, Executable]:
        """Two graphs built side by side (a grad entry's forward and backward). Their GEMM
        machinery becomes one second unit, compiled once (on one core, while the two programs
        compile on the other) and linked into both, instead of once per program."""
        (first, fkey), (second, skey) = (
            self._lookup(g, o) for g, o in zip(graphs, options, strict=True)
        )
        if first is not None or second is not None:  # at most one left to build
            return (
                first or self._generate(graphs[0], options[0], fkey),
                second or self._generate(graphs[1], options[1], skey),
            )
        from concurrent.futures import ThreadPoolExecutor

        from lucid.codegen.emit_c import second_unit, union_blocks

        split = tuple(o._replace(split=True) for o in options)
        generated = [self._codegen(g, o) for g, o in zip(graphs, split, strict=True)]
        union = union_blocks(*(gen.program for gen in generated))
        shared = second_unit(union) if union else None
        with ThreadPoolExecutor(max_workers=1) as pool:  # cc runs outside the GIL
            pending = pool.submit(self._build, generated[1], split[1], shared)
            first = self._build(generated[0], split[0], shared)
            second = pending.result()
        self._record(first, fkey)
        self._record(second, skey)
        return first, second

    def _generate(self, graph: Graph, options: BackendOptions, ikey: str | None) -> CExecutable:
        """Generate and build `graph`, and record it in the index under `ikey` (if any)."""
        executable = self._build(self._codegen(graph, options), options)
        self._record(executable, ikey)
        return executable

    def _lookup(
        self, graph: Graph, options: BackendOptions
    ) -> tuple[CExecutable | None, str | None]:
        """(the executable the warm-start index knows for `graph` or None, the index key or
        None when this build must not use the index)."""
        # A debug build writes its sources, and tuned C depends on records the index does not
        # see (a retuned problem must not be served the old C): both take the full path.
        if options.debug_dir is not None or options.autotune:
            return None, None
        root = cache_root()
        ir = f"memo {options.graph_key}" if options.graph_key else format_graph(graph)
        ikey = _index.index_key(ir, options.isa, options.prefix, options.build, options.profile)
        found = _index.lookup(root, ikey)
        if found is not None and found["prefix"] == options.prefix:
            built = load_cached(found["build_key"], cache_dir=root)
            if built is not None:
                executable = CExecutable(
                    graph, options.prefix, found["batch_symbol"], None, built, 0.0
                )
                return executable, ikey
        return None, ikey

    def _record(self, executable: CExecutable, ikey: str | None) -> None:
        """Remember in the warm-start index which build serves the graph of `ikey`."""
        if ikey is not None:
            info = executable.build_info
            assert info is not None
            try:
                _index.record(
                    cache_root(), ikey, info.key, executable.prefix, executable.batch_symbol
                )
            except OSError as exc:  # the index only saves codegen time: a full disk costs that
                _log.warning("lucid: warm-start index not written: %s", exc)

    def _codegen(self, graph: Graph, options: BackendOptions) -> _Generated:
        """Generate the C for `graph` with codegen."""
        from lucid.codegen import PACKAGE_BYTECODE, keep_bytecode_in
        from lucid.codegen.emit_c import CodegenOptions, emit_c, isa_option
        from lucid.codegen.shim import cffi_module

        tuner = None
        if options.autotune:
            from lucid.runtime.autotune import Autotuner

            tuner = Autotuner(options.build, rows=options.tune_rows)
        start = time.perf_counter()
        # a new process need not compile templates: beside the package, else in the cache
        keep_bytecode_in(PACKAGE_BYTECODE, cache_root() / INDEX_DIR)
        # split: the GEMM machinery compiles on the other core while the program does
        codegen = CodegenOptions(
            isa=isa_option(options.isa),
            prefix=options.prefix,
            blocking_for=tuner,
            split=options.split,
            kernel_units=options.kernel_units or min(4, _threads.available_cores()),
            profile=options.profile,
            int_calls=False,  # the shim's entry points call PREFIX_run_packed
        )
        program = emit_c(graph, codegen)
        source, cdef = cffi_module(program)
        seconds = time.perf_counter() - start
        _log.debug(
            "codegen %s: %d kernels, %d bytes of C in %.1f ms",
            options.prefix,
            len(program.kernels),
            len(source),
            seconds * 1e3,
        )
        return _Generated(graph, program, source, cdef, seconds)

    def _build(
        self, gen: _Generated, options: BackendOptions, shared: str | None = None
    ) -> CExecutable:
        """Build generated C (or load it from the cache). `shared`: a second unit to link in
        place of the program's own (a union that holds it), when the program is split."""
        from lucid.codegen.shim import with_other_units

        second = gen.program.shared_source
        if second is not None and shared is not None:
            second = shared
        kernels = gen.program.kernel_sources
        built = build(
            gen.source,
            gen.cdef,
            options=options.build,
            debug_dir=options.debug_dir,
            second_source=second,
            unit_sources=kernels,
        )
        source = gen.source
        if second is not None or kernels:
            source = with_other_units(gen.source, second, kernels)
        return CExecutable(
            gen.graph,
            gen.program.prefix,
            gen.program.batch_symbol,
            source,
            built,
            gen.seconds,
            gen.program,
        )


class _Generated(NamedTuple):
    """One graph's generated C, before the build."""

    graph: Graph
    program: Any  # codegen's CProgram
    source: str  # the program and the runtime shim
    cdef: str
    seconds: float  # codegen time


register_backend(CBackend())
register_backend(InterpreterBackend())


def batch_source(types: Sequence[TensorType], symbol: str | None) -> tuple[int, int, int] | None:
    """The (input, axis, factor) whose size is `factor` times the batch: the first dim that is
    the symbol itself, else the first `symbol*factor` dim (N*8); None when no input has it."""
    found = [
        (factor != 1, i, axis, factor)
        for i, t in enumerate(types)
        for axis, d in enumerate(t.shape)
        for sym, factor in (dim_parts(d),)
        if sym is not None and sym == symbol
    ]
    return min(found)[1:] if found else None
