"""Graph -> one C translation unit: kernel specs and a memory plan as plain data, then templates.

`emit_c(graph, options)` returns a `CProgram` whose `source` defines (PREFIX defaults to lucid)::

    int PREFIX_run(const void *const *inputs, void *const *outputs, int64_t batch, int nthreads);
    int PREFIX_call(intptr_t a0, ..., intptr_t a{n-1}, int64_t batch, int nthreads);
    const char *PREFIX_strerror(int code);
    /* prepacked weights */
    int64_t PREFIX_pack_slot(int s, int *param);
    int PREFIX_pack(int s, const void *w, void *out);
    int PREFIX_run_packed(const void *const *inputs, void *const *outputs,
                          const void *const *packed, int64_t batch, int nthreads);
    int PREFIX_call_packed(intptr_t a0, ..., intptr_t a{n-1}, intptr_t packed, int64_t batch,
                           int nthreads);

(PREFIX_call and PREFIX_call_packed only with `CodegenOptions.int_calls`, the default.)

`inputs` are the runtime inputs then the params in graph order, `outputs` the graph outputs,
all C-contiguous; `PREFIX_call` takes the same pointers (inputs, then outputs) as integers.
Return codes and their Python exceptions are in `ERRORS` (see `error_for`).

Prepacked weights: a GEMM whose B is a graph param (a weight) can take it packed ahead of the
call. Slot s (0, 1, ... until `PREFIX_pack_slot` returns -1) packs the graph param it writes to
`*param` into as many elements of its dtype as it returns, 64-byte aligned, with
`PREFIX_pack(s, w, out)`. `PREFIX_run_packed` takes one pointer per slot (`packed` NULL, or an
entry NULL, packs that weight in the call as `PREFIX_run` does). The caller must repack a slot
whenever its weight changes: the packed copy is what the call reads.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

import numpy as np

from lucid.codegen import _lower_loops, _scalar_c
from lucid.codegen._jinja import render
from lucid.codegen._lower import (
    BlockingFor,
    Kernel,
    LowerCtx,
    Prepack,
    c_comment,
    c_string,
    dim_c,
    prod_c,
)
from lucid.codegen._memplan import MemoryPlan, Poly, plan_memory
from lucid.codegen.gemm import (
    PARALLEL_KEY,
    THREADS_MODES,
    CacheSizes,
    CpuId,
    SharedBlock,
    ThreadsMode,
    detect_caches,
    detect_cpu,
    detect_isa,
    parallel_block,
)
from lucid.codegen.lowerings import LOWERINGS
from lucid.errors import CompileError
from lucid.ir.core import Graph, Node, Value
from lucid.ir.ops import OPS
from lucid.ir.printer import diagnose, format_lines
from lucid.ir.types import TensorType, dim_parts, is_symbol

IsaOption = Literal["auto", "avx512", "avx2", "scalar"]
ISA_OPTIONS: tuple[IsaOption, ...] = get_args(IsaOption)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_COMMENT = 240  # IR lines longer than this (big constants) are cut in C comments


@dataclass(frozen=True)
class CError:
    """One return code of PREFIX_run: C macro, number, message, Python exception kind."""

    name: str
    code: int
    message: str
    kind: type[Exception] | None


ERROR_LIST: tuple[CError, ...] = (
    CError("LUCID_OK", 0, "ok", None),
    CError(
        "LUCID_E_NULL", 1, "a NULL pointer was passed for an input or output buffer", ValueError
    ),
    CError("LUCID_E_BATCH", 2, "the batch size must be positive", ValueError),
    CError("LUCID_E_NOMEM", 3, "out of memory", MemoryError),
    CError("LUCID_E_OVERFLOW", 4, "tensor sizes overflow int64 at this batch size", OverflowError),
    CError(
        "LUCID_E_INDEX",
        5,
        "an index input is out of range (a target class of a loss)",
        IndexError,
    ),
    CError("LUCID_E_INTERNAL", 6, "internal error: a kernel rejected its arguments", RuntimeError),
    CError(
        "LUCID_E_PACK",
        7,
        "prepacked weights: no such slot, or an output buffer not 64-byte aligned",
        ValueError,
    ),
    CError(
        "LUCID_E_EMBED_INDEX",
        8,
        "embedding: an index is out of range [0, num_embeddings)",
        IndexError,
    ),
)
ERRORS: dict[int, tuple[type[Exception], str]] = {
    e.code: (e.kind, e.message) for e in ERROR_LIST if e.kind is not None
}


def error_for(code: int) -> Exception:
    """The Python exception for a nonzero return code of PREFIX_run."""
    kind, message = ERRORS.get(code, (RuntimeError, f"unknown error code {code}"))
    return kind(message)


def isa_option(value: object) -> IsaOption:
    """`value` as an IsaOption; CompileError naming the choices if it is none of them."""
    for isa in ISA_OPTIONS:
        if value == isa:
            return isa
    raise CompileError(f"isa must be auto, avx512, avx2 or scalar, got {value!r}")


@dataclass(frozen=True)
class CodegenOptions:
    """How to generate: GEMM isa ("auto" detects), C symbol prefix, GEMM threading threshold,
    and how parallel kernels get their threads: "pool" (a persistent worker pool per translation
    unit: lucid.compile) or "spawn" (threads created per call: no global state, AOT export)."""

    isa: IsaOption = "auto"
    prefix: str = "lucid"
    threads_min_work: int = 0  # M*N*K per extra GEMM thread; 0 keeps the GEMM default
    threads: ThreadsMode = "pool"
    caches: CacheSizes | None = None  # None: read this machine's cache sizes (GEMM blocking)
    cpu: CpuId | None = None  # None: this machine's /proc/cpuinfo (its gemm.CPU_TABLE entry)
    # The GEMM machinery as a second translation unit (`CProgram.shared_source`), so a build
    # can compile the two in parallel: lucid.compile's cold builds, on 2 cores, take ~2/3.
    split: bool = False
    # Spread the kernels of a split program over up to this many translation units that a build
    # compiles at once: the program's own and `CProgram.kernel_sources` (a unit per at least
    # _UNIT_MIN_CHARS of kernel C). The machinery kernels share (thread pool, GEMM driver) must
    # be in one place, the second unit: kernels that share some but have none stay in one unit.
    kernel_units: int = 1
    # Each GEMM's blocking from this function (an autotuner) instead of the cost model.
    blocking_for: BlockingFor | None = None
    # Time every kernel call: the program keeps each call's count and nanoseconds, which
    # PREFIX_profile reads (profile_cdef); lucid.compile's options["profile"].
    profile: bool = False
    # Define PREFIX_call and PREFIX_call_packed (one argument per array). lucid.compile's shim
    # and AOT wrappers call PREFIX_run_packed themselves and leave them out: MobileNetV3-Small's
    # training backward passes 583 arrays, and those two functions cost gcc 0.5-1 s.
    int_calls: bool = True

    def __post_init__(self) -> None:
        if (
            not isinstance(self.prefix, str)
            or not _IDENT.match(self.prefix)
            or len(self.prefix) > 64
        ):
            raise CompileError(
                f"prefix {self.prefix!r} is not a C identifier of at most 64 characters"
            )
        isa_option(self.isa)
        if self.threads not in THREADS_MODES:
            raise CompileError(f"threads must be pool or spawn, got {self.threads!r}")
        if not isinstance(self.kernel_units, int) or self.kernel_units < 1:
            raise CompileError(f"kernel_units must be an int >= 1, got {self.kernel_units!r}")


@dataclass(frozen=True)
class CProgram:
    """A generated translation unit and what a caller needs to know to run it."""

    source: str
    cdef: str
    prefix: str
    batch_symbol: str | None
    input_types: tuple[TensorType, ...]
    param_types: tuple[TensorType, ...]
    output_types: tuple[TensorType, ...]
    arena_slots: tuple[tuple[int, ...], ...]  # bytes of each slot: coefs of 1, batch, ...
    arena_summary: str
    isa: str
    kernels: tuple[str, ...] = field(default=())
    shared_source: str | None = None  # the second translation unit (CodegenOptions.split)
    shared_blocks: tuple[SharedBlock, ...] = ()  # what shared_source lays out
    kernel_sources: tuple[str, ...] = ()  # more units holding kernels (CodegenOptions.kernel_units)
    profiled: bool = False  # CodegenOptions.profile: PREFIX_profile and PREFIX_profile_label exist
    # a hash of the thread pool's C when the program has one (threads "pool" and a parallel
    # kernel), else 0: modules with equal hashes can share one pool (shim.c.j2)
    pool_code: int = 0

    @property
    def run_symbol(self) -> str:
        """`PREFIX_run`."""
        return f"{self.prefix}_run"

    @property
    def call_symbol(self) -> str:
        """`PREFIX_call`."""
        return f"{self.prefix}_call"

    @property
    def strerror_symbol(self) -> str:
        """`PREFIX_strerror`."""
        return f"{self.prefix}_strerror"

    def arena_bytes(self, batch: int = 1) -> int:
        """The arena size one call allocates at `batch` (before the 64 bytes of alignment)."""
        total = 0
        for coefs in self.arena_slots:
            total += sum(c * batch**d for d, c in enumerate(coefs))
            total = (total + 63) // 64 * 64
        return total


# ---------------------------------------------------------------- template data


@dataclass(frozen=True)
class Constant:
    """A constant node's data as a static const array."""

    name: str
    ctype: str
    length: int
    values: str
    comment: str


