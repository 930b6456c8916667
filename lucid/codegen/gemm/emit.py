"""C text of one GEMM node: its parameters, path plan and template data, and the shared blocks.

`gemm_parts(spec)` makes every decision in Python (`NodeTemplate`, `plan_paths`) and lays the
node's own function out with gemm/node.c.j2; the machinery it calls comes from `shared.py`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from lucid.codegen._jinja import render
from lucid.codegen.gemm.blocking import Blocking, Vec, vec_of
from lucid.codegen.gemm.shared import (
    THREADS_MODES,
    SharedBlock,
    blocked_blocks,
    common_block,
    driver_name,
    pack_names,
    parallel_block,
    short,
)
from lucid.codegen.gemm.spec import Epilogue, GemmSpec

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ------------------------------------------------------------------------------- template data


@dataclass(frozen=True)
class Operand:
    """An epilogue input as the C code sees it."""

    param: str  # e_<name>
    load: str  # C expression of its element for tile element (i, j)
    writable: bool = False  # an extra output the epilogue stores into (EpilogueStep.store)

    @property
    def qual(self) -> str:
        """`const ` for an input, nothing for an output."""
        return "" if self.writable else "const "


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
        load = loads[step.broadcast].format(p=param)
        op = seen.setdefault(step.operand, Operand(param, load, step.store))
        if op.writable != step.store:
            raise ValueError(f"operand {step.operand!r} is both read and stored")
        if step.store:
            steps.append(f"{op.load} = {step.code};")
        else:
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
        params += [(f"{op.qual}{t} *", op.param) for op in ops]
        if spec.epilogue.colsum:
            params.append((f"{t} *", "colsum"))
    if prepacked_b_elems(spec):
        params.append((f"const {t} *", "Bp"))
    if prepacked_a_elems(spec):
        params.append((f"const {t} *", "Ap"))
    params.append(("int", "nthreads"))
    return params


def prepacked_b_elems(spec: GemmSpec) -> int:
    """Elements of `NAME_pack_b`'s output (op(B) in the blocked path's packed layout), or 0 when
    the spec has no prepacked B (not asked for, a runtime N or K, K == 0, or no blocked path).

    The layout is the driver's (`_prepack` in gemm/driver.c.j2): K blocks one after another,
    each of ceil(N / nr) zero-padded micro-panels of nr columns, so K * (N rounded up to nr)."""
    return _prepacked_elems(spec, spec.prepack_b, spec.n, spec.resolved_blocking().nr)


def prepacked_a_elems(spec: GemmSpec) -> int:
    """Elements of `NAME_pack_a`'s output (op(A) in the blocked path's packed layout), or 0 when
    the spec has no prepacked A (not asked for, a runtime M or K, K == 0, or no blocked path).

    The layout is the driver's (`_prepack_a` in gemm/driver.c.j2): K blocks one after another,
    each of ceil(M / mr) zero-padded micro-panels of mr rows, so K * (M rounded up to mr)."""
    return _prepacked_elems(spec, spec.prepack_a, spec.m, spec.resolved_blocking().mr)


def _prepacked_elems(spec: GemmSpec, wanted: bool, dim: int | None, tile: int) -> int:
    """K * (`dim` rounded up to `tile`) for a prepacked operand of static `dim` and K, else 0."""
    k = spec.k
    if not wanted or dim is None or k is None or dim == 0 or k == 0:
        return 0
    if not plan_paths(spec)[1]:
        return 0
    return k * (-(-dim // tile) * tile)


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
    # > 0: the row path (see ROW_PATH_ROWS): each element of C a dot product of a row of A and
    # a row of B (op(B) = B^T), in this many partial sums that vectorize
    lanes: int = 0
    # the row path over every row of C, `mb` at a time, threads splitting the rows (NARROW_N);
    # else over the static M = mb rows, threads splitting the columns in groups of 16 rounded up
    # to a multiple of nb (so only the last column block can be short)
    rows: bool = False
    # the row path's columns per register block (mb x nb vectors of sums)
    nb: int = 4
    # > 0: the stream path instead (STREAM_ROWS): blocks of this many vectors of columns
    stream: int = 0


# A GEMM whose M is static and at most this (a Linear at batch 1, ...) with op(B) = B^T and
# static N, K >= ROW_PATH_MIN_K: the row path, which reads each row of B once and in place.
# The blocked path would compute a whole register tile of rows (mr) for each of the M it has,
# and pack B (or keep a packed copy of the weight, as big as the weight, between calls).
ROW_PATH_ROWS = 4
ROW_PATH_MIN_K = 64
# The row path splits its columns (rows of B) over threads at a sixteenth of the blocked path's
# work per thread (32K multiply-adds of the default 512K): it streams each weight row once, and a
# second core brings the bandwidth of its own caches and memory requests. On the 2-vCPU AMD
# EPYC (Zen 4), pool threads, min of 300: a batch-1 Linear 4096 -> 4096 (64 MB from memory)
# 2.68 ms on one thread, 1.55 ms on two; MobileNetV3-Small's head (1 x 576 -> 1024 -> 1000,
# warm) 86-88 us -> 48-50 us. A quarter (128K) kept its squeeze-excite convs (576 <-> 144 on
# a 1x1 input, 83K) on one thread: in the model, where their 330 KB weights come from L3,
# 45 and 27 us on one, 20-32 and 13-22 us on two (benchmarks/profile_kernels.py, median of 300
# calls, two runs); warm alone (1x1 conv 144 -> 576 + HardSigmoid, the whole call) 8.5 -> 6.0 us.
ROW_PATH_WORK_DIVISOR = 16
# A GEMM with op(B) = B^T, a static N of at most this and a static K >= ROW_PATH_MIN_K takes the
# row path for any M (a classifier head: Linear(2048, 10) at batch 512), NARROW_ROWS rows of C
# at a time, threads splitting the rows. The blocked path packs all of A for these few columns
# and computes a whole register tile of nr (32) columns for each. 512 x 2048 -> N on 2 threads
# of the Zen 4 EPYC, the Linear's kernel (benchmarks/bench_narrow.py, two runs), blocked / row
# path: N = 4: 4.6-5.9x inference, 4.9-6.5x training; N = 10: 3.3-3.8x, 2.3-4.0x; N = 16:
# 1.4-1.5x, 1.9-2.0x; N = 24 is about where the two meet (blocked 527 us, the row path ~23 us
# a column).
NARROW_N = 16
# Rows per register block of that path, in blocks of up to 5 columns: 5 x 5 vectors of sums are
# 25 of AVX-512's 32 registers. One thread, 512 x 2048 -> N f32 in a C harness of the loop,
# GFLOP/s by rows x columns: N = 10: 4x4 54, 4x5 78, 5x4 76, 3x5 85, 5x5 97; N = 16: 4x4 53,
# 5x4 82, 3x5 83, 5x5 92; N = 7: 4x4 53, 5x5 87.
NARROW_ROWS = 5
# the row path's partial sums: a 64-byte vector of them
_ROW_LANES = {"float": 16, "double": 8}
# Vectors of sums a register block may hold: AVX-512 has 32 registers of 64 bytes; AVX2 16 of
# 32 bytes, so a 64-byte vector of partial sums takes two (the row path) and an 8-lane vector one
# (the stream path). The AVX2 budgets keep the same share of the registers free; they were not
# measured on an AVX2-only CPU (this project's machines both have AVX-512).
_ROW_SUMS = {"avx512": 25, "avx2": 6, "scalar": 6}
# A GEMM C = A^T @ B with a static M of at most this, a static N of at least a vector, op(B) = B
# and vector FMA (avx2, avx512) (a narrow layer's weight gradient: dW[10, 2048] = dY^T @ X over
# the batch) takes the stream path: B's rows stream past once while blocks of columns keep all
# M rows' sums in registers (at most STREAM_SUMS vectors of them), one FMA per product in k
# order as the blocked path's micro-kernels. The blocked path packs all of B (the batch's
# activations) for these few rows, and computes whole 14-row tiles: dW of 512 x 2048 -> N on 2
# threads (bench_narrow.py), blocked / stream: N = 4 2.0x, N = 10 2.4x, N = 16 2.0x.
STREAM_ROWS = 16
STREAM_SUMS = {"avx512": 24, "avx2": 12}


@dataclass(frozen=True)
class NodeTemplate:
    """Everything gemm/node.c.j2 lays out for one node; every choice is already made here."""

    name: str
    T: str
    S: str  # f32 / f64: the shared types' suffix
    header_comment: str
    formula: str
    path_notes: tuple[str, ...]
    params: str  # the C parameter list
    small_params: str
    small_args: str
    small_fields: tuple[str, ...]  # the small path's parameters, one declaration each
    # row path: multiply-adds per thread when its columns are split over threads (0: never)
    row_min_work: int
    static_dims: tuple[tuple[str, int], ...]
    operands: tuple[Operand, ...]
    ep_struct: bool
    steps: tuple[str, ...]  # C statements, operand loads already in place
    colsum: bool
    plain: bool  # no epilogue steps and no column sums: full tiles never need the tile buffer
    fma: str
    fin: str  # the blocked path's tile epilogue (lucid_gemm_S_finish_fn), `finish` defines it
    finish: str
    vec: Vec | None  # the isa's intrinsics (the stream path's vectors), None on "scalar"
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
    prepacked_a: int  # elements of NAME_pack_a's output; 0: no prepacked A
    m: int | None  # the static M (for NAME_pack_a)
    n: int | None  # the static N and K (for NAME_pack_b)
    k: int | None


@dataclass(frozen=True)
class Finish:
    """Everything gemm/finish.c.j2 lays out: the blocked path's tile epilogue."""

    name: str
    T: str
    S: str
    operands: tuple[Operand, ...]
    steps: tuple[str, ...]
    colsum: bool
    mr: int
    nr: int


