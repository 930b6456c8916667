"""Pytest plugin: `.lir` files with `// RUN:` lines are tests, checked with FileCheck.

A file holds a graph in lucid's text form, the command that transforms it and the lines its
output must contain, in LLVM FileCheck's notation (the `filecheck` package):

    // RUN: lucid-ir opt -p fuse_epilogue %s | filecheck %s
    graph @f(...) -> (...) { ... }
    // CHECK: = fused_gemm

Each RUN line is one test item. `%s` stands for the file; `|` feeds one command's stdout to
the next one's stdin. Both tools run in this process (`lucid.cli.main` and filecheck's
`main`), which keeps a file to a few milliseconds and tests the checkout's lucid, not an
installed console script. `.lir` files without a RUN line (the goldens) are not collected.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

RUN = "// RUN:"


def run_lucid_ir(argv: list[str], stdin: str) -> tuple[int, str, str]:
    """`lucid-ir ARGV` in process: (exit code, stdout, stderr)."""
    from lucid.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def run_filecheck(argv: list[str], stdin: str) -> tuple[int, str, str]:
    """`filecheck ARGV` in process, reading `stdin`: (exit code, stdout, stderr)."""
    from filecheck.main import main

    out, err = io.StringIO(), io.StringIO()
    real_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(["filecheck", *argv])
                code = 0
            except SystemExit as e:  # filecheck exits with its result
                code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.stdin = real_stdin
    return code, out.getvalue(), err.getvalue()


TOOLS: dict[str, Callable[[list[str], str], tuple[int, str, str]]] = {
    "lucid-ir": run_lucid_ir,
    "filecheck": run_filecheck,
}


class RunFailed(Exception):
    """A stage of a RUN line exited non-zero; the message is the whole report."""


def run_pipeline(command: str, path: Path) -> None:
    """Run one RUN line's pipeline on `path`; RunFailed with every stage's output otherwise."""
    words = [w.replace("%s", str(path)) for w in shlex.split(command)]
    stages: list[list[str]] = [[]]
    for w in words:
        if w == "|":
            stages.append([])
        else:
            stages[-1].append(w)
    text = ""
    for stage in stages:
        if not stage or stage[0] not in TOOLS:
            known = ", ".join(TOOLS)
            raise RunFailed(f"RUN: {command}\nunknown command {stage[:1]}; known: {known}")
        code, out, err = TOOLS[stage[0]](stage[1:], text)
        if code != 0:
            raise RunFailed(
                f"RUN: {command}\n`{shlex.join(stage)}` exited with {code}\n"
                f"--- its input ---\n{text}--- stdout ---\n{out}--- stderr ---\n{err}"
            )
        text = out


class LirFile(pytest.File):
    """A `.lir` file: one item per RUN line."""

    def collect(self) -> Iterator[LirRun]:
        for lineno, line in enumerate(self.path.read_text().splitlines(), start=1):
            if line.startswith(RUN):
                command = line[len(RUN) :].strip()
                yield LirRun.from_parent(self, name=f"line{lineno}", command=command, lineno=lineno)


class LirRun(pytest.Item):
    """One RUN line of a `.lir` file."""

    def __init__(self, *, command: str, lineno: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.lineno = lineno

    def runtest(self) -> None:
        run_pipeline(self.command, self.path)

    def repr_failure(self, excinfo, style=None):  # type: ignore[no-untyped-def]
        if isinstance(excinfo.value, RunFailed):
            return f"{self.path}:{self.lineno}: {excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.lineno - 1, f"{self.path.name}:{self.lineno}: RUN: {self.command}"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> LirFile | None:
    """Collect `.lir` files that have a RUN line."""
    if file_path.suffix == ".lir" and RUN in file_path.read_text():
        return LirFile.from_parent(parent, path=file_path)
    return None
