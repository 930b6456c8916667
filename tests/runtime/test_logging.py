"""The `lucid` logger's records for each stage of a compile, and how a user sees them
(lucid.set_log_level, LUCID_LOG): nothing is printed by default (issue 19)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn

SCRIPT = """
import numpy as np, lucid
from lucid import nn
lucid.compile(nn.Sequential(nn.Linear(3, 4), nn.HardSwish()).eval())(np.ones((2, 3), np.float32))
"""


@pytest.mark.needs_cc
def test_a_compile_logs_trace_passes_codegen_cache_and_build(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = nn.Sequential(nn.Linear(3, 7), nn.HardSwish(), nn.Linear(7, 2)).eval()
    with caplog.at_level(logging.DEBUG, logger="lucid"):
        lucid.compile(model)(np.ones((5, 3), np.float32))
    messages = [r.getMessage() for r in caplog.records if r.name == "lucid"]
    for start in ("traced Sequential.forward", "pass canonicalize:", "codegen ", "cache miss:"):
        assert any(m.startswith(start) for m in messages), (start, messages)
    built = [r for r in caplog.records if r.getMessage().startswith("built ")]
    assert built and built[0].levelno == logging.INFO and "-O3" in built[0].getMessage()


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "LUCID_CACHE_DIR": str(tmp_path), **env},
    )


@pytest.mark.needs_cc
def test_nothing_is_printed_by_default_and_lucid_log_prints_records(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LUCID_LOG"}
    quiet = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**env, "LUCID_CACHE_DIR": str(tmp_path / "a")},
    )
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == ""
    loud = _run({"LUCID_LOG": "info"}, tmp_path / "b")
    assert loud.returncode == 0 and "lucid INFO: built _lucid_" in loud.stderr
    assert "DEBUG" not in loud.stderr


def test_set_log_level_checks_its_argument_and_can_be_turned_off() -> None:
    with pytest.raises(ValueError, match="expected one of debug, info, warning"):
        lucid.set_log_level("loud")
    with pytest.raises(TypeError, match="level name or number"):
        lucid.set_log_level(True)  # type: ignore[arg-type]
    logger = logging.getLogger("lucid")
    before = list(logger.handlers)
    lucid.set_log_level("debug")
    assert logger.level == logging.DEBUG and len(logger.handlers) == len(before) + 1
    lucid.set_log_level(None)
    assert logger.handlers == before and logger.level == logging.NOTSET
