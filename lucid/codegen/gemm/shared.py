"""The GEMM machinery shared by every GEMM node of a translation unit.

Packing routines, register transposes, micro-kernels and the blocked driver depend only on
(dtype, isa, register tile, transposition), never on a node's epilogue, so each is emitted once
per translation unit as a `SharedBlock`: named by those parameters, wrapped in an #ifndef guard
(fragments stay self-contained), and deduplicated by key in Python (emit_c lays each out once).
A node keeps only its epilogue (`finish`), its small path and its entry function
(gemm/node.c.j2); the driver reaches the node's `finish` and the packing routines through
pointers in the problem struct, called once per tile or per block, never per element.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lucid.codegen._jinja import render
from lucid.codegen.gemm.blocking import ISA_MACRO, Blocking, Vec, vec_of

# How generated code runs parallel tasks: "pool" (persistent workers, lucid.compile) or "spawn"
# (threads created per call and joined, no global state: AOT export). See gemm/parallel.c.j2.
ThreadsMode = Literal["pool", "spawn"]
THREADS_MODES: tuple[ThreadsMode, ...] = ("pool", "spawn")
PARALLEL_KEY = "lucid_parallel"

# k steps of A the micro-kernel prefetches ahead, per dtype. f64 panels use 1.75 lines per k and
# gain ~10% from it; f32 (under one line per k) measured no gain, so it issues none.
_A_PREFETCH_K = {"float": 0, "double": 16}


@dataclass(frozen=True)
class SharedBlock:
    """Top-level C emitted once per translation unit: `key` names it (and its #ifndef guard).

    `decl` is what the program's own translation unit needs of it when the machinery is built as
    a second unit (`CodegenOptions.split`): prototypes of its LUCID_SHARED_FN entry points, ""
    when nothing there calls it, None when the text itself belongs to both units (types)."""

    key: str
    text: str
    decl: str | None = None


def short(dtype: str) -> str:
    """f32 / f64: the dtype in shared symbol names."""
    return "f32" if dtype == "float" else "f64"


def base_name(dtype: str, isa: str) -> str:
    """Prefix of every shared symbol of one dtype and isa: `lucid_gemm_f32_avx512`."""
    return f"lucid_gemm_{short(dtype)}_{isa}"


def driver_name(dtype: str, isa: str, blk: Blocking) -> str:
    """The blocked driver (and micro-kernels) of one register tile: `lucid_gemm_f32_avx512_14x32`."""
    return f"{base_name(dtype, isa)}_{blk.mr}x{blk.nr}"


def pack_names(
    dtype: str, isa: str, blk: Blocking, trans_a: bool, trans_b: bool
) -> tuple[str, str]:
    """The packing routines of op(A) into mr-row and op(B) into nr-column micro-panels."""
    base = base_name(dtype, isa)
    return (
        f"{base}_pack_a{blk.mr}_{'t' if trans_a else 'n'}",
        f"{base}_pack_b{blk.nr}_{'t' if trans_b else 'n'}",
    )


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
    """A lanes x lanes in-register transpose used by the packing routines (AVX-512 only)."""

    lanes: int
    permute: str  # the two-source permute intrinsic
    mask_store: str
    rows: tuple[int, ...]
    stages: tuple[TransposeStage, ...]
    variant: TransposeVariant


@dataclass(frozen=True)
class Pack:
    """One packing routine (gemm/pack_a.c.j2 / gemm/pack_b.c.j2)."""

    fname: str
    T: str
    width: int  # mr for A, nr for B
    index: str  # C element index of op(A)[r, p] or op(B)[p, c]
    trans: bool
    tr_groups: tuple[tuple[int, str], ...]  # (offset, transpose function) covering a full panel
    tr_lanes: int


@dataclass(frozen=True)
class Kernels:
    """The micro-kernels of one register tile and the driver around them (gemm/driver.c.j2)."""

    name: str
    T: str
    S: str  # f32 / f64
    isa: str
    isa_macro: str
    mr: int
    nr: int
    vec: Vec | None
    fma: str  # scalar FMA macro for the scalar micro-kernel
    ukernels: tuple[Ukernel, ...]  # largest first; ukernels[0].rows == mr
    a_prefetch: int  # elements of A the micro-kernel prefetches ahead of the current k (0: none)
    c_line_offsets: tuple[int, ...]  # element offsets of the 64-byte lines in one tile row of C


def _transpose(vec: Vec, dtype: str, fname: str, rows: int) -> Transpose:
    """The recursive block transpose of `vec.lanes` rows, loading and storing `rows` of them."""
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
    mask_t = "__mmask16" if lanes == 16 else "__mmask8"
    variant = TransposeVariant(
        fname,
        rows,
        tuple(range(rows)),
        tuple(range(rows, lanes)),
        "" if rows == lanes else f"({mask_t}){hex((1 << rows) - 1)}",
    )
    suffix = "ps" if dtype == "float" else "pd"
    return Transpose(
        lanes,
        f"_mm512_permutex2var_{suffix}",
        f"_mm512_mask_storeu_{suffix}",
        tuple(range(lanes)),
        tuple(stages),
        variant,
    )


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


def _guard(key: str, what: str, text: str, decl: str | None = "") -> SharedBlock:
    """`text` in an #ifndef guard (a fragment may be pasted next to another that has it) and in
    begin/end markers (tests elide GEMM machinery from golden files by them)."""
    macro = key.upper() + "_DEFINED"
    return SharedBlock(
        key,
        f"/* begin GEMM {key} ({what}, shared by every GEMM of this file that uses it) */\n"
        f"#ifndef {macro}\n#define {macro}\n{text.rstrip()}\n#endif\n/* end GEMM {key} */\n",
        decl,
    )


def _pack_decl(fname: str, dtype: str) -> str:
    """The prototype of a packing routine (lucid_gemm_S_pack_fn's signature)."""
    return (
        f"LUCID_SHARED_FN void {fname}(const {dtype} *restrict X, int64_t rows, int64_t K, "
        f"int64_t a0, int64_t alen, int64_t b0, int64_t blen, {dtype} *restrict packed);\n"
    )


def common_block(dtype: str) -> SharedBlock:
    """Headers, the scalar FMA macros and the problem/job structs of one dtype."""
    key = f"lucid_gemm_{short(dtype)}_common"
    return _guard(key, "types", render("gemm/common.c.j2", T=dtype, S=short(dtype)), None)


def parallel_block(threads: ThreadsMode = "pool") -> SharedBlock:
    """lucid_parallel_run: a persistent worker pool ("pool") or threads for one call ("spawn")."""
    if threads not in THREADS_MODES:
        raise ValueError(f"threads must be one of {THREADS_MODES}, got {threads!r}")
    decl = (
        "typedef void (*lucid_task_fn)(void *arg);\n"
        "LUCID_SHARED_FN void lucid_parallel_run(int n, lucid_task_fn fn, void *args, "
        "size_t stride);\n"
    )
    if threads == "pool":
        decl += "LUCID_SHARED_FN void *lucid_parallel_share(void *state);\n"
    return _guard(
        PARALLEL_KEY, "threads", render("gemm/parallel.c.j2", pool=threads == "pool"), decl
    )


def blocked_blocks(
    dtype: str,
    isa: str,
    blk: Blocking,
    trans_a: bool,
    trans_b: bool,
    threads: ThreadsMode = "pool",
) -> list[SharedBlock]:
    """Everything the blocked path of one GEMM needs, in dependency order."""
    vec = vec_of(isa, dtype)
    name = driver_name(dtype, isa, blk)
    pack_a, pack_b = pack_names(dtype, isa, blk, trans_a, trans_b)
    blocks = [common_block(dtype), parallel_block(threads)]
    # AVX-512 packs with register transposes where the source runs along the wrong axis
    tr_a: tuple[tuple[int, str], ...] = ()
    tr_b: tuple[tuple[int, str], ...] = ()
    lanes = vec.lanes if vec else 0
    if vec is not None and isa == "avx512":
        counts: dict[int, str] = {}
        if not trans_a:
            groups = []
            for off in range(0, blk.mr, lanes):
                rows = min(lanes, blk.mr - off)
                counts[rows] = f"{base_name(dtype, isa)}_transpose{lanes}_{rows}"
                groups.append((off, counts[rows]))
            tr_a = tuple(groups)
        if trans_b:
            counts[lanes] = f"{base_name(dtype, isa)}_transpose{lanes}_{lanes}"
            tr_b = tuple((off, counts[lanes]) for off in range(0, blk.nr, lanes))
        for rows, fname in sorted(counts.items(), reverse=True):
            tr = _transpose(vec, dtype, fname, rows)
            text = render("gemm/transpose.c.j2", tr=tr, tv=tr.variant, T=dtype, vec=vec)
            blocks.append(_guard(fname, "register transpose", text))
    a_index = "(p) * M + (r)" if trans_a else "(r) * K + (p)"
    b_index = "(c) * K + (p)" if trans_b else "(p) * N + (c)"
    pa = Pack(pack_a, dtype, blk.mr, a_index, trans_a, tr_a, lanes)
    pb = Pack(pack_b, dtype, blk.nr, b_index, trans_b, tr_b, lanes)
    text_a, text_b = render("gemm/pack_a.c.j2", p=pa), render("gemm/pack_b.c.j2", p=pb)
    blocks.append(_guard(pack_a, "packing of A", text_a, _pack_decl(pack_a, dtype)))
    blocks.append(_guard(pack_b, "packing of B", text_b, _pack_decl(pack_b, dtype)))
    elem = 4 if dtype == "float" else 8
    k = Kernels(
        name=name,
        T=dtype,
        S=short(dtype),
        isa=isa,
        isa_macro=ISA_MACRO.get(isa, ""),
        mr=blk.mr,
        nr=blk.nr,
        vec=vec,
        fma="LUCID_GEMM_FMAF" if dtype == "float" else "LUCID_GEMM_FMAD",
        ukernels=_ukernels(name, blk, vec),
        a_prefetch=_A_PREFETCH_K[dtype] * blk.mr,
        c_line_offsets=tuple(range(0, blk.nr, 64 // elem)),
    )
    s = short(dtype)
    decl = (
        f"LUCID_SHARED_FN int {name}_run(const lucid_gemm_{s} *g, int nthreads);\n"
        f"LUCID_SHARED_FN void {name}_prepack(const lucid_gemm_{s} *g, {dtype} *restrict out);\n"
        f"LUCID_SHARED_FN void {name}_prepack_a(const lucid_gemm_{s} *g, {dtype} *restrict out);\n"
    )
    text = render("gemm/driver.c.j2", k=k)
    blocks.append(_guard(name, "micro-kernels and blocked driver", text, decl))
    return blocks
