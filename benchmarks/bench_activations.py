"""Linear + activation, compiled lucid against PyTorch eager: what each activation's math adds.

Run: python benchmarks/bench_activations.py [--threads 2] [--batch 1024] [--tiny]

The GPT's MLP input layer, Linear(128, 512) at batch 1024 (the suite's `gpt` row: 16 x 64
tokens), followed by each activation in turn; lucid fuses the activation into the GEMM's
epilogue, so the difference to the bare Linear is the cost of its math. The transcendental
ones (GELU's tanh and erf forms, SiLU, sigmoid) run lucid's own vectorizable float exp, tanh
and erf (lucid/codegen/templates/helpers.c.j2). Medians of timed batches, in one process;
PyTorch's row is skipped when it is not installed. Prints the CPU, threads and flags first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt_time, per_call
from run_all import cpu_name

ACTIVATIONS = ("none", "relu", "hardswish", "sigmoid", "silu", "gelu-tanh", "gelu")


def _lucid_act(name: str):
    from lucid import nn

    return {
        "relu": nn.ReLU,
        "hardswish": nn.HardSwish,
        "sigmoid": nn.Sigmoid,
        "silu": nn.SiLU,
        "gelu-tanh": lambda: nn.GELU(approximate="tanh"),
        "gelu": nn.GELU,
    }[name]()


def _torch_act(torch, name: str):
    return {
        "relu": torch.nn.ReLU,
        "hardswish": torch.nn.Hardswish,
        "sigmoid": torch.nn.Sigmoid,
        "silu": torch.nn.SiLU,
        "gelu-tanh": lambda: torch.nn.GELU(approximate="tanh"),
        "gelu": torch.nn.GELU,
    }[name]()


def _row(
    name: str, x: np.ndarray, d_out: int, torch, budget: float, repeat: int
) -> tuple[float, float | None]:
    """(lucid's, PyTorch's or None) median seconds per call of Linear + `name` on x; a
    ValueError when the two disagree."""
    import lucid
    from lucid import nn

    lucid.random.seed(0)
    linear = nn.Linear(x.shape[1], d_out)
    layers = [linear] if name == "none" else [linear, _lucid_act(name)]
    compiled = lucid.compile(nn.Sequential(*layers).eval())
    xt = lucid.Tensor(x)
    ours = per_call(lambda: compiled(xt), budget=budget, repeat=repeat)
    if torch is None:
        return ours, None
    tl = torch.nn.Linear(x.shape[1], d_out)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(linear.weight.data))
        tl.bias.copy_(torch.from_numpy(linear.bias.data))
    tm = torch.nn.Sequential(tl, *([] if name == "none" else [_torch_act(torch, name)]))
    xx = torch.from_numpy(x)

    def run_torch() -> object:
        with torch.no_grad():
            return tm(xx)

    theirs = per_call(run_torch, budget=budget, repeat=repeat)
    got, want = compiled(xt).numpy(), run_torch().numpy()
    if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        raise ValueError(f"lucid and PyTorch disagree (max diff {np.abs(got - want).max()})")
    return ours, theirs


def main(argv: list[str] | None = None) -> int:
    """Time every activation; print one line each with the ratio to PyTorch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument(
        "--tiny", action="store_true", help="small shapes, short runs (a smoke test)"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-bench-act-"))
    from lucid.runtime.build import DEFAULT_FLAGS
    from lucid.runtime.threads import set_num_threads

    set_num_threads(args.threads)
    d_in, d_out = (8, 16) if args.tiny else (128, 512)
    batch = 4 if args.tiny else args.batch
    budget = 0.02 if args.tiny else 0.5
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); flags {' '.join(DEFAULT_FLAGS)}")
    print(f"Linear({d_in}, {d_out}) + activation, batch {batch}; median per call")
    x = np.random.default_rng(0).standard_normal((batch, d_in)).astype(np.float32)
    print(f"  {'activation':<10} {'lucid':>10} {'PyTorch':>10} {'lucid/PyTorch':>14}")
    repeat = 5 if args.tiny else 15
    for name in ACTIVATIONS:
        try:
            ours, theirs = _row(name, x, d_out, torch, budget, repeat)
        except ValueError as exc:
            print(f"  {name}: {exc}")
            return 1
        ratio = f"{ours / theirs:.2f}x" if theirs else "-"
        shown = fmt_time(theirs) if theirs else "-"
        print(f"  {name:<10} {fmt_time(ours):>10} {shown:>10} {ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
