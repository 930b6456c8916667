"""Fused vs unfused compiled lucid (plus NumPy and PyTorch eager) on Linear -> HardSwish -> Linear.

Run: python benchmarks/bench_fusion.py   (a private compile cache under a temp dir)

Cases of the fusion issue: (a) batch 8192, 64 -> 256 -> 64 (the hidden tensor, 8 MiB, does not
stay in cache unfused: fused must be >= 1.2x faster); (b) batch 256, 1024 -> 1024 -> 1024
(compute bound: fused must never be slower). Times are medians; both lucid builds use the
same thread count, printed first.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import statistics
import time

from _common import per_call, print_table

CASES = (
    ("a", 8192, 64, 256, 64, 1.2),
    ("b", 256, 1024, 1024, 1024, 1.0),
)


def np_hardswish(h: np.ndarray) -> np.ndarray:
    """DESIGN.md's hardswish with NumPy selects."""
    t = h / np.float32(6) + np.float32(0.5)
    return h * np.where(t < 0, np.float32(0), np.where(t > 1, np.float32(1), t))


def build_model(d_in: int, hidden: int, d_out: int):
    """Linear(d_in, hidden) -> HardSwish -> Linear(hidden, d_out), in eval mode."""
    from lucid import nn

    return nn.Sequential(nn.Linear(d_in, hidden), nn.HardSwish(), nn.Linear(hidden, d_out)).eval()


def interleaved(f, g, x: np.ndarray, rounds: int = 31) -> tuple[float, float]:
    """Median seconds per call of f(x) and g(x), timed in alternation (a few calls per sample)."""
    number = max(1, int(0.02 / max(per_call(lambda: f(x), budget=0.1, repeat=3), 1e-7)))
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for fn, out in ((f, samples[0]), (g, samples[1])):
            start = time.perf_counter()
            for _ in range(number):
                fn(x)
            out.append((time.perf_counter() - start) / number)
    return statistics.median(samples[0]), statistics.median(samples[1])


def run_case(name: str, batch: int, d_in: int, hidden: int, d_out: int, need: float) -> bool:
    """Time one case; True if the fused/unfused ratio meets `need`."""
    import lucid

    model = build_model(d_in, hidden, d_out)
    x = np.random.default_rng(0).standard_normal((batch, d_in)).astype(np.float32)
    fused = lucid.compile(model)
    unfused = lucid.compile(model, options={"fusion": False})
    yf, yu = fused(x).data, unfused(x).data
    np.testing.assert_allclose(yf, yu, rtol=1e-4, atol=1e-4)  # fused computes the same thing
    w1, b1 = model[0].weight.data, model[0].bias.data
    w2, b2 = model[2].weight.data, model[2].bias.data
    calls: dict[str, object] = {
        "lucid fused": lambda: fused(x),
        "lucid unfused": lambda: unfused(x),
        "numpy": lambda: np_hardswish(x @ w1.T + b1) @ w2.T + b2,
        "pytorch eager": None,
    }
    if importlib.util.find_spec("torch"):
        import torch

        torch.set_num_threads(lucid.get_num_threads())
        tm = torch.nn.Sequential(
            torch.nn.Linear(d_in, hidden), torch.nn.Hardswish(), torch.nn.Linear(hidden, d_out)
        ).eval()
        tx = torch.from_numpy(x)

        def torch_forward() -> object:
            with torch.inference_mode():
                return tm(tx)

        calls["pytorch eager"] = torch_forward
    times = {k: (per_call(f, budget=1.0, repeat=21) if f else None) for k, f in calls.items()}  # type: ignore[arg-type,misc]
    # the fused/unfused ratio from interleaved samples, so load drift hits both alike
    times["lucid fused"], times["lucid unfused"] = interleaved(fused, unfused, x)
    title = (
        f"({name}) batch {batch}, Linear({d_in},{hidden}) -> HardSwish -> Linear({hidden},{d_out})"
    )
    print_table(title, times, "lucid fused")
    speedup = times["lucid unfused"] / times["lucid fused"]  # type: ignore[operator]
    ok = speedup >= need
    print(
        f"  fused speedup over unfused: {speedup:.2f}x (need >= {need}x): {'ok' if ok else 'MISSED'}"
    )
    return ok


def main() -> int:
    """Run both cases; exit status 1 if a target is missed."""
    os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-bench-"))
    import lucid
    from lucid.codegen.gemm import detect_caches, detect_isa

    torch_note = "torch absent"
    if importlib.util.find_spec("torch"):
        import torch

        torch_note = f"torch {torch.__version__}"
    print(
        f"threads: {lucid.get_num_threads()} (lucid and torch)  isa: {detect_isa()}  "
        f"caches: {detect_caches()}  numpy {np.__version__}  {torch_note}"
    )
    results = [run_case(*case) for case in CASES]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
