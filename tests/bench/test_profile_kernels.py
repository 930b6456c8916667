"""benchmarks/profile_kernels.py keeps working: a forward and a training row of tiny shapes print
the CPU, the time per call and the ranked kernel table."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.needs_cc


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_profile_kernels_prints_a_ranked_table(mode: str, run_bench) -> None:
    proc = run_bench(
        "profile_kernels.py",
        *("--only", "gpt", "--tiny", "--mode", mode, "--threads", "1", "--calls", "3"),
        *("--top", "4"),
    )
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
