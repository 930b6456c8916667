"""Exhaustive accuracy of lucid's float exp, tanh and erf: all 2^32 float bit patterns.

Run: python tools/vector_math_ulps.py [--cc cc] [--no-fma]

It takes `lucid_expf`, `lucid_tanhf` and `lucid_erff` from lucid/codegen/templates/helpers.c.j2
as they are (lucid.codegen._scalar_c.float_math_source: the installed lucid's), compiles them
into a small C checker with the flags lucid builds with (lucid.runtime.build.DEFAULT_FLAGS;
`--no-fma` adds `-mno-fma`, the path of a target without the FMA instruction) and runs every
float through each, in vectorized loops as a kernel does. Each result is compared with libm's
double exp/tanh/erf rounded: the error in units of the float ulp at that value (the smallest
subnormal's below 2^-126). A NaN must give a NaN, an overflow must give the float the double
rounds to (inf), tanh and erf must keep x's sign. It prints the worst error, where it occurs and
how many inputs are over 1 ulp; the exit status is 1 if any result is over 2 ulp (the bound
tests/codegen/test_vector_math.py holds on a sample) or a NaN or sign is wrong.
About 1.5 minutes on 2 cores (OpenMP, when the compiler has it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from lucid.codegen._scalar_c import float_math_source
from lucid.runtime.build import DEFAULT_FLAGS

CHECKER = r"""
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

%(functions)s

#define CHUNK (1 << 16)

/* |f - d| in ulps of the float nearest d; 1e9 for a wrong NaN, infinity or sign */
static double ulps(float f, double d, int odd, float x)
{
    if (isnan(d))
        return isnan(f) ? 0.0 : 1e9;
    if (odd && signbit(f) != signbit(x))
        return 1e9;
    const float fd = (float)d;
    if (isinf(fd))
        return f == fd ? 0.0 : 1e9;
    int e;
    frexpf(fd, &e);
    return fabs((double)f - d) / ldexp(1.0, e - 24 < -149 ? -149 : e - 24);
}

static void check(const char *name, double (*ref)(double), int odd,
                  void (*batch)(const float *, float *))
{
    double worst = 0;
    uint32_t worst_bits = 0;
    long over_one = 0;
#pragma omp parallel
    {
        float xs[CHUNK], ys[CHUNK];
        double w = 0;
        uint32_t wb = 0;
        long over = 0;
#pragma omp for schedule(dynamic)
        for (int64_t c = 0; c < (INT64_C(1) << 32) / CHUNK; ++c) {
            for (int i = 0; i < CHUNK; ++i) {
                const uint32_t bits = (uint32_t)(c * CHUNK + i);
                memcpy(&xs[i], &bits, sizeof bits);
            }
            batch(xs, ys);
            for (int i = 0; i < CHUNK; ++i) {
                const double err = ulps(ys[i], ref((double)xs[i]), odd, xs[i]);
                if (err > w) {
                    w = err;
                    memcpy(&wb, &xs[i], sizeof wb);
                }
                over += err > 1.0;
            }
        }
#pragma omp critical
        {
            if (w > worst) {
                worst = w;
                worst_bits = wb;
            }
            over_one += over;
        }
    }
    float at;
    memcpy(&at, &worst_bits, sizeof at);
    printf("%%s: max %%.4f ulp at x = %%.9g (0x%%08x); %%ld inputs over 1 ulp\n", name, worst,
           at, worst_bits, over_one);
    if (worst > 2.0)
        printf("FAIL %%s\n", name);
}

/* the functions in loops that vectorize, as a kernel calls them */
static void exp_batch(const float *restrict x, float *restrict y)
{
    for (int i = 0; i < CHUNK; ++i)
        y[i] = lucid_expf(x[i]);
}
static void tanh_batch(const float *restrict x, float *restrict y)
{
    for (int i = 0; i < CHUNK; ++i)
        y[i] = lucid_tanhf(x[i]);
}
static void erf_batch(const float *restrict x, float *restrict y)
{
    for (int i = 0; i < CHUNK; ++i)
        y[i] = lucid_erff(x[i]);
}

int main(void)
{
    check("exp", exp, 0, exp_batch);
    check("tanh", tanh, 1, tanh_batch);
    check("erf", erf, 1, erf_batch);
    return 0;
}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="cc")
    parser.add_argument("--no-fma", action="store_true", help="build with -mno-fma")
    args = parser.parse_args(argv)
    flags = [*DEFAULT_FLAGS, *(["-mno-fma"] if args.no_fma else [])]
    with tempfile.TemporaryDirectory() as tmp:
        source, exe = Path(tmp) / "ulps.c", Path(tmp) / "ulps"
        source.write_text(CHECKER % {"functions": float_math_source()}, encoding="utf-8")
        for openmp in (["-fopenmp"], []):  # without OpenMP it runs on one core
            build = subprocess.run(
                [args.cc, *flags, *openmp, str(source), "-o", str(exe), "-lm"],
                capture_output=True,
                text=True,
                check=False,
            )
            if build.returncode == 0:
                break
        else:
            print(build.stderr, file=sys.stderr)
            return 1
        print(f"{args.cc} {' '.join(flags + openmp)}", flush=True)
        run = subprocess.run([str(exe)], capture_output=True, text=True, check=False)
    print(run.stdout, end="")
    return 1 if run.returncode != 0 or "FAIL" in run.stdout else 0


if __name__ == "__main__":
    sys.exit(main())
