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
import json, sys
sys.path[:0] = [{here!r}, {root!r}]
from workloads import Workload, make_data
from peers import build_row
from peers.lucid_systems import LucidCompiled
w = Workload(**{fields!r})
d = make_data(w)
run = build_row(LucidCompiled(), w, d, {mode!r})
print(json.dumps({{"seconds": run.first_call_s}}))
"""


def first_call(w: Workload, mode: str, cache_dir: Path, env: dict[str, str]) -> float:
    """Seconds of compile + first call of workload `w`'s `mode` in a fresh child process."""
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
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def compile_times(
    jobs: list[tuple[Workload, str]], cache_dir: Path
) -> dict[str, dict[str, float | str]]:
    """'workload/mode' -> {"cold": s, "warm": s} (or {"error": text}) for each (workload, mode).

    Each job gets its own empty directory under `cache_dir`: models share cache content (the
    compiled GEMM machinery objects), so a directory an earlier job filled is not cold."""
    env = dict(os.environ)
    out: dict[str, dict[str, float | str]] = {}
    for w, mode in jobs:
        key = f"{w.name}/{mode}"
        job_dir = cache_dir / f"{w.name}-{mode}"
        try:
            cold = first_call(w, mode, job_dir, env)
            warm = first_call(w, mode, job_dir, env)
            out[key] = {"cold": cold, "warm": warm}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
            out[key] = {"error": str(exc).strip().splitlines()[-1]}
    return out
