"""lucid's benchmark suite: every workload, every system, one process, one table.

    /work/venv/bin/python benchmarks/run_all.py [--threads 2] [--quick] [--only seed,gemm]
                                               [--json bench-results/results.json] [--png PATH]

Systems: lucid compiled, lucid eager, NumPy by hand, and when installed PyTorch eager,
torch.compile, ONNX Runtime and JAX (see peers/). Workloads: see workloads.py. The process
re-executes itself once without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they slow OpenBLAS, and
so NumPy, on this machine); benchmarks/README.md says how each system's threads are set.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from core_latency import RoundTrip  # found through the path just set

SLOW_OPENBLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARK = "LUCID_BENCH_REEXEC"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    ap = argparse.ArgumentParser(description="lucid benchmark suite against its peers")
    ap.add_argument("--threads", type=int, default=2, help="threads for every system (default 2)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="few repetitions, no torch.compile, compile times of one model only",
    )
    ap.add_argument(
        "--no-peers",
        action="store_true",
        help="lucid and NumPy only (the smoke test: no peer imports)",
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated workloads or groups (seed,wide,deep,gemm,mnv3,gpt; "
        "mnv3 = mnv3-b1,mnv3-b32)",
    )
    ap.add_argument(
        "--tiny",
        action="store_true",
        help="the models on small shapes (the smoke test: code paths, not numbers)",
    )
    ap.add_argument("--json", default="bench-results/results.json", help="results file")
    ap.add_argument("--png", default="bench-results/results.png", help="bar chart ('' = none)")
    ap.add_argument(
        "--memory",
        action="store_true",
        help="also measure each system's peak working memory per row (a fresh process each)",
    )
    ap.add_argument(
        "--no-compile-times",
        action="store_true",
        help="skip the cold/warm first-call measurements in child processes",
    )
    return ap.parse_args(argv)


def prepare_environment(args: argparse.Namespace, argv: list[str]) -> list[str]:
    """Fix the environment before numpy/torch/jax are imported; re-exec if only that works.

    Returns notes for the header. Environment variables read at library load time cannot be
    changed afterwards, hence the re-exec (once: the mark stops a loop)."""
    notes = []
    env = dict(os.environ)
    fix = {k: env.pop(k) for k in SLOW_OPENBLAS_ENV if k in env}
    try:
        import threadpoolctl  # noqa: F401  (limits OpenBLAS at runtime: no env needed)
    except ImportError:
        if env.get("OPENBLAS_NUM_THREADS") != str(args.threads):
            env["OPENBLAS_NUM_THREADS"] = str(args.threads)
            fix["OPENBLAS_NUM_THREADS"] = "(unset)"
    if fix and os.environ.get(REEXEC_MARK) != "1":
        env[REEXEC_MARK] = "1"
        print(f"re-executing without/with fixed {sorted(fix)} (was {fix})", flush=True)
        os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *argv], env)
    if os.environ.get(REEXEC_MARK) == "1":
        notes.append("re-executed without OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE")
    # XLA reads its flags when the CPU backend starts, so this works without a re-exec; it can
    # only choose between one thread and all cores
    if args.threads == 1 and "intra_op_parallelism_threads" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        ).strip()
    # fresh compile caches: lucid's first builds and inductor's first compile are cold
    for var, prefix in (
        ("LUCID_CACHE_DIR", "lucid-bench-cache-"),
        ("TORCHINDUCTOR_CACHE_DIR", "lucid-bench-inductor-"),
    ):
        os.environ[var] = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, os.environ[var], ignore_errors=True)
    return notes


def set_threads(threads: int) -> tuple[object | None, str]:
    """lucid and OpenBLAS (threadpoolctl) thread counts; returns the limiter and a description."""
    import numpy as np  # noqa: F401  (loads OpenBLAS so threadpoolctl can see it)

    import lucid

    lucid.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return None, f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
    limiter = threadpool_limits(limits=threads)
    pools = ", ".join(
        f"{p['internal_api']} {p.get('version')} {p['num_threads']} thr ({p.get('architecture')})"
        for p in threadpool_info()
    )
    return limiter, pools


def measure(fn, quick: bool, heavy: bool) -> dict[str, float]:
    """median, p10 and p90 seconds per call (the budget grows for heavy calls)."""
    from _common import per_call_samples

    if quick:
        samples = per_call_samples(fn, budget=0.02, repeat=3)
    else:
        samples = per_call_samples(fn, budget=3.0 if heavy else 1.0, repeat=11)
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median": statistics.median(samples), "p10": deciles[0], "p90": deciles[-1]}


def forward_check(out, ref, relative: bool = False) -> dict[str, object]:
    """Max abs difference to lucid eager's output; ok within 1e-3 of max(1, |ref|), or with
    `relative` (the model rows, whose logits are far below 1) within 1e-3 of max |ref|."""
    import numpy as np

    out = np.asarray(out, np.float64)
    if out.shape != ref.shape:
        return {"max_abs_diff": float("inf"), "ok": False, "shape": list(out.shape)}
    diff = float(np.max(np.abs(out - ref)))
    scale = float(np.max(np.abs(ref)))
    return {"max_abs_diff": diff, "ok": diff <= 1e-3 * (scale if relative else max(1.0, scale))}


def update_check(before, after, ref_after, per_param: bool = False) -> dict[str, object]:
    """The SGD update of one step against lucid eager's, relative to the largest update.

    `per_param` (the model rows: dozens of parameters whose updates differ by orders of
    magnitude) compares each parameter's update with its own largest entry instead (floored
    at 1e-3 of the largest update of all), after allowing each parameter two float32 ulps of
    its largest value: `w - lr * g` is rounded to float32 in every system, and a BatchNorm
    scale of 1.0 that moves by 1e-6 differs by a rounding step (1.2e-7) alone. A wrong
    attention or normalisation gradient is then seen even though the head's update dwarfs
    it."""
    import numpy as np

    if len(after) != len(ref_after):
        return {"max_abs_diff": float("inf"), "rel_to_update": float("inf"), "ok": False}
    deltas = [float(np.max(np.abs(r - b))) for r, b in zip(ref_after, before)]
    diffs = [float(np.max(np.abs(a - r))) for a, r in zip(after, ref_after)]
    ref_delta, diff = max(deltas), max(diffs)
    if per_param:
        floor = 1e-3 * ref_delta
        rounding = [2 * float(np.spacing(np.float32(np.max(np.abs(r))))) for r in ref_after]
        rel = max(
            max(d - ulps, 0.0) / max(u, floor, 1e-30) for d, u, ulps in zip(diffs, deltas, rounding)
        )
    else:
        rel = diff / max(ref_delta, 1e-30)
    return {"max_abs_diff": diff, "rel_to_update": rel, "ok": rel <= 5e-2}


def run_system(
    system, w, d, mode: str, reference, args, cores: RoundTrip | None = None
) -> dict[str, object]:
    """Build, check and time one (system, workload, mode); never raises. `cores` measures
    the round trip between the two cores just before and after the timing (see
    core_latency.py: the host may have moved the vCPUs apart)."""
    from peers import Forward, Unavailable, build_row

    heavy = w.name != "seed"
    try:
        run = build_row(system, w, d, mode)
        if isinstance(run, Forward):
            out = run.result(run.call())
            rec: dict[str, object] = {
                "check": forward_check(out, reference, relative=w.kind == "model")
            }
            fn, first = run.call, run.first_call_s
            flops = w.forward_flops()
        else:
            tr = run
            tr.step()
            rec = {
                "check": update_check(
                    reference[0], tr.params(), reference[1], per_param=w.kind == "model"
                )
            }
            fn, first = tr.step, tr.first_call_s
            flops = w.train_flops()
        before = cores.ns() if cores else None
        rec.update(measure(fn, args.quick, heavy))
        if cores and before is not None:
            rec["core_roundtrip_ns"] = [before, cores.ns()]
    except Unavailable as exc:
        return {"status": f"not available: {exc}"}
    except Exception as exc:  # noqa: BLE001  one broken peer must not lose the other rows
        return {"status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"}
    rec["status"] = "ok" if rec["check"]["ok"] else "MISMATCH"
    if flops is not None:
        rec["gflops"] = flops / rec["median"] / 1e9
    if first is not None:
        rec["first_call_s"] = first
    return rec


def reference_for(w, d, mode: str):
    """lucid eager's forward output (float64), or its weights before and after one step."""
    import numpy as np
    from peers import Forward, build_row
    from peers.lucid_systems import LucidEager, reference_step

    if mode == "forward":
        fwd = build_row(LucidEager(), w, d, mode)
        assert isinstance(fwd, Forward)
        return np.asarray(fwd.result(fwd.call()), np.float64)
    return reference_step(w, d)


