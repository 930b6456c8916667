"""The PassManager: runs a named pipeline of passes over a Graph and reports on each pass."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TextIO

from lucid._logging import log as _log
from lucid.errors import VerifyError
from lucid.ir.core import Graph
from lucid.ir.passes.registry import PASSES, Pass, get_pass
from lucid.ir.printer import format as format_graph
from lucid.ir.verify import verify


@dataclass(frozen=True)
class PassTiming:
    """One pass's run: wall time and node counts (top level) before and after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassReport:
    """What a PassManager run did, one entry per pass in the order run."""

    timings: list[PassTiming] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        """Wall time of all passes (verification included)."""
        return sum(t.seconds for t in self.timings)

    def format(self) -> str:
        """A table of per-pass wall time and node counts, for `--timings`."""
        width = max([len("pass"), *(len(t.name) for t in self.timings)])
        lines = [f"{'pass':<{width}}  {'ms':>9}  nodes"]
        for t in self.timings:
            lines.append(
                f"{t.name:<{width}}  {t.seconds * 1e3:9.3f}  {t.nodes_before} -> {t.nodes_after}"
            )
        lines.append(f"{'total':<{width}}  {self.total_seconds * 1e3:9.3f}")
        return "\n".join(lines) + "\n"


def ir_header(name: str) -> str:
    """The line printed before the IR after pass `name` (MLIR's --print-ir-after-all style)."""
    return f"// -----// IR after {name} //----- //"


class PassManager:
    """Runs passes (by name, from `passes`: the registry's table unless given) in order.

    Invariants: every name is resolved when the manager is built (an unknown name fails before
    any pass runs); the graph given to `run` is never changed; with `verify_each` every pass's
    output is verified before the next pass sees it.
    """

    def __init__(
        self,
        names: list[str] | tuple[str, ...],
        *,
        verify_each: bool = True,
        print_after_all: bool = False,
        out: TextIO | None = None,
        passes: Mapping[str, Pass] = PASSES,
    ) -> None:
        self.passes = [get_pass(n, passes) for n in names]
        self.verify_each = verify_each
        self.print_after_all = print_after_all
        self.out = out

    def run(self, graph: Graph) -> tuple[Graph, PassReport]:
        """Run every pass over `graph`; return the final graph and the per-pass report."""
        report = PassReport()
        for p in self.passes:
            start = time.perf_counter()
            result = p.run(graph)
            if self.verify_each:
                try:
                    verify(result)
                except VerifyError as e:
                    raise VerifyError(f"the IR after pass {p.name!r} is invalid:\n{e}") from e
            seconds = time.perf_counter() - start
            report.timings.append(PassTiming(p.name, seconds, len(graph.nodes), len(result.nodes)))
            _log.debug(
                "pass %s: %d -> %d nodes in %.2f ms",
                p.name,
                len(graph.nodes),
                len(result.nodes),
                seconds * 1e3,
            )
            if self.print_after_all:
                out = self.out if self.out is not None else sys.stdout
                out.write(ir_header(p.name) + "\n" + format_graph(result) + "\n")
            graph = result
        return graph, report


def run_passes(graph: Graph, names: list[str] | tuple[str, ...], **options: object) -> Graph:
    """Shorthand: the graph after running `names` over `graph` with a PassManager."""
    return PassManager(names, **options).run(graph)[0]  # type: ignore[arg-type]
