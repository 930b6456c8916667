"""Graph-to-graph passes by name (`registry.PASSES`), and the pipeline `lucid.compile` runs
(its names live in lucid.ir.pipeline, importable without the passes).

One pass per module in this package; `registry.py` gathers them into a read-only table, so
importing a pass module registers nothing. `PassManager(names)` runs passes in order, verifies
after each, can print the IR after each and reports per-pass wall time. Adding a pass: see
registry.py.
"""

from __future__ import annotations

from lucid.ir.passes.manager import PassManager, PassReport, PassTiming, ir_header, run_passes
from lucid.ir.passes.registry import PASSES, Pass, PassError, PassFn, get_pass
from lucid.ir.pipeline import (
    CLEANUP_PASSES,
    DEFAULT_PIPELINE,
    FUSION_PASSES,
    OPTIONAL_PASSES,
    default_pipeline,
)

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
