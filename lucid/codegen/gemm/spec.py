"""What a GEMM kernel computes: `GemmSpec` and its `Epilogue` of C statements on each element."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lucid.codegen.gemm.blocking import Blocking, DTypeName, Isa, choose_blocking
from lucid.codegen.gemm.shared import ThreadsMode

Broadcast = Literal["scalar", "row", "col", "full"]


@dataclass(frozen=True)
class EpilogueStep:
    """One C statement block on the scalar `v` (element (i, j)); `x` is the operand's element."""

    code: str  # e.g. "v = v + x;" -- must assign v, may read v and x (when operand is set)
    operand: str | None = None  # C identifier of the extra input (becomes parameter e_<operand>)
    broadcast: Broadcast = "col"
    # a store instead: `code` is a C expression (a local of the steps before) written to
    # element (i, j) of the extra output `operand` (a whole [M, N] array, broadcast "full")
    store: bool = False


@dataclass(frozen=True)
class Epilogue:
    """Elementwise steps applied in order to each finished tile, then an optional column sum."""

    steps: tuple[EpilogueStep, ...] = ()
    colsum: bool = False  # also write colsum[j] = sum over i of the final C[i, j]


def bias_add(operand: str) -> EpilogueStep:
    """v + bias[j]: the Linear bias."""
    return EpilogueStep("v = v + x;", operand, "col")


@dataclass(frozen=True)
class GemmSpec:
    """What to generate; `name` and operand names must already be C identifiers."""

    name: str
    dtype: DTypeName
    trans_a: bool
    trans_b: bool
    m: int | None  # None: runtime (the symbolic batch)
    n: int | None
    k: int | None
    epilogue: Epilogue | None = None
    isa: Isa = "scalar"
    blocking: Blocking | None = None  # None: choose_blocking(dtype, isa) with default caches
    ir_comment: str = ""  # the IR line(s) this kernel implements, copied into the C comment
    threads: ThreadsMode = "pool"  # lucid_parallel_run: persistent pool or per-call threads
    # op(B) may come packed ahead of the call (a weight, packed once while it is unchanged):
    # adds `NAME_pack_b` and a `Bp` parameter when N and K are static and the blocked path exists
    prepack_b: bool = False
    # op(A) likewise (a conv's weight: A of y = w @ col): `NAME_pack_a` and an `Ap` parameter
    # when M and K are static and the blocked path exists
    prepack_a: bool = False

    def resolved_blocking(self) -> Blocking:
        """The blocking actually used."""
        return self.blocking or choose_blocking(self.dtype, self.isa, n=self.n)
