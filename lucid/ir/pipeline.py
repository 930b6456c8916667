"""The pass pipeline `lucid.compile` runs, by name only.

Kept apart from lucid.ir.passes, whose import loads every pass (~6 ms): a warm start, which
finds the optimised graph in the pass memo, needs the names for the memo key and never runs a
pass. lucid.ir.passes re-exports all of these.
"""

from __future__ import annotations

# Expand composites (one traced node each, see lucid/ir/passes/expand.py) into table ops, then
# simplify so that patterns are canonical (matmul + transposed weight + bias is already
# `linear`) and no dead or duplicated node reaches fusion; dce again after fusion removes the
# nodes the fused ones replaced. fold_affine (eval-mode BatchNorm into the Linear before it) is
# not in the default pipeline: parameters are read live, so a folded weight is recomputed at
# every call and loses its prepacked copy, while unfolded, the per-channel scale and shift run
# inside the GEMM or convolution epilogue for free (docs/DESIGN.md). Opt in with
# options={"passes": [...]} or `lucid-ir opt -p fold_affine`.
CLEANUP_PASSES: tuple[str, ...] = ("expand", "canonicalize", "constfold", "cse", "dce")
OPTIONAL_PASSES: tuple[str, ...] = ("fold_affine",)
FUSION_PASSES: tuple[str, ...] = ("fuse_mlp", "fuse_epilogue", "fuse_elementwise")
DEFAULT_PIPELINE: tuple[str, ...] = (*CLEANUP_PASSES, *FUSION_PASSES, "dce")


def default_pipeline(*, fusion: bool = True) -> list[str]:
    """The passes `lucid.compile` runs: cleanup, then (with `fusion`) the fusion passes and a
    dce that removes the nodes they replaced."""
    return list(DEFAULT_PIPELINE if fusion else CLEANUP_PASSES)


__all__ = [
    "CLEANUP_PASSES",
    "DEFAULT_PIPELINE",
    "FUSION_PASSES",
    "OPTIONAL_PASSES",
    "default_pipeline",
]
