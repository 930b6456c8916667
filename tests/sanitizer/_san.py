"""The sanitizer build and the child process that runs it, shared by tests/sanitizer.

Every kernel is built with AddressSanitizer and UndefinedBehaviorSanitizer (`FLAGS`): an
out-of-bounds read or write, a use after free, a misaligned access, a signed overflow or a bad
shift stops the process with a report. Python and NumPy are not instrumented, so the sanitizer
runtimes must be loaded before them: the cases run in a child Python started with
`LD_PRELOAD=libasan.so libubsan.so` (`run_cases`); leak detection is off because the
interpreter keeps its objects alive at exit by design.

By hand, from the repository root (the same environment the tests give the child):
    ASAN_OPTIONS=detect_leaks=0 \\
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \\
    LUCID_CACHE_DIR=$(mktemp -d) PYTHONPATH=. python -m tests.sanitizer.cases conv pool ...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SANITIZE = "-fsanitize=address,undefined"
# -O0: the instrumented builds take a fifth of -O1's time (the builds, not the runs, dominate
# these tests), and no access is optimised away before ASan sees it; -g and frame pointers
# give readable stacks.
# The numerics flags are lucid's own defaults (no contraction, no errno), so the sanitized
# results must agree with eager lucid as closely as the -O3 builds do.
FLAGS: tuple[str, ...] = (
    "-O0",
    "-march=native",
    "-g",
    "-fno-omit-frame-pointer",
    SANITIZE,
    "-fsanitize=float-cast-overflow",  # not part of gcc's `undefined`: float -> int out of range
    "-fno-sanitize-recover=all",  # UBSan stops at the first finding instead of printing on
    "-ffp-contract=off",
    "-fno-math-errno",
)
# Link flags of the programs built through the backend directly (kernels.py's one-node
# programs); lucid.compile and lucid.export builds leave the sanitizer symbols to the runtimes
# already loaded (the preload, or the C caller's own -fsanitize link).
LINK: tuple[str, ...] = ("-lm", "-lpthread", SANITIZE)
# The report lines of either sanitizer: the child fails on any of them even if it exits 0.
REPORTS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: UndefinedBehaviorSanitizer")


@cache
def gcc() -> str | None:
    """gcc on PATH (the sanitizer runtimes found below are gcc's), else None."""
    return shutil.which("gcc")


@cache
def runtimes() -> tuple[str, str] | None:
    """(libasan.so, libubsan.so) of gcc, or None when either is not installed."""
    cc = gcc()
    if cc is None:
        return None
    found = []
    for lib in ("libasan.so", "libubsan.so"):
        path = subprocess.run(
            [cc, f"-print-file-name={lib}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if not os.path.isabs(path) or not os.path.exists(path):
            return None  # gcc prints the bare name back when it has no such library
        found.append(path)
    return found[0], found[1]


def missing() -> str | None:
    """Why the sanitizer tests cannot run here, or None when they can."""
    if gcc() is None:
        return "gcc not found"
    if runtimes() is None:
        return "gcc's libasan.so or libubsan.so is not installed"
    return None


def child(
    names: list[str], cache_dir: Path, *, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the named cases of tests/sanitizer/cases.py in a sanitized child Python."""
    libs = runtimes()
    assert libs is not None, missing()
    env = {
        **os.environ,
        "LD_PRELOAD": " ".join(libs),
        "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
        "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        "LUCID_CACHE_DIR": str(cache_dir),
        "PYTHONPATH": str(ROOT),
        "CC": gcc() or "gcc",
    }
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.sanitizer.cases", *names],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def run_cases(names: list[str], cache_dir: Path) -> str:
    """The stdout of the named cases run in a sanitized child Python.

    Fails with the tail of the child's stderr (the sanitizer report) unless the child exits 0,
    prints no report and says every case passed."""
    run = child(names, cache_dir)
    found = [r for r in REPORTS if r in run.stderr]
    assert run.returncode == 0 and not found, (
        f"exit {run.returncode}, reports {found}\n{run.stdout[-2000:]}\n{run.stderr[-6000:]}"
    )
    for name in names:
        assert f"sanitized {name}: ok" in run.stdout, run.stdout
    return run.stdout
