"""The pass registry and the PassManager that runs a named pipeline over a Graph."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from lucid.errors import LucidError, VerifyError
from lucid.ir.core import Graph

PassFn = Callable[[Graph], Graph]


class PassError(LucidError):
    """A pass name is unknown or registered twice."""


@dataclass(frozen=True)
class Pass:
    """A named graph-to-graph function. Invariant: `run` never mutates the graph it is given."""

    name: str
    run: PassFn
    doc: str = ""


PASSES: dict[str, Pass] = {}


def register_pass(name: str, *, replace: bool = False) -> Callable[[PassFn], PassFn]:
    """Decorator: register `fn(graph) -> graph` under `name`; a second registration is an error."""

    def decorate(fn: PassFn) -> PassFn:
        if name in PASSES and not replace:
            raise PassError(f"pass {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        PASSES[name] = Pass(name, fn, doc[0] if doc else "")
        return fn

    return decorate


def get_pass(name: str) -> Pass:
    """The pass registered as `name`; PassError listing the known names otherwise."""
    found = PASSES.get(name)
    if found is None:
        known = ", ".join(sorted(PASSES)) or "none"
        raise PassError(f"unknown pass {name!r}; known passes: {known}")
    return found


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
    """Runs registered passes in order.

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
    ) -> None:
        self.passes = [get_pass(n) for n in names]
        self.verify_each = verify_each
        self.print_after_all = print_after_all
        self.out = out

    def run(self, graph: Graph) -> tuple[Graph, PassReport]:
        """Run every pass over `graph`; return the final graph and the per-pass report."""
        from lucid.ir.printer import format as format_graph
        from lucid.ir.verify import verify

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
            if self.print_after_all:
                out = self.out if self.out is not None else sys.stdout
                out.write(ir_header(p.name) + "\n" + format_graph(result) + "\n")
            graph = result
        return graph, report


def run_passes(graph: Graph, names: list[str] | tuple[str, ...], **options: object) -> Graph:
    """Shorthand: the graph after running `names` over `graph` with a PassManager."""
    return PassManager(names, **options).run(graph)[0]  # type: ignore[arg-type]
