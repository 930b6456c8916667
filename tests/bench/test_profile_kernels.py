"""benchmarks/profile_kernels.py keeps working: a forward and a training row of tiny shapes print
the CPU, the time per call and the ranked kernel table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "profile_kernels.py"

pytestmark = pytest.mark.needs_cc


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_profile_kernels_prints_a_ranked_table(mode: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "gpt", "--tiny", "--mode", mode]
        + ["--threads", "1", "--calls", "3", "--top", "4"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "LUCID_CACHE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("CPU: ") and "1 thread(s)" in out
    assert re.search(rf"GPT .*\({mode}\): \S+ \S+ per call, of which kernels \S+ \S+", out)
    rows = [line for line in out.splitlines() if re.match(r"\s*\d+\.\d%", line)]
    assert len(rows) == 4  # --top 4
    shares = [float(line.split("%")[0]) for line in rows]
    assert shares == sorted(shares, reverse=True)
    graphs = {line.split()[6] for line in rows}  # share, total, unit, calls, per call, unit
    assert graphs <= ({"forward"} if mode == "forward" else {"forward", "backward"})
    assert re.search(r"^total \S+ \S+ in \d+ kernel call site\(s\)$", out, re.MULTILINE)