@dataclass(frozen=True)
class Decl:
    """A pointer variable of the run function, with a comment saying which value it holds."""

    decl: str
    comment: str


@dataclass(frozen=True)
class SizeRow:
    """One row of the size table: byte-size coefficients of a slot or a tensor."""

    coefs: str
    comment: str


@dataclass(frozen=True)
class Copy:
    """An output that is not written in place (an input, a constant, a repeated output)."""

    out: int
    src: str
    nbytes: str
    comment: str


@dataclass(frozen=True)
class Placed:
    """A kernel and where it is defined: unit 0 (the program's own, file-local) or kernel unit
    `unit` (1, 2, ...: external as `symbol`, hidden, with a prototype in the program's unit)."""

    k: Kernel
    unit: int
    symbol: str


@dataclass(frozen=True)
class Program:
    """Everything program.c.j2 (and kernel_unit.c.j2, for one unit's kernels) lays out."""

    graph_name: str
    prefix: str
    batch_note: str
    arena_note: str
    ir_lines: tuple[str, ...]
    errors: tuple[CError, ...]
    types: tuple[dict[str, str], ...]
    constants: tuple[Constant, ...]
    shared: tuple[str, ...]  # GEMM machinery and helpers used by several kernels, once each
    split: bool  # the machinery is in the second unit: `shared` holds its types and prototypes
    split_linkage: str  # the LUCID_SHARED_FN both units of a split program define first
    kernels: tuple[Placed, ...]
    n_inputs: int
    n_outputs: int
    symbolic: bool
    size_rows: tuple[SizeRow, ...]
    size_degree: int
    n_slots: int
    # keep the arena between calls (a static slot): lucid.compile's modules; an exported
    # library (threads "spawn") promises no global state, and allocates per call
    keep_arena: bool
    decls: tuple[Decl, ...]
    calls: tuple[str, ...]
    profile: bool  # CodegenOptions.profile
    labels: tuple[str, ...]  # each call's kernel and IR as a C string literal (profile)
    copies: tuple[Copy, ...]
    call_params: str
    call_params_packed: str
    call_args: str  # call_params' names, for forwarding
    int_calls: bool  # define PREFIX_call and PREFIX_call_packed (CodegenOptions.int_calls)
    in_len: int
    out_len: int
    call_inputs: str
    call_outputs: str
    packs: tuple[Prepack, ...]  # the prepacked weight slots, in slot order


