"""Prepacked weights: a compiled forward calling its C with the weights packed ahead (what
`lucid.compile` does for a forward-only entry) against the same C packing them in every call,
interleaved in one process on the same inputs, for the suite's MLP workloads.

    python benchmarks/bench_prepack.py [--threads 2] [--only wide,deep]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import fmt_time, per_call_samples
from workloads import WORKLOADS, load_into_lucid, lucid_mlp, make_data

import lucid


def measure(
    entry: Any, x: np.ndarray, params: tuple[np.ndarray, ...], table: np.ndarray
) -> tuple[float, float]:
    """Median seconds per call (packed, packing in the call), from interleaved rounds so both
    see the same machine."""
    packed: list[float] = []
    in_call: list[float] = []
    for _ in range(5):
        packed += per_call_samples(lambda: entry.forward.run(x, *params, packed=table), repeat=5)
        in_call += per_call_samples(lambda: entry.forward.run(x, *params), repeat=5)
    return sorted(packed)[len(packed) // 2], sorted(in_call)[len(in_call) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="seed,wide,deep")
    args = ap.parse_args()
    lucid.set_num_threads(args.threads)
    print(f"threads={args.threads} load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'workload':16} {'packed':>10} {'in call':>10} {'in call/packed':>15}  packed copies")
    for name in args.only.split(","):
        w = WORKLOADS[name]
        d = make_data(w)
        model = lucid_mlp(w)
        load_into_lucid(model, d.weights)
        cm = lucid.compile(model.eval(), dynamic_batch=True)  # one build for both batches
        cm(d.x)  # build, and pack the weights
        entry = cm.entry()
        params = entry.params()
        if entry.packed is None:
            print(f"{name:16} no weight takes the blocked GEMM path: nothing is prepacked")
            continue
        table = entry.packed.refresh(entry.param_objects(), params)
        mb = entry.packed.nbytes() / 1e6
        for batch in (w.batch, 1):
            p, c = measure(entry, d.x[:batch], params, table)
            label = f"{name} b{batch}"
            print(f"{label:16} {fmt_time(p):>10} {fmt_time(c):>10} {c / p:14.2f}x  {mb:.1f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
