"""Normalization layers, one thread: eager lucid (NumPy), lucid.compile, PyTorch; and eval-mode
Linear -> BatchNorm1d -> ReLU with and without the fold_affine pass.

    PYTHONPATH=. python benchmarks/bench_norm.py      (PyTorch rows need torch installed)

Prints the best of 20 (200 for the small fold cases) wall times per call.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import lucid
from lucid import nn
from lucid.ir.passes import default_pipeline


def best_ms(f: Callable[..., Any], x: Any, reps: int = 20) -> float:
    """The fastest of `reps` calls f(x), after one warm-up call, in milliseconds."""
    f(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(x)
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def layers() -> None:
    """Forward of each layer on a typical activation."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    cases = [
        ("LayerNorm(768), [2048, 768]", lambda: nn.LayerNorm(768), "LayerNorm", (768,),
         (2048, 768), True),
        ("BatchNorm2d(64) train, [32, 64, 28, 28]", lambda: nn.BatchNorm2d(64), "BatchNorm2d",
         (64,), (32, 64, 28, 28), True),
        ("BatchNorm2d(64) eval, [32, 64, 28, 28]", lambda: nn.BatchNorm2d(64), "BatchNorm2d",
         (64,), (32, 64, 28, 28), False),
        ("GroupNorm(8, 64), [32, 64, 28, 28]", lambda: nn.GroupNorm(8, 64), "GroupNorm",
         (8, 64), (32, 64, 28, 28), True),
    ]  # fmt: skip
    for name, make, tname, targs, shape, train in cases:
        model = make().train(train)
        x = rng.standard_normal(shape).astype(np.float32)
        xl = lucid.tensor(x)
        compiled = lucid.compile(model)
        with lucid.no_grad():
            eager_ms = best_ms(model, xl)
            compiled_ms = best_ms(compiled, xl)
        line = f"{name}: eager {eager_ms:.2f} ms, compiled {compiled_ms:.2f} ms"
        if torch is not None:
            tmodel = getattr(torch.nn, tname)(*targs).train(train)
            xt = torch.tensor(x)
            with torch.no_grad():
                line += f", torch {best_ms(tmodel, xt):.2f} ms"
        print(line)


def fold() -> None:
    """Eval-mode Linear(512, 512) -> BatchNorm1d -> ReLU, folded or not."""
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU()).eval()
    without = [p for p in default_pipeline() if p != "fold_affine"]
    folded = lucid.compile(model)
    unfolded = lucid.compile(model, options={"passes": without})
    for n in (1, 64, 1024):
        x = lucid.tensor(rng.standard_normal((n, 512)).astype(np.float32))
        with lucid.no_grad():
            a = best_ms(folded, x, 200)
            b = best_ms(unfolded, x, 200)
        print(f"Linear+BatchNorm1d+ReLU eval, batch {n}: folded {a:.3f} ms, unfolded {b:.3f} ms")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    lucid.set_num_threads(1)
    layers()
    fold()
