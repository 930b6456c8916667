"""Where a cold build's C compile time goes, function by function (gcc's -Q log).

Run: python benchmarks/compile_profile.py [--only mnv3-b1] [--mode forward] [--top 10]

For each workload (the suite's, `--only` a name or group as in run_all.py) it builds the row's
model with `lucid.compile` into a fresh compile cache, as a cold first call does, then compiles
each translation unit of each program again, one at a time, with the build's own command (from
the entry's build.sh) plus gcc's `-Q`, which names each function as gcc starts to optimize and
assemble it. A function's time is the wall time until the next name: approximate (one run, on a
machine whose speed varies), but it ranks what costs gcc the most. Per unit it prints the time
before the first function (parsing and the interprocedural passes), the functions by family
(their kernel number dropped: every `k<N>_fused_conv_planes` together) and the slowest ones.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from run_all import cpu_name
from workloads import make_data, select

# gcc -Q: the expansion phase starts after this line; its report starts with the last one
ASSEMBLING, REPORT = "Assembling functions:", "Time variable"
FUNCTION = re.compile(r"^[A-Za-z_]\w*(?:\.[a-z_]+\.\d+)*$")  # f, f.constprop.0, f.isra.1
PREFIX = re.compile(r"^(?:lucid_)?k\d+_|\.(?:constprop|isra|part|cold)\.\d+$|_[0-9a-f]{16}$")


def unit_commands(entry: Path) -> list[tuple[str, list[str]]]:
    """(source file, compile command writing nowhere) of each unit in an entry's build.sh."""
    out = []
    for line in (entry / "build.sh").read_text().splitlines():
        words = shlex.split(line)
        if "-c" not in words:
            continue
        source = words[words.index("-c") + 1]
        at = words.index("-o")
        out.append((source, [*words[:at], "-o", os.devnull, *words[at + 2 :], "-Q"]))
    return out


def function_times(command: list[str], cwd: Path) -> tuple[float, float, list[tuple[str, float]]]:
    """(total seconds, seconds before the first function, [(function, seconds)]) of one gcc
    run, from the times its -Q names arrive on stderr."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    text, events, phase = "", [], "parsing"  # then "assembling", then "report" (ignored)
    while chunk := proc.stderr.read1(4096):  # type: ignore[attr-defined]
        now = time.perf_counter() - start
        text += chunk.decode(errors="replace")
        if phase == "parsing" and ASSEMBLING in text:
            phase, text = "assembling", text.split(ASSEMBLING, 1)[1]
        if phase == "assembling":
            if REPORT in text:  # the last names, then the time report's words are not functions
                phase, text = "report", text.split(REPORT, 1)[0] + " "
            *done, text = re.split(r"\s+", text)
            events += [(word, now) for word in done if FUNCTION.match(word)]
    if proc.wait() != 0:
        raise SystemExit(f"gcc failed: {shlex.join(command)}")
    total = time.perf_counter() - start
    ends = [t for _, t in events[1:]] + [total]
    spans = [(name, end - t) for (name, t), end in zip(events, ends, strict=True)]
    return total, events[0][1] if events else total, spans


def main(argv: list[str] | None = None) -> int:
    """Build and time every selected workload's units; print one table per unit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="mnv3-b1", help="workload names or groups")
    parser.add_argument("--mode", choices=("forward", "train"), default="forward")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="small shapes (a smoke test)")
    args = parser.parse_args(argv)
    cache = Path(tempfile.mkdtemp(prefix="lucid-compile-profile-"))
    os.environ["LUCID_CACHE_DIR"] = str(cache)
    from peers import build_row
    from peers.lucid_systems import LucidCompiled

    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True, check=True)
    print(f"CPU: {cpu_name()}; {cc.stdout.splitlines()[0]}")
    workloads, _ = select(args.only, args.tiny)
    for w in workloads:
        if args.mode not in w.modes:
            continue
        row = cache / f"{w.name}-{args.mode}"
        os.environ["LUCID_CACHE_DIR"] = str(row)
        build_row(LucidCompiled(), w, make_data(w), args.mode)
        print(f"\n{w.title} ({args.mode})")
        for entry in sorted(p.parent for p in row.glob("*/build.sh")):
            for source, command in unit_commands(entry):
                total, before, spans = function_times(command, entry)
                size = (entry / source).stat().st_size
                print(
                    f"  unit {source} ({size / 1e3:.0f} KB): {total:.2f} s, of which "
                    f"{before:.2f} s before its first function"
                )
                families: Counter[str] = Counter()
                for name, seconds in spans:
                    families[PREFIX.sub("", name)] += seconds
                for family, seconds in families.most_common(args.top):
                    print(f"    {seconds:6.3f} s  {family}")
                slowest = sorted(spans, key=lambda s: -s[1])[: args.top]
                print("    slowest: " + ", ".join(f"{n} {s:.3f} s" for n, s in slowest))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
