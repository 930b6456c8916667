"""`lucid-ir export`: the CLI writes a library that lucid.runtime.load (and so C) can run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lucid.cli import main, seed_model
from lucid.runtime.loader import load

from ._helpers import ATOL, RTOL, eager

pytestmark = pytest.mark.needs_cc


def test_cli_export_seed_with_weights_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stem = tmp_path / "cli-seed"
    code = main(
        [
            "export",
            "seed",
            "--input",
            "Nx3",
            "-o",
            str(stem),
            "--weights",
            "file",
            "--name",
            "seedcli",
        ]
    )
    assert code == 0
    written = capsys.readouterr().out.split()
    assert written == [str(stem) + ext for ext in (".so", ".h", ".c", ".weights")]
    loaded = load(str(stem) + ".so")
    assert loaded.name == "seedcli" and not loaded.embedded
    x = np.random.default_rng(0).standard_normal((9, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x), eager(seed_model(), x), rtol=RTOL, atol=ATOL)


def test_cli_export_error_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "seed", "--input", "Nx4", "-o", str(tmp_path / "bad")])
    assert code == 1
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "bad.so").exists()