def _ns(value: object) -> str:
    """A round trip for the header: '54 ns', or why there is none."""
    return f"{value:.0f} ns" if isinstance(value, float) else "not measured (1 thread or 1 core)"


def peak_gflops(threads: int) -> float | None:
    """The FMA-loop peak of bench_gemm.py on `threads` threads (None without AVX-512)."""
    import bench_gemm

    if bench_gemm.detect_isa() != "avx512":
        return None
    workdir = Path(tempfile.gettempdir()) / "lucid-bench-gemm"
    built = bench_gemm.H.build(
        [], workdir, extra_c=bench_gemm.PEAK_C, extra_cdef=bench_gemm.PEAK_CDEF
    )
    return bench_gemm.measure_peak(built, threads)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def header(args: argparse.Namespace, notes: list[str], pools: str) -> dict[str, object]:
    """What the run was: machine, threads, lucid's flags and isa, versions, load."""
    import numpy as np

    from lucid.codegen.gemm import detect_isa
    from lucid.runtime.build import DEFAULT_FLAGS

    meta = {
        "cpu": cpu_name(),
        "threads": args.threads,
        "lucid_isa": detect_isa(),
        "lucid_cflags": " ".join(DEFAULT_FLAGS),
        "openblas": pools,
        "xla_flags": os.environ.get("XLA_FLAGS", "(default: all cores)"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "load_before": round(os.getloadavg()[0], 2),
        "quick": args.quick,
        "notes": notes,
        "training_step": "forward + loss (MLP: MSE(mean); models: cross-entropy(mean)) + "
        "backward (all param grads) + plain SGD update (lr 1e-3, no momentum), identical in "
        "every system",
    }
    for k, v in meta.items():
        print(f"{k:>14}: {v}")
    return meta


def main(argv: list[str] | None = None) -> int:
    """Run the suite; exit 0 even when targets miss (the table says so), 2 on bad arguments."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from workloads import WORKLOADS, make_data, select

    chosen_workloads, unknown = select(args.only, args.tiny)
    if unknown:
        groups = sorted({w.group for w in WORKLOADS.values() if w.group})
        print(
            f"unknown workload(s) {unknown}; choose from {list(WORKLOADS)} or {groups}",
            file=sys.stderr,
        )
        return 2
    workloads = {w.name: w for w in chosen_workloads}
    notes = prepare_environment(args, argv)
    from suite_compile import compile_times
    from suite_report import (
        memory_targets,
        print_first_calls,
        print_memory,
        print_results,
        print_targets,
        targets,
        write_json,
        write_png,
    )

    _limiter, pools = set_threads(args.threads)
    meta = header(args, notes, pools)
    cores = RoundTrip.for_threads(args.threads)
    meta["core_roundtrip_ns_before"] = cores.ns()
    print(f"{'core roundtrip':>14}: {_ns(meta['core_roundtrip_ns_before'])}")
    # the peak only gives the MLP and GEMM rows their %peak: the model rows count no FLOPs
    needs_peak = any(w.kind != "model" for w in workloads.values())
    peak = peak_gflops(args.threads) if needs_peak else None
    why = "n/a (no AVX-512)" if needs_peak else "not measured (model rows only)"
    print(f"{'peak':>14}: {f'{peak:.1f} GFLOP/s f32 FMA loop' if peak else why}")

    compile_s: dict[str, dict[str, float | str]] = {}
    if not args.no_compile_times:
        jobs = [(w, m) for w in workloads.values() for m in w.modes]
        if args.quick:
            jobs = jobs[:1]  # the code path, not the numbers
        compile_s = compile_times(jobs, Path(os.environ["LUCID_CACHE_DIR"]))

    from peers import make_system, system_names

    names, skipped = system_names(args.quick, args.no_peers)
    memory = None
    if args.memory:  # first: its table is printed as soon as it is measured
        from suite_memory import memory_rows

        jobs = [(w, m) for w in workloads.values() for m in w.modes]
        memory = memory_rows(jobs, names, skipped, args.threads)
        print_memory(memory, str(meta["cpu"]), args.threads)
    chosen = [make_system(n, args.threads) for n in names]
    results: dict[str, dict[str, dict[str, object]]] = {}
    for name, w in workloads.items():
        d = make_data(w)
        for mode in w.modes:
            ref = reference_for(w, d, mode)
            rows = results.setdefault(f"{name}/{mode}", {})
            for system in chosen:
                rows[system.name] = run_system(system, w, d, mode, ref, args, cores)
                gc.collect()  # drop the last system's sessions and thread pools before the next
            for sname, why in skipped.items():
                rows[sname] = {"status": f"not available: {why}"}
            print(f"  timed {name}/{mode}", file=sys.stderr, flush=True)
    meta["load_after"] = round(os.getloadavg()[0], 2)
    meta["core_roundtrip_ns_after"] = cores.ns()
    if peak:  # other processes can only depress a peak measurement: keep the higher of two
        again = peak_gflops(args.threads) or 0.0
        print(f"{'peak again':>14}: {again:.1f} GFLOP/s (using {max(peak, again):.1f})")
        peak = max(peak, again)
    for key, rows in results.items():
        name, mode = key.split("/")
        print_results(workloads[name], mode, rows, peak)
    print(
        f"\nload average: {meta['load_before']:.2f} before, {meta['load_after']:.2f} after "
        f"({os.cpu_count()} cores); core round trip {_ns(meta['core_roundtrip_ns_before'])} "
        f"before, {_ns(meta['core_roundtrip_ns_after'])} after"
    )
    print_first_calls(results, compile_s)
    models = {f"{w.name}/{m}" for w in workloads.values() if w.kind == "model" for m in w.modes}
    checks = targets(results, compile_s, peak, models)
    if memory is not None:
        print_memory(memory, str(meta["cpu"]), args.threads)
        checks += memory_targets(memory)
    print_targets(checks, compile_s)
    write_json(Path(args.json), meta, peak, results, compile_s, checks, memory)
    if args.png:
        write_png(Path(args.png), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
