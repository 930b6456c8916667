"""The README's "Deploying without Python" C caller compiles and prints the eager result."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lucid.runtime.aot import ExportResult
from tests.models import seed_model

from ._helpers import CC, eager

README = Path(__file__).parents[2] / "README.md"
pytestmark = pytest.mark.needs_cc


def _section() -> str:
    text = README.read_text()
    return text.split("## Deploying without Python", 1)[1].split("\n## ", 1)[0]


def test_readme_c_caller_runs(seed_exports: dict[str, ExportResult], tmp_path: Path) -> None:
    caller = re.findall(r"```c\n(.*?)```", _section(), re.DOTALL)[1]
    assert len([ln for ln in caller.splitlines() if ln.strip()]) <= 10
    result = seed_exports["embedded"]
    (tmp_path / "app.c").write_text(caller)
    exe = tmp_path / "app"
    subprocess.run(
        [
            CC,
            "-Wall",
            "-Werror",
            f"-I{result.header.parent}",
            str(tmp_path / "app.c"),
            str(result.library),
            f"-Wl,-rpath,{result.library.parent}",
            "-o",
            str(exe),
        ],
        check=True,
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    x = np.array([[0.5, -1.2, 3.3], [1, 2, 3]], np.float32)
    np.testing.assert_allclose(
        np.array(out.split(), float).reshape(2, 2), eager(seed_model(), x), atol=1e-5
    )


def test_readme_header_excerpt_matches_the_header(seed_exports: dict[str, ExportResult]) -> None:
    excerpt = re.findall(r"```c\n(.*?)```", _section(), re.DOTALL)[0]
    header = " ".join(seed_exports["embedded"].header.read_text().split())
    for name in re.findall(r"\b(seed_\w+)\(", excerpt):
        assert re.search(rf"\b{name}\(", header), name
    for code in re.findall(r"(seed_E_\w+ = \d+)", excerpt):
        assert code in header, code
