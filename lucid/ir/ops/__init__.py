"""The op table: one OpDef per op, each defined once in the module of its family.

    elementwise.py   arithmetic, math, comparisons, where, clip (+ gradient companions)
    activations.py   hardswish, hardsigmoid, relu, relu6, sigmoid, silu, gelu, leaky_relu, elu,
                     softplus, hardtanh (+ gradient companions)
    softmax.py       softmax, log_softmax (along one dim)
    linalg.py        matmul, linear
    reduce.py        sum, mean, sum_to
    shape.py         reshape, transpose, broadcast, cast, dim
    loss.py          mse_loss, cross_entropy (+ cross_entropy_grad)
    conv.py          conv2d (+ conv2d_grad_input, conv2d_grad_weight, fused_conv)
    bmm.py           batch_matmul, matmul_at (batched products; a GEMM per batch entry)
    embedding.py     embedding (+ embedding_grad)
    dropout.py       dropout (a counter-based random mask: seed and index in, no state)
    checks.py        index_check (run-time checks that stop a call on bad values)
    norm.py          moments (mean and variance at once: BatchNorm, LayerNorm, GroupNorm)
    pool.py          max_pool2d, avg_pool2d, adaptive_avg_pool2d over NCHW (+ gradients)
    pad.py           pad (constant, reflect, replicate, circular) and pad_grad
    graph.py         constant and the fused region ops

`OPS` is read-only and complete once this package is imported: the families only define
OpDefs, and this module gathers them. `EAGER` is the VJP builder eager backward runs the rules
with (see grad.py). How to add an op: docs/DESIGN.md, "Adding an op".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from lucid.ir.ops import (
    activations,
    bmm,
    checks,
    conv,
    dropout,
    elementwise,
    embedding,
    graph,
    linalg,
    loss,
    norm,
    pad,
    pool,
    reduce,
    shape,
    softmax,
)
from lucid.ir.ops.base import (
    BOOL,
    DIMS,
    DTYPE,
    FLOAT,
    INT,
    INTS,
    NOT_DIFFERENTIABLE,
    NUMBERS,
    REQUIRED,
    STR,
    Array,
    AttrKind,
    OpDef,
)
from lucid.ir.ops.grad import EagerGrad, GradBuilder, bind_eager


def _table(defs: Iterable[OpDef]) -> Mapping[str, OpDef]:
    table: dict[str, OpDef] = {}
    for op in defs:
        if op.name in table:
            raise ValueError(f"op {op.name!r} is defined twice")
        table[op.name] = op
    return MappingProxyType(table)


OPS: Mapping[str, OpDef] = _table(
    (
        *elementwise.OPS,
        *activations.OPS,
        *softmax.OPS,
        *linalg.OPS,
        *reduce.OPS,
        *shape.OPS,
        *loss.OPS,
        *dropout.OPS,
        *checks.OPS,
        *norm.OPS,
        *conv.OPS,
        *pool.OPS,
        *pad.OPS,
        *bmm.OPS,
        *embedding.OPS,
        *graph.OPS,
    )
)
EAGER = EagerGrad({name: op.numpy for name, op in OPS.items()})
bind_eager(EAGER)  # composite ops' kernels run their expansion with it

__all__ = [
    "BOOL",
    "DIMS",
    "DTYPE",
    "EAGER",
    "FLOAT",
    "INT",
    "INTS",
    "NOT_DIFFERENTIABLE",
    "NUMBERS",
    "OPS",
    "REQUIRED",
    "STR",
    "Array",
    "AttrKind",
    "GradBuilder",
    "OpDef",
]
