"""Benchmark lucid's generated GEMM against this machine's FMA peak and NumPy (OpenBLAS).

Run (OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, if set on this machine, slow NumPy down; unset them
for a fair comparison):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /work/venv/bin/python benchmarks/bench_gemm.py

NumPy's thread count is set per measurement by running it in a child process with
OPENBLAS_NUM_THREADS (this process' environment is not modified).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "codegen"))

import gemm_harness as H

from lucid.codegen.gemm import (
    Epilogue,
    GemmSpec,
    bias_add,
    choose_blocking,
    detect_caches,
    detect_isa,
)
from lucid.ir.ops import OPS

# A tight loop of independent FMA chains: enough accumulators to cover latency x 2 ports.
PEAK_C = r"""
#include <immintrin.h>
#include <stdint.h>
static double peak_f32(int64_t iters)
{
    __m512 acc[24];
    const __m512 x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
    for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps((float)i);
    for (int64_t it = 0; it < iters; ++it) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; ++i) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
    return (double)_mm512_reduce_add_ps(s);
}
"""
PEAK_CDEF = "double peak_f32(int64_t iters);"
PEAK_ITERS = 20_000_000
PEAK_FLOPS = PEAK_ITERS * 24 * 16 * 2


def times_of(fn, repeat: int) -> tuple[float, float]:
    """(median, best) wall time of fn() over `repeat` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def measure_peak(built: H.Built, nthreads: int) -> float:
    """f32 GFLOP/s of the FMA loop on nthreads threads at once (cffi releases the GIL)."""

    def once() -> None:
        threads = [
            threading.Thread(target=built.lib.peak_f32, args=(PEAK_ITERS,)) for _ in range(nthreads)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    # best of several: the peak is a property of the machine, not of one noisy run
    return PEAK_FLOPS * nthreads / times_of(once, 5)[1] / 1e9


def numpy_child(case: str, threads: int, repeat: int) -> tuple[float, float]:
    """(median, best) seconds of NumPy's `case`, in a child with OPENBLAS_NUM_THREADS."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--numpy-case", case, "--repeat", str(repeat)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return float(result["median"]), float(result["best"])


def make_case(case: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Inputs of a benchmark case: 'sq32', 'sq64' (1024^3) or 'linear' (256x1024x1024, f32)."""
    if case in ("sq32", "sq64"):
        dt = np.float32 if case == "sq32" else np.float64
        return {
            "a": rng.standard_normal((1024, 1024)).astype(dt),
            "b": rng.standard_normal((1024, 1024)).astype(dt),
        }
    return {
        "a": rng.standard_normal((256, 1024)).astype(np.float32),
        "b": (rng.standard_normal((1024, 1024)) / 32).astype(np.float32),
        "bias": rng.standard_normal(1024).astype(np.float32),
    }


def numpy_fn(case: str, x: dict[str, np.ndarray]):
    """NumPy's computation of the case."""
    if case == "linear":
        return lambda: OPS["hardswish"].numpy(x["a"] @ x["b"].T + x["bias"])
    return lambda: x["a"] @ x["b"]


def main() -> int:
    """Print the peak, and lucid vs NumPy for each case and thread count."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--numpy-case")
    ap.add_argument("--repeat", type=int, default=11)
    ap.add_argument(
        "--threads-mode",
        choices=("pool", "spawn"),
        default="pool",
        help="lucid's threads: persistent worker pool (lucid.compile's default) or per call (AOT)",
    )
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if args.numpy_case:  # child mode: time NumPy only
        x = make_case(args.numpy_case, rng)
        med, best = times_of(numpy_fn(args.numpy_case, x), args.repeat)
        print(json.dumps({"median": med, "best": best}))
        return 0

    isa = detect_isa()
    caches = detect_caches()

    def spec(name: str, dtype: str, trans_b: bool, epilogue: Epilogue | None = None) -> GemmSpec:
        """A runtime-M GEMM with N = K = 1024, blocked for this machine."""
        return GemmSpec(
            f"bench_{name}",
            dtype,
            trans_a=False,
            trans_b=trans_b,
            m=None,
            n=1024,
            k=1024,
            epilogue=epilogue,
            isa=isa,
            blocking=choose_blocking(dtype, isa, caches),
            threads=args.threads_mode,
        )

    hardswish_bias = Epilogue((bias_add("bias"), H.HARDSWISH))
    specs = {
        "sq32": spec("sq32", "float", trans_b=False),
        "sq64": spec("sq64", "double", trans_b=False),
        "linear": spec("linear", "float", trans_b=True, epilogue=hardswish_bias),
    }
    workdir = Path(tempfile.gettempdir()) / "lucid-bench-gemm"
    built = H.build(
        list(specs.values()),
        workdir,
        extra_c=PEAK_C if isa == "avx512" else "",
        extra_cdef=PEAK_CDEF if isa == "avx512" else "",
    )
    print(f"isa={isa} caches={caches} OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")
    print(f"lucid threads mode: {args.threads_mode}")
    # the machine is shared: a load average near the core count makes every number here noisy
    print(f"load average before: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    for s in specs.values():
        print(f"  {s.name}: {s.resolved_blocking()}")
    peaks = {}
    if isa == "avx512":
        for t in (1, 2):
            peaks[t] = measure_peak(built, t)
            print(
                f"peak f32 FMA loop, {t} thread(s): {peaks[t]:.1f} GFLOP/s "
                f"(f64: {peaks[t] / 2:.1f})"
            )
    shapes = {"sq32": (1024, 1024, 1024), "sq64": (1024, 1024, 1024), "linear": (256, 1024, 1024)}
    print("medians (best of the runs in brackets); %peak and speedup use the medians")
    print(
        f"{'case':8} {'thr':>3} {'lucid ms':>15} {'GFLOP/s':>8} {'%peak':>6} "
        f"{'numpy ms':>15} {'GFLOP/s':>8} {'lucid/numpy':>12}"
    )
    for case, spec in specs.items():
        x = make_case(case, rng)
        m, n, k = shapes[case]
        flops = 2.0 * m * n * k
        ops = {"bias": x["bias"]} if case == "linear" else {}
        out = np.empty((m, n), dtype=x["a"].dtype)
        status, c, _ = H.run(built, spec, x["a"], x["b"], ops, nthreads=1, out=out)
        assert status == 0
        ref = numpy_fn(case, x)()
        err = float(np.abs(c.astype(np.float64) - ref).max())
        for t in (1, 2):
            call = functools.partial(H.run, built, spec, x["a"], x["b"], ops, t, out)
            mine, mine_best = times_of(call, args.repeat)
            theirs, theirs_best = numpy_child(case, t, args.repeat)
            peak = peaks.get(t, float("nan")) / (2 if case == "sq64" else 1)
            gf, gf_np = flops / mine / 1e9, flops / theirs / 1e9
            print(
                f"{case:8} {t:>3} {mine * 1e3:6.2f} [{mine_best * 1e3:6.2f}] {gf:8.1f} "
                f"{100 * gf / peak:5.0f}% {theirs * 1e3:6.2f} [{theirs_best * 1e3:6.2f}] "
                f"{gf_np:8.1f} {theirs / mine:11.2f}x"
            )
        print(f"{'':8} max |lucid - numpy| = {err:.3g}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
