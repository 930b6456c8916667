"""What a lowering works with: LowerCtx (one node's C view) and Kernel (its C function).

A lowering turns one node into one C kernel; the op's entry names it (`OpDef.lowering`) and
lucid/codegen/lowerings.py maps the names to the functions.

Calling convention of every kernel (made by `LowerCtx.kernel`): the node's inputs as
`const T *restrict x0, x1, ...`, its results as `T *restrict y0, y1, ...` (never aliasing an
input), then one `const T *restrict p0, p1, ...` per prepacked weight it declared (`Prepack`:
the weight packed ahead of the call, or NULL to pack it in the call), then `int64_t batch` if
any of its types holds the batch symbol, then `int nthreads` if the lowering asked for threads. It returns 0 or a LUCID_E_* code; inputs are C-contiguous.
An elementwise op needs no lowering function: its `OpDef.c` scalar expression is enough
(see _scalar_c.py); an op that names a lowering uses it instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from lucid.codegen.gemm import (
    SPAWN_MIN_WORK,
    Blocking,
    CacheSizes,
    CpuId,
    DTypeName,
    GemmProblem,
    GemmSpec,
    Isa,
    SharedBlock,
    ThreadsMode,
    prepacked_a_elems,
    prepacked_b_elems,
)
from lucid.errors import CompileError
from lucid.ir.core import Node, Value
from lucid.ir.types import Dim, DType, dim_parts

LowerFn = Callable[["LowerCtx"], "Kernel"]
BlockingFor = Callable[[GemmProblem], Blocking]


def c_comment(text: str) -> str:
    """`text` made safe inside a /* */ comment: no `*/` or `/*`, printable ASCII only."""
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    while "*/" in safe or "/*" in safe:
        safe = safe.replace("*/", "* /").replace("/*", "/ *")
    return safe


def c_string(text: str) -> str:
    """`text` as a C string literal: printable ASCII kept, everything else octal-escaped."""
    body = "".join(
        ch
        if (" " <= ch <= "~" and ch not in '"\\?')
        else "".join(f"\\{b:03o}" for b in ch.encode())
        for ch in text
    )
    return f'"{body}"'


def c_ident(text: str) -> str:
    """A C identifier fragment from an internal name (op names are registry keys, not user
    strings, but a stray character must still never reach the C text)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


_GEMM_DTYPES: tuple[DTypeName, ...] = ("float", "double")


def gemm_dtype(dtype: DType) -> DTypeName:
    """The GEMM element type of `dtype`: GEMMs are float or double, nothing else."""
    for name in _GEMM_DTYPES:
        if dtype.c == name:
            return name
    raise CompileError(f"a GEMM needs float32 or float64 operands, got {dtype}")


def dim_c(d: Dim) -> str:
    """A dim as C: its int, `batch` for the (one) symbol, `(batch * 8)` for `N*8`. Every C
    size of a kernel is made by this function or `prod_c`."""
    symbol, factor = dim_parts(d)
    if symbol is None:
        return str(factor)
    return "batch" if factor == 1 else f"(batch * {factor})"


def prod_c(dims: tuple[Dim, ...] | list[Dim]) -> str:
    """The product of `dims` as a C int64 expression, static parts and the factors of scaled
    symbols (N*8) folded: `batch * 15`."""
    static = 1
    syms = 0
    for d in dims:
        symbol, factor = dim_parts(d)
        static *= factor
        syms += symbol is not None
    if static == 0:
        return "0"
    parts = ["batch"] * syms + ([str(static)] if static != 1 or not syms else [])
    return " * ".join(parts)


def strides_c(shape: tuple[Dim, ...]) -> list[str]:
    """C-contiguous element strides of `shape` as C expressions."""
    return [prod_c(shape[i + 1 :]) for i in range(len(shape))]


def index_c(terms: list[tuple[str, str]]) -> str:
    """`i0 * 15 + i1 * 5 + i2` from (loop variable, stride) pairs; "0" when empty."""
    parts = [v if s == "1" else f"{v} * {s}" for v, s in terms if s != "0"]
    return " + ".join(parts) or "0"


def broadcast_index(
    in_shape: tuple[Dim, ...], out_shape: tuple[Dim, ...], loop_vars: list[str]
) -> str:
    """Index into a C-contiguous input of `in_shape` broadcast to `out_shape`, whose loop
    variables are `loop_vars`: size-1 (and missing) axes contribute nothing."""
    offset = len(out_shape) - len(in_shape)
    strides = strides_c(in_shape)
    terms = []
    for k, d in enumerate(in_shape):
        if d == 1:
            continue  # broadcast (or size 1 on both sides): the index along it is always 0
        terms.append((loop_vars[k + offset], strides[k]))
    return index_c(terms)


@dataclass(frozen=True)
class Kernel:
    """One static C function: the text the program template lays out (every choice made)."""

    name: str
    comment: str  # sanitised IR line(s)
    params: str  # the C parameter list
    body: str  # C statements, indented by 4
    support: str = ""  # top-level C emitted before the kernel (e.g. a GEMM function)
    shared: tuple[SharedBlock, ...] = ()  # top-level C laid out once per file, before all kernels
    uses_batch: bool = False
    uses_threads: bool = False
    prepacks: tuple[Prepack, ...] = ()  # parameters p0, p1, ... in this order


