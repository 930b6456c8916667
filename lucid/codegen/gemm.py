"""GEMM kernel generator: one specialised, reentrant C function per (fused) matmul/linear node.

API
---
``emit_gemm(spec: GemmSpec) -> str`` returns a self-contained C fragment (it includes its own
headers; several fragments may share one translation unit) defining::

    static int NAME(const T *A, const T *B, T *C, int64_t M, int64_t N, int64_t K,
                    <one `const T *e_<operand>` per distinct epilogue operand, in step order>,
                    <`T *colsum` when epilogue.colsum>, int nthreads);

``gemm_prototype(spec)`` returns that declaration (for a cffi cdef or a forward declaration),
``gemm_params(spec)`` the parameter list as (C type, name) pairs. ``gemm_parts(spec)`` splits the
fragment into the shared machinery (``SharedBlock``s named by dtype, isa, register tile and
transposition, see ``_gemm_shared.py``) and the node's own text (its epilogue ``finish``, small
path and entry function), so a translation unit with many GEMMs holds one copy of the packing
routines, micro-kernels and driver per distinct parameter set.

Semantics: ``C[M,N] = epilogue(op(A) @ op(B))`` with ``op(A) = A.T`` when ``trans_a`` (A stored
[K,M]) and ``op(B) = B.T`` when ``trans_b`` (B stored [N,K]: the Linear weight layout). All arrays
are C-contiguous, dense, and operands must not alias C. Operand shapes by ``broadcast``: "col"
[N] (e.g. a bias), "row" [M], "full" [M,N], "scalar" [1]. ``colsum`` (when the epilogue asks for
it) receives ``sum_i C[i, j]`` of the final values (overwritten, not accumulated); the sum order
is fixed, so it is bitwise identical for every ``nthreads``. Static dims (``spec.m/n/k`` not
None) are checked against the runtime arguments. Returns 0, ``-1`` on allocation failure,
``-2`` on bad arguments (negative or mismatching dims, NULL pointers). M == 0 or N == 0 returns
0 at once (colsum zeroed); K == 0 gives ``epilogue(0)``.

Threads: ``nthreads`` threads share the work only when M*N*K is above ``Blocking.par_min_work``
per thread; ``spec.threads`` says whose: "pool" (default, lucid.compile) runs the tasks on a
persistent, fork-checked worker pool of the translation unit, "spawn" (AOT) creates pthreads for
the call and joins them before returning (no global state); see parallel.c.j2. C is
cut into ``Blocking.jobs_per_thread`` x nthreads rectangles of whole tiles (rows and/or columns,
never K), which the threads claim from an atomic counter, each packing A into its own buffer.
op(B) is packed once per call into a buffer the threads share (up to
``Blocking.shared_b_bytes``; beyond it each job packs its own panels), in units claimed by
whichever thread needs them first. Every C element is computed by the same operations whatever
the thread count (results are bitwise identical) and a thread on a busy core takes fewer jobs.

Small path (``plan_paths``): when static shapes make the GEMM tiny (N*K or M*N at most
``Blocking.small_elems``) only a plain loop nest is emitted: a few rows of C summed in locals,
K in order with one FMA per product (the blocked path's rounding while K fits one block), no
packing, allocation or threads. Otherwise, with N static, a runtime check sends calls of at
most ``Blocking.small_work`` multiply-adds to that loop and the rest to the blocked path.

Kernel (BLIS/GotoBLAS): loops jc (nc columns) -> pc (kc of K) -> ic (mc rows) -> jr (NR) -> ir
(MR); B panels (kc x nc) and A blocks (mc x kc) are packed per thread into 64-byte aligned
zero-padded buffers (transposes are absorbed by the packing: AVX-512 packs a transposed B with
in-register 16x16 / 8x8 transposes); a register-blocked micro-kernel (FMA intrinsics for
"avx512"/"avx2", plain vectorisable loops for "scalar") keeps an MR x NR tile in registers for a
whole K block. Full tiles with nothing left to apply go straight from registers to C; the last K
block of an epilogue GEMM (and every edge tile) goes through a small L1 tile buffer, where the
epilogue runs before the single store of the valid part. Block sizes come from
``choose_blocking(dtype, isa, caches, n=static N)`` (a cost model on cache sizes, passed in the
spec so output is deterministic; ``_gemm_blocking.py``); ``detect_caches()`` / ``detect_isa()``
read this machine. The driver calls the node's ``finish`` (epilogue and store of a finished tile)
and the packing routines through pointers: once per tile or block, never per element.

Epilogue steps are C statements on ``v`` (the element, of the GEMM's type ``T``); a step with an
operand also sees ``x``, that operand's element. ``bias_add``, ``unary`` (relu, relu6,
hardsigmoid, hardswish, with the selects of ``lucid/_np_kernels.py``) and ``binary`` (add, sub,
mul, div, maximum, minimum) build the common ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lucid.codegen import _gemm_shared as shared
from lucid.codegen._gemm_blocking import (
    Blocking,
    CacheSizes,
    DTypeName,
    Isa,
    choose_blocking,
    detect_caches,
    detect_isa,
    vec_of,
)
from lucid.codegen._gemm_shared import SharedBlock, ThreadsMode
from lucid.codegen._jinja import render

Broadcast = Literal["scalar", "row", "col", "full"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ------------------------------------------------------------------------------- epilogue


@dataclass(frozen=True)
class EpilogueStep:
    """One C statement block on the scalar `v` (element (i, j)); `x` is the operand's element."""

    code: str  # e.g. "v = v + x;" -- must assign v, may read v and x (when operand is set)
    operand: str | None = None  # C identifier of the extra input (becomes parameter e_<operand>)
    broadcast: Broadcast = "col"


