"""The LucidError family, source locations, and the `file:line: error:` diagnostic format.

It depends on nothing else in lucid: the IR context of a diagnostic (`diagnose`) is printed
by lucid.ir.printer, which hands the lines to `format_diagnostic`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceLoc:
    """Where user code created a node: the first stack frame outside lucid at trace time."""

    file: str
    line: int
    function: str | None = None
    column: int | None = None  # set for a node read from IR text (lucid.ir.parse)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")


class LucidError(Exception):
    """Base class of every error lucid raises on purpose."""


class IndexRangeError(LucidError, IndexError):
    """An exported library's run found an index input out of range (a loss's target class, an
    embedding row): the IndexError eager lucid raises, from the C code's LUCID_E_*INDEX codes."""


class LucidWarning(UserWarning):
    """Base class of lucid's warnings."""


class RecompileWarning(LucidWarning):
    """A compiled module compiled again for a call its earlier entries do not fit."""


class FallbackWarning(LucidWarning):
    """A compiled module runs eagerly (correct, but not compiled) from now on."""


class RecompileError(LucidError):
    """A compiled module asked never to fall back (fullgraph) reached its entry limit."""


class IRError(LucidError):
    """A graph or builder was used in a way the IR does not allow."""


class IRTypeError(IRError, TypeError):
    """An op's inputs or attributes do not fit its type rule."""


class VerifyError(IRError):
    """`verify` found a broken invariant; the message shows the IR around the node.

    `reason` is the message without location or context, `node` the node it blames (None for
    a problem of the graph itself), so that a parser can point at the node in its text."""

    def __init__(self, message: str, reason: str | None = None, node: object = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason
        self.node = node


class ParseError(IRError):
    """The IR text is malformed; the message shows the line and a caret under the column."""

    def __init__(self, message: str, line: int, column: int, source_line: str) -> None:
        self.line = line
        self.column = column
        self.source_line = source_line
        self.reason = message
        super().__init__(f"{line}:{column}: error: {message}\n{excerpt(source_line, column)}")


class TraceError(LucidError):
    """Tracing met operations that cannot be captured in a static graph."""


class AutodiffError(LucidError):
    """Reverse-mode differentiation failed (e.g. an op has no VJP rule)."""


class CompileError(LucidError):
    """The graph cannot be lowered to C."""


class BuildError(LucidError):
    """The C compiler failed; the message carries its stderr."""


class CacheError(LucidError):
    """The compile cache cannot be used (not creatable, not writable, not ours, disk full):
    the message names the path, the cause and the fix."""


class CacheWarning(LucidWarning):
    """The default compile cache is unusable, so lucid uses a private temporary one."""


class CompilerNotFoundError(BuildError):
    """No working C compiler was found."""


class OnnxImportError(LucidError, ValueError):
    """An ONNX model cannot be imported (lucid.onnx.load); `problems` lists each node lucid
    cannot take, with its name and op type, when there are several."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class InputError(LucidError, ValueError):
    """A call received inputs of the wrong count, shape or dtype."""


def excerpt(source_line: str, column: int) -> str:
    """A source line and a caret under `column` (1-based), both indented two spaces."""
    return f"  {source_line}\n  {' ' * (column - 1)}^"


def format_diagnostic(
    message: str,
    loc: SourceLoc | None = None,
    lines: Sequence[str] = (),
    mark: int | None = None,
    context: int = 2,
) -> str:
    """`file:line: error: message`, then `lines` around index `mark` with a `>` marker."""
    head = f"{loc}: error: {message}" if loc is not None else f"error: {message}"
    if mark is None or not lines:
        return head
    lo, hi = max(0, mark - context), min(len(lines), mark + context + 1)
    shown = [("  > " if i == mark else "    ") + lines[i].strip() for i in range(lo, hi)]
    return "\n".join([head, *shown])
