"""benchmarks/compile_profile.py keeps working: on a tiny model it builds the row, compiles each
unit again with gcc's -Q and prints every unit's time with its costliest function families."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.needs_cc


def test_compile_profile_prints_each_unit(run_bench) -> None:
    proc = run_bench("compile_profile.py", "--only", "gpt", "--tiny", "--top", "3")
    out = proc.stdout
    assert out.startswith("CPU: ") and "GPT" in out
    units = re.findall(
        r"^  unit (_lucid_\w+\.c) \((\d+) KB\): ([\d.]+) s, of which ([\d.]+) s before",
        out,
        re.MULTILINE,
    )
    assert units, out
    assert any(name.endswith("_gemm.c") for name, *_ in units)  # the GEMM machinery's unit
    for _, size, total, before in units:
        assert int(size) > 0 and 0 <= float(before) <= float(total)
    families = re.findall(r"^    +([\d.]+) s  (\S+)$", out, re.MULTILINE)
    assert families and all(not re.match(r"k\d+_", name) for _, name in families)
    assert len(re.findall(r"^    slowest: \S+ [\d.]+ s", out, re.MULTILINE)) == len(units)
