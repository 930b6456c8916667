"""How lucid.compile's first call grows with model depth: MLPs of 1, 10, 30 and 100 hidden
layers (width 64, HardSwish), forward (eval) and training step (train: forward + backward).

    python benchmarks/bench_compile_depth.py [--depths 1,10,30,100] [--repeat 3]

Each measurement is a fresh Python process: `cold` with an empty compile cache (trace, passes,
codegen, C build, first run), `warm` with the cache the cold run filled (the warm-start index,
no codegen). Prints the median of `--repeat` runs, the time per layer, and the growth from
the smallest depth to the largest against linear growth (1.0 = linear; above 1 = faster than
linear). Also the time spent tracing, in passes, in codegen and in the C compiler, from the
`lucid` logger's records, so a super-linear stage shows up by name.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, logging, re, sys, time
start = time.perf_counter()
import numpy as np
import lucid
from lucid import nn

depth, mode = int(sys.argv[1]), sys.argv[2]
stages = {"passes": 0.0, "codegen": 0.0, "build": 0.0}


class Stages(logging.Handler):
    def emit(self, record):
        text = record.getMessage()
        m = re.match(r"pass \S+: \d+ -> \d+ nodes in ([0-9.]+) ms", text)
        if m:
            stages["passes"] += float(m.group(1)) / 1e3
        m = re.match(r"codegen .* in ([0-9.]+) ms", text)
        if m:
            stages["codegen"] += float(m.group(1)) / 1e3
        m = re.match(r"built \S+ in ([0-9.]+) s", text)
        if m:
            stages["build"] += float(m.group(1))


logger = logging.getLogger("lucid")
logger.addHandler(Stages())
logger.setLevel(logging.DEBUG)
lucid.random.seed(0)
layers = [nn.Linear(64, 64)]
for _ in range(depth):
    layers += [nn.HardSwish(), nn.Linear(64, 64)]
model = nn.Sequential(*layers).train(mode == "train")
x = lucid.Tensor(np.ones((32, 64), np.float32))
imported = time.perf_counter()
compiled = lucid.compile(model)
out = compiled(x)
if mode == "train":
    out.sum().backward()
done = time.perf_counter()
print(json.dumps({"first_call": done - imported, "import": imported - start, **stages}))
"""


def run(depth: int, mode: str, cache: str) -> dict[str, float]:
    env = {**os.environ, "LUCID_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(depth), mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=1800,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1,10,30,100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="eval,train")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"cpu: {cpu}, {os.cpu_count()} cores; median of {args.repeat} fresh processes each")
    for mode in args.modes.split(","):
        print(f"\n{mode}: depth  cold first call  per layer  (trace+passes / codegen / cc)  warm")
        cold: dict[int, float] = {}
        for depth in depths:
            colds, warms, parts = [], [], []
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="lucid-depth-") as cache:
                    c = run(depth, mode, cache)
                    colds.append(c["first_call"])
                    parts.append(c)
                    warms.append(run(depth, mode, cache)["first_call"])
            cold[depth] = statistics.median(colds)
            mid = sorted(parts, key=lambda c: c["first_call"])[len(parts) // 2]
            print(
                f"  {depth:>10}  {cold[depth]:>10.3f} s  {cold[depth] / depth * 1e3:>7.1f} ms"
                f"  ({mid['passes']:.3f} / {mid['codegen']:.3f} / {mid['build']:.3f} s)"
                f"  {statistics.median(warms) * 1e3:>7.1f} ms"
            )
        lo, hi = min(depths), max(depths)
        if hi > lo:
            growth = (cold[hi] / cold[lo]) / (hi / lo)
            print(
                f"  growth {lo} -> {hi} layers: x{cold[hi] / cold[lo]:.1f} for x{hi / lo:.0f} "
                f"the layers ({growth:.2f} of linear)"
            )


if __name__ == "__main__":
    main()
