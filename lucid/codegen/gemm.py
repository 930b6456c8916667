"""GEMM kernel generator: one specialised, reentrant C function per (fused) matmul/linear node.

API
---
``emit_gemm(spec: GemmSpec) -> str`` returns a self-contained C fragment (it includes its own
headers; several fragments may share one translation unit) defining::

    static int NAME(const T *A, const T *B, T *C, int64_t M, int64_t N, int64_t K,
                    <one `const T *e_<operand>` per distinct epilogue operand, in step order>,
                    <`T *colsum` when epilogue.colsum>, int nthreads);

``gemm_prototype(spec)`` returns that declaration (for a cffi cdef or a forward declaration),
``gemm_params(spec)`` the parameter list as (C type, name) pairs.

Semantics: ``C[M,N] = epilogue(op(A) @ op(B))`` with ``op(A) = A.T`` when ``trans_a`` (A stored
[K,M]) and ``op(B) = B.T`` when ``trans_b`` (B stored [N,K]: the Linear weight layout). All arrays
are C-contiguous, dense, and operands must not alias C. Operand shapes by ``broadcast``: "col"
[N] (e.g. a bias), "row" [M], "full" [M,N], "scalar" [1]. ``colsum`` (when the epilogue asks for
it) receives ``sum_i C[i, j]`` of the final values (overwritten, not accumulated); the sum order
is fixed, so it is bitwise identical for every ``nthreads``. Static dims (``spec.m/n/k`` not
None) are checked against the runtime arguments. Returns 0, ``-1`` on allocation failure,
``-2`` on bad arguments (negative or mismatching dims, NULL pointers). M == 0 or N == 0 returns
0 at once (colsum zeroed); K == 0 gives ``epilogue(0)``.

Threads: ``nthreads`` pthreads are created for the call and joined before it returns (no pool,
no global state: fork-safe), only when M*N*K is above ``Blocking.par_min_work`` per thread. C is
cut into ``Blocking.jobs_per_thread`` x nthreads rectangles of whole tiles (rows and/or columns,
never K), which the threads claim from an atomic counter, each packing into its own buffers; so
every C element is computed by the same operations whatever the thread count (results are
bitwise identical) and a thread on a busy core just takes fewer jobs.

Kernel (BLIS/GotoBLAS): loops jc (nc columns) -> pc (kc of K) -> ic (mc rows) -> jr (NR) -> ir
(MR); B panels (kc x nc) and A blocks (mc x kc) are packed per thread into 64-byte aligned
zero-padded buffers (transposes are absorbed by the packing: AVX-512 packs a transposed B with
in-register 16x16 / 8x8 transposes); a register-blocked micro-kernel (FMA intrinsics for
"avx512"/"avx2", plain vectorisable loops for "scalar") keeps an MR x NR tile in registers for a
whole K block. Full tiles with nothing left to apply go straight from registers to C; the last K
block of an epilogue GEMM (and every edge tile) goes through a small L1 tile buffer, where the
epilogue runs before the single store of the valid part. Block sizes come from
``choose_blocking(dtype, isa, caches, n=static N)`` (a cost model on cache sizes, passed in the
spec so output is deterministic); ``detect_caches()`` / ``detect_isa()`` read this machine.

Epilogue steps are C statements on ``v`` (the element, of the GEMM's type ``T``); a step with an
operand also sees ``x``, that operand's element. ``bias_add``, ``unary`` (relu, relu6,
hardsigmoid, hardswish, with the selects of ``lucid/_np_kernels.py``) and ``binary`` (add, sub,
mul, div, maximum, minimum) build the common ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from lucid.codegen._jinja import render

DTypeName = Literal["float", "double"]
Isa = Literal["avx512", "avx2", "scalar"]
Broadcast = Literal["scalar", "row", "col", "full"]

# k steps of A the micro-kernel prefetches ahead, per dtype. f64 panels use 1.75 lines per k and
# gain ~10% from it; f32 (under one line per k) measured no gain, so it issues none.
_A_PREFETCH_K = {"float": 0, "double": 16}
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


# ------------------------------------------------------------------------------- blocking


@dataclass(frozen=True)
class CacheSizes:
    """Per-core data cache sizes in bytes (L3 is the whole shared cache)."""

    l1d: int = 32 * 1024
    l2: int = 1024 * 1024
    l3: int = 8 * 1024 * 1024


@dataclass(frozen=True)
class Blocking:
    """Register tile (mr x nr) and cache blocks; invariants: mc % mr == 0, nc % nr == 0."""

    mr: int
    nr: int
    mc: int
    kc: int
    nc: int
    # M*N*K per thread before a thread pays for itself: creating and joining one costs ~50 us
    # on the 2-core KVM guest measured, about 8M multiply-adds of single-core work.
    par_min_work: int = 1 << 23
    # Jobs per thread, claimed dynamically: on a shared machine one core is often busy, and a
    # static half each then runs at the slower core's pace. Each extra job re-packs its A (or
    # B) block, ~1% of a 1024^3 GEMM.
    jobs_per_thread: int = 3


@dataclass(frozen=True)
class Vec:
    """The intrinsic vocabulary of one isa and dtype."""

    type: str
    lanes: int
    zero: str
    load: str
    store: str
    bcast: str
    fma: str
    loadu: str
    storeu: str
    add: str


def _vec(isa: str, dtype: str) -> Vec | None:
    """The intrinsics of `isa` for `dtype`; None for the scalar path (plain C loops)."""
    if isa not in ("avx512", "avx2"):
        return None
    width = 512 if isa == "avx512" else 256
    sfx, lanes = ("ps", width // 32) if dtype == "float" else ("pd", width // 64)
    p = f"_mm{width}_"
    vtype = f"__m{width}" + ("" if dtype == "float" else "d")
    ops = ("load", "store", "set1", "fmadd", "loadu", "storeu", "add")
    load, store, set1, fmadd, loadu, storeu, add = (f"{p}{op}_{sfx}" for op in ops)
    return Vec(vtype, lanes, f"{p}setzero_{sfx}()", load, store, set1, fmadd, loadu, storeu, add)


_ISA_MACRO = {"avx512": "__AVX512F__", "avx2": "__AVX2__"}


# (mr, nr) of the micro-kernel per (isa, dtype): accumulators use mr * nr / lanes registers.
_TILES: dict[tuple[str, str], tuple[int, int]] = {
    ("avx512", "float"): (14, 32),
    ("avx512", "double"): (14, 16),
    ("avx2", "float"): (6, 16),
    ("avx2", "double"): (6, 8),
    ("scalar", "float"): (4, 16),
    ("scalar", "double"): (4, 8),
}


def _parse_size(text: str) -> int:
    """Parse a sysfs cache size such as '48K' or '2048K' or '1M'."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def detect_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> CacheSizes:
    """Read cpu0's cache sizes from sysfs; fall back to CacheSizes() defaults per level."""
    found: dict[str, int] = {}
    for index in sorted(Path(root).glob("index*")) if Path(root).is_dir() else []:
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            found[{"1": "l1d", "2": "l2", "3": "l3"}.get(level, "")] = size
    found.pop("", None)
    return replace(CacheSizes(), **found)


