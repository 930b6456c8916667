"""Every pass lucid registers has a FileCheck test: a tests/ir/passes/*.lir file that runs it."""

from __future__ import annotations

import re
from pathlib import Path

from lucid.ir.passes import PASSES
from tests.lir_runner import RUN

PASS_FILES = Path(__file__).parent / "passes"


def test_every_registered_pass_has_a_lir_file() -> None:
    ours = {name for name, p in PASSES.items() if p.run.__module__.startswith("lucid.")}
    run_lines = [
        line
        for path in PASS_FILES.glob("*.lir")
        for line in path.read_text().splitlines()
        if line.startswith(RUN)
    ]
    tested = {
        name
        for line in run_lines
        for m in re.finditer(r"-p (\S+)", line)
        for name in m.group(1).split(",")
    }
    assert ours, "no pass registered by lucid"
    missing = sorted(ours - tested)
    assert not missing, f"passes with no tests/ir/passes/*.lir file running them: {missing}"
