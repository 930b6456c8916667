"""GEMM blocking autotuner: `lucid.compile(model, options={"autotune": True})`.

Codegen asks `CodegenOptions.blocking_for(problem)` for the blocking of each GEMM (a
`GemmProblem`: dtype, isa, transposes, rows, static N and K). `Autotuner` answers from a small
JSON record in the compile cache (`<cache root>/autotune/<sha256>.json`), or else tunes: it
generates a few blockings around the cost model's choice (`blocking_candidates`, the cost
model's own first), builds them all as plain GEMMs into one C module through `build.build`
(same compiler, flags and cache as the model), times each (median of interleaved rounds at
lucid's thread count), keeps the fastest (if it beats the cost model's choice by 2%, twice)
and records it. The record's key is the problem (with
the rows it was timed at), the thread count, the build flags and the machine: cpu model and
kind, cache sizes and a digest of the GEMM generator's code (its CPU table too), so a changed
generator, table or machine retunes. The candidates start from `GemmProblem.default_blocking`:
the CPU table's entry for a known CPU kind, the cost model's choice for any other.

Records are written atomically (temp file + os.replace); one that does not parse or does not
fit the problem is ignored and the problem retuned. Only the mc, kc, nc cache blocks are tuned:
the register tile is the micro-kernel's and stays the default's (table or cost model), as do
the other fields.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import lucid
from lucid.codegen.tuning import Blocking, GemmProblem, blocking_candidates, blocks, timing_module
from lucid.ir.types import dim_parts
from lucid.runtime import cache as _cache
from lucid.runtime import threads as _threads
from lucid.runtime.build import BuildOptions, build

__all__ = ["DEFAULT_ROWS", "Autotuner", "TuneResult"]

FORMAT = 2  # bump when the record's schema or the candidate policy changes; part of every key
AUTOTUNE_DIR = "autotune"
DEFAULT_ROWS = 256  # rows (and any other runtime dim) to time with when nothing better is known
# A candidate must beat the cost model's choice by this fraction to replace it: closer than
# that is timing noise on a shared machine, and keeping the default keeps the default C.
MARGIN = 0.02
# One timing sample: long enough for the clock and to average a few scheduler hiccups, short
# enough that 7 rounds of a dozen candidates stay well under a second for a 256x1024x1024 GEMM.
SAMPLE_SECONDS = 5e-3
_GENERATOR_FILES = (
    "codegen/gemm/__init__.py",
    "codegen/gemm/blocking.py",
    "codegen/gemm/cpus.py",
    "codegen/gemm/emit.py",
    "codegen/gemm/shared.py",
    "codegen/gemm/spec.py",
    "codegen/gemm/templates",
    "codegen/templates",
)
_TUNE_LOCK = threading.Lock()  # one tuning at a time per process: timings must not overlap


@dataclass(frozen=True)
class TuneResult:
    """A problem's answer: the winner, and the candidates with their median seconds when it
    was timed now (`timed`); a record read from the cache, or a problem with nothing to choose
    from, was not."""

    blocking: Blocking
    candidates: tuple[Blocking, ...]
    seconds: tuple[float, ...]
    timed: bool


class Autotuner:
    """`CodegenOptions.blocking_for`: tuned blockings, cached on disk per problem and machine.

    `rows` is the batch size a symbolic dim is timed at (the size seen at trace time; None:
    DEFAULT_ROWS). `limit` caps the candidates, `rounds` the timing samples per candidate.
    `results` keeps every answer given, in order (for inspection and tests)."""

    def __init__(
        self,
        build_options: BuildOptions | None = None,
        *,
        rows: int | None = None,
        cache_dir: Path | None = None,
        limit: int = 12,
        rounds: int = 7,
        progress: TextIO | None = None,
    ) -> None:
        self.build_options = build_options or BuildOptions()
        self.rows = rows if rows is not None and rows > 0 else DEFAULT_ROWS
        self.cache_dir = cache_dir
        self.limit = limit
        self.rounds = max(1, rounds)
        self.progress = progress
        self.results: list[TuneResult] = []

    def __call__(self, problem: GemmProblem) -> Blocking:
        """The blocking for `problem`: recorded, else tuned now and recorded."""
        result = self.tune(problem)
        self.results.append(result)
        return result.blocking

    def tune(self, problem: GemmProblem) -> TuneResult:
        """Look `problem` up in the cache, else time the candidates (see the module doc)."""
        base = problem.default_blocking()
        m, n, k = self.dims(problem)
        candidates = _distinct(blocking_candidates(base, problem.dtype, self.limit), m, n, k)
        if len(candidates) == 1 or not blocks(problem, base):
            # nothing to choose: one effective candidate, or a GEMM that never blocks
            return TuneResult(base, (base,), (), False)
        nthreads = _threads.num_threads
        key = self.key(problem, m, n, k, nthreads)
        path = self.record_path(key)
        found = _read_record(path, key, base)
        if found is not None:
            return TuneResult(found, (found,), (), False)
        with _TUNE_LOCK:
            found = _read_record(path, key, base)  # another thread may have tuned it meanwhile
            if found is not None:
                return TuneResult(found, (found,), (), False)
            bar = _Progress(self.progress or sys.stderr, _describe(problem, m, n, k, nthreads))
            seconds, best = self._time(problem, candidates, m, n, k, nthreads, bar)
        winner = candidates[best]
        base_s, win_s = seconds[0] * 1e3, seconds[best] * 1e3
        bar.done(
            f"mc={winner.mc} kc={winner.kc} nc={winner.nc} {win_s:.3f} ms "
            f"(cost model mc={base.mc} kc={base.kc} nc={base.nc} {base_s:.3f} ms)"
        )
        _write_record(path, key, winner, candidates, seconds)
        return TuneResult(winner, tuple(candidates), tuple(seconds), True)

    def dims(self, problem: GemmProblem) -> tuple[int, int, int]:
        """(M, N, K) to time with: static dims as they are, the batch (and runtime N or K) at
        `rows`."""
        m = math.prod(_rows(d, self.rows) for d in problem.m_dims)
        n = problem.n if problem.n is not None else self.rows
        k = problem.k if problem.k is not None else self.rows
        return max(1, m), max(1, n), max(1, k)

    def key(self, problem: GemmProblem, m: int, n: int, k: int, nthreads: int) -> dict[str, Any]:
        """Everything a record depends on, as JSON data."""
        return {
            "format": FORMAT,
            "dtype": problem.dtype,
            "isa": problem.isa,
            "trans_a": problem.trans_a,
            "trans_b": problem.trans_b,
            "m": m,
            "n": n,
            "k": k,
            "static_n": problem.n is not None,
            "static_k": problem.k is not None,
            "nthreads": nthreads,
            "limit": self.limit,
            "cc": self.build_options.cc,
            "flags": list(self.build_options.flags),
            "machine": machine_signature(problem),
        }

    def record_path(self, key: dict[str, Any]) -> Path:
        """Where the record of `key` lives in the cache."""
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return _cache.cache_root(self.cache_dir) / AUTOTUNE_DIR / f"{digest}.json"

    def _time(
        self,
        problem: GemmProblem,
        candidates: list[Blocking],
        m: int,
        n: int,
        k: int,
        nthreads: int,
        bar: _Progress,
    ) -> tuple[list[float], int]:
        """Build every candidate into one module; each one's median seconds and the winner.

        A winner other than the cost model's must win again in a rematch of the two (twice the
        rounds): on a busy machine one lucky round of medians is not rare."""
        bar.update(0, len(candidates) * self.rounds, f"building {len(candidates)} candidates")
        source, cdef, names = timing_module(problem, candidates)
        built = build(source, cdef, options=self.build_options, cache_dir=self.cache_dir)
        fns = [getattr(built.lib, name) for name in names]
        seconds = measure(built.ffi, fns, problem, m, n, k, nthreads, self.rounds, bar.tick)
        best = pick(seconds)
        if best != 0:
            bar.update(bar.done_ticks, bar.total + 4 * self.rounds, "rematch")
            pair = [fns[0], fns[best]]
            again = measure(built.ffi, pair, problem, m, n, k, nthreads, 2 * self.rounds, bar.tick)
            best = best if pick(again) == 1 else 0
        return seconds, best


def pick(seconds: Sequence[float]) -> int:
    """The index of the fastest candidate; 0 (the cost model's) unless one beats it by MARGIN."""
    best = min(range(len(seconds)), key=seconds.__getitem__)
    return best if seconds[best] < seconds[0] * (1 - MARGIN) else 0


def measure(
    ffi: Any,
    fns: Sequence[Callable[..., int]],
    problem: GemmProblem,
    m: int,
    n: int,
    k: int,
    nthreads: int,
    rounds: int,
    tick: Callable[[], None] = lambda: None,
) -> list[float]:
    """Median seconds per call of each GEMM function on random operands: `rounds` samples,
    the candidates interleaved within a round (a noisy neighbour slows them all alike), each
    sample at least SAMPLE_SECONDS long (several calls of a small GEMM)."""
    dt = np.float32 if problem.dtype == "float" else np.float64
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if problem.trans_a else (m, k)).astype(dt)
    b = rng.standard_normal((n, k) if problem.trans_b else (k, n)).astype(dt)
    c = np.zeros((m, n), dt)
    tp = problem.dtype + " *"
    pa, pb, pc = (ffi.cast(tp, ffi.from_buffer(x)) for x in (a, b, c))
    args = (pa, pb, pc, m, n, k, nthreads)
    for fn in fns:  # warm up: page in the code, start the thread pool
        if fn(*args) != 0:
            raise RuntimeError("autotune: a candidate GEMM rejected its arguments")
    start = time.perf_counter()
    fns[0](*args)
    reps = max(1, math.ceil(SAMPLE_SECONDS / max(time.perf_counter() - start, 1e-7)))
    samples: list[list[float]] = [[] for _ in fns]
    for r in range(rounds):
        for j in range(len(fns)):
            i = (j + r) % len(fns)  # rotate who goes first
            fn = fns[i]
            start = time.perf_counter()
            for _ in range(reps):
                fn(*args)
            samples[i].append((time.perf_counter() - start) / reps)
            tick()
    return [statistics.median(s) for s in samples]