# ---------------------------------------------------------------- emit_c


def emit_c(graph: Graph, options: CodegenOptions | None = None) -> CProgram:
    """Lower `graph` to one C translation unit (see the module docstring for the entry points).
    Composite ops a pipeline left (one without the `expand` pass) are expanded first: the
    signature, and so every entry point, stays the graph's."""
    from lucid.ir.passes.expand import expand  # the passes load only when C is generated

    graph = expand(graph)
    options = options or CodegenOptions()
    isa = detect_isa() if options.isa == "auto" else options.isa
    caches = options.caches or detect_caches()
    cpu = options.cpu or detect_cpu()
    symbol = _batch_symbol(graph)
    lines, where = format_lines(graph)
    plan = plan_memory(graph)
    names = {v: f"v{i}" for i, v in enumerate(graph.all_values())}

    kernels: list[Kernel] = []
    seen: dict[tuple[object, ...], Kernel] = {}  # _kernel_key -> the kernel emitted for it
    calls: list[tuple[str, str]] = []  # (kernel name, arguments)
    labels: list[str] = []  # each call's kernel and IR, for the profile
    constants: list[Constant] = []
    packs: list[tuple[str, Prepack]] = []  # (kernel name, a weight it takes prepacked)
    for index, node in enumerate(graph.nodes):
        ir_line = _ir_comment(lines, where, node)
        if node.op == "constant":
            constants.append(_constant(index, node, ir_line))
            continue
        if plan.storage[node.results[0]].kind == "alias":
            continue
        ctx = LowerCtx(
            node,
            index,
            ir_line,
            isa,
            caches,
            options.threads_min_work,
            options.blocking_for,
            tuple(graph.params),
            cpu,
            options.threads,
        )
        kernel = _lower(graph, ctx)
        same = _same_as(kernel, seen)
        if same is None:
            kernels.append(kernel)
        else:  # the C of an earlier node, names aside: call that kernel (compile it once)
            at = kernels.index(same)
            kernels[at] = replace(same, comment=f"{same.comment}; also {kernel.comment}")
            seen[_kernel_key(kernel)] = kernels[at]
            kernel = replace(
                kernel,
                name=same.name,
                prepacks=tuple(
                    replace(k, pack_fn=k.pack_fn.replace(kernel.name, same.name, 1))
                    for k in kernel.prepacks
                ),
            )
        args = [names[v] for v in (*node.inputs, *node.results)]
        for pack in kernel.prepacks:
            args.append(f"(const {pack.ctype} *)pk[{len(packs)}]")
            packs.append((kernel.name, pack))
        args += ["batch"] * kernel.uses_batch + ["nthreads"] * kernel.uses_threads
        calls.append((kernel.name, ", ".join(args)))
        if options.profile:
            labels.append(c_string(f"{kernel.name}: {_profile_ir(lines, where, node)}"))

    blocks = _shared_blocks(kernels, options.threads)
    shared_here, second = _split(blocks, options.split)
    pool = (
        next((b for b in blocks if b.key == PARALLEL_KEY), None)
        if options.threads == "pool"
        else None
    )
    shared_source = second_unit(second) if second else None
    movable = shared_source is not None or not any(k.shared for k in kernels)
    n_in, n_out = len(graph.inputs) + len(graph.params), len(graph.outputs)
    units = _assign_units(
        kernels, options.kernel_units if options.split and movable else 1, n_in + n_out
    )
    placed = tuple(
        Placed(k, u, k.name if u == 0 else f"{options.prefix}_{k.name}")
        for k, u in zip(kernels, units, strict=True)
    )
    symbols = {p.k.name: p.symbol for p in placed}
    moved = {p.k.name for p in placed if p.unit}
    # a moved kernel's packing routine is called through its unit's exported wrapper
    prepacked = tuple(
        replace(pack, pack_fn=f"{options.prefix}_{pack.pack_fn}") if name in moved else pack
        for name, pack in packs
    )
    size_rows, degree = _size_rows(graph, plan)
    all_args = [f"a{i}" for i in range(n_in + n_out)]
    program = Program(
        graph_name=c_comment("@" + graph.name),
        prefix=options.prefix,
        batch_note=_batch_note(graph, symbol),
        arena_note=c_comment(plan.summary().replace("\n", "; ")),
        ir_lines=tuple(_cut(c_comment(line)) for line in lines),
        errors=ERROR_LIST,
        types=({"T": "float", "s": "f"}, {"T": "double", "s": ""}),
        constants=tuple(constants),
        shared=shared_here,
        split=shared_source is not None,
        split_linkage=_SPLIT_LINKAGE,
        kernels=tuple(p for p in placed if p.unit == 0),
        n_inputs=n_in,
        n_outputs=n_out,
        symbolic=symbol is not None,
        size_rows=size_rows,
        size_degree=degree,
        n_slots=len(plan.slots),
        keep_arena=bool(plan.slots) and options.threads == "pool",
        decls=_decls(graph, plan, names, constants),
        calls=tuple(f"{symbols[name]}({args})" for name, args in calls),
        profile=options.profile,
        labels=tuple(labels),
        copies=_copies(graph, plan, names),
        call_params=", ".join(
            [*(f"intptr_t {a}" for a in all_args), "int64_t batch", "int nthreads"]
        ),
        call_params_packed=", ".join(
            [
                *(f"intptr_t {a}" for a in all_args),
                "intptr_t packed",
                "int64_t batch",
                "int nthreads",
            ]
        ),
        call_args=", ".join(all_args) or "",
        int_calls=options.int_calls,
        in_len=max(1, n_in),
        out_len=max(1, n_out),
        call_inputs=", ".join(f"(const void *){a}" for a in all_args[:n_in]) or "NULL",
        call_outputs=", ".join(f"(void *){a}" for a in all_args[n_in:]) or "NULL",
        packs=prepacked,
    )
    source = render("program.c.j2", p=program, unit=0, moved=[p for p in placed if p.unit])
    kernel_sources = tuple(
        render("kernel_unit.c.j2", p=replace(program, kernels=here), unit=unit, moved=())
        for unit in range(1, max(units, default=0) + 1)
        if (here := tuple(p for p in placed if p.unit == unit))
    )
    return CProgram(
        source=source,
        cdef=entry_cdef(options.prefix, n_in + n_out, call=options.int_calls),
        prefix=options.prefix,
        batch_symbol=symbol,
        input_types=graph.input_types,
        param_types=graph.param_types,
        output_types=graph.output_types,
        arena_slots=tuple(s.size.trimmed().coefs for s in plan.slots),
        arena_summary=plan.summary(),
        isa=isa,
        kernels=tuple(k.name for k in kernels),
        shared_source=shared_source,
        shared_blocks=second,
        kernel_sources=kernel_sources,
        profiled=options.profile,
        pool_code=_code_hash(pool.text) if pool is not None else 0,
    )


