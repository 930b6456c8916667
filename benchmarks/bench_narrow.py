"""Narrow layers (a classifier head): the row and stream paths against the blocked path.

A Linear(K, N) with N at most `gemm.NARROW_N` takes the row path for any batch (every row of C
from dot products, 5 rows at a time, no packing), and its weight gradient dW = dY^T @ X (N rows)
the stream path (X's rows streamed past once, no packing). This script compiles each shape
twice, once as lucid does and once with both paths switched off (then the blocked path,
packing A or B and computing whole register tiles; the plain-loop small path for tiny shapes),
and times, in interleaved rounds, the forward's Linear kernel of an inference entry (whose
blocked path keeps a prepacked weight) and of a training entry (which packs in the call), and
the training entry's weight-gradient kernel. Kernel times come from the programs' own profile
(`options={"profile": True}`); medians of the rounds. Each variant builds in a cache directory
of its own: both have the same optimized IR, and the warm-start index (keyed on it) would
otherwise serve the second the first's build; the script checks which path each build took.

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

from _common import fmt_time
from run_all import cpu_name

import lucid
import lucid.codegen.gemm.emit as gemm_emit
from lucid import nn

ROW_PATH = "row path: every row of C"
STREAM_PATH = "stream path: the"


def _step(compiled: Any, x: np.ndarray, train: bool) -> None:
    if train:
        out = compiled(lucid.Tensor(x))
        (out * out).mean().backward()
    else:
        with lucid.no_grad():
            compiled(x)


def _compiled(k: int, n: int, narrow: bool, train: bool, x: np.ndarray, cache: Path) -> Any:
    """Linear(k, n) compiled (and built by its first call) with or without the narrow paths,
    in `cache`; codegen reads NARROW_N and STREAM_ROWS when it lowers."""
    saved = gemm_emit.NARROW_N, gemm_emit.STREAM_ROWS
    saved_cache = os.environ.get("LUCID_CACHE_DIR")
    gemm_emit.NARROW_N, gemm_emit.STREAM_ROWS = saved if narrow else (0, 0)
    os.environ["LUCID_CACHE_DIR"] = str(cache)
    try:
        lucid.random.seed(n)
        model = nn.Sequential(nn.Linear(k, n))
        if not train:
            model.eval()
        compiled = lucid.compile(model, options={"profile": True})
        _step(compiled, x, train)
    finally:
        gemm_emit.NARROW_N, gemm_emit.STREAM_ROWS = saved
        if saved_cache is None:
            os.environ.pop("LUCID_CACHE_DIR", None)
        else:
            os.environ["LUCID_CACHE_DIR"] = saved_cache
    entry = compiled.entry()
    took = [ROW_PATH in entry.forward.source]
    expect = [n <= saved[0] and k >= gemm_emit.ROW_PATH_MIN_K]
    if train and entry.grad is not None:
        took.append(STREAM_PATH in entry.grad.executable.source)
        expect.append(n <= saved[1] and k >= gemm_emit._ROW_LANES["float"])
    if took != [narrow and e for e in expect]:
        raise SystemExit(f"N={n}: the {'narrow' if narrow else 'other'} build took {took}")
    return compiled


def _kernel_seconds(compiled: Any) -> list[float]:
    """Seconds per call since the last reset of the forward's Linear kernel and, for a
    training entry, of the backward's weight-gradient GEMM."""
    rows = compiled.profile().rows
    picked = [[r for r in rows if r.graph == "forward" and "linear" in r.kernel]]
    picked.append([r for r in rows if r.graph == "backward" and "transpose matmul" in r.kernel])
    return [sum(r.seconds for r in rs) / rs[0].calls for rs in picked if rs]


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
        f"{gemm_emit.NARROW_N}, STREAM_ROWS = {gemm_emit.STREAM_ROWS}; batch {args.batch}, K {args.k}; medians of {args.rounds} "
        f"rounds of {args.calls} calls"
    )
    print(f"{'N':>4} {'kernel':16} {'narrow':>10} {'blocked':>10} {'blocked/narrow':>15}")
    with tempfile.TemporaryDirectory(prefix="bench-narrow-") as tmp:
        for n in (int(v) for v in args.n.split(",")):
            for train in (False, True):
                systems = {
                    path: _compiled(args.k, n, path, train, x, Path(tmp) / f"{n}-{train}-{path}")
                    for path in (True, False)
                }
                times: dict[bool, list[list[float]]] = {True: [], False: []}
                for _ in range(args.rounds):
                    for path, compiled in systems.items():
                        for _ in range(3):
                            _step(compiled, x, train)
                        compiled.profile(reset=True)
                        for _ in range(args.calls):
                            _step(compiled, x, train)
                        times[path].append(_kernel_seconds(compiled))
                kinds = ["training forward", "training dW"] if train else ["inference"]
                for i, kind in enumerate(kinds):
                    narrow, other = (
                        statistics.median(t[i] for t in times[p]) for p in (True, False)
                    )
                    print(
                        f"{n:>4} {kind:16} {fmt_time(narrow):>10} {fmt_time(other):>10} "
                        f"{other / narrow:>14.2f}x"
                    )


if __name__ == "__main__":
    main()
