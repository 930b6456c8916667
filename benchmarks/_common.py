"""Timing helpers shared by the benchmark scripts: medians of many repetitions, a ratio table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], *, budget: float = 0.3, repeat: int = 15) -> float:
    """Median seconds per call of `fn` over `repeat` timed batches, after a warmup batch."""
    return statistics.median(per_call_samples(fn, budget=budget, repeat=repeat))


def per_call_samples(
    fn: Callable[[], object], *, budget: float = 0.3, repeat: int = 15
) -> list[float]:
    """Seconds per call of `fn` in each of `repeat` timed batches, after a warmup batch.

    The batch size is chosen so that one batch takes about budget/repeat seconds, which keeps
    timer resolution and loop overhead negligible even for microsecond calls."""
    fn()  # warmup: first-call work (allocation, lazy compilation) is not what is measured
    number, elapsed = 1, 0.0
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / repeat / 4 or number >= 1 << 20:
            break
        number *= 4
    number = max(1, int(number * (budget / repeat) / max(elapsed, 1e-9)))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return samples


def fmt_time(seconds: float) -> str:
    """`1.23 us`, `4.56 ms` or `1.2 s`; a negative difference in its own unit (`-38.8 ms`)."""
    size = abs(seconds)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if size >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds} s"


def print_table(title: str, rows: dict[str, float | None], baseline: str) -> None:
    """One row per system: median time and its ratio to `baseline` (x > 1: slower than it)."""
    print(f"\n{title}")
    width = max(len(name) for name in rows)
    base = rows.get(baseline)
    for name, t in rows.items():
        if t is None:
            print(f"  {name:<{width}}  {'skipped (absent or failed)':>12}")
            continue
        ratio = f"{t / base:8.2f}x {baseline}" if base else ""
        print(f"  {name:<{width}}  {fmt_time(t):>12}  {ratio}")
