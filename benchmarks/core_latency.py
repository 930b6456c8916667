"""How far apart the benchmark's two cores are: one cache line's round trip between two threads.

Why the suite measures it: on the shared 2-vCPU KVM guests this project benchmarks on, the host
places the two vCPUs either on cores that share an L3 or on different dies, and moves them while
a process runs. On the AMD EPYC (Zen 4) guest, the round trip below was ~65 ns in the first
placement and ~320 ns in the second, switching every few seconds to minutes; every handoff
between threads (a parallel kernel's start and end, a tile one thread wrote and the other reads)
costs about 5x more in the second. The same binary of the GPT forward ran 12.5 ms in the first
and 18 ms in the second (2 threads; 23 ms on 1 thread either way, measured alternately with
this probe); a 1024^3 GEMM measured 147 GFLOP/s in one full run and 207-211 in the next four
(the placement was not recorded then). So `run_all.py` measures the round trip before and after every timed row and prints
it beside the row, and a target whose two rows were measured in different placements says so.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

# Two threads hand one cache line back and forth (ping writes 1, pong answers 2) until a
# deadline, so a machine with one core (where every hand-off waits for the scheduler) still
# returns in time; the answer is then the scheduler's hand-off time, large and honest.
ROUNDTRIP_C = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

static int lucid_c2c_flag __attribute__((aligned(64)));
static int lucid_c2c_stop __attribute__((aligned(64)));

static double lucid_c2c_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *lucid_c2c_pong(void *arg)
{
    (void)arg;
    for (;;) {
        int seen;
        while ((seen = __atomic_load_n(&lucid_c2c_flag, __ATOMIC_ACQUIRE)) != 1)
            if (__atomic_load_n(&lucid_c2c_stop, __ATOMIC_ACQUIRE))
                return NULL;
        __atomic_store_n(&lucid_c2c_flag, 2, __ATOMIC_RELEASE);
    }
}

/* Nanoseconds per round trip between CPUs `a` (this thread, pinned for the measurement and
 * then given its affinity back) and `b` over about `seconds`; -1 when that cannot be set up. */
static double lucid_core_roundtrip_ns(int a, int b, double seconds)
{
    cpu_set_t old, on_a, on_b;
    CPU_ZERO(&on_a);
    CPU_ZERO(&on_b);
    CPU_SET(a, &on_a);
    CPU_SET(b, &on_b);
    pthread_attr_t attr;
    pthread_t pong;
    if (pthread_getaffinity_np(pthread_self(), sizeof old, &old) != 0)
        return -1.0;
    if (pthread_attr_init(&attr) != 0)
        return -1.0;
    int bad = pthread_attr_setaffinity_np(&attr, sizeof on_b, &on_b) != 0;
    __atomic_store_n(&lucid_c2c_flag, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&lucid_c2c_stop, 0, __ATOMIC_RELEASE);
    bad = bad || pthread_create(&pong, &attr, lucid_c2c_pong, NULL) != 0;
    pthread_attr_destroy(&attr);
    if (bad)
        return -1.0;
    pthread_setaffinity_np(pthread_self(), sizeof on_a, &on_a);
    const double start = lucid_c2c_now(), deadline = start + seconds;
    int64_t trips = 0;
    double now = start;
    while (now < deadline) {
        for (int i = 0; i < 64; ++i) {
            __atomic_store_n(&lucid_c2c_flag, 1, __ATOMIC_RELEASE);
            for (int64_t spins = 1; __atomic_load_n(&lucid_c2c_flag, __ATOMIC_ACQUIRE) != 2;
                 ++spins)
                if (spins % 4096 == 0 && lucid_c2c_now() > deadline + seconds)
                    goto out; /* the other thread never ran: give up, counted so far */
            ++trips;
        }
        now = lucid_c2c_now();
    }
out:
    __atomic_store_n(&lucid_c2c_stop, 1, __ATOMIC_RELEASE);
    pthread_join(pong, NULL);
    pthread_setaffinity_np(pthread_self(), sizeof old, &old);
    now = lucid_c2c_now();
    return trips ? (now - start) / (double)trips * 1e9 : (now - start) * 1e9;
}
"""
ROUNDTRIP_CDEF = "double lucid_core_roundtrip_ns(int a, int b, double seconds);"


class RoundTrip:
    """Measures the round trip on demand; `ns()` is None when it is not measured (one thread
    asked for, one core available, or the probe could not be built)."""

    def __init__(self, lib: object | None, cpus: tuple[int, int] = (0, 1)) -> None:
        self._lib = lib
        self._cpus = cpus

    @classmethod
    def for_threads(cls, threads: int, workdir: Path | None = None) -> RoundTrip:
        """A probe when the run uses 2 or more threads on 2 or more cores, else one that
        answers None (a 1-thread row hands nothing between cores)."""
        try:
            cores = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # no affinity on this OS: no pinned probe either
            return cls(None)
        if threads < 2 or len(cores) < 2:
            return cls(None)
        import bench_gemm

        workdir = workdir or Path(tempfile.gettempdir()) / "lucid-bench-gemm"
        try:
            built = bench_gemm.H.build([], workdir, extra_c=ROUNDTRIP_C, extra_cdef=ROUNDTRIP_CDEF)
        except Exception:  # noqa: BLE001  a benchmark without the probe is still a benchmark
            return cls(None)
        return cls(built.lib, (cores[0], cores[1]))

    def ns(self, seconds: float = 0.01, windows: int = 3, settle: float = 0.03) -> float | None:
        """The round trip (ns) between the first two CPUs this process may use: the fastest
        of `windows` windows of `seconds` each, after `settle` seconds of sleep (~60 ms in
        all). Threads of the system just timed that still spin (ONNX Runtime's, OpenBLAS')
        can only slow the probe down, so the sleep and the minimum keep them out of it."""
        if self._lib is None:
            return None
        time.sleep(settle)
        a, b = self._cpus
        found = [self._lib.lucid_core_roundtrip_ns(a, b, seconds) for _ in range(windows)]
        found = [f for f in found if f > 0]
        return round(min(found), 1) if found else None
