"""The generated C of `lucid.compile` (its persistent thread pool, threads="pool") run from a C
harness under a sanitizer: no Python in the process, so ThreadSanitizer works too (a Python
with libtsan preloaded does not start here).

The harness fills the inputs and parameters with fixed pseudo-random values, runs the program
once on one thread, then from three threads at once with two pool threads each, and checks
every output is bit-identical to the one-thread run (lucid's threaded kernels compute each
element exactly as one thread does). `threads_min_work=1` makes every kernel that can split
its work do so, so the pool is exercised by GEMMs, convolutions, batched products, softmax,
normalization statistics and the elementwise loops alike.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lucid.codegen.emit_c import CodegenOptions, emit_c
from lucid.ir.types import concrete_shape
from lucid.runtime.aot import _optimised_graph

_C_TYPES = {"f32": "float", "f64": "double"}

_MAIN = r"""
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int PREFIX_run(const void *const *inputs, void *const *outputs, int64_t batch, int nthreads);

static const size_t in_bytes[] = { IN_BYTES 0 };
static const int in_double[] = { IN_DOUBLE 0 };
static const size_t out_bytes[] = { OUT_BYTES 0 };
enum { N_IN = N_INPUTS, N_OUT = N_OUTPUTS, BATCH = BATCH_SIZE, CALLERS = 3, ROUNDS = 2 };

static void *in_buf[N_IN + 1];
static void *want[N_OUT + 1];

static void fill(void *p, size_t bytes, int dbl, unsigned seed) {
    uint32_t s = seed * 2654435761u + 1u;
    size_t n = bytes / (dbl ? sizeof(double) : sizeof(float));
    for (size_t i = 0; i < n; ++i) {
        s = s * 1664525u + 1013904223u;
        double v = ((double)(s >> 8) / (double)(1u << 24)) * 2.0 - 1.0;
        if (dbl) ((double *)p)[i] = v; else ((float *)p)[i] = (float)v;
    }
}

static int run_into(void **outs, int nthreads) {
    for (int j = 0; j < N_OUT; ++j) outs[j] = calloc(1, out_bytes[j] + 1);
    return PREFIX_run((const void *const *)in_buf, outs, BATCH, nthreads);
}

static void *caller(void *arg) {
    long bad = 0;
    for (int r = 0; r < ROUNDS; ++r) {
        void *outs[N_OUT + 1];
        int rc = run_into(outs, 2);
        if (rc != 0) { fprintf(stderr, "run returned %d\n", rc); bad = 1; }
        for (int j = 0; j < N_OUT; ++j) {
            if (memcmp(outs[j], want[j], out_bytes[j]) != 0) {
                fprintf(stderr, "output %d differs from the one-thread run\n", j);
                bad = 1;
            }
            free(outs[j]);
        }
    }
    (void)arg;
    return (void *)bad;
}

int main(void) {
    for (int i = 0; i < N_IN; ++i) {
        in_buf[i] = malloc(in_bytes[i] + 1);
        fill(in_buf[i], in_bytes[i], in_double[i], (unsigned)i + 1u);
    }
    if (run_into(want, 1) != 0) { fprintf(stderr, "one-thread run failed\n"); return 1; }
    pthread_t t[CALLERS];
    for (int c = 0; c < CALLERS; ++c) pthread_create(&t[c], NULL, caller, NULL);
    long bad = 0;
    for (int c = 0; c < CALLERS; ++c) {
        void *r;
        pthread_join(t[c], &r);
        bad |= (long)r;
    }
    int tasks = 0; /* threads alive now: the caller threads are gone, the pool's stay */
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        tasks += e->d_name[0] != '.';
    if (d != NULL) closedir(d);
    printf("threads alive: %d\n", tasks);
    printf(bad ? "pool harness: MISMATCH\n" : "pool harness: ok\n");
    return bad ? 1 : 0;
}
"""


def _bytes(shape: Sequence[int], dtype: str) -> int:
    item = {"f32": 4, "f64": 8}[dtype]
    return int(np.prod(shape, dtype=np.int64)) * item


def build_harness(
    model: Any, example: np.ndarray, flags: Sequence[str], work: Path, cc: str
) -> Path:
    """Compile `model`'s forward (as lucid.compile generates it: pool threads) with a C main
    into `work`/harness, with `flags` (the sanitizer's); returns the executable."""
    graph = _optimised_graph(model, [example], False, None)
    program = emit_c(graph, CodegenOptions(prefix="pooltest", threads_min_work=1))
    batch = example.shape[0]
    ins = [*program.input_types, *program.param_types]
    for t in (*ins, *program.output_types):
        if str(t.dtype) not in _C_TYPES:
            raise ValueError(f"the pool harness fills float tensors only, not {t}")
    bindings = {program.batch_symbol: batch} if program.batch_symbol else None
    shapes_in = [concrete_shape(t.shape, bindings) for t in ins]
    shapes_out = [concrete_shape(t.shape, bindings) for t in program.output_types]
    main = (
        _MAIN.replace("PREFIX", program.prefix)
        .replace(
            "IN_BYTES", "".join(f"{_bytes(s, str(t.dtype))}, " for s, t in zip(shapes_in, ins))
        )
        .replace("IN_DOUBLE", "".join(f"{int(str(t.dtype) == 'f64')}, " for t in ins))
        .replace(
            "OUT_BYTES",
            "".join(
                f"{_bytes(s, str(t.dtype))}, " for s, t in zip(shapes_out, program.output_types)
            ),
        )
        .replace("N_INPUTS", str(len(ins)))
        .replace("N_OUTPUTS", str(len(program.output_types)))
        .replace("BATCH_SIZE", str(batch))
    )
    work.mkdir(parents=True, exist_ok=True)
    sources = [work / "program.c", work / "main.c"]
    sources[0].write_text(program.source)
    sources[1].write_text(main)
    if program.shared_source is not None:
        sources.append(work / "shared.c")
        sources[2].write_text(program.shared_source)
    exe = work / "harness"
    subprocess.run(
        [cc, *flags, *map(str, sources), "-o", str(exe), "-lm", "-lpthread"],
        check=True,
        capture_output=True,
        text=True,
    )
    return exe
