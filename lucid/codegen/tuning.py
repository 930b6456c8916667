"""The C that GEMM autotuning times: plain GEMMs of one problem, one per candidate blocking.

lucid/runtime/autotune.py decides what to time, builds, times and records; this module is the
codegen it needs: the problem and blocking types, the candidates around the cost model's
choice, and the one translation unit that holds every candidate.
"""

from __future__ import annotations

from collections.abc import Sequence

from lucid.codegen import gemm
from lucid.codegen.gemm import Blocking, GemmProblem, blocking_candidates

__all__ = ["Blocking", "GemmProblem", "blocking_candidates", "blocks", "timing_module"]


def _spec(name: str, problem: GemmProblem, blocking: Blocking) -> gemm.GemmSpec:
    """A plain GEMM of the problem's kind with `blocking` (rows are a runtime argument)."""
    return gemm.GemmSpec(
        name=name,
        dtype=problem.dtype,
        trans_a=problem.trans_a,
        trans_b=problem.trans_b,
        m=None,
        n=problem.n,
        k=problem.k,
        isa=problem.isa,
        blocking=blocking,
    )


def blocks(problem: GemmProblem, blocking: Blocking) -> bool:
    """Whether the GEMM of `problem` can take the blocked path (else no blocking matters)."""
    return gemm.plan_paths(_spec("lucid_tune_probe", problem, blocking))[1]


def timing_module(
    problem: GemmProblem, blockings: Sequence[Blocking]
) -> tuple[str, str, list[str]]:
    """(C source, cdef, function names) of one module with a GEMM of `problem` per blocking,
    each `int NAME(const T *A, const T *B, T *C, int64_t M, N, K, int nthreads)`; the shared
    machinery is laid out once."""
    specs = [_spec(f"lucid_tune_{i}", problem, b) for i, b in enumerate(blockings)]
    shared: dict[str, str] = {}
    texts = []
    for spec in specs:
        blocks_, text = gemm.gemm_parts(spec)
        shared.update((b.key, b.text) for b in blocks_)
        texts.append(text)
    source = "\n".join([*shared.values(), *texts])
    cdef = "\n".join(gemm.gemm_prototype(s) for s in specs)
    return source, cdef, [s.name for s in specs]
