"""Graph-to-graph passes, registered by name, and the pipeline `lucid.compile` runs.

A pass is a function `Graph -> Graph` that never edits the graph it is given (it rebuilds
through a Builder, see `_rewrite.Rewriter`). One pass per module in this package; the module
registers it with `@register_pass("name")`. `PassManager(names)` runs passes in order,
verifies after each, can print the IR after each and reports per-pass wall time.

Adding a pass: write `lucid/ir/passes/NAME.py` with `@register_pass("NAME")` and add its
module name to `PASS_MODULES` below; `lucid-ir opt -p NAME` can then run it.

Fusion passes (`fuse_mlp`, `fuse_epilogue`, `fuse_elementwise`) are already named here, in
the order they run, in `FUSION_PASSES` and in `PASS_MODULES`. Their modules do not exist yet:
a module listed here that is missing is skipped at import, and `default_pipeline(fusion=True)`
includes exactly the fusion passes that are registered. So the fusion engineer only creates
`lucid/ir/passes/fuse_epilogue.py` (etc.) with `@register_pass("fuse_epilogue")`, and the
default pipeline picks it up with no other edit. A pass registered from outside this package
(a plugin, a test) can join too by passing its name in `names` explicitly.
"""

from __future__ import annotations

import importlib

from lucid.ir.passes.manager import (
    PASSES,
    Pass,
    PassError,
    PassFn,
    PassManager,
    PassReport,
    PassTiming,
    get_pass,
    ir_header,
    register_pass,
    run_passes,
)

# Simplify first so that patterns are canonical (matmul + transposed weight + bias is already
# `linear`) and no dead or duplicated node reaches fusion; dce again after fusion removes the
# nodes the fused ones replaced.
CLEANUP_PASSES: tuple[str, ...] = ("canonicalize", "constfold", "cse", "dce")
FUSION_PASSES: tuple[str, ...] = ("fuse_mlp", "fuse_epilogue", "fuse_elementwise")
# The full pipeline once every fusion pass exists; use default_pipeline(), which leaves out
# the fusion passes not registered yet.
DEFAULT_PIPELINE: tuple[str, ...] = (*CLEANUP_PASSES, *FUSION_PASSES, "dce")

PASS_MODULES: tuple[str, ...] = ("dce", "cse", "constfold", "canonicalize", *FUSION_PASSES)


def default_pipeline(*, fusion: bool = True) -> list[str]:
    """The passes `lucid.compile` runs: cleanup, then each registered fusion pass, then dce."""
    fused = [n for n in FUSION_PASSES if n in PASSES] if fusion else []
    # the trailing dce only has work when a fusion pass replaced nodes
    return [*CLEANUP_PASSES, *fused, *(["dce"] if fused else [])]


def _load_pass_modules() -> None:
    """Import every pass module so that it registers; a fusion module not yet written is skipped."""
    for module in PASS_MODULES:
        qualified = f"{__name__}.{module}"
        try:
            importlib.import_module(qualified)
        except ModuleNotFoundError as e:
            # only the module itself may be missing; a broken import inside it must surface
            if e.name != qualified or module not in FUSION_PASSES:
                raise


_load_pass_modules()

__all__ = [
    "CLEANUP_PASSES",
    "DEFAULT_PIPELINE",
    "FUSION_PASSES",
    "PASSES",
    "PASS_MODULES",
    "Pass",
    "PassError",
    "PassFn",
    "PassManager",
    "PassReport",
    "PassTiming",
    "default_pipeline",
    "get_pass",
    "ir_header",
    "register_pass",
    "run_passes",
]
