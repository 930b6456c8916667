"""GEMM kernel generator: one specialised, reentrant C function per (fused) matmul/linear node.

What is public is what this module exports (`__all__`); code outside the subpackage imports from
here, never from its modules. Inside: `spec.py` (what to compute: `GemmSpec`, `Epilogue`),
`blocking.py` (this machine's isa and caches, the register tiles and the cache-block cost
model), `cpus.py` (which CPU this is, and the table of blockings measured per CPU kind), `shared.py` (the machinery shared by every GEMM of a translation unit), `emit.py` (the
node's own C text), and `templates/` (their C layout, named `gemm/<file>` in lucid's one Jinja
environment, lucid/codegen/_jinja.py).

API
---
``emit_gemm(spec: GemmSpec) -> str`` returns a self-contained C fragment (it includes its own
headers; several fragments may share one translation unit) defining::

    static int NAME(const T *A, const T *B, T *C, int64_t M, int64_t N, int64_t K,
                    <one `const T *e_<operand>` per distinct epilogue operand, in step order>,
                    <`T *colsum` when epilogue.colsum>, <`const T *Bp` when prepack_b>,
                    <`const T *Ap` when prepack_a>, int nthreads);

``gemm_prototype(spec)`` returns that declaration (for a cffi cdef or a forward declaration),
``gemm_params(spec)`` the parameter list as (C type, name) pairs. ``gemm_parts(spec)`` splits the
fragment into the shared machinery (``SharedBlock``s named by dtype, isa, register tile and
transposition, see ``shared.py``) and the node's own text (its epilogue ``finish``, small path
and entry function), so a translation unit with many GEMMs holds one copy of the packing
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
the call and joins them before returning (no global state); see templates/parallel.c.j2. C is
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

Row path (``ROW_PATH_ROWS``): a static M of a few rows with op(B) = B^T computes each element
as a dot product of rows read in place; threads split its columns in groups of 16 (rounded up
to a multiple of its register block's columns). A static N of at most ``NARROW_N`` columns (a
classifier head) takes it for any M, 5 rows at a time, threads splitting the rows.

Stream path (``STREAM_ROWS``): C = A^T @ B with a static M of a few rows (a narrow layer's
weight gradient) streams B's rows past once, blocks of columns keeping every row's sums in
registers; threads split the column blocks.

Prepacked operands: with ``prepack_b`` (a Linear's weight) or ``prepack_a`` (a conv's weight)
and static dims, ``NAME_pack_b`` / ``NAME_pack_a`` write the operand in the driver's packed
layout once, and a call given it (``Bp`` / ``Ap``, 64-byte aligned, or NULL) skips packing it.

Kernel (BLIS/GotoBLAS): loops jc (nc columns) -> pc (kc of K) -> ic (mc rows) -> jr (NR) -> ir
(MR); B panels (kc x nc) and A blocks (mc x kc) are packed per thread into 64-byte aligned
zero-padded buffers (transposes are absorbed by the packing: AVX-512 packs a transposed B with
in-register 16x16 / 8x8 transposes); a register-blocked micro-kernel (FMA intrinsics for
"avx512"/"avx2", plain vectorisable loops for "scalar") keeps an MR x NR tile in registers for a
whole K block. Full tiles with nothing left to apply go straight from registers to C; the last K
block of an epilogue GEMM (and every edge tile) goes through a small L1 tile buffer, where the
epilogue runs before the single store of the valid part. Block sizes come from
``choose_blocking(dtype, isa, caches, n=static N)`` (a cost model on cache sizes, passed in the
spec so output is deterministic; ``blocking.py``), unless the CPU kind has an entry in
``CPU_TABLE`` (``cpus.py``: measured blockings keyed by vendor, family and model, each with its
evidence), which then wins; ``detect_caches()`` / ``detect_isa()`` / ``detect_cpu()`` read
this machine. The driver calls the node's ``finish`` (epilogue and store of a finished tile) and
the packing routines through pointers: once per tile or block, never per element.

Epilogue steps are C statements on ``v`` (the element, of the GEMM's type ``T``); a step with an
operand also sees ``x``, that operand's element. The generator spells no op's math: callers
build each step from the op's one scalar C expression (lucid/codegen/fused.py); ``bias_add``
is the Linear's own bias.
"""

from __future__ import annotations

from lucid.codegen.gemm.blocking import (
    SPAWN_MIN_WORK,
    Blocking,
    CacheSizes,
    DTypeName,
    GemmProblem,
    Isa,
    blocking_candidates,
    choose_blocking,
    detect_caches,
    detect_isa,
)
from lucid.codegen.gemm.cpus import TABLE as CPU_TABLE
from lucid.codegen.gemm.cpus import CpuEntry, CpuId, detect_cpu, parse_cpuinfo, table_blocks
from lucid.codegen.gemm.emit import (
    NARROW_N,
    ROW_PATH_ROWS,
    STREAM_ROWS,
    emit_gemm,
    gemm_params,
    gemm_parts,
    gemm_prototype,
    plan_paths,
    prepacked_a_elems,
    prepacked_b_elems,
)
from lucid.codegen.gemm.shared import (
    PARALLEL_KEY,
    THREADS_MODES,
    SharedBlock,
    ThreadsMode,
    parallel_block,
)
from lucid.codegen.gemm.spec import (
    Broadcast,
    Epilogue,
    EpilogueStep,
    GemmSpec,
    bias_add,
)

__all__ = [
    "CPU_TABLE",
    "NARROW_N",
    "PARALLEL_KEY",
    "ROW_PATH_ROWS",
    "SPAWN_MIN_WORK",
    "STREAM_ROWS",
    "THREADS_MODES",
    "Blocking",
    "Broadcast",
    "CacheSizes",
    "CpuEntry",
    "CpuId",
    "DTypeName",
    "Epilogue",
    "EpilogueStep",
    "GemmProblem",
    "GemmSpec",
    "Isa",
    "SharedBlock",
    "ThreadsMode",
    "bias_add",
    "blocking_candidates",
    "choose_blocking",
    "detect_caches",
    "detect_cpu",
    "detect_isa",
    "emit_gemm",
    "gemm_params",
    "gemm_parts",
    "gemm_prototype",
    "parallel_block",
    "parse_cpuinfo",
    "plan_paths",
    "prepacked_a_elems",
    "prepacked_b_elems",
    "table_blocks",
]
