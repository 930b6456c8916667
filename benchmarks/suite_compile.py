"""First-call compile times of lucid.compile, each in a fresh process: cold and warm cache.

Cold: a cache directory no process has built these graphs into. Warm: a second fresh process
on the same directory, so the C is loaded from disk and only tracing and loading remain. Each
child imports numpy, lucid and builds the model and data before its clock starts; the clock
covers `lucid.compile(model)` and the first call (the lazy runtime imports included), and for
training the first forward + backward.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from workloads import Workload

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
sys.path[:0] = [{here!r}, {root!r}]
from workloads import Workload, make_data
from peers import build_row
from peers.lucid_systems import LucidCompiled
w = Workload(**{fields!r})
d = make_data(w)
run = build_row(LucidCompiled(), w, d, {mode!r})
again = run.call if {mode!r} == "forward" else run.first_again  # what the first call timed
# A trace that runs on the full batch (a GEMM's `a @ b`) calls NumPy's BLAS, whose OpenBLAS
# threads then spin for ~0.1 s on the cores the compiled code needs: the GEMM row's later calls
# took 15-22 ms right after the first, 10-11 ms once they slept. The pause keeps that out of
# `call`, so that `warm_overhead` (first - call) is all the first call's own extra cost.
time.sleep(0.3)
times = []
for _ in range(3):  # what a call costs once compiled: the first call's share that is not compiling
    start = time.perf_counter()
    again()
    times.append(time.perf_counter() - start)
print(json.dumps({{"seconds": run.first_call_s, "call": sorted(times)[1]}}))
"""


def first_call(w: Workload, mode: str, cache_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds of compile + first call, seconds of a later call: the median of 3) of workload
    `w`'s `mode` in a fresh child process."""
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dataclasses.asdict(w).items()}
    code = CHILD.format(here=str(HERE), root=str(HERE.parent), fields=fields, mode=mode)
    child_env = dict(env, LUCID_CACHE_DIR=str(cache_dir))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"compile-time child failed:\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(report["seconds"]), float(report["call"])


def compile_times(
    jobs: list[tuple[Workload, str]], cache_dir: Path
) -> dict[str, dict[str, float | str]]:
    """'workload/mode' -> {"cold": s, "warm": s, "call": s, "warm_overhead": s} (or {"error":
    text}) for each (workload, mode): `call` is a compiled call's own time (the warm child's
    median of 3 later calls, after a pause) and `warm_overhead` = warm - call, the wait a warm
    start adds.

    Each job gets its own empty directory under `cache_dir`: models share cache content (the
    compiled GEMM machinery objects), so a directory an earlier job filled is not cold.
    The children may write Python bytecode (PYTHONDONTWRITEBYTECODE is dropped) as `pip
    install` does: otherwise every child compiles lucid's modules from source, ~15-35 ms of a
    warm start that no installed lucid pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out: dict[str, dict[str, float | str]] = {}
    for w, mode in jobs:
        key = f"{w.name}/{mode}"
        job_dir = cache_dir / f"{w.name}-{mode}"
        try:
            cold, _ = first_call(w, mode, job_dir, env)
            warm, call = first_call(w, mode, job_dir, env)
            out[key] = {"cold": cold, "warm": warm, "call": call, "warm_overhead": warm - call}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            out[key] = {"error": str(exc).strip().splitlines()[-1]}
    return out