def _code_hash(text: str) -> int:
    """A positive int64 hash of C text: equal texts, equal hashes."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


# Past this many arrays the shim's entry points (shim.c.j2) take their addresses as one array
# (PREFIX_call_vector*, cffi converts a tuple) instead of one argument each
# (PREFIX_call_objects*): cffi's wrappers of a function of n arguments are straight-line code
# gcc compiles in superlinear time. The C of
# MobileNetV3-Small's forward (250 arrays) spent ~1.3 s of its 2.3 s program unit in them, its
# training forward (685) ~6 s of 9. A call costs ~3-6 us more at 250 arrays (9.6 us for cffi's
# tuple conversion against 6.3 us of arguments, AMD EPYC), under 0.5% of such a model's call.
VECTOR_ARITY = 64


# A kernel unit is worth its compiler process and link step (~30 ms) from about this much C of
# kernels. The program's own unit compiles as long as _MAIN_CHARS + _POINTER_CHARS per pointer
# argument more of kernels would (measured with gcc 12 -O3: Python.h, the run function, and
# cffi's wrappers of the shim's calls, which convert every pointer; MobileNetV3-Small's 212
# pointers took 0.8 s, its kernels ~0.7 s per 100 KB). Past VECTOR_ARITY pointers the
# shim's calls take them as one array and cffi's wrappers no longer grow with them:
# _VECTOR_POINTER_CHARS each (the run function's locals; MobileNetV3-Small's 250: ~0.5 s).
_UNIT_MIN_CHARS = 40_000
_MAIN_CHARS = 20_000
_POINTER_CHARS = 450
_VECTOR_POINTER_CHARS = 150


def _assign_units(kernels: Sequence[Kernel], units: int, n_pointers: int) -> list[int]:
    """The unit of each kernel: 0 (the program's) or 1, 2, ...: contiguous runs of about equal
    compile time, at most `units` in all (fewer when the kernels are small)."""
    sizes = [len(k.support) + len(k.body) for k in kernels]
    per_pointer = _POINTER_CHARS if n_pointers <= VECTOR_ARITY else _VECTOR_POINTER_CHARS
    main = _MAIN_CHARS + per_pointer * n_pointers
    units = max(1, min(units, sum(sizes) // _UNIT_MIN_CHARS + 1))
    share, done, out = (sum(sizes) + main) / units, float(main), []
    for size in sizes:
        out.append(min(units - 1, int((done + size / 2) // share)))
        done += size
    return out


# C's string and character literals (kept whole) and its comments, left to right: a "/*" in a
# literal is not a comment, and an apostrophe in a comment does not start a literal.
_C_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.DOTALL)


def _code(text: str) -> str:
    """C text without its comments (which quote the IR of the node it was made for), so equal
    layers share a kernel."""
    return _C_TOKENS.sub(lambda m: m[0] if m[0][0] in "\"'" else " ", text)


def _kernel_key(kernel: Kernel) -> tuple[object, ...]:
    """What a kernel's C is, its own name and comments aside (its functions all start with
    that name)."""
    hole = "\0"
    return (
        kernel.params.replace(kernel.name, hole),
        _code(kernel.body.replace(kernel.name, hole)),
        _code(kernel.support.replace(kernel.name, hole)),
        kernel.uses_batch,
        kernel.uses_threads,
        # which weight a call packs is the call's argument, not the kernel's C
        tuple((k.pack_fn.replace(kernel.name, hole, 1), k.ctype, k.elems) for k in kernel.prepacks),
    )


def _same_as(kernel: Kernel, seen: dict[tuple[object, ...], Kernel]) -> Kernel | None:
    """The kernel already emitted with the same C as `kernel` (names aside), or None after
    recording `kernel` as the one for its C. Deep models repeat equal layers: each distinct
    kernel is compiled once, so the C compiler's time stops growing with their number."""
    key = _kernel_key(kernel)
    if key in seen:
        return seen[key]
    seen[key] = kernel
    return None


