"""Where a suite row's compiled time goes, kernel by kernel (lucid.compile's options["profile"]).

Run: python benchmarks/profile_kernels.py [--only mnv3-b1] [--threads 2] [--mode forward]
     [--calls 200] [--top 25]

For each workload (the suite's, `--only` a name or group as in run_all.py) it compiles the row's
model with kernel timing, calls it `--calls` times after a warm-up, and prints the CPU, the
threads and flags, the wall time per call against the sum of the kernels' times (what is left
is Python, the cffi call and the program's own prologue), then the `--top` kernels by time:
share, total, calls, time per call, and the IR each implements. Training rows time the forward and backward
programs of `lucid.compile(model)` (forward, `loss.backward()` through the compiled graph).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import fmt_time
from run_all import cpu_name
from workloads import make_data, select


def main(argv: list[str] | None = None) -> int:
    """Profile every selected workload; print one table each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", default="mnv3-b1", help="workload names or groups, comma-separated"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", choices=("forward", "train"), default="forward")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tiny", action="store_true", help="small shapes (a smoke test)")
    args = parser.parse_args(argv)
    os.environ.setdefault("LUCID_CACHE_DIR", tempfile.mkdtemp(prefix="lucid-bench-profile-"))
    from peers.lucid_systems import LucidCompiled, _loss

    import lucid
    from lucid.runtime.build import DEFAULT_FLAGS

    workloads, _ = select(args.only, args.tiny)
    lucid.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); flags {' '.join(DEFAULT_FLAGS)}")
    for w in workloads:
        if args.mode not in w.modes:
            continue
        d = make_data(w)
        model = LucidCompiled().model(w, d, args.mode)
        compiled = lucid.compile(model, options={"profile": True})
        inputs = (d.x, d.b_matrix) if w.kind == "gemm" else (d.x,)

        def call(compiled=compiled, model=model, inputs=inputs, w=w, d=d) -> None:
            if args.mode == "forward":
                with lucid.no_grad():
                    compiled(*inputs)
                return
            target = d.target.reshape(-1) if w.kind == "model" else d.target
            loss = _loss(w, compiled(lucid.Tensor(d.x)), lucid.Tensor(target))
            loss.backward()
            for p in model.parameters():
                p.grad = None

        for _ in range(max(3, args.calls // 10)):
            call()
        compiled.profile(reset=True)
        start = time.perf_counter()
        for _ in range(args.calls):
            call()
        wall = (time.perf_counter() - start) / args.calls
        profile = compiled.profile()
        kernels = profile.seconds / args.calls
        print(
            f"\n{w.title} ({args.mode}): {fmt_time(wall)} per call, of which kernels "
            f"{fmt_time(kernels)}"
        )
        print(profile.table(args.top))  # each kernel runs once per call: "per call" is per call
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