@dataclass(frozen=True)
class Epilogue:
    """Elementwise steps applied in order to each finished tile, then an optional column sum."""

    steps: tuple[EpilogueStep, ...] = ()
    colsum: bool = False  # also write colsum[j] = sum over i of the final C[i, j]


def _lit(value: float, dtype: DTypeName) -> str:
    """A C literal of `value` in `dtype` (so float arithmetic stays float, as in NumPy)."""
    text = repr(float(value))
    return text + ("f" if dtype == "float" else "")


def bias_add(operand: str) -> EpilogueStep:
    """v + bias[j]: the Linear bias."""
    return EpilogueStep("v = v + x;", operand, "col")


def binary(op: str, operand: str, broadcast: Broadcast, dtype: DTypeName) -> EpilogueStep:
    """v (op) x for op in add, sub, mul, div, maximum, minimum (NaN rules of DESIGN.md)."""
    del dtype  # the selects below need no literals
    codes = {
        "add": "v = v + x;",
        "sub": "v = v - x;",
        "mul": "v = v * x;",
        "div": "v = v / x;",
        "maximum": "v = (v > x || v != v) ? v : x;",
        "minimum": "v = (v < x || v != v) ? v : x;",
    }
    return EpilogueStep(codes[op], operand, broadcast)


def unary(op: str, dtype: DTypeName) -> EpilogueStep:
    """An activation with exactly the selects of lucid/_np_kernels.py (relu, relu6, hardswish...)."""
    z, one, six, half = (_lit(c, dtype) for c in (0.0, 1.0, 6.0, 0.5))
    t = f"const {dtype} t = v / {six} + {half};"
    hsig = f"(t < {z} ? {z} : (t > {one} ? {one} : t))"
    codes = {
        "relu": f"v = v < {z} ? {z} : v;",
        "relu6": f"v = v < {z} ? {z} : (v > {six} ? {six} : v);",
        "hardsigmoid": f"{{ {t} v = {hsig}; }}",
        "hardswish": f"{{ {t} v = v * {hsig}; }}",
    }
    return EpilogueStep(codes[op])


# ------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class GemmSpec:
    """What to generate; `name` and operand names must already be C identifiers."""

    name: str
    dtype: DTypeName
    trans_a: bool
    trans_b: bool
    m: int | None  # None: runtime (the symbolic batch)
    n: int | None
    k: int | None
    epilogue: Epilogue | None = None
    isa: Isa = "scalar"
    blocking: Blocking | None = None  # None: choose_blocking(dtype, isa) with default caches
    ir_comment: str = ""  # the IR line(s) this kernel implements, copied into the C comment
    threads: ThreadsMode = "pool"  # lucid_parallel_run: persistent pool or per-call threads
    # op(B) may come packed ahead of the call (a weight, packed once while it is unchanged):
    # adds `NAME_pack_b` and a `Bp` parameter when N and K are static and the blocked path exists
    prepack_b: bool = False

    def resolved_blocking(self) -> Blocking:
        """The blocking actually used."""
        return self.blocking or choose_blocking(self.dtype, self.isa, n=self.n)