def entry_cdef(prefix: str, n_pointers: int, *, call: bool = True) -> str:
    """The cffi declarations of the entry points (see the module docstring); `call=False`
    leaves out `PREFIX_call`, whose cffi wrapper parses every pointer argument (a model with
    200 weights: ~40 KB of C for gcc) and which lucid.compile's shim replaces."""
    flat = "".join(f"intptr_t a{i}, " for i in range(n_pointers))
    return (
        f"int {prefix}_run(const void *const *inputs, void *const *outputs, int64_t batch, "
        "int nthreads);\n"
        + (f"int {prefix}_call({flat}int64_t batch, int nthreads);\n" if call else "")
        + f"const char *{prefix}_strerror(int code);\n"
        f"int64_t {prefix}_pack_slot(int s, int *param);\n"
        f"int {prefix}_pack(int s, const void *w, void *out);\n"
    )


def profile_cdef(prefix: str) -> str:
    """cffi declarations of a profiled program's table (CodegenOptions.profile): PREFIX_profile
    copies up to `n` call sites' counts and nanoseconds and returns how many call sites the
    program has; PREFIX_profile_label(i) names call site i's kernel and IR."""
    return (
        f"int {prefix}_profile(int64_t *calls, int64_t *ns, int n);\n"
        f"const char *{prefix}_profile_label(int i);\n"
    )


