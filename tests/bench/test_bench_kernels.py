"""benchmarks/bench_kernels.py keeps working: tiny shapes print the CPU and one timed row per
kernel (the peers' columns when they are installed, after checking that every system agrees),
and a row name it does not know is refused."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.needs_cc


def test_bench_kernels_prints_every_row(run_bench) -> None:
    proc = run_bench("bench_kernels.py", "--tiny", "--threads", "1", "--evict", "0.5")
    out = proc.stdout
    assert out.startswith("CPU: ") and "1 thread(s)" in out and "0.5 MB" in out
    for name in ("stem", "se-fc2", "head", "gap", "softmax"):
        assert re.search(rf"^  {re.escape(name)} \S+ +\d", out, re.MULTILINE), (name, out)


def test_bench_kernels_refuses_an_unknown_row(bench_imports, capsys) -> None:  # type: ignore[no-untyped-def]
    import bench_kernels

    with pytest.raises(SystemExit) as exc:
        bench_kernels.main(["--tiny", "--only", "stem,conv9"])
    assert exc.value.code == 2 and "unknown row 'conv9'" in capsys.readouterr().err
