"""The lowering of `moments`: two passes over each group of elements, summed in double.

x is viewed as [A, K, B] (lucid/ir/ops/norm.py: the kept axes are one contiguous block K, the
reduced axes are those before it, A, and after it, B). For each k the group is A runs of B
contiguous elements: a LayerNorm row (A = 1), a BatchNorm channel (A = N, B = H * W), a
GroupNorm group. Pass one sums the group for the mean, pass two the squared deviations from
it, while the group is still in cache. Runs are summed in chunks: a vector register's worth of
lanes in the dtype, each lane its own accumulator (so the compiler vectorises with no
-ffast-math: the order is fixed, written out in the template), added into double after every
chunk, which keeps float32 sums within a few ulps of the exact ones; what is left of a run after
its whole chunks (all of a LayerNorm row of 128) is summed the same way in whole lane groups,
then the last elements one by one. The K means go to y0[0:K],
the K variances to y0[K:2K] (the result is [2, *keepdims shape]).
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.codegen import gemm
from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, prod_c
from lucid.ir.ops.norm import kept_block
from lucid.ir.ops.reduce import ints


@dataclass(frozen=True)
class Moments:
    """Everything moments.c.j2 lays out: the element type and the [A, K, B] view as C."""

    name: str  # the kernel's name, prefixing its part function and job
    T: str
    A: str
    K: str
    B: str
    lanes: int  # accumulators in the dtype: 128 bytes, four AVX registers (latency hidden)
    chunk: int  # elements summed in the dtype before the lanes go into double
    min_work: int  # elements that pay for one more thread


def lower_moments(ctx: LowerCtx) -> Kernel:
    """y0[k] = the mean of x0[a, k, b] over (a, b), y0[K + k] the mean of squared deviations."""
    x = ctx.inputs[0].type
    block = kept_block(x.rank, ints(ctx.node.attrs, "axes"))
    assert block is not None  # the type rule refuses other axes
    lo, hi = block
    if lo == hi:  # nothing kept: one group of every element
        lo = hi = x.rank
    v = Moments(
        name=ctx.name,
        T=x.dtype.c,
        A=prod_c(x.shape[:lo]),
        K=prod_c(x.shape[lo:hi]),
        B=prod_c(x.shape[hi:]),
        lanes=128 // x.dtype.np.itemsize,
        chunk=256,
        min_work=ctx.threads_min_work if ctx.threads_min_work > 0 else 1 << 15,
    )
    return ctx.kernel(
        render("moments.c.j2", v=v),
        support=render("moments_part.c.j2", v=v),
        shared=(gemm.parallel_block(),),
        threads=True,
    )
