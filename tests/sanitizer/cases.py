"""Entry point of the sanitized child Python: `python -m tests.sanitizer.cases NAME...`.

Runs each named case on 2 threads and prints `sanitized NAME: ok (...)`; any sanitizer finding
aborts the process first, and a wrong result raises. Started by tests/sanitizer/_san.py's
`run_cases` with libasan and libubsan preloaded (how to run it by hand: see that module)."""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable

import lucid
from tests.sanitizer import attention, kernels, models

_CANARY = """
#include <stdlib.h>
int canary_heap(int n)  /* reads one int past a heap block */
{
    int *p = malloc((size_t)n * sizeof *p);
    for (int i = 0; i < n; ++i)
        p[i] = i;
    int v = p[n];
    free(p);
    return v;
}
int canary_overflow(int x) { return x + 1; }  /* signed overflow at INT_MAX */
"""


def _canary(call: str) -> str:
    """Build the canary with the suite's flags and run `call`: a sanitizer must stop it, so
    the test that runs this expects the child to fail (the harness is not blind)."""
    from lucid.runtime.build import BuildOptions, build
    from tests.sanitizer._san import FLAGS, gcc

    cdef = "int canary_heap(int n); int canary_overflow(int x);"
    lib = build(_CANARY, cdef, options=BuildOptions(cc=gcc(), flags=FLAGS)).lib
    value = lib.canary_heap(5) if call == "heap" else lib.canary_overflow(2**31 - 1)
    return f"no report, returned {value}"


CANARIES: dict[str, Callable[[], str]] = {
    "canary_heap": lambda: _canary("heap"),
    "canary_overflow": lambda: _canary("overflow"),
}
CASES: dict[str, Callable[[], str]] = {
    "conv": kernels.conv,
    "pool": kernels.pool,
    "norm": kernels.norm,
    "embedding": attention.embedding,
    "bmm": attention.bmm,
    "softmax": attention.softmax,
    "sdpa": attention.sdpa,
    "mha": attention.mha,
    "encoder": attention.encoder,
    "losses": attention.losses,
    "mobilenet": models.mobilenet,
    "gpt": models.gpt,
    "exports": models.exports,
}


def main(argv: list[str]) -> int:
    """Run the cases named in argv (all of them when none is)."""
    warnings.simplefilter("ignore")
    # The runtimes are loaded in this process now; the compilers it starts need not load them
    # (each gcc, cc1, as and ld would map ASan's shadow memory: a third of the run's time).
    os.environ.pop("LD_PRELOAD", None)
    lucid.set_num_threads(2)  # kernels split their work: the threaded paths run too
    for name in argv or list(CASES):
        start = time.perf_counter()
        what = {**CASES, **CANARIES}[name]()
        print(f"sanitized {name}: ok ({what}, {time.perf_counter() - start:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
