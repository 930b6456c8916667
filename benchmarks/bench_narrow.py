"""Narrow GEMMs (a classifier head): the row path against the blocked path, in one process.

A Linear(K, N) with N at most `gemm.NARROW_N` takes the row path for any batch (every row of C
from dot products, 5 rows at a time, no packing). This script compiles each shape twice, once
as lucid does and once with that path switched off (then the blocked path, packing A and
computing 32-column tiles; the plain-loop small path for tiny shapes), and times the Linear's
kernel in both, in interleaved rounds: an inference entry (whose blocked path keeps a
prepacked weight) and a training entry (forward + backward; its forward packs the weight in the
call). Kernel times come from the programs' own profile (`options={"profile": True}`); medians
of the rounds. Each variant builds in a cache directory of its own: both have the same optimized
IR, and the warm-start index (keyed on it) would otherwise serve the second the first's build.

    python benchmarks/bench_narrow.py [--threads 2] [--batch 512] [--k 2048] [--n 4,10,16,24]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_all import cpu_name

import lucid
import lucid.codegen.gemm.emit as gemm_emit
from lucid import nn

ROW_PATH = "row path: every row of C"


def _step(compiled: Any, x: np.ndarray, train: bool) -> None:
    if train:
        out = compiled(lucid.Tensor(x))
        (out * out).mean().backward()
    else:
        with lucid.no_grad():
            compiled(x)


def _compiled(k: int, n: int, row_path: bool, train: bool, x: np.ndarray, cache: Path) -> Any:
    """Linear(k, n) compiled (and built by its first call) with or without the narrow row
    path, in `cache`; codegen reads NARROW_N when it lowers."""
    saved, saved_cache = gemm_emit.NARROW_N, os.environ.get("LUCID_CACHE_DIR")
    gemm_emit.NARROW_N = saved if row_path else 0
    os.environ["LUCID_CACHE_DIR"] = str(cache)
    try:
        lucid.random.seed(n)
        model = nn.Sequential(nn.Linear(k, n))
        if not train:
            model.eval()
        compiled = lucid.compile(model, options={"profile": True})
        _step(compiled, x, train)
    finally:
        gemm_emit.NARROW_N = saved
        if saved_cache is None:
            os.environ.pop("LUCID_CACHE_DIR", None)
        else:
            os.environ["LUCID_CACHE_DIR"] = saved_cache
    narrow = n <= saved and k >= gemm_emit.ROW_PATH_MIN_K
    if (ROW_PATH in compiled.c_source) != (row_path and narrow):
        raise SystemExit(
            f"N={n}: the {'row path' if row_path else 'other'} build is not what it should be"
        )
    return compiled


def _linear_seconds(compiled: Any) -> float:
    """Seconds per call of the forward's Linear kernel since the last reset."""
    rows = [r for r in compiled.profile().rows if r.graph == "forward" and "linear" in r.kernel]
    return sum(r.seconds for r in rows) / max(1, rows[0].calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--k", type=int, default=2048)
    parser.add_argument("--n", default="4,10,16,24")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    lucid.set_num_threads(args.threads)
    x = np.random.default_rng(0).standard_normal((args.batch, args.k)).astype(np.float32)
    print(
        f"CPU: {cpu_name()}; {args.threads} thread(s); lucid's default C flags; NARROW_N = "
        f"{gemm_emit.NARROW_N}; batch {args.batch}, K {args.k}; medians of {args.rounds} "
        f"rounds of {args.calls} calls"
    )
    print(f"{'N':>4} {'mode':9} {'row path':>10} {'other':>10} {'other/row':>10}")
    with tempfile.TemporaryDirectory(prefix="bench-narrow-") as tmp:
        for n in (int(v) for v in args.n.split(",")):
            for train in (False, True):
                systems = {
                    path: _compiled(args.k, n, path, train, x, Path(tmp) / f"{n}-{train}-{path}")
                    for path in (True, False)
                }
                times: dict[bool, list[float]] = {True: [], False: []}
                for _ in range(args.rounds):
                    for path, compiled in systems.items():
                        for _ in range(3):
                            _step(compiled, x, train)
                        compiled.profile(reset=True)
                        for _ in range(args.calls):
                            _step(compiled, x, train)
                        times[path].append(_linear_seconds(compiled))
                row, other = (statistics.median(times[p]) for p in (True, False))
                mode = "training" if train else "inference"
                print(
                    f"{n:>4} {mode:9} {row * 1e6:>7.1f} us {other * 1e6:>7.1f} us "
                    f"{other / row:>9.2f}x"
                )


if __name__ == "__main__":
    main()
