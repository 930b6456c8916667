"""The issue-15 models side by side: MobileNetV3-Small (inference at batch 1 and 32, training
at batch 32, 224x224) and the character GPT (forward and training step), in lucid compiled,
lucid eager and PyTorch eager (when installed; the PyTorch twins of tests/zoo/), from the same
weights, with medians and ratios.

    python benchmarks/bench_models.py [--threads 2] [--only mnv3,gpt] [--quick]

A training step is forward + cross-entropy + backward + SGD (lr 1e-3, no momentum) in every
system. torch.compile, ONNX Runtime and JAX rows are not here yet (issue 17).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np
from _common import fmt_time, per_call

import lucid
from lucid.models.gpt import GPT, GPTConfig
from lucid.models.mobilenetv3 import load_torchvision_state_dict, mobilenet_v3_small
from lucid.nn import functional as F

LR = 1e-3
GPT_CFG = GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)
GPT_BATCH = 16


def _sgd(params: list) -> Callable[[], None]:
    def step() -> None:
        for p in params:
            if p.grad is not None:
                p.data -= LR * p.grad

    return step


def lucid_rows(model, x: np.ndarray, t: np.ndarray, mode: str) -> dict[str, float]:
    """Seconds per call of lucid eager and compiled for (model, mode)."""
    out = {}
    for label, run in (("lucid eager", model), ("lucid compiled", lucid.compile(model))):
        if mode == "forward":
            model.eval()

            def call(run=run) -> None:
                with lucid.no_grad():
                    run(lucid.tensor(x))

        else:
            model.train()
            update = _sgd([p for p in model.parameters() if p.data.dtype.kind == "f"])

            def call(run=run, update=update) -> None:
                model.zero_grad()
                logits = run(lucid.tensor(x))
                if logits.ndim == 3:
                    logits = logits.reshape(-1, logits.shape[-1])
                F.cross_entropy(logits, t.reshape(-1)).backward()
                update()

        out[label] = per_call(call, budget=budget, repeat=repeat)
    return out


def torch_row(model, x: np.ndarray, t: np.ndarray, mode: str) -> dict[str, float]:
    import torch

    xt, tt = torch.from_numpy(x), torch.from_numpy(t.reshape(-1))
    if mode == "forward":
        model.eval()

        def call() -> None:
            with torch.no_grad():
                model(xt)

    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=LR)

        def call() -> None:
            opt.zero_grad()
            logits = model(xt)
            torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tt).backward()
            opt.step()

    return {"torch eager": per_call(call, budget=budget, repeat=repeat)}


def mnv3_pair():
    lucid.random.seed(0)
    ours = mobilenet_v3_small(num_classes=1000)
    ours.classifier[2].p = 0.0  # dropout draws are not what is timed
    try:
        from tests.zoo.torch_mobilenet import MobileNetV3Small  # imports torch

        theirs = MobileNetV3Small(num_classes=1000, dropout=0.0)
        load_torchvision_state_dict(ours, theirs.state_dict())
    except ImportError:
        theirs = None
    return ours, theirs


def gpt_pair():
    lucid.random.seed(0)
    ours = GPT(GPT_CFG)
    try:
        import torch

        from tests.zoo.torch_gpt import GPT as TorchGPT

        c = GPT_CFG
        theirs = TorchGPT(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, c.tied)
        theirs.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
        )
    except ImportError:
        theirs = None
    return ours, theirs


def main() -> int:
    global budget, repeat
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="mnv3,gpt")
    ap.add_argument("--quick", action="store_true", help="few repetitions")
    args = ap.parse_args()
    budget, repeat = (0.5, 3) if args.quick else (3.0, 7)
    lucid.set_num_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
        tv = torch.__version__
    except ImportError:
        tv = "absent"
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in lines if "model name" in ln), platform.processor()
    )
    print(f"cpu: {cpu}; {os.cpu_count()} cores; threads {args.threads}; torch {tv}")
    rng = np.random.default_rng(0)
    cases = []
    if "mnv3" in args.only:
        ours, theirs = mnv3_pair()
        for batch, mode in ((1, "forward"), (32, "forward"), (32, "train")):
            x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            t = rng.integers(0, 1000, batch)
            cases.append((f"mnv3/{mode} batch {batch}", ours, theirs, x, t, mode))
    if "gpt" in args.only:
        ours, theirs = gpt_pair()
        for mode in ("forward", "train"):
            shape = (GPT_BATCH, GPT_CFG.block_size)
            x = rng.integers(0, GPT_CFG.vocab_size, shape)
            t = rng.integers(0, GPT_CFG.vocab_size, shape)
            cases.append((f"gpt/{mode} batch {GPT_BATCH}x{shape[1]}", ours, theirs, x, t, mode))
    for title, ours, theirs, x, t, mode in cases:
        rows = lucid_rows(ours, x, t, mode)
        if theirs is not None:
            rows.update(torch_row(theirs, x, t, mode))
        base = rows.get("torch eager")
        print(f"\n{title}")
        for label, sec in rows.items():
            ratios = f"  {sec / base:5.2f}x torch eager" if base else ""
            if label == "lucid compiled":
                ratios += f"  {rows['lucid eager'] / sec:5.2f}x faster than eager"
            print(f"  {label:<15} {fmt_time(sec):>10}{ratios}", flush=True)
    return 0


budget, repeat = 3.0, 7

if __name__ == "__main__":
    raise SystemExit(main())