def finish_function(
    dtype: str, operands: tuple[Operand, ...], steps: tuple[str, ...], colsum: bool, blk: Blocking
) -> tuple[str, str]:
    """(name, guarded C text) of the tile epilogue. The name is a hash of the text, so the GEMM
    nodes of one translation unit that apply the same epilogue to the same tile share one copy
    (MobileNetV3-Small: 17 GEMM nodes, 4 epilogues), and gcc compiles each once per unit."""
    hole = "lucid_finish_name"
    f = Finish(hole, dtype, short(dtype), operands, steps, colsum, blk.mr, blk.nr)
    text = render("gemm/finish.c.j2", f=f)
    name = f"lucid_finish_{short(dtype)}_{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    return name, text.replace(hole, name).replace(hole.upper(), name.upper())


def plan_paths(spec: GemmSpec) -> tuple[SmallPath | None, bool]:
    """(small path or None, whether the blocked path is emitted), decided from static shapes.

    The row path alone for op(B) = B^T with static N and K >= ROW_PATH_MIN_K when M is static
    and at most ROW_PATH_ROWS, or for any M when N is at most NARROW_N; the stream path alone
    for op(A) = A^T, op(B) = B with a static M of at most STREAM_ROWS (12 on avx2).
    The small path alone when a static N*K or M*N is at most `small_elems` (B, or the block of
    C summed over all of K, is tiny whatever the runtime dim) or a static M*N*K at most
    `small_work`; both behind a runtime check of M*N*K otherwise (N static and at most 1024:
    the row of sums lives on the stack); the blocked path alone when N is a runtime dim."""
    blk = spec.resolved_blocking()
    m, n, k = spec.m, spec.n, spec.k
    a_index = "p * M + (i0 + i)" if spec.trans_a else "(i0 + i) * K + p"
    b_index = "j * K + p" if spec.trans_b else f"p * {n} + j"
    dots = (  # each element of C a dot product of a row of A and a row of B, read in place
        n is not None
        and k is not None
        and k >= ROW_PATH_MIN_K
        and spec.trans_b
        and not spec.trans_a
        and not (spec.epilogue and spec.epilogue.colsum)
    )
    sums = _ROW_SUMS[spec.isa]
    if dots and n is not None and m is not None and 1 <= m <= ROW_PATH_ROWS:
        nb = max(1, min(4, sums // m))
        return SmallPath(m, n, a_index, b_index, _ROW_LANES[spec.dtype], nb=nb), False
    if dots and n is not None and n <= NARROW_N:
        rows = NARROW_ROWS if spec.isa == "avx512" else 2
        nb = -(-n // -(-n // (sums // rows)))  # blocks of at most sums // rows, as equal as can be
        path = SmallPath(rows, n, a_index, b_index, _ROW_LANES[spec.dtype], True, nb)
        return path, False
    vec = vec_of(spec.isa, spec.dtype)
    lanes = vec.lanes if vec is not None else 0
    if (
        vec is not None
        and spec.trans_a
        and not spec.trans_b
        and m is not None
        and 1 <= m <= min(STREAM_ROWS, STREAM_SUMS[spec.isa])  # a vector of sums per row
        and n is not None
        and n >= lanes
        and not (spec.epilogue and spec.epilogue.colsum)
    ):
        vectors = max(1, min(4, STREAM_SUMS[spec.isa] // m, n // lanes))
        return SmallPath(m, n, a_index, b_index, lanes, stream=vectors), False
    if n is None or n > 1024 or blk.small_work <= 0:
        return None, True
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
    pack_a, pack_b = pack_names(spec.dtype, spec.isa, blk, spec.trans_a, spec.trans_b)
    opa = "A^T" if spec.trans_a else "A"
    opb = "B^T" if spec.trans_b else "B"
    dims = "x".join(
        str(d) if d is not None else s for d, s in ((spec.m, "M"), (spec.n, "N"), (spec.k, "K"))
    )
    t = spec.dtype
    small_params = [f"const {t} *restrict A", f"const {t} *restrict B", f"{t} *restrict C"]
    small_params += ["int64_t M", "int64_t N", "int64_t K"]
    small_params += [f"{op.qual}{t} *restrict {op.param}" for op in operands]
    small_params += [f"{t} *restrict colsum"] if ep.colsum else []
    small_args = ["A", "B", "C", "M", "N", "K", *(op.param for op in operands)]
    small_args += ["colsum"] if ep.colsum else []
    notes = []
    if small is not None and small.stream:
        notes.append(
            f"stream path: the {small.mb} row(s) of C in blocks of {small.stream * small.lanes} "
            "columns, B's rows streaming past once"
        )
    elif small is not None and small.rows:
        notes.append(
            f"row path: every row of C, {small.mb} at a time, from dot products with the "
            f"{small.nn} rows of B, in {small.lanes} partial sums"
        )
    elif small is not None and small.lanes:
        notes.append(
            f"row path: each of the {small.mb} row(s) of C from dot products with the rows of B, "
            f"in {small.lanes} partial sums"
        )
    elif small is not None:
        when = "always" if not blocked else f"when M*N*K <= {blk.small_work}"
        notes.append(f"small path ({when}): plain loops, {small.mb} row(s) at a time")
    fin, finish = finish_function(t, operands, steps, ep.colsum, blk) if blocked else ("", "")
    if blocked:
        notes.append(
            f"blocked path: register tile {blk.mr}x{blk.nr} ({driver_name(t, spec.isa, blk)}); "
            f"cache blocks mc={blk.mc} kc={blk.kc} nc={blk.nc}"
        )
    return NodeTemplate(
        name=spec.name,
        T=t,
        S=short(t),
        header_comment=spec.ir_comment.replace("*/", "* /"),
        formula=f"C = {opa} @ {opb} ({dims}, {t}, {spec.isa})",
        path_notes=tuple(notes),
        params=", ".join(
            f"{ty}{'' if ty.endswith('*') else ' '}{n}" for ty, n in gemm_params(spec)
        ),
        small_params=", ".join(small_params),
        small_args=", ".join(small_args),
        small_fields=tuple(small_params),
        row_min_work=_row_min_work(spec, blk.par_min_work),
        static_dims=tuple(
            (d, v) for d, v in (("M", spec.m), ("N", spec.n), ("K", spec.k)) if v is not None
        ),
        operands=operands,
        ep_struct=bool(operands) and blocked,
        steps=steps,
        colsum=ep.colsum,
        plain=not steps and not ep.colsum,
        fma="LUCID_GEMM_FMAF" if t == "float" else "LUCID_GEMM_FMAD",
        fin=fin,
        finish=finish,
        vec=vec_of(spec.isa, t),
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
        driver=driver_name(t, spec.isa, blk),
        pack_a=pack_a,
        pack_b=pack_b,
        prepacked=prepacked_b_elems(spec),
        prepacked_a=prepacked_a_elems(spec),
        m=spec.m,
        n=spec.n,
        k=spec.k,
    )


def _row_min_work(spec: GemmSpec, par_min_work: int) -> int:
    """Multiply-adds per thread of the row path's column split (0: one thread). Threads made
    for the call ("spawn", AOT) cost tens of microseconds each: they need the blocked path's
    whole threshold; the pool's a sixteenth of it (ROW_PATH_WORK_DIVISOR)."""
    if par_min_work <= 0:
        return 0
    return (
        par_min_work if spec.threads == "spawn" else max(1, par_min_work // ROW_PATH_WORK_DIVISOR)
    )


def _validate(spec: GemmSpec) -> None:
    """ValueError for a spec the generator cannot honour."""
    _check_ident(spec.name, "GEMM name")
    if spec.dtype not in ("float", "double"):
        raise ValueError(f"unsupported GEMM dtype {spec.dtype!r}")
    if spec.isa not in ("avx512", "avx2", "scalar"):
        raise ValueError(f"unknown isa {spec.isa!r}")
    if spec.threads not in THREADS_MODES:
        raise ValueError(f"threads must be one of {THREADS_MODES}, got {spec.threads!r}")
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
    blocks = [common_block(spec.dtype)]
    if node.small is not None and node.small.lanes and node.row_min_work > 0:
        blocks = [common_block(spec.dtype), parallel_block(spec.threads)]
    if node.blocked:
        blk = spec.resolved_blocking()
        blocks = blocked_blocks(spec.dtype, spec.isa, blk, spec.trans_a, spec.trans_b, spec.threads)
    return tuple(blocks), render("gemm/node.c.j2", g=node)


def emit_gemm(spec: GemmSpec) -> str:
    """C text of the specialised GEMM function described by `spec`, with its shared machinery
    (guarded: fragments of several specs may be pasted into one file)."""
    blocks, node = gemm_parts(spec)
    return "".join(b.text + "\n" for b in blocks) + node
