"""Peak working memory of each system on each row, every (system, row) in a fresh process.

What a row measures is the memory a system needs to get ready to run, and run, a model its user
already has. A spawned child sets the threads, imports the libraries the system will use, makes
the workload's data and the system's model of the row (`peers.user_model`: the Module and its
weights, JAX's arrays, ONNX Runtime's .onnx bytes exported from PyTorch). Then, after
`gc.collect()` and glibc's `malloc_trim(0)`, it takes its resident set size as the baseline and
resets the kernel's high-water mark (writing "5" to /proc/self/clear_refs). It gets the system
ready (`peers.ready`: lucid.compile, torch.compile, an InferenceSession, jax.jit; compiling
systems also compile and call once there) and calls the row once more: VmHWM minus the baseline
is the **first-call** working memory. After another collect, trim and reset it calls the row
CALLS more times: VmHWM minus the same baseline is the **steady** working memory (what the
system keeps plus what a call needs).
The **peak** is the larger of the two: the most memory the row needed at any moment.
Linux only (/proc); elsewhere every record says why it is missing.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import multiprocessing
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

from workloads import Data, Workload

if TYPE_CHECKING:
    from peers import System

CALLS = 5  # calls after the first one
TIMEOUT_S = 1800.0  # one child: torch.compile of a model's training step takes minutes
MIB = 1 << 20
PROC = Path("/proc/self")

# Imported before the baseline, so that loading a library is not counted as a row's memory
# (lucid compiles with its codegen and cffi, imported on first use; torch.compile with dynamo).
LIBRARIES = {
    "lucid compiled": ("lucid.runtime.compiled", "lucid.codegen.emit_c", "cffi", "jinja2"),
    "lucid step": ("lucid.runtime.step", "lucid.codegen.emit_c", "cffi", "jinja2"),
    "pytorch eager": ("torch",),
    "torch.compile": ("torch", "torch._dynamo", "torch._inductor.compile_fx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "jax jit": ("jax", "jax.numpy"),
}


def unsupported() -> str | None:
    """Why this platform cannot measure (no /proc high-water mark or no reset), else None."""
    if not sys.platform.startswith("linux") or not (PROC / "clear_refs").exists():
        return "needs Linux's /proc/self/status VmHWM and /proc/self/clear_refs"
    return None


def status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in (PROC / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def settle() -> None:
    """Free what is garbage and hand glibc's free heap pages back to the kernel, then make the
    high-water mark the current resident size."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its free pages stay resident
        pass
    (PROC / "clear_refs").write_text("5")


def working_memory(build: Callable[[], Callable[[], object]], calls: int = CALLS) -> dict:
    """MiB above the baseline: `first_mb` (build + one call), `steady_mb` (`calls` more calls)
    and `peak_mb`, the larger; `baseline_mb` is the resident size they are counted from."""
    settle()
    base = status_bytes("VmRSS")
    call = build()
    call()
    first = status_bytes("VmHWM") - base
    settle()
    for _ in range(calls):
        call()
    steady = status_bytes("VmHWM") - base
    return {
        "status": "ok",
        "baseline_mb": base / MIB,
        "first_mb": first / MIB,
        "steady_mb": steady / MIB,
        "peak_mb": max(first, steady) / MIB,
    }


def measure_system(system: System, w: Workload, d: Data, mode: str) -> dict:
    """The working memory of `system` getting ready to run a row and running it; the user's
    model is made before the baseline, so it is not counted."""
    from peers import Forward, Unavailable, ready, user_model

    try:
        model = user_model(system, w, d, mode)

        def build() -> Callable[[], object]:
            run = ready(system, w, d, mode, model)
            return run.call if isinstance(run, Forward) else run.step

        return working_memory(build)
    except Unavailable as exc:
        return {"status": f"not available: {exc}"}


def measure_row(system_name: str, threads: int, w: Workload, mode: str) -> dict:
    """The working memory of one (system, row), in the calling process (a fresh child)."""
    from peers import make_system
    from run_all import set_threads
    from workloads import make_data

    set_threads(threads)
    for module in LIBRARIES.get(system_name, ()):
        importlib.import_module(module)
    if system_name == "jax jit":  # XLA starts its CPU client (allocator, thread pools) lazily
        importlib.import_module("jax").devices()
    return measure_system(make_system(system_name, threads), w, make_data(w), mode)


def _child(conn: Connection, fn: Callable[..., dict], args: tuple) -> None:
    """Run fn(*args) and send its record (or the error it raised) to the parent."""
    try:
        rec = fn(*args)
    except Exception as exc:  # noqa: BLE001  the parent records it; one row must not stop all
        rec = {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
    conn.send(rec)
    conn.close()


def in_fresh_process(fn: Callable[..., dict], *args: object, timeout: float = TIMEOUT_S) -> dict:
    """fn(*args) in a spawned child (no state inherited from this process), or a "failed"
    record when the child dies or runs past `timeout` seconds (it is then terminated)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args), daemon=True)
    proc.start()
    send.close()
    try:
        if not receive.poll(timeout):
            proc.terminate()
            return {"status": f"failed: timed out after {timeout:.0f} s"}
        return receive.recv()
    except EOFError:
        proc.join()
        return {"status": f"failed: the child died (exit code {proc.exitcode})"}
    finally:
        proc.join()
        receive.close()


def memory_rows(
    jobs: list[tuple[Workload, str]], names: list[str], skipped: dict[str, str], threads: int
) -> dict[str, dict[str, dict]]:
    """'workload/mode' -> system -> working-memory record, for every job and system (a skipped
    system, or a platform without /proc, gets its reason as the status)."""
    why = unsupported()
    out: dict[str, dict[str, dict]] = {}
    for w, mode in jobs:
        key = f"{w.name}/{mode}"
        rows = out.setdefault(key, {})
        for name in names:
            if why:
                rows[name] = {"status": f"not available: {why}"}
                continue
            rows[name] = in_fresh_process(measure_row, name, threads, w, mode)
            print(
                f"  memory {key} {name}: {rows[name].get('peak_mb', rows[name]['status'])}",
                file=sys.stderr,
                flush=True,
            )
        for name, reason in skipped.items():
            rows[name] = {"status": f"not available: {reason}"}
    return out