def packed_cdef(prefix: str, n_pointers: int) -> str:
    """cffi declarations of `PREFIX_run_packed` and `PREFIX_call_packed`. Not in
    `CProgram.cdef`: lucid.compile reaches them through its shim, and every cffi wrapper costs
    build time (these two: ~0.1 s of gcc for a 1024-wide MLP)."""
    flat = "".join(f"intptr_t a{i}, " for i in range(n_pointers))
    return (
        f"int {prefix}_run_packed(const void *const *inputs, void *const *outputs, "
        "const void *const *packed, int64_t batch, int nthreads);\n"
        f"int {prefix}_call_packed({flat}intptr_t packed, int64_t batch, int nthreads);\n"
    )


def _shared_blocks(kernels: list[Kernel], threads: ThreadsMode) -> list[SharedBlock]:
    """Each shared block once, in first-use order. Lowerings emit the default thread helper; the
    translation unit gets the one of `options.threads` (one mode per file)."""
    blocks = {b.key: b for k in kernels for b in k.shared}
    if PARALLEL_KEY in blocks:
        blocks[PARALLEL_KEY] = parallel_block(threads)
    return list(blocks.values())


# What both units of a split program define first: the machinery's entry points become
# external (hidden: never visible outside the module) instead of file-local.
_SPLIT_LINKAGE = '#define LUCID_SHARED_FN __attribute__((visibility("hidden")))'


