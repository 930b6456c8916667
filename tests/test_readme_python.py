"""Every Python block of README.md and docs/*.md runs as written (issue 19): a file's blocks in
order, in one fresh Python, in an empty working directory that sees the repository's
examples/ (the README reads examples/data). A block may be left out only with a visible
`<!-- readme-test: not run (reason) -->` line right above it (the test counts them), and a
block marked `<!-- readme-test: excerpt of PATH -->` must be PATH's code, line for line
(comments and alignment aside)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lucid

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- readme-test: ([^>]*)-->\n)?```python\n(.*?)```", re.DOTALL)
# blocks deliberately not run, by file: each needs what a test machine does not start
NOT_RUN = {"README.md": 1}


def blocks(path: Path) -> list[tuple[str | None, str, int]]:
    """(reason it is not run or None, code, line) of each Python block of `path`."""
    text = path.read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1) for m in BLOCK.finditer(text)
    ]


# optional packages a block may import: without one, that block is reported and skipped
OPTIONAL = ("onnx", "onnxruntime", "torch", "safetensors", "distributed", "dask")
RUN_BLOCK = """
print({where!r}, flush=True)
try:
    exec(compile({code!r}, {where!r}, "exec"), globals())
except ModuleNotFoundError as exc:
    if (exc.name or "").split(".")[0] not in {optional!r}:
        raise
    print("skipped, not installed:", exc.name, flush=True)
"""


def script(path: Path) -> str:
    """The runnable blocks of `path` as one program that says which block it is in; a block
    that imports an optional package that is not installed is skipped (and says so)."""
    parts = []
    for reason, code, line in blocks(path):
        if not reason:
            where = f"--- {path.name}:{line}"
            parts.append(RUN_BLOCK.format(where=where, code=code, optional=OPTIONAL))
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.needs_cc
@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_run_as_written(doc: Path, tmp_path: Path) -> None:
    found = blocks(doc)
    if not found:
        pytest.skip(f"{doc.name} has no Python block")
    skipped = [line for reason, _, line in found if reason and reason.startswith("not run")]
    assert len(skipped) == NOT_RUN.get(doc.name, 0), f"blocks not run changed: lines {skipped}"
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "readme.py").write_text(script(doc), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "readme.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env={**os.environ, "LUCID_CACHE_DIR": str(tmp_path / "cache")},
    )
    where = [ln for ln in run.stdout.splitlines() if ln.startswith("--- ")]
    assert run.returncode == 0, (
        f"failed in {where[-1:] or 'the first block'}:\n{run.stderr[-4000:]}"
    )


def _definitions(code: str) -> dict[str, str]:
    """Top-level functions and assignments of `code` by name, as AST dumps without type
    annotations (an excerpt may drop them and reflow lines, not change the code)."""
    found = {}
    for node in ast.parse(code).body:
        if isinstance(node, ast.FunctionDef):
            node.returns = None
            for arg in node.args.args:
                arg.annotation = None
            found[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            found[node.targets[0].id] = ast.dump(node)
    return found


def _source(relative: str) -> Path:
    """The file an excerpt quotes. Files of the package are read from the lucid that is
    imported, so the check also runs against an installed wheel (CI runs the suite from the
    unpacked sdist with its lucid/ removed)."""
    if relative.startswith("lucid/"):
        return Path(lucid.__file__).parent.parent / relative
    return ROOT / relative


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_excerpts_match_their_source(doc: Path) -> None:
    for reason, code, line in blocks(doc):
        if reason and reason.startswith("excerpt of "):
            path = _source(reason.removeprefix("excerpt of ").strip())
            source, excerpt = _definitions(path.read_text()), _definitions(code)
            assert excerpt, f"{doc.name}:{line}: the excerpt defines nothing"
            for name, tree in excerpt.items():
                assert source.get(name) == tree, f"{doc.name}:{line}: {name} differs from {path}"
