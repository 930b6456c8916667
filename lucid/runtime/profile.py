"""Where a compiled model's time goes, kernel by kernel: `options={"profile": True}`.

A profiled build's C reads a monotonic clock around every kernel call of its programs and keeps,
per call site, how often it ran and its wall time (threads included: a kernel that splits its
work waits for the last thread before the clock is read). `CompiledModule.profile()` and
`CompiledStep.profile()` return those sums as a `Profile`, whose text is a table with the most
expensive kernel first, each named with the IR it implements:

 share      total  calls   per call  graph     kernel: IR
  10.5%    38.7 ms    200     193 us  forward   k5_fused_conv: %19 = fused_conv %x, ... { conv2d mul add hardswish }

The counters belong to the loaded program: a model compiled twice, or two models with equal
graphs, share one library from the compile cache, and each `profile()` counts every run of it
since that model started counting (or was reset). The clock reads cost tens of nanoseconds per
kernel call; a build without the option does not read the clock at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lucid.errors import LucidError

__all__ = ["Counters", "KernelTime", "Profile"]


@dataclass(frozen=True)
class KernelTime:
    """One kernel call site of a compiled program: what it runs and its summed wall time."""

    signature: str  # the compiled signature it belongs to
    graph: str  # "forward", "backward" or "step"
    kernel: str  # the C kernel's name, then the IR line it implements
    calls: int
    seconds: float

    @property
    def per_call(self) -> float:
        """Mean seconds per call (0 when it never ran)."""
        return self.seconds / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class Profile:
    """The kernel times of a compiled model (`rows`, in program order)."""

    rows: tuple[KernelTime, ...]

    def __iter__(self) -> Iterator[KernelTime]:
        return iter(self.rows)

    @property
    def seconds(self) -> float:
        """Total kernel time of every row."""
        return sum(r.seconds for r in self.rows)

    def top(self, n: int | None = None) -> list[KernelTime]:
        """The `n` most expensive rows (all when None), most expensive first."""
        ranked = sorted(self.rows, key=lambda r: r.seconds, reverse=True)
        return ranked if n is None else ranked[:n]

    def table(self, n: int | None = 20) -> str:
        """The `n` most expensive rows (all when None) as text, then the total."""
        total = self.seconds
        lines = [f"{'share':>6} {'total':>10} {'calls':>6} {'per call':>10}  graph     kernel: IR"]
        for r in self.top(n):
            share = r.seconds / total if total else 0.0
            lines.append(
                f"{share:6.1%} {_time(r.seconds):>10} {r.calls:6d} {_time(r.per_call):>10}  "
                f"{r.graph:<9} {r.kernel}"
            )
        shown = len(lines) - 1
        if shown < len(self.rows):
            lines.append(f"... {len(self.rows) - shown} more kernel call site(s)")
        lines.append(f"total {_time(total)} in {len(self.rows)} kernel call site(s)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _time(seconds: float) -> str:
    """`seconds` in s, ms, us or ns, three significant digits."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


class Counters:
    """The kernel counts of compiled programs as one model sees them: since it loaded each
    program, or since its last reset. The counters are the loaded program's: two models whose
    graphs are equal share one library (the compile cache), so each counts every run of it
    since it started counting, the other model's runs included."""

    def __init__(self) -> None:
        # id(executable) -> (the executable, kept alive; (calls, ns) of each call site)
        self._base: dict[int, tuple[Any, list[tuple[int, int]]]] = {}

    def start(self, executable: Any) -> None:
        """Count `executable`'s kernel calls from now on (nothing for one without a profile)."""
        read = getattr(executable, "profile", None)
        if read is not None:
            self._base[id(executable)] = (executable, [(c, ns) for _, c, ns in read()])

    def profile(self, parts: Iterable[tuple[str, str, Any]], reset: bool, enabled: bool) -> Profile:
        """The Profile of the executables in `parts` ((signature, graph, executable) each);
        `reset` starts counting them again. `enabled`: compiled with options["profile"]."""
        if not enabled:
            raise LucidError(
                "this model was compiled without kernel timing: pass options={'profile': True} "
                "to lucid.compile"
            )
        rows = []
        for signature, graph, executable in parts:
            read = getattr(executable, "profile", None)
            if read is None:
                raise LucidError(
                    f"the {executable.backend!r} backend runs no C kernels to time: profile "
                    "needs backend='c'"
                )
            now = read()
            _, base = self._base.get(id(executable), (None, [(0, 0)] * len(now)))
            for (kernel, calls, ns), (calls0, ns0) in zip(now, base, strict=True):
                rows.append(KernelTime(signature, graph, kernel, calls - calls0, (ns - ns0) / 1e9))
            if reset:
                self._base[id(executable)] = (executable, [(c, t) for _, c, t in now])
        return Profile(tuple(rows))
