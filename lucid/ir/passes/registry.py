"""The passes by name: one entry per pass module, gathered in one read-only table.

A pass is a function `Graph -> Graph` that never edits the graph it is given (it rebuilds
through a Builder, see `_rewrite.Rewriter`); its module defines it and nothing else registers
anything. Adding a pass: write `lucid/ir/passes/NAME.py` and add its entry to `PASSES` below;
`lucid-ir opt -p NAME` can then run it (and tests/ir/passes/NAME.lir must test it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from lucid.errors import LucidError
from lucid.ir.core import Graph
from lucid.ir.passes import (
    canonicalize,
    constfold,
    cse,
    dce,
    expand,
    fold_affine,
    fuse_elementwise,
    fuse_epilogue,
    fuse_mlp,
)

PassFn = Callable[[Graph], Graph]


class PassError(LucidError):
    """A pass name is unknown."""


@dataclass(frozen=True)
class Pass:
    """A named graph-to-graph function. Invariant: `run` never mutates the graph it is given."""

    name: str
    run: PassFn
    doc: str = ""

    @classmethod
    def of(cls, name: str, run: PassFn) -> Pass:
        """A Pass whose doc is the first line of `run`'s docstring."""
        lines = (run.__doc__ or "").strip().splitlines()
        return cls(name, run, lines[0] if lines else "")


PASSES: Mapping[str, Pass] = MappingProxyType(
    {
        p.name: p
        for p in (
            Pass.of("canonicalize", canonicalize.canonicalize),
            Pass.of("constfold", constfold.fold_constants),
            Pass.of("cse", cse.eliminate_common_subexpressions),
            Pass.of("dce", dce.eliminate_dead_code),
            Pass.of("expand", expand.expand),
            Pass.of("fold_affine", fold_affine.fold_affine),
            Pass.of("fuse_mlp", fuse_mlp.fuse_mlp),
            Pass.of("fuse_epilogue", fuse_epilogue.fuse_epilogue),
            Pass.of("fuse_elementwise", fuse_elementwise.fuse_elementwise),
        )
    }
)


def get_pass(name: str, passes: Mapping[str, Pass] = PASSES) -> Pass:
    """The pass named `name` in `passes`; PassError listing the known names otherwise."""
    found = passes.get(name)
    if found is None:
        known = ", ".join(sorted(passes)) or "none"
        raise PassError(f"unknown pass {name!r}; known passes: {known}")
    return found
