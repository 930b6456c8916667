"""A whole training step (zero_grad, forward, MSE loss, backward, optimizer step) three ways.

- whole step compiled: `lucid.compile(train_step)`, one program (lucid/runtime/step.py);
- compiled fwd+bwd, eager opt: `lucid.compile(model)` forward, its compiled backward through the
  eager tape, then the optimizer's NumPy step (what training through lucid.compile did before);
- eager: the NumPy library and its tape.

For SGD and Adam on the seed model (3 -> 5 -> 2, batch 16) and the wide MLP (1024 -> 1024 ->
1024, batch 256), float32. Timings are medians (benchmarks/_common.py); weights move every
call, which changes nothing in the work a step does.

Run: python benchmarks/bench_step.py [--threads N]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import per_call, print_table

import lucid
from lucid import nn
from lucid.nn import functional as F

SHAPES = {"seed": (3, 5, 2, 16), "wide": (1024, 1024, 1024, 256)}
OPTIMIZERS: dict[str, Callable[[Any], Any]] = {
    "SGD": lambda ps: lucid.optim.SGD(ps, lr=1e-3),
    "Adam": lambda ps: lucid.optim.Adam(ps, lr=1e-3),
}


def timed(shape: str, opt_name: str, how: str) -> float:
    """Median seconds of one step of `how` (a row of the table)."""
    d_in, hidden, d_out, batch = SHAPES[shape]
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.HardSwish(), nn.Linear(hidden, d_out))
    opt = OPTIMIZERS[opt_name](model.parameters())
    rng = np.random.default_rng(0)
    x = lucid.Tensor(rng.standard_normal((batch, d_in)).astype(np.float32))
    target = lucid.Tensor(rng.standard_normal((batch, d_out)).astype(np.float32))
    run = lucid.compile(model) if how == "compiled fwd+bwd, eager opt" else model

    def train_step(x: lucid.Tensor, target: lucid.Tensor) -> lucid.Tensor:
        opt.zero_grad()
        loss = F.mse_loss(run(x), target)
        loss.backward()
        opt.step()
        return loss

    step = lucid.compile(train_step) if how == "whole step compiled" else train_step
    return per_call(lambda: step(x, target), budget=0.5 if shape == "wide" else 0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="lucid's threads (default 1)")
    args = ap.parse_args(argv)
    lucid.set_num_threads(args.threads)
    ways = ("whole step compiled", "compiled fwd+bwd, eager opt", "eager")
    for shape, dims in SHAPES.items():
        for opt_name in OPTIMIZERS:
            rows = {how: timed(shape, opt_name, how) for how in ways}
            title = f"{shape} ({'x'.join(map(str, dims))}), {opt_name}, float32"
            print_table(title, rows, baseline="whole step compiled")
    print(f"\nthreads: lucid {lucid.get_num_threads()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
