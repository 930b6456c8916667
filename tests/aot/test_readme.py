"""The README's "Deploying without Python" C caller compiles and prints the eager result."""

from __future__ import annotations

import os
import re
import shutil
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


def _build_command() -> str:
    """The README's command that builds the C caller (the one that runs pkg-config)."""
    (command,) = re.findall(r"`(cc app\.c [^`]*pkg-config[^`]*)`", _section())
    return command


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="needs pkg-config")
def test_readme_c_caller_builds_as_written_and_runs_from_anywhere(tmp_path: Path) -> None:
    """The README's caller, built with exactly the README's command in a directory holding
    build/seed.*, then run from another working directory (/): it finds its library."""
    import lucid

    caller = re.findall(r"```c\n(.*?)```", _section(), re.DOTALL)[1]
    assert len([ln for ln in caller.splitlines() if ln.strip()]) <= 10
    result = lucid.export(seed_model().eval(), (lucid.randn(1, 3),), tmp_path / "build" / "seed")
    assert result.name == "seed" and result.pkg_config == tmp_path / "build" / "seed.pc"
    (tmp_path / "app.c").write_text(caller)
    env = {**os.environ, "CC": CC or "cc"}
    subprocess.run(
        _build_command().replace("cc ", '"$CC" -Wall -Werror ', 1),
        shell=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    out = subprocess.run(
        [str(tmp_path / "app")], capture_output=True, text=True, check=True, cwd="/"
    ).stdout
    x = np.array([[0.5, -1.2, 3.3], [1, 2, 3]], np.float32)
    np.testing.assert_allclose(
        np.array(out.split(), float).reshape(2, 2), eager(seed_model(), x), atol=1e-5
    )


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_the_cmake_package_builds_the_caller(tmp_path: Path) -> None:
    import lucid

    caller = re.findall(r"```c\n(.*?)```", _section(), re.DOTALL)[1]
    lucid.export(seed_model().eval(), (lucid.randn(1, 3),), tmp_path / "build" / "seed")
    (tmp_path / "app.c").write_text(caller)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        "project(app C)\n"
        "find_package(seed CONFIG REQUIRED)\n"
        "add_executable(app app.c)\n"
        "target_link_libraries(app PRIVATE lucid::seed)\n"
    )
    build = tmp_path / "cmake-build"
    for command in (
        ["cmake", "-S", str(tmp_path), "-B", str(build), f"-Dseed_DIR={tmp_path / 'build'}"],
        ["cmake", "--build", str(build)],
    ):
        subprocess.run(command, check=True, capture_output=True)
    out = subprocess.run([str(build / "app")], capture_output=True, text=True, check=True, cwd="/")
    assert len(out.stdout.split()) == 4


def test_readme_header_excerpt_matches_the_header(seed_exports: dict[str, ExportResult]) -> None:
    excerpt = re.findall(r"```c\n(.*?)```", _section(), re.DOTALL)[0]
    header = " ".join(seed_exports["embedded"].header.read_text().split())
    for name in re.findall(r"\b(seed_\w+)\(", excerpt):
        assert re.search(rf"\b{name}\(", header), name
    for code in re.findall(r"(seed_E_\w+ = \d+)", excerpt):
        assert code in header, code
