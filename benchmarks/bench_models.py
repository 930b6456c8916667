"""The issue-15 model rows of run_all.py (`--only mnv3,gpt`), under their old script name.

    python benchmarks/bench_models.py [--threads 2] [--only mnv3,gpt] [--quick]

MobileNetV3-Small (inference at batch 1 and 32, training at batch 32, 224x224) and the
character GPT (forward and training step, batch 16x64) in lucid compiled, lucid eager, PyTorch
eager, torch.compile (not with --quick), ONNX Runtime (forward) and JAX, from the same weights,
each row checked against lucid eager; the rows, the ratios and the PASS/MISS lines are
run_all's (see benchmarks/README.md). This wrapper skips the compile-time child processes and
the chart, and writes bench-results/models.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]


def main(argv: list[str] | None = None) -> int:
    """Translate the old options and run run_all's model rows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="mnv3,gpt")
    ap.add_argument("--quick", action="store_true", help="few repetitions, no torch.compile")
    args = ap.parse_args(argv)
    import run_all

    forwarded = [
        "--threads",
        str(args.threads),
        "--only",
        args.only,
        "--no-compile-times",
        "--png",
        "",
        "--json",
        "bench-results/models.json",
    ]
    return run_all.main([*forwarded, *(["--quick"] if args.quick else [])])


if __name__ == "__main__":
    raise SystemExit(main())