def second_unit(blocks: Sequence[SharedBlock]) -> str:
    """The second translation unit laying out `blocks` (in dependency order)."""
    return "\n".join(
        [
            "/* Generated by lucid.codegen.emit_c -- do not edit. The GEMM machinery and thread",
            " * helper of the program(s) in the other translation unit, compiled in parallel with",
            " * it (CodegenOptions.split) and linked into the same module. */",
            _SPLIT_LINKAGE,
            "",
            *(b.text.rstrip() + "\n" for b in blocks),
        ]
    )


def union_blocks(*programs: CProgram) -> tuple[SharedBlock, ...]:
    """The second-unit blocks of several split programs, each once: the first program's in its
    order, then what the others add in theirs (each list is in dependency order, and a block
    only depends on blocks before it in its own list). One unit built from them serves every
    one of the programs."""
    blocks: dict[str, SharedBlock] = {}
    for program in programs:
        for b in program.shared_blocks:
            blocks.setdefault(b.key, b)
    return tuple(blocks.values())


def _split(
    blocks: list[SharedBlock], split: bool
) -> tuple[tuple[str, ...], tuple[SharedBlock, ...]]:
    """(the shared texts of the program's unit, the blocks of the second unit: none unsplit).

    Unsplit, every block is laid out in the program. Split (when GEMM machinery can move), the
    machinery moves to a second unit that the build compiles in parallel, and the program keeps
    the types and the prototypes it calls."""
    movable = [b for b in blocks if b.decl is not None]
    # the thread helper alone is not worth a second compiler process and a link step
    if not split or all(b.key == PARALLEL_KEY for b in movable):
        return tuple(b.text.rstrip() for b in blocks), ()
    here = tuple(
        b.text.rstrip()
        if b.decl is None
        else f"/* {b.key}: in the second unit */\n{b.decl.rstrip()}"
        for b in blocks
        if b.decl != ""
    )
    return here, tuple(blocks)


def _lower(graph: Graph, ctx: LowerCtx) -> Kernel:
    """Dispatch: the lowering the op names, else its scalar C expression, else CompileError."""
    node = ctx.node
    opdef = OPS.get(node.op)
    if opdef is not None and opdef.lowering is not None and opdef.lowering in LOWERINGS:
        return LOWERINGS[opdef.lowering](ctx)
    if opdef is not None and opdef.c is not None and not opdef.region:
        return _lower_loops.lower_elementwise(ctx)
    raise CompileError(diagnose(f"op {node.op!r} has no C lowering", graph, node))


def _batch_symbol(graph: Graph) -> str | None:
    """The one symbolic dim of the graph, or None; CompileError if there are several."""
    found: dict[str, None] = {}
    types = [*graph.input_types, *graph.param_types]
    types += [r.type for _, node in graph.walk() for r in node.results]
    for t in types:
        found.update(dict.fromkeys(t.symbols))
    if len(found) > 1:
        listed = ", ".join(sorted(found))
        raise CompileError(
            f"graph @{graph.name} has the symbolic dims {listed}; compiled code binds only one "
            "(the batch): make the others static"
        )
    return next(iter(found), None)


def _batch_note(graph: Graph, symbol: str | None) -> str:
    """What the program's header says `batch` is, with an example of a scaled dim if any."""
    if symbol is None:
        return "static shapes (the `batch` argument is ignored)"
    note = f"the symbol {c_comment(symbol)} is the argument `batch`"
    types = [*graph.input_types, *(r.type for _, node in graph.walk() for r in node.results)]
    scaled = next((d for t in types for d in t.shape if is_symbol(d) and dim_parts(d)[1] > 1), None)
    if scaled is not None:
        note += f"; a dim such as {c_comment(str(scaled))} is computed from it: {dim_c(scaled)}"
    return note


def _ir_comment(lines: list[str], where: dict[Node, int], node: Node) -> str:
    """The node's IR line (and its region's lines, for a fused node), safe for a C comment."""
    start = where[node]
    text = [lines[start].strip()]
    if node.body is not None:
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        for line in lines[start + 1 :]:
            text.append(line.strip())
            if line == indent + "}":
                break
    return "\n * ".join(_cut(c_comment(t)) for t in text)


def _profile_ir(lines: list[str], where: dict[Node, int], node: Node) -> str:
    """The node's IR line for the profile table, and for a fused node its region's ops."""
    start = where[node]
    text = lines[start].strip()
    if node.body is not None:  # the region's lines follow: `{` ... `}`
        text = f"{text.removesuffix('{').rstrip()} {{ {' '.join(n.op for n in node.body.nodes)} }}"
    return _cut(text)


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_COMMENT else text[: _MAX_COMMENT - 4] + " ..."


