"""Forward latency of MobileNet-like convolutions: compiled lucid vs eager lucid vs PyTorch eager.

Run: python benchmarks/bench_conv.py [--threads N]   (uses a private compile cache under a temp dir)

Each workload is one layer with its activation (compiled lucid fuses the bias and the activation
into the conv kernel); every system gets the same weights and input. Prints the median time
per call and the ratios to PyTorch.
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

# (name, input shape, out channels, kernel, stride, padding, groups, activation)
WORKLOADS = [
    ("stem 3x3 s2, 3->16 @112, hardswish", (1, 3, 224, 224), 16, 3, 2, 1, 1, "hardswish"),
    ("conv 3x3 s2, 16->16 @112", (1, 16, 112, 112), 16, 3, 2, 1, 1, "hardswish"),
    ("pointwise 1x1, 16->64 @56, relu", (1, 16, 56, 56), 64, 1, 1, 0, 1, "relu"),
    ("depthwise 3x3, 64 @56, relu", (1, 64, 56, 56), 64, 3, 1, 1, 64, "relu"),
    ("depthwise 3x3 s2, 64 @56, hardswish", (1, 64, 56, 56), 64, 3, 2, 1, 64, "hardswish"),
    ("depthwise 5x5, 96 @14, hardswish, batch 8", (8, 96, 14, 14), 96, 5, 1, 2, 96, "hardswish"),
]


def main(argv: list[str] | None = None) -> int:
    """Time every workload; print one row each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-bench-conv-"))
    import lucid
    from lucid import nn

    try:
        import torch
    except ImportError:
        torch = None
    lucid.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(f"threads: {args.threads}; median time per forward call")
    header = f"{'workload':44s} {'lucid compiled':>15s} {'lucid eager':>12s} {'torch eager':>12s}"
    print(header + "   compiled/torch  eager/compiled")
    for name, shape, cout, k, s, p, g, act in WORKLOADS:
        lucid.random.seed(0)
        conv = nn.Conv2d(shape[1], cout, k, stride=s, padding=p, groups=g)
        model = nn.Sequential(conv, nn.HardSwish() if act == "hardswish" else nn.ReLU()).eval()
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        xt = lucid.Tensor(x)
        compiled = lucid.compile(model)
        with lucid.no_grad():
            got, want = compiled(xt).data, model(xt).data
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
            t_comp = per_call(lambda c=compiled, a=xt: c(a))
            t_eager = per_call(lambda m=model, a=xt: m(a), repeat=5)
        t_torch = None
        if torch is not None:
            ref = torch.nn.Conv2d(shape[1], cout, k, stride=s, padding=p, groups=g)
            ref.load_state_dict({n: torch.tensor(v) for n, v in conv.state_dict().items()})
            tact = torch.nn.Hardswish() if act == "hardswish" else torch.nn.ReLU()
            tx = torch.tensor(x)
            with torch.no_grad():
                t_torch = per_call(lambda f=tact, r=ref, a=tx: f(r(a)))
        torch_txt = fmt_time(t_torch) if t_torch else "-"
        ratio = f"{t_comp / t_torch:14.2f}x" if t_torch else f"{'-':>15s}"
        print(
            f"{name:44s} {fmt_time(t_comp):>15s} {fmt_time(t_eager):>12s} {torch_txt:>12s} "
            f"{ratio} {t_eager / t_comp:14.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