# ------------------------------------------------------------------------------- template data


@dataclass(frozen=True)
class Operand:
    """An epilogue input as the C code sees it."""

    param: str  # e_<name>
    load: str  # C expression of its element for tile element (i, j)


def _check_ident(name: str, what: str) -> None:
    if not _IDENT.match(name):
        raise ValueError(f"{what} {name!r} is not a C identifier")


def _operands(ep: Epilogue) -> tuple[tuple[Operand, ...], tuple[str, ...]]:
    """Distinct operands (first use order) and the step statements with `x` bound."""
    loads = {
        "col": "{p}[j0 + j]",
        "row": "{p}[i0 + i]",
        "full": "{p}[(i0 + i) * N + j0 + j]",
        "scalar": "{p}[0]",
    }
    seen: dict[str, Operand] = {}
    kinds: dict[str, str] = {}
    steps = []
    for step in ep.steps:
        if step.operand is None:
            steps.append(step.code)
            continue
        _check_ident(step.operand, "epilogue operand")
        if kinds.setdefault(step.operand, step.broadcast) != step.broadcast:
            raise ValueError(f"operand {step.operand!r} used with two broadcasts")
        param = f"e_{step.operand}"
        op = seen.setdefault(step.operand, Operand(param, loads[step.broadcast].format(p=param)))
        steps.append(f"{{ const T x = {op.load}; {step.code} }}")
    return tuple(seen.values()), tuple(steps)


def gemm_params(spec: GemmSpec) -> list[tuple[str, str]]:
    """The C parameters of the generated function, as (type, name)."""
    t = spec.dtype
    params = [
        (f"const {t} *", "A"),
        (f"const {t} *", "B"),
        (f"{t} *", "C"),
        ("int64_t", "M"),
        ("int64_t", "N"),
        ("int64_t", "K"),
    ]
    if spec.epilogue is not None:
        ops, _ = _operands(spec.epilogue)
        params += [(f"const {t} *", op.param) for op in ops]
        if spec.epilogue.colsum:
            params.append((f"{t} *", "colsum"))
    if prepacked_b_elems(spec):
        params.append((f"const {t} *", "Bp"))
    params.append(("int", "nthreads"))
    return params


