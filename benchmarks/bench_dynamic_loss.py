"""The character GPT's training step (forward + cross-entropy on logits.reshape(-1, V) +
backward) compiled with a static batch and with a dynamic one, where the flattened logits are
f32[N*T,V] and every size is computed from the batch at run time: medians per step at the
batch sizes given, and the dynamic/static ratio (a dynamic build serves them all).

    python benchmarks/bench_dynamic_loss.py [--threads 1] [--batches 4,16] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np
from _common import fmt_time, per_call

import lucid
from lucid.models.gpt import GPT, GPTConfig, LossModule

CFG = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
QUICK = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)


def _step(step: lucid.nn.Module, idx: lucid.Tensor, targets: lucid.Tensor) -> None:
    step(idx, targets).backward()


def main(argv: list[str] | None = None) -> int:
    """Print one row per batch size: static, dynamic, and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="4,16")
    p.add_argument("--quick", action="store_true", help="a smaller model")
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else CFG
    lucid.set_num_threads(args.threads)
    lucid.random.seed(0)
    model = GPT(cfg)
    dynamic = lucid.compile(LossModule(model), dynamic_batch=True)
    print(f"GPT {cfg}, {args.threads} thread(s); a training step without the optimizer")
    print(f"{'batch':>6} {'static':>10} {'dynamic':>10} {'dyn/static':>10}")
    for n in (int(b) for b in args.batches.split(",")):
        rng = np.random.default_rng(n)
        idx = lucid.Tensor(rng.integers(0, cfg.vocab_size, (n, cfg.block_size)))
        targets = lucid.Tensor(rng.integers(0, cfg.vocab_size, (n, cfg.block_size)))
        static = lucid.compile(LossModule(model))
        times = [
            per_call(partial(_step, step, idx, targets), budget=2.0, repeat=9)
            for step in (static, dynamic)
        ]
        print(
            f"{n:>6} {fmt_time(times[0]):>10} {fmt_time(times[1]):>10} {times[1] / times[0]:>10.2f}"
        )
    print(f"dynamic build: {len(dynamic.signatures)} signature(s) for every batch size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
