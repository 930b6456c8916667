"""The lowering of `dropout`: one flat loop that hashes each element's index with the seed.

Not an elementwise op for the fusion passes: its decision needs the element's flat index in the
whole tensor, which GEMM epilogues (run per tile) and broadcasting fused loops do not carry,
and it reads a scalar seed of another dtype. Dropout is memory-bound, so its own pass over the
tensor costs little; the ops around it still fuse among themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from lucid.codegen._jinja import render
from lucid.codegen._lower import Kernel, LowerCtx, prod_c
from lucid.codegen._scalar_c import c_literal
from lucid.ir.ops import dropout as D
from lucid.ir.ops.base import number


@dataclass(frozen=True)
class Dropout:
    """Everything dropout.c.j2 lays out (numbers as C text)."""

    T: str
    count: str
    p: str
    drop_all: bool
    threshold: str
    scale: str
    gamma: str
    mix1: str
    mix2: str


def lower_dropout(ctx: LowerCtx) -> Kernel:
    """y0[i] = keep(x1[0], i) ? x0[i] * scale : 0 over the flat index i."""
    x = ctx.inputs[0].type
    p = number(ctx.node.attrs, "p")
    drop_all = p == 1.0
    d = Dropout(
        T=x.dtype.c,
        count=prod_c(x.shape),
        p=repr(p),
        drop_all=drop_all,
        threshold="0" if drop_all else str(D.threshold(p)),
        scale="0" if drop_all else c_literal(D.scale(p), x.dtype),
        gamma=hex(D.GAMMA),
        mix1=hex(D.MIX1),
        mix2=hex(D.MIX2),
    )
    return ctx.kernel(render("dropout.c.j2", d=d))