def detect_isa(cpuinfo: str = "/proc/cpuinfo") -> Isa:
    """The best GEMM isa this machine runs (for a -march=native build target)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "scalar"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "fma"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "scalar"


def _round_down(x: int, unit: int) -> int:
    """x rounded down to a multiple of unit, at least unit."""
    return max(unit, x // unit * unit)


def choose_blocking(
    dtype: DTypeName, isa: Isa, caches: CacheSizes | None = None, n: int | None = None
) -> Blocking:
    """Cache blocks from a small cost model: the B micro-panel (kc x nr) stays in L1 while the
    A micro-panels stream past it, the A block (mc x kc) in L2, a B panel in part of L3.
    A static N narrower than the tile shrinks nr to whole vectors, so less of each tile is pad."""
    caches = caches or CacheSizes()
    mr, nr = _TILES[(isa, dtype)]
    elem = 4 if dtype == "float" else 8
    vec = _vec(isa, dtype)
    if vec is not None and n is not None and 0 < n < nr:
        nr = -(-n // vec.lanes) * vec.lanes
    # ~2/3 of L1 for the reused B micro-panel; the rest for the streaming A micro-panel and C.
    kc = min(512, _round_down(caches.l1d * 2 // 3 // (nr * elem), 16))
    # A quarter of L2 for the A block: measured best for both dtypes on a 2 MB L2 (B panel
    # lines and C tiles stream through the rest).
    mc = min(1024, _round_down(caches.l2 // 4 // (kc * elem), mr))
    # A B panel is reused across ic blocks; a quarter of L3, capped (the L3 is shared).
    nc = min(4096, _round_down(caches.l3 // 4 // (kc * elem), nr))
    return Blocking(mr=mr, nr=nr, mc=mc, kc=kc, nc=nc)


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

    def resolved_blocking(self) -> Blocking:
        """The blocking actually used."""
        return self.blocking or choose_blocking(self.dtype, self.isa, n=self.n)


# ------------------------------------------------------------------------------- template data


@dataclass(frozen=True)
class UkRow:
    """One row of a micro-kernel: its A element index and its accumulator names."""

    index: int
    acc: tuple[str, ...]
    tile_offsets: tuple[int, ...]  # where each accumulator is spilled in the MR x NR tile


@dataclass(frozen=True)
class Ukernel:
    """A micro-kernel computing `rows` rows (<= MR) of an MR x NR tile."""

    fname: str
    rows: int
    above: int  # used for remainders of more than `above` rows (the next shorter kernel's height)
    acc_rows: tuple[UkRow, ...]
    b_offsets: tuple[int, ...]  # element offset of each B vector in a packed row of NR


@dataclass(frozen=True)
class TransposeStage:
    """One round of the register transpose: swap h-wide blocks between rows i and i + h."""

    h: int
    pairs: tuple[tuple[int, int], ...]
    idx_lo: str  # C constant: permute indices giving the new row i
    idx_hi: str  # ... and the new row i + h


@dataclass(frozen=True)
class TransposeVariant:
    """A transpose function that loads only its first `rows` rows and stores that many columns."""

    fname: str
    rows: int
    load_rows: tuple[int, ...]
    zero_rows: tuple[int, ...]  # never loaded: they may lie past the end of the matrix
    store_mask: str  # "" for full stores, else the C mask of the `rows` stored lanes


@dataclass(frozen=True)
class Transpose:
    """lanes x lanes in-register transposes used by the packing routines (AVX-512 only)."""

    lanes: int
    permute: str  # the two-source permute intrinsic
    mask_store: str
    rows: tuple[int, ...]
    stages: tuple[TransposeStage, ...]
    variants: tuple[TransposeVariant, ...]


def _transpose(
    name: str, vec: Vec | None, isa: str, dtype: str, mr: int, nr: int, trans_a: bool, trans_b: bool
) -> tuple[Transpose | None, str, tuple[tuple[int, str], ...], tuple[int, ...]]:
    """The transposes (index vectors of the recursive block transpose) and where packing uses
    them: (data, B's full-block function or "", A's (row offset, function) groups, B's column
    offsets). Only AVX-512 has the two-source permute; others pack with plain loops."""
    if vec is None or isa != "avx512" or (trans_a and not trans_b):
        return None, "", (), ()
    lanes = vec.lanes
    setter = "_mm512_set_epi32" if lanes == 16 else "_mm512_set_epi64"
    stages = []
    h = lanes // 2
    while h >= 1:
        # new row i takes (a[j], b[j - h]) and new row i + h takes (a[j + h], b[j]) per h-block;
        # indices >= lanes select from the second source b.
        lo = [j if not j & h else lanes + j - h for j in range(lanes)]
        hi = [j + h if not j & h else lanes + j for j in range(lanes)]
        pairs = tuple((i, i + h) for i in range(lanes) if not i & h)
        # _mm512_set_* lists the highest lane first
        stages.append(
            TransposeStage(
                h,
                pairs,
                f"{setter}({', '.join(map(str, reversed(lo)))})",
                f"{setter}({', '.join(map(str, reversed(hi)))})",
            )
        )
        h //= 2
    # B needs full blocks; a non-transposed A needs groups of `lanes` rows covering mr.
    counts = {lanes} if trans_b else set()
    a_groups = []
    if not trans_a:
        for off in range(0, mr, lanes):
            rows = min(lanes, mr - off)
            counts.add(rows)
            a_groups.append((off, f"{name}_transpose_{rows}"))
    mask_t = "__mmask16" if lanes == 16 else "__mmask8"
    variants = tuple(
        TransposeVariant(
            f"{name}_transpose_{rows}",
            rows,
            tuple(range(rows)),
            tuple(range(rows, lanes)),
            "" if rows == lanes else f"({mask_t}){hex((1 << rows) - 1)}",
        )
        for rows in sorted(counts, reverse=True)
    )
    suffix = "ps" if dtype == "float" else "pd"
    tr = Transpose(
        lanes,
        f"_mm512_permutex2var_{suffix}",
        f"_mm512_mask_storeu_{suffix}",
        tuple(range(lanes)),
        tuple(stages),
        variants,
    )
    b_fn = f"{name}_transpose_{lanes}" if trans_b else ""
    return tr, b_fn, tuple(a_groups), tuple(range(0, nr, lanes)) if trans_b else ()


@dataclass(frozen=True)
class Operand:
    """An epilogue input as the C code sees it."""

    param: str  # e_<name>
    load: str  # C expression of its element for tile element (i, j)


@dataclass(frozen=True)
class GemmTemplate:
    """Everything the gemm template lays out; every choice is already made here."""

    name: str
    T: str
    isa: str
    isa_macro: str  # "" for scalar
    header_comment: str
    formula: str
    params: str  # the C parameter list
    mr: int
    nr: int
    mc: int
    kc: int
    nc: int
    par_min_work: int
    jobs_per_thread: int
    static_dims: tuple[tuple[str, int], ...]
    a_index: str  # element (row r, k p) of op(A)
    b_index: str  # element (k p, column c) of op(B)
    b_cols_outer: bool  # pack B column by column (B transposed: contiguous along k)
    tr: Transpose | None  # register transposes used by the packing routines
    tr_b: str  # transpose function for full panels of a transposed B, or ""
    tr_a: tuple[tuple[int, str], ...]  # (row offset, function) covering a full A micro-panel
    tr_b_groups: tuple[int, ...]  # column offsets of B's transposed blocks within a panel
    vec: Vec | None
    fma: str  # scalar FMA macro for the scalar micro-kernel
    ukernels: tuple[Ukernel, ...]  # largest first; ukernels[0].rows == mr
    operands: tuple[Operand, ...]
    steps: tuple[str, ...]  # C statements, operand loads already in place
    colsum: bool
    plain: bool  # no epilogue steps and no column sums: full tiles never need the tile buffer
    m_unit: str  # C expression: rows per M split unit
    a_prefetch: int  # elements of A the micro-kernel prefetches ahead of the current k (0: none)
    c_line_offsets: tuple[int, ...]  # element offsets of the 64-byte lines in one tile row of C


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
    params.append(("int", "nthreads"))
    return params


def gemm_prototype(spec: GemmSpec) -> str:
    """`int NAME(...);` -- the declaration a cffi cdef needs."""
    args = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{n}" for t, n in gemm_params(spec))
    return f"int {spec.name}({args});"


def _ukernels(name: str, blk: Blocking, vec: Vec | None) -> tuple[Ukernel, ...]:
    """The full-height micro-kernel plus shorter ones for the last rows of M (small batches)."""
    heights = [blk.mr] + [h for h in (8, 4, 2, 1) if h < blk.mr]
    lanes = vec.lanes if vec else blk.nr
    nvec = blk.nr // lanes
    out = []
    for h, above in zip(heights, heights[1:] + [0]):
        rows = tuple(
            UkRow(
                i,
                tuple(f"c{i}_{v}" for v in range(nvec)),
                tuple(i * blk.nr + v * lanes for v in range(nvec)),
            )
            for i in range(h)
        )
        offsets = tuple(v * lanes for v in range(nvec))
        out.append(Ukernel(f"{name}_ukernel_{h}", h, above, rows, offsets))
    return tuple(out)


def template_data(spec: GemmSpec) -> GemmTemplate:
    """Make every generation decision for `spec` and return it as plain data."""
    _check_ident(spec.name, "GEMM name")
    if spec.dtype not in ("float", "double"):
        raise ValueError(f"unsupported GEMM dtype {spec.dtype!r}")
    blk = spec.resolved_blocking()
    if spec.isa not in ("avx512", "avx2", "scalar"):
        raise ValueError(f"unknown isa {spec.isa!r}")
    vec = _vec(spec.isa, spec.dtype)
    if vec and blk.nr % vec.lanes:
        raise ValueError(f"nr={blk.nr} is not a multiple of {vec.lanes} lanes")
    if blk.mc % blk.mr or blk.nc % blk.nr or blk.kc <= 0 or blk.kc % 8:
        raise ValueError(f"inconsistent blocking {blk}")
    elem = 4 if spec.dtype == "float" else 8
    ep = spec.epilogue or Epilogue()
    operands, steps = _operands(ep)
    tr, tr_b, tr_a, tr_b_groups = _transpose(
        spec.name, vec, spec.isa, spec.dtype, blk.mr, blk.nr, spec.trans_a, spec.trans_b
    )
    static = tuple(
        (d, v) for d, v in (("M", spec.m), ("N", spec.n), ("K", spec.k)) if v is not None
    )
    opa = "A^T" if spec.trans_a else "A"
    opb = "B^T" if spec.trans_b else "B"
    args = ", ".join(f"{t}{'' if t.endswith('*') else ' '}{n}" for t, n in gemm_params(spec))
    dims = "x".join(
        str(d) if d is not None else s for d, s in ((spec.m, "M"), (spec.n, "N"), (spec.k, "K"))
    )
    fma = "LUCID_GEMM_FMAF" if spec.dtype == "float" else "LUCID_GEMM_FMAD"
    return GemmTemplate(
        name=spec.name,
        T=spec.dtype,
        isa=spec.isa,
        isa_macro=_ISA_MACRO.get(spec.isa, ""),
        header_comment=spec.ir_comment.replace("*/", "* /"),
        formula=f"C = {opa} @ {opb} ({dims}, {spec.dtype}, {spec.isa})",
        params=args,
        mr=blk.mr,
        nr=blk.nr,
        mc=blk.mc,
        kc=blk.kc,
        nc=blk.nc,
        par_min_work=blk.par_min_work,
        jobs_per_thread=max(1, blk.jobs_per_thread),
        static_dims=static,
        a_index="(p) * M + (r)" if spec.trans_a else "(r) * K + (p)",
        b_index="(c) * K + (p)" if spec.trans_b else "(p) * N + (c)",
        b_cols_outer=spec.trans_b,
        tr=tr,
        tr_b=tr_b,
        tr_a=tr_a,
        tr_b_groups=tr_b_groups,
        vec=vec,
        fma=fma,
        ukernels=_ukernels(spec.name, blk, vec),
        operands=operands,
        steps=steps,
        colsum=ep.colsum,
        plain=not steps and not ep.colsum,
        m_unit=str(blk.mc) if ep.colsum else str(blk.mr),
        a_prefetch=_A_PREFETCH_K[spec.dtype] * blk.mr,
        c_line_offsets=tuple(range(0, blk.nr, 64 // elem)),
    )


def emit_gemm(spec: GemmSpec) -> str:
    """C text of the specialised GEMM function described by `spec`."""
    return render("gemm.c.j2", g=template_data(spec), parallel=render("parallel.c.j2"))


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
    "bias_add",
    "binary",
    "choose_blocking",
    "default_spec",
    "detect_caches",
    "detect_isa",
    "emit_gemm",
    "gemm_params",
    "gemm_prototype",
    "unary",
]
