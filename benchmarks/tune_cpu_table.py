"""Measure this CPU's GEMM blocking and print its entry for lucid/codegen/gemm/cpus.py's TABLE.

Run on an idle machine (every core free: other jobs make the numbers noise):

    python benchmarks/tune_cpu_table.py                 # the suite's f32 GEMMs, 1 and 2 threads
    python benchmarks/tune_cpu_table.py --quick --shapes 64x64x64t   # a smoke run, seconds

For each f32 GEMM shape and thread count it times the cost model's blocking and the candidates
the autotuner would time around it (plus the CPU's current TABLE blocking, if it has one), with
the autotuner's own machinery (lucid.runtime.autotune: the candidates built into one module,
medians of interleaved rounds), and prints each one's median GFLOP/s. The blocking chosen is
the one with the best geometric mean speedup over the cost model across every shape and thread
count, and it must beat the cost model by autotune.MARGIN, and again in a rematch of the two
(twice the rounds), else the cost model's own is kept (one entry serves every shape). A load
average above a quarter of the cpus when it starts prints a warning and marks the evidence NOT
IDLE (the end's is only reported: the run's own timing on every core raises it, by ~0.3 on 2). Last it prints a ready-to-paste TABLE entry whose evidence
holds the command, the CPU, threads, load average, date and every number measured.

Shapes are MxNxK (C is MxN, the reduction is K); a trailing "t" means op(B) = B^T, the Linear
layout (B stored [N, K]). The defaults are the benchmark suite's: the 1024^3 GEMM (A @ B), the
"wide" MLP's Linear(1024, 1024) at batch 256, and the "deep" MLP's Linear(784, 2048) and
Linear(2048, 2048) at batch 512. The default run (4 shapes x 2 thread counts x 12 blockings x
7 rounds, one build per shape, cached) is sized for under 3 minutes on 2 idle cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lucid.codegen.gemm import (
    CPU_TABLE,
    Blocking,
    CacheSizes,
    CpuId,
    GemmProblem,
    blocking_candidates,
    choose_blocking,
    detect_caches,
    detect_cpu,
    detect_isa,
)
from lucid.codegen.tuning import blocks, timing_module
from lucid.runtime.autotune import MARGIN, measure
from lucid.runtime.build import BuildOptions, build

SHAPES = ("1024x1024x1024", "256x1024x1024t", "512x2048x784t", "512x2048x2048t")
DTYPE = "float"


@dataclass(frozen=True)
class Shape:
    """One GEMM to time: C[m, n] = A @ op(B) over k, op(B) = B^T when `trans_b`."""

    m: int
    n: int
    k: int
    trans_b: bool

    @property
    def label(self) -> str:
        """The command-line spelling, e.g. 256x1024x1024t."""
        return f"{self.m}x{self.n}x{self.k}" + ("t" if self.trans_b else "")


def parse_shape(text: str) -> Shape:
    """MxNxK, with a trailing 't' for op(B) = B^T."""
    trans_b = text.endswith("t")
    try:
        m, n, k = (int(x) for x in text.removesuffix("t").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not MxNxK[t]") from None
    if min(m, n, k) <= 0:
        raise argparse.ArgumentTypeError(f"shape {text!r} has a dimension <= 0")
    return Shape(m, n, k, trans_b)


def _blocks(b: Blocking) -> str:
    return f"mc={b.mc} kc={b.kc} nc={b.nc}"


def _kib(n: int) -> str:
    return f"{n // 1024}K"


def candidates(isa: str, caches: CacheSizes, cpu: CpuId | None, limit: int) -> list[Blocking]:
    """The cost model's blocking first, the autotuner's candidates around it, then the CPU's
    current TABLE blocking when it is none of those."""
    base = choose_blocking(DTYPE, isa, caches)
    found = blocking_candidates(base, DTYPE, limit)
    table = choose_blocking(DTYPE, isa, caches, cpu=cpu)
    return found if table in found else [*found, table]


@dataclass(frozen=True)
class Timing:
    """One shape's candidates built into one module, each distinct behaviour once: blockings
    larger than the matrix all mean one block (`which[i]` is blocking i's function)."""

    shape: Shape
    problem: GemmProblem
    ffi: Any
    fns: tuple[Any, ...]
    which: tuple[int, ...]

    def gflops(self, picks: list[int], threads: int, rounds: int) -> list[float]:
        """Median GFLOP/s of blockings `picks` (indices) at `threads`, interleaved."""
        kinds = sorted({self.which[i] for i in picks})
        m, n, k = self.shape.m, self.shape.n, self.shape.k
        fns = [self.fns[j] for j in kinds]
        seconds = dict(zip(kinds, measure(self.ffi, fns, self.problem, m, n, k, threads, rounds)))
        return [2.0 * m * n * k / seconds[self.which[i]] / 1e9 for i in picks]


def prepare(shape: Shape, isa: str, caches: CacheSizes, blockings: list[Blocking]) -> Timing | None:
    """Build the shape's candidates; None when the shape never takes the blocked path (no
    blocking matters)."""
    problem = GemmProblem(DTYPE, isa, False, shape.trans_b, (shape.m,), shape.n, shape.k, caches)
    if not blocks(problem, blockings[0]):
        return None
    rows = -(-shape.m // blockings[0].mr) * blockings[0].mr
    cols = -(-shape.n // blockings[0].nr) * blockings[0].nr
    kinds: dict[tuple[int, int, int], int] = {}
    which = [
        kinds.setdefault((min(b.mc, rows), min(b.kc, shape.k), min(b.nc, cols)), len(kinds))
        for b in blockings
    ]
    distinct = [blockings[which.index(i)] for i in range(len(kinds))]
    source, cdef, names = timing_module(problem, distinct)
    built = build(source, cdef, options=BuildOptions())
    fns = tuple(getattr(built.lib, name) for name in names)
    return Timing(shape, problem, built.ffi, fns, tuple(which))


def geomean_speedups(table: dict[tuple[str, int], list[float]], count: int) -> list[float]:
    """Each blocking's geometric-mean speedup over blocking 0 across the cases of `table`."""
    return [
        math.exp(statistics.fmean(math.log(g[i] / g[0]) for g in table.values()))
        for i in range(count)
    ]


def choose(table: dict[tuple[str, int], list[float]], count: int) -> tuple[int, list[float]]:
    """(index of the chosen blocking, each blocking's geometric-mean speedup over the cost
    model's, index 0): the best one if it beats the cost model by MARGIN, else 0."""
    speedups = geomean_speedups(table, count)
    best = max(range(count), key=speedups.__getitem__)
    return (best if speedups[best] >= 1 + MARGIN else 0), speedups


def entry_text(
    cpu: CpuId | None,
    isa: str,
    caches: CacheSizes,
    chosen: Blocking,
    name: str,
    evidence: str,
) -> str:
    """The TABLE entry, as Python source to paste into cpus.py (already ruff-formatted)."""
    key = cpu.key if cpu is not None else None
    key_text = "None" if key is None else f'("{key[0]}", {key[1]}, {key[2]})'
    tile = f"mr={chosen.mr}, nr={chosen.nr}, mc={chosen.mc}, kc={chosen.kc}, nc={chosen.nc}"
    pieces = textwrap.wrap(evidence, 84, drop_whitespace=False, break_on_hyphens=False)
    lines = [
        f"    {key_text}: CpuEntry(",
        f"        name={json.dumps(name)},",
        f"        l1d={caches.l1d // 1024} * 1024,",
        f"        l2={caches.l2 // 1024} * 1024,",
        f'        blocks={{("{isa}", "{DTYPE}"): Blocks({tile})}},',
        "        evidence=(",
        *(f"            {json.dumps(piece)}" for piece in pieces),
        "        ),",
        "        measured=True,",
        "    ),",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Time, print each blocking's GFLOP/s and the TABLE entry; 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", type=parse_shape, default=None, metavar="MxNxK[t]")
    ap.add_argument("--threads", nargs="+", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None, help="timing rounds (default 7)")
    ap.add_argument("--limit", type=int, default=None, help="autotuner candidates (default 12)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 thread, 3 rounds, 4")
    args = ap.parse_args(argv)
    shapes = args.shapes or [parse_shape(s) for s in SHAPES]
    threads = args.threads or ([1] if args.quick else [1, 2])
    rounds = args.rounds or (3 if args.quick else 7)
    limit = args.limit or (4 if args.quick else 12)

    isa, caches, cpu = detect_isa(), detect_caches(), detect_cpu()
    key = cpu.key if cpu is not None else None
    where = (
        f"{cpu.model_name or '?'} ({cpu.vendor} family {cpu.family} model {cpu.model})"
        if cpu is not None
        else "unknown CPU"
    )
    cache_text = f"L1d {_kib(caches.l1d)} L2 {_kib(caches.l2)} L3 {_kib(caches.l3)}"
    load = os.getloadavg()[0]
    print(f"{where}, {isa}, {cache_text}, {os.cpu_count()} cpus, load average {load:.2f}")
    print(f"TABLE entry now: {'yes' if key in CPU_TABLE else 'none (the cost model)'}")
    blockings = candidates(isa, caches, cpu, limit)
    print(f"{len(blockings)} blockings, {rounds} rounds, f32; GFLOP/s (median):")

    timings: dict[tuple[str, int], Timing] = {}
    results: dict[tuple[str, int], list[float]] = {}
    every = list(range(len(blockings)))
    for shape in shapes:
        timing = prepare(shape, isa, caches, blockings)
        if timing is None:
            print(f"  {shape.label}: never blocked (small path), skipped")
            continue
        for t in threads:
            timings[(shape.label, t)] = timing
            results[(shape.label, t)] = gflops = timing.gflops(every, t, rounds)
            row = "  ".join(f"{g:7.1f}" for g in gflops)
            print(f"  {shape.label:>16} {t}t  {row}")
    if not results:
        print("nothing was timed", file=sys.stderr)
        return 1

    best, speedups = choose(results, len(blockings))
    rematch = ""
    if best != 0:
        # As the autotuner does: a winner must win again, in a rematch of twice the rounds
        # against the cost model alone (one lucky round of medians is not rare on a busy machine).
        again = {c: timings[c].gflops([0, best], c[1], 2 * rounds) for c in results}
        (_, ratio) = geomean_speedups(again, 2)
        print(f"rematch of {_blocks(blockings[best])}: x{ratio:.3f} of the cost model")
        rematch = f" Rematch ({2 * rounds} rounds) of the best against the cost model: x{ratio:.3f}"
        rematch += "; kept." if ratio >= 1 + MARGIN else "; lost, the cost model is kept."
        best = best if ratio >= 1 + MARGIN else 0
    end_load = os.getloadavg()[0]
    busy = load > 0.25 * (os.cpu_count() or 1)  # the end's includes this run's own load
    if busy:
        print(
            f"WARNING: load average {load:.2f} at the start on {os.cpu_count()} cpus: "
            "this machine is not idle, these numbers are not fit for the TABLE",
            file=sys.stderr,
        )
    table = choose_blocking(DTYPE, isa, caches, cpu=cpu)
    command = " ".join(["python benchmarks/tune_cpu_table.py", *(argv or sys.argv[1:])])
    cases = ", ".join(f"{label} {t}t" for label, t in results)
    head = (
        f"`{command}` on {time.strftime('%Y-%m-%d')}: {where}, {isa}, {cache_text}, "
        f"{os.cpu_count()} cpus, load average {load:.2f} .. {end_load:.2f}"
        f"{' (NOT IDLE)' if busy else ''}, {rounds} rounds. f32 GFLOP/s "
        f"(median) at {cases}, and the geometric-mean speedup over the cost model:"
    )
    evidence = [head]
    for i, b in enumerate(blockings):
        tags = [t for t, on in (("chosen", i == best), ("cost model", i == 0)) if on]
        tags += ["table before"] if b == table and key in CPU_TABLE else []
        numbers = " ".join(f"{g[i]:.1f}" for g in results.values())
        note = f" ({', '.join(tags)})" if tags else ""
        evidence.append(f"{_blocks(b)}{note}: {numbers} (x{speedups[i]:.3f})")
    for i, s in enumerate(speedups):
        print(f"  {i:2d} {_blocks(blockings[i])}: x{s:.3f} of the cost model")
    print(f"chosen: {_blocks(blockings[best])} ({'cost model' if best == 0 else 'tuned'})")
    print("\nTABLE entry for lucid/codegen/gemm/cpus.py:\n")
    text = f"{evidence[0]} {'; '.join(evidence[1:])}.{rematch}"
    print(entry_text(cpu, isa, caches, blockings[best], where, text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