@dataclass(frozen=True)
class Prepack:
    """A graph parameter (a weight) that a kernel's GEMM can take packed ahead of the call:
    `pack_fn(const T *w, T *out)` writes `elems` elements, 64-byte aligned, into `out`."""

    pack_fn: str
    ctype: str
    elems: int
    param: int  # index of the weight in graph.params


@dataclass(frozen=True)
class LowerCtx:
    """What a lowering function sees: the node, its index, naming, options and the IR text."""

    node: Node
    index: int
    ir_line: str  # the node's IR line, already sanitised for a C comment
    isa: Isa
    caches: CacheSizes
    threads_min_work: int
    blocking_for: BlockingFor | None = None  # None: the cost model (see gemm_blocking)
    params: tuple[Value, ...] = ()  # the graph's params: weights a GEMM may take prepacked
    cpu: CpuId | None = None  # the CPU kind whose gemm.CPU_TABLE entry wins (None: cost model)
    threads: ThreadsMode = "pool"  # how the program runs parallel tasks (CodegenOptions.threads)

    def gemm_blocking(
        self,
        dtype: DTypeName,
        trans_a: bool,
        trans_b: bool,
        m_dims: tuple[Dim, ...],
        n: int | None,
        k: int | None,
    ) -> Blocking:
        """The cache blocking of one GEMM of this node: `blocking_for`'s (a tuner) when set,
        else the CPU table's or the cost model's choice, which leaves the C exactly as it was
        without tuning."""
        problem = GemmProblem(
            dtype, self.isa, trans_a, trans_b, m_dims, n, k, self.caches, self.cpu
        )
        blocking = (
            problem.default_blocking() if self.blocking_for is None else self.blocking_for(problem)
        )
        if self.threads == "spawn":  # a thread created for the call must pay for its start
            blocking = replace(blocking, par_min_work=max(blocking.par_min_work, SPAWN_MIN_WORK))
        return blocking

    @property
    def name(self) -> str:
        """The kernel's C name, from the node index and op: `k3_hardswish`."""
        return f"k{self.index}_{c_ident(self.node.op)}"

    @property
    def inputs(self) -> tuple[Value, ...]:
        """The node's inputs (parameters x0, x1, ...)."""
        return self.node.inputs

    @property
    def results(self) -> tuple[Value, ...]:
        """The node's results (parameters y0, y1, ...)."""
        return self.node.results

    def param_of(self, v: Value) -> int | None:
        """The graph param index of input `v` (a weight), or None."""
        return self.params.index(v) if v in self.params else None

    def prepack(self, spec: GemmSpec, b: Value) -> Prepack | None:
        """The kernel parameter for B (input `b`) of GEMM `spec` taken prepacked: when `b` is a
        graph param and the spec has a prepacked B (`gemm.prepacked_b_elems`), else None."""
        return self._prepack(spec, b, prepacked_b_elems(spec), "pack_b")

    def prepack_a(self, spec: GemmSpec, a: Value) -> Prepack | None:
        """The kernel parameter for A (input `a`) of GEMM `spec` taken prepacked: when `a` is a
        graph param and the spec has a prepacked A (`gemm.prepacked_a_elems`), else None."""
        return self._prepack(spec, a, prepacked_a_elems(spec), "pack_a")

    def _prepack(self, spec: GemmSpec, v: Value, elems: int, fn: str) -> Prepack | None:
        param = self.param_of(v)
        if not elems or param is None:
            return None
        return Prepack(f"{spec.name}_{fn}", spec.dtype, elems, param)

    def uses_batch(self) -> bool:
        """True if a type of the node holds the batch symbol."""
        return any(not v.type.is_static for v in (*self.node.inputs, *self.node.results))

    def kernel(
        self,
        body: str,
        *,
        support: str = "",
        shared: tuple[SharedBlock, ...] = (),
        threads: bool = False,
        prepacks: tuple[Prepack, ...] = (),
    ) -> Kernel:
        """The Kernel of this node with the standard calling convention."""
        params = [f"const {v.type.dtype.c} *restrict x{i}" for i, v in enumerate(self.inputs)]
        params += [f"{v.type.dtype.c} *restrict y{i}" for i, v in enumerate(self.results)]
        params += [f"const {p.ctype} *restrict p{j}" for j, p in enumerate(prepacks)]
        batch = self.uses_batch()
        if batch:
            params.append("int64_t batch")
        if threads:
            params.append("int nthreads")
        return Kernel(
            name=self.name,
            comment=self.ir_line,
            params=", ".join(params) or "void",
            body=body.rstrip("\n"),
            support=support,
            shared=shared,
            uses_batch=batch,
            uses_threads=threads,
            prepacks=prepacks,
        )


def ctype(dtype: DType) -> str:
    """The C element type of `dtype`."""
    return dtype.c