def prepacked_b_elems(spec: GemmSpec) -> int:
    """Elements of `NAME_pack_b`'s output (op(B) in the blocked path's packed layout), or 0 when
    the spec has no prepacked B (not asked for, a runtime N or K, K == 0, or no blocked path).

    The layout is the driver's (`_prepack` in gemm_driver.c.j2): K blocks one after another,
    each of ceil(N / nr) zero-padded micro-panels of nr columns, so K * (N rounded up to nr)."""
    n, k = spec.n, spec.k
    if not spec.prepack_b or n is None or k is None or n == 0 or k == 0:
        return 0
    if not plan_paths(spec)[1]:
        return 0
    nr = spec.resolved_blocking().nr
    return k * (-(-n // nr) * nr)


def gemm_prototype(spec: GemmSpec) -> str:
    """`int NAME(...);` -- the declaration a cffi cdef needs."""
    args = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{n}" for t, n in gemm_params(spec))
    return f"int {spec.name}({args});"


@dataclass(frozen=True)
class SmallPath:
    """The unpacked loop of a tiny GEMM: `mb` rows of C at a time, `nn` (= static N) columns."""

    mb: int
    nn: int
    a_index: str  # element (row i0 + i, k p) of op(A)
    b_index: str  # element (k p, column j) of op(B)


@dataclass(frozen=True)
class NodeTemplate:
    """Everything gemm.c.j2 lays out for one node; every choice is already made here."""

    name: str
    T: str
    S: str  # f32 / f64: the shared types' suffix
    header_comment: str
    formula: str
    path_notes: tuple[str, ...]
    params: str  # the C parameter list
    small_params: str
    small_args: str
    static_dims: tuple[tuple[str, int], ...]
    operands: tuple[Operand, ...]
    ep_struct: bool
    steps: tuple[str, ...]  # C statements, operand loads already in place
    colsum: bool
    plain: bool  # no epilogue steps and no column sums: full tiles never need the tile buffer
    fma: str
    small: SmallPath | None
    small_work: int
    blocked: bool
    mr: int
    nr: int
    mc: int
    kc: int
    nc: int
    par_min_work: int
    jobs_per_thread: int
    shared_b_bytes: int
    driver: str
    pack_a: str
    pack_b: str
    prepacked: int  # elements of NAME_pack_b's output; 0: no prepacked B
    n: int | None  # the static N and K (for NAME_pack_b)
    k: int | None


def plan_paths(spec: GemmSpec) -> tuple[SmallPath | None, bool]:
    """(small path or None, whether the blocked path is emitted), decided from static shapes.

    The small path alone when a static N*K or M*N is at most `small_elems` (B, or the block of
    C summed over all of K, is tiny whatever the runtime dim) or a static M*N*K at most
    `small_work`; both behind a runtime check of M*N*K otherwise (N static and at most 1024:
    the row of sums lives on the stack); the blocked path alone when N is a runtime dim."""
    blk = spec.resolved_blocking()
    m, n, k = spec.m, spec.n, spec.k
    if n is None or n > 1024 or blk.small_work <= 0:
        return None, True
    a_index = "p * M + (i0 + i)" if spec.trans_a else "(i0 + i) * K + p"
    b_index = "j * K + p" if spec.trans_b else f"p * {n} + j"
    whole_c = m is not None and m * n <= blk.small_elems
    mb = m if whole_c and m is not None and m > 0 else 1
    path = SmallPath(mb, n, a_index, b_index)
    if whole_c or (k is not None and n * k <= blk.small_elems):
        return path, False
    if m is not None and k is not None and m * n * k <= blk.small_work:
        return path, False
    return path, True


def _node_template(spec: GemmSpec) -> NodeTemplate:
    """Make every generation decision for `spec`'s own function (not the shared machinery)."""
    blk = spec.resolved_blocking()
    ep = spec.epilogue or Epilogue()
    operands, steps = _operands(ep)
    small, blocked = plan_paths(spec)
    pack_a, pack_b = shared.pack_names(spec.dtype, spec.isa, blk, spec.trans_a, spec.trans_b)
    opa = "A^T" if spec.trans_a else "A"
    opb = "B^T" if spec.trans_b else "B"
    dims = "x".join(
        str(d) if d is not None else s for d, s in ((spec.m, "M"), (spec.n, "N"), (spec.k, "K"))
    )
    t = spec.dtype
    small_params = [f"const {t} *restrict A", f"const {t} *restrict B", f"{t} *restrict C"]
    small_params += ["int64_t M", "int64_t N", "int64_t K"]
    small_params += [f"const {t} *restrict {op.param}" for op in operands]
    small_params += [f"{t} *restrict colsum"] if ep.colsum else []
    small_args = ["A", "B", "C", "M", "N", "K", *(op.param for op in operands)]
    small_args += ["colsum"] if ep.colsum else []
    notes = []
    if small is not None:
        when = "always" if not blocked else f"when M*N*K <= {blk.small_work}"
        notes.append(f"small path ({when}): plain loops, {small.mb} row(s) at a time")
    if blocked:
        notes.append(
            f"blocked path: register tile {blk.mr}x{blk.nr} ({shared.driver_name(t, spec.isa, blk)}); "
            f"cache blocks mc={blk.mc} kc={blk.kc} nc={blk.nc}"
        )
    return NodeTemplate(
        name=spec.name,
        T=t,
        S=shared.short(t),
        header_comment=spec.ir_comment.replace("*/", "* /"),
        formula=f"C = {opa} @ {opb} ({dims}, {t}, {spec.isa})",
        path_notes=tuple(notes),
        params=", ".join(
            f"{ty}{'' if ty.endswith('*') else ' '}{n}" for ty, n in gemm_params(spec)
        ),
        small_params=", ".join(small_params),
        small_args=", ".join(small_args),
        static_dims=tuple(
            (d, v) for d, v in (("M", spec.m), ("N", spec.n), ("K", spec.k)) if v is not None
        ),
        operands=operands,
        ep_struct=bool(operands) and blocked,
        steps=steps,
        colsum=ep.colsum,
        plain=not steps and not ep.colsum,
        fma="LUCID_GEMM_FMAF" if t == "float" else "LUCID_GEMM_FMAD",
        small=small,
        small_work=blk.small_work,
        blocked=blocked,
        mr=blk.mr,
        nr=blk.nr,
        mc=blk.mc,
        kc=blk.kc,
        nc=blk.nc,
        par_min_work=blk.par_min_work,
        jobs_per_thread=max(1, blk.jobs_per_thread),
        shared_b_bytes=max(0, blk.shared_b_bytes),
        driver=shared.driver_name(t, spec.isa, blk),
        pack_a=pack_a,
        pack_b=pack_b,
        prepacked=prepacked_b_elems(spec),
        n=spec.n,
        k=spec.k,
    )


def _validate(spec: GemmSpec) -> None:
    """ValueError for a spec the generator cannot honour."""
    _check_ident(spec.name, "GEMM name")
    if spec.dtype not in ("float", "double"):
        raise ValueError(f"unsupported GEMM dtype {spec.dtype!r}")
    if spec.isa not in ("avx512", "avx2", "scalar"):
        raise ValueError(f"unknown isa {spec.isa!r}")
    if spec.threads not in shared.THREADS_MODES:
        raise ValueError(f"threads must be one of {shared.THREADS_MODES}, got {spec.threads!r}")
    blk = spec.resolved_blocking()
    vec = vec_of(spec.isa, spec.dtype)
    if vec and blk.nr % vec.lanes:
        raise ValueError(f"nr={blk.nr} is not a multiple of {vec.lanes} lanes")
    if blk.mc % blk.mr or blk.nc % blk.nr or blk.kc <= 0 or blk.kc % 8:
        raise ValueError(f"inconsistent blocking {blk}")


def gemm_parts(spec: GemmSpec) -> tuple[tuple[SharedBlock, ...], str]:
    """(shared machinery the node needs, in dependency order; the node's own C text).

    Lay each shared block out once per translation unit (deduplicate by key), before the nodes."""
    _validate(spec)
    node = _node_template(spec)
    blocks = [shared.common_block(spec.dtype)]
    if node.blocked:
        blk = spec.resolved_blocking()
        blocks = shared.blocked_blocks(
            spec.dtype, spec.isa, blk, spec.trans_a, spec.trans_b, spec.threads
        )
    return tuple(blocks), render("gemm.c.j2", g=node)


def emit_gemm(spec: GemmSpec) -> str:
    """C text of the specialised GEMM function described by `spec`, with its shared machinery
    (guarded: fragments of several specs may be pasted into one file)."""
    blocks, node = gemm_parts(spec)
    return "".join(b.text + "\n" for b in blocks) + node


def default_spec(
    name: str,
    dtype: DTypeName,
    trans_a: bool,
    trans_b: bool,
    m: int | None,
    n: int | None,
    k: int | None,
    epilogue: Epilogue | None = None,
    ir_comment: str = "",
) -> GemmSpec:
    """A GemmSpec for this machine: the detected isa and blocking from its cache sizes."""
    isa = detect_isa()
    blocking = choose_blocking(dtype, isa, detect_caches(), n=n)
    return GemmSpec(name, dtype, trans_a, trans_b, m, n, k, epilogue, isa, blocking, ir_comment)


__all__ = [
    "Blocking",
    "CacheSizes",
    "Epilogue",
    "EpilogueStep",
    "GemmSpec",
    "SharedBlock",
    "bias_add",
    "binary",
    "choose_blocking",
    "default_spec",
    "detect_caches",
    "detect_isa",
    "emit_gemm",
    "gemm_params",
    "gemm_parts",
    "gemm_prototype",
    "prepacked_b_elems",
    "unary",
]
