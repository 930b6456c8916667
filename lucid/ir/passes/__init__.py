"""Graph-to-graph passes by name (`registry.PASSES`), and the pipeline `lucid.compile` runs.

One pass per module in this package; `registry.py` gathers them into a read-only table, so
importing a pass module registers nothing. `PassManager(names)` runs passes in order, verifies
after each, can print the IR after each and reports per-pass wall time. Adding a pass: see
registry.py.
"""

from __future__ import annotations

from lucid.ir.passes.manager import PassManager, PassReport, PassTiming, ir_header, run_passes
from lucid.ir.passes.registry import PASSES, Pass, PassError, PassFn, get_pass

# Simplify first so that patterns are canonical (matmul + transposed weight + bias is already
# `linear`) and no dead or duplicated node reaches fusion; dce again after fusion removes the
# nodes the fused ones replaced. fold_affine (eval-mode BatchNorm into the Linear before it) is
# not in the default pipeline: parameters are read live, so a folded weight is recomputed at
# every call and loses its prepacked copy, while unfolded, the per-channel scale and shift run
# inside the GEMM or convolution epilogue for free (docs/DESIGN.md). Opt in with
# options={"passes": [...]} or `lucid-ir opt -p fold_affine`.
CLEANUP_PASSES: tuple[str, ...] = ("canonicalize", "constfold", "cse", "dce")
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
    "PASSES",
    "Pass",
    "PassError",
    "PassFn",
    "PassManager",
    "PassReport",
    "PassTiming",
    "default_pipeline",
    "get_pass",
    "ir_header",
    "run_passes",
]