def _constant(index: int, node: Node, ir_line: str) -> Constant:
    """A constant's values as C literals of its dtype (exact round trip)."""
    t = node.result.type
    data = np.asarray(node.attrs["value"], dtype=t.dtype.np).reshape(-1)
    values = ", ".join(_scalar_c.c_literal(x, t.dtype) for x in data.tolist()) or "0"
    return Constant(f"k{index}_constant_data", t.dtype.c, max(1, data.size), values, ir_line)


def _type_note(v: Value, role: str) -> str:
    hint = f" {v.hint}" if v.hint else ""
    return c_comment(f"{role}{hint}: {v.type}")


def _decls(
    graph: Graph, plan: MemoryPlan, names: dict[Value, str], constants: list[Constant]
) -> tuple[Decl, ...]:
    """A typed pointer for every value, pointing at its planned storage."""
    const_data = {}
    for node in graph.nodes:
        if node.op == "constant":
            const_data[node.result] = f"k{graph.nodes.index(node)}_constant_data"
    roles = {v: f"input {i}" for i, v in enumerate(graph.inputs)}
    roles.update({v: f"param {i}" for i, v in enumerate(graph.params)})
    out = []
    for v in graph.all_values():
        st, t, n = plan.storage[v], v.type.dtype.c, names[v]
        if st.kind == "input":
            decl = f"const {t} *{n} = (const {t} *)inputs[{st.index}];"
            note = _type_note(v, roles[v])
        elif st.kind == "output":
            decl = f"{t} *{n} = ({t} *)outputs[{st.index}];"
            note = _type_note(v, f"output {st.index}")
        elif st.kind == "arena":
            decl = f"{t} *{n} = ({t} *)(arena + slot_off[{st.index}]);"
            note = _type_note(v, f"slot {st.index}")
        elif st.kind == "const":
            decl = f"const {t} *{n} = {const_data[v]};"
            note = _type_note(v, "constant")
        else:
            assert st.base is not None
            decl = f"const {t} *{n} = {names[st.base]};"
            note = _type_note(v, "alias, no copy")
        out.append(Decl(decl, note))
    return tuple(out)


def _nbytes(t: TensorType) -> str:
    return f"(size_t)({prod_c(t.shape)}) * sizeof({t.dtype.c})"


def _copies(graph: Graph, plan: MemoryPlan, names: dict[Value, str]) -> tuple[Copy, ...]:
    """Outputs copied at exit: inputs, params, constants and repeated outputs."""
    out = []
    for j, v in plan.copies:
        st = plan.storage[v]
        src = f"outputs[{st.index}]" if st.kind == "output" else names[v]
        out.append(Copy(j, src, _nbytes(v.type), c_comment(f"output {j}: {v.type}")))
    return tuple(out)


def _size_rows(graph: Graph, plan: MemoryPlan) -> tuple[tuple[SizeRow, ...], int]:
    """The arena slots' byte sizes, then every other distinct batch-dependent size (checked so
    that no index computed in a kernel can overflow int64)."""
    rows: list[tuple[Poly, str]] = [(s.size, f"slot {s.index}") for s in plan.slots]
    seen = {p.trimmed() for p, _ in rows}
    for v in graph.all_values():
        if v.type.is_static:
            _check_static(v.type)
            continue
        nonzero = tuple(d for d in v.type.shape if d != 0)
        poly = Poly.of_dims(nonzero, v.type.dtype.itemsize).trimmed()
        if poly not in seen:
            seen.add(poly)
            rows.append((poly, f"{v.type}"))
    degree = max((len(p.trimmed().coefs) for p, _ in rows), default=1)
    return (
        tuple(
            SizeRow(", ".join(str(p.coef(d)) for d in range(degree)), c_comment(note))
            for p, note in rows
        ),
        degree,
    )


def _check_static(t: TensorType) -> None:
    nbytes = t.numel() * t.dtype.itemsize
    if nbytes >= 2**62:
        raise CompileError(f"a tensor of type {t} needs {nbytes} bytes, more than lucid supports")


__all__ = ["ERRORS", "CProgram", "CodegenOptions", "emit_c", "error_for"]
