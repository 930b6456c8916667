"""Compare lucid's own rows of run_all.py between two checkouts, alternating runs.

    python benchmarks/compare_checkouts.py BASE_DIR NEW_DIR [--rounds 3] [--only seed,wide]
                                           [--quick]

One run of the suite is not enough to tell a 10% change on a shared machine: this runs
`benchmarks/run_all.py --no-peers` in each checkout in turn (base, new, then new, base, ...),
each in its own process with its own lucid (the checkout's directory comes first on
PYTHONPATH), and prints, per lucid row, the median and the minimum over rounds of each run's
median, with the ratios new / base (interference from other work only adds time, so the
minimum is the steadier of the two on a shared machine). Make BASE_DIR with `git worktree add --detach ../base <commit>`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run_suite(checkout: Path, only: str, quick: bool, out: Path) -> dict[str, dict[str, float]]:
    """{row: {system: median seconds}} of lucid's rows from one run in `checkout`."""
    cmd = [sys.executable, "benchmarks/run_all.py", "--no-peers", "--no-compile-times"]
    cmd += ["--only", only, "--json", str(out), "--png", ""] + (["--quick"] if quick else [])
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    subprocess.run(cmd, cwd=checkout, env=env, check=True, capture_output=True, timeout=3600)
    results = json.loads(out.read_text())["results"]
    return {
        row: {s: r["median"] for s, r in systems.items() if s.startswith("lucid") and "median" in r}
        for row, systems in results.items()
    }


def fmt(seconds: float) -> str:
    """Microseconds or milliseconds, three significant digits."""
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="seed,wide,deep,gemm")
    ap.add_argument(
        "--quick", action="store_true", help="run_all's --quick (noisy: 0.02 s budgets)"
    )
    args = ap.parse_args(argv)
    samples: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = [("base", args.base), ("new", args.new)]
            for label, checkout in order if i % 2 == 0 else order[::-1]:
                rows = run_suite(checkout.resolve(), args.only, args.quick, Path(tmp) / "r.json")
                for row, systems in rows.items():
                    for system, median in systems.items():
                        samples.setdefault((row, system, label), []).append(median)
    print(f"{args.rounds} alternating rounds; per row, the median and the best (min) over rounds")
    print("| row | system | base median | new median | ratio | base best | new best | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for row, system in dict.fromkeys((r, s) for r, s, _ in samples):
        base, new = samples[(row, system, "base")], samples[(row, system, "new")]
        mb, mn = statistics.median(base), statistics.median(new)
        print(
            f"| {row} | {system} | {fmt(mb)} | {fmt(mn)} | {mn / mb:.2f} "
            f"| {fmt(min(base))} | {fmt(min(new))} | {min(new) / min(base):.2f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