# ---------------------------------------------------------------------------------- helpers


def _distinct(candidates: list[Blocking], m: int, n: int, k: int) -> list[Blocking]:
    """The candidates that behave differently at (m, n, k), first of each kind kept: blocks
    larger than the matrix all mean one block."""
    seen: dict[tuple[int, int, int], Blocking] = {}
    for b in candidates:
        rows = -(-m // b.mr) * b.mr
        cols = -(-n // b.nr) * b.nr
        seen.setdefault((min(b.mc, rows), min(b.kc, k), min(b.nc, cols)), b)
    return list(seen.values())


def _describe(problem: GemmProblem, m: int, n: int, k: int, nthreads: int) -> str:
    opa = "A^T" if problem.trans_a else "A"
    opb = "B^T" if problem.trans_b else "B"
    return (
        f"lucid autotune: GEMM {problem.dtype} {m}x{n}x{k} {opa}@{opb} "
        f"({problem.isa}, {nthreads} thread{'s' if nthreads > 1 else ''})"
    )


@cache
def _generator_digest() -> str:
    """sha256 of the GEMM generator's code and templates: a changed generator retunes."""
    top = Path(lucid.__file__).parent
    digest = hashlib.sha256(lucid.__version__.encode())
    for rel in _GENERATOR_FILES:
        path = top / rel
        files = sorted(path.glob("*.j2")) if path.is_dir() else [path]
        for f in files:
            digest.update(f.name.encode() + b"\0")
            with contextlib.suppress(OSError):
                digest.update(f.read_bytes())
    return digest.hexdigest()


@cache
def _cpu_model() -> str:
    """The cpu's model name from /proc/cpuinfo ("" when unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model", "CPU part")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine_signature(problem: GemmProblem) -> dict[str, Any]:
    """The machine a timing holds for: cpu model and kind (the CPU table key: it decides the
    candidates' starting point), cache sizes, GEMM generator version (the table included)."""
    c = problem.caches
    return {
        "cpu": _cpu_model(),
        "cpu_kind": None if problem.cpu is None else list(problem.cpu.key or ()),
        "caches": [c.l1d, c.l2, c.l3],
        "lucid": lucid.__version__,
        "generator": _generator_digest(),
    }


def _read_record(path: Path, key: dict[str, Any], base: Blocking) -> Blocking | None:
    """The recorded blocking of `key`, or None when absent, unreadable or not for this key."""
    try:
        with open(path, encoding="utf-8") as f:
            record = _cache.unseal(json.load(f))
        if record is None or record.get("key") != key:
            return None
        found = record["blocking"]
        mc, kc, nc = (found[name] for name in ("mc", "kc", "nc"))
        if not all(type(v) is int and v > 0 for v in (mc, kc, nc)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if mc % base.mr or nc % base.nr or kc % 8:
        return None  # gemm.py would refuse it
    return replace(base, mc=mc, kc=kc, nc=nc)


def _write_record(
    path: Path,
    key: dict[str, Any],
    winner: Blocking,
    candidates: Sequence[Blocking],
    seconds: Sequence[float],
) -> None:
    """Write the record atomically: readers see the old file, the new one, or none."""
    record = {
        "key": key,
        "blocking": {"mc": winner.mc, "kc": winner.kc, "nc": winner.nc},
        "timings": [
            {"mc": b.mc, "kc": b.kc, "nc": b.nc, "seconds": s} for b, s in zip(candidates, seconds)
        ],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(_cache.seal(record), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _Progress:
    """A one-line text progress bar: redrawn in place on a terminal, plain lines otherwise."""

    WIDTH = 24

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.done_ticks = 0
        self.total = 1

    def update(self, done: int, total: int, note: str = "") -> None:
        """Show `done` of `total` (and `note`)."""
        self.done_ticks, self.total = done, max(1, total)
        if self.tty:
            self._draw(note)
        elif note:
            self._write(f"{self.label}: {note}\n")

    def tick(self) -> None:
        """One more timing sample taken."""
        self.done_ticks += 1
        if self.tty:
            self._draw("timing")

    def done(self, note: str) -> None:
        """End the line with the result."""
        if self.tty:
            self.done_ticks = self.total
            self._draw(note)
            self._write("\n")
        else:
            self._write(f"{self.label}: {note}\n")

    def _draw(self, note: str) -> None:
        filled = self.WIDTH * self.done_ticks // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._write(f"\r{self.label} [{bar}] {self.done_ticks}/{self.total} {note}\x1b[K")

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed stderr must not stop a compile
            self.stream.write(text)
            self.stream.flush()


def _rows(d: int | str, batch: int) -> int:
    """A row dim of a GEMM at the timed batch size (`N*8` is 8 batches)."""
    symbol, factor = dim_parts(d)
    return factor if symbol is None else factor * batch
