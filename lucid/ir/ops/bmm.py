"""Batched matrix products: batch_matmul (attention's q @ k^T and p @ v) and matmul_at.

batch_matmul(a, b){trans_a, trans_b} = op(a) @ op(b) over the last two dims, the leading
(batch) dims broadcast as NumPy's matmul does; op(x) swaps x's last two dims when its flag is
set, so q @ k^T needs no transpose node (the GEMM packing reads k transposed). The C runs one
GEMM per batch entry. Its VJP is four batch_matmuls with the flags flipped, summed back over
broadcast batch dims.

matmul_at(a, b) = rows(a)^T @ rows(b): a [..., k] and b [..., n] with the same leading dims
give [k, n], the sum over every leading position of the outer product a[i] b[i]^T. It is the
weight gradient of matmul and linear over a 3-D input, as ONE GEMM whose inner dimension is
the product of the leading dims, so it needs no reshape: under a dynamic batch [N, 4, k]
cannot be flattened to a [4N, k] type (a dim is an int or one symbol), but the GEMM's K can be
4 * batch at run time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import BOOL, Array, OpDef, broadcast_types, expect_float, expect_same_dtype
from lucid.ir.types import Attr, Dim, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _mat(t: TensorType, trans: bool) -> tuple[Dim, Dim]:
    """(rows, cols) of op(t) for a tensor t of rank >= 2."""
    r, c = t.shape[-2], t.shape[-1]
    return (c, r) if trans else (r, c)


def _bmm_infer(ts: Types, attrs: Attrs) -> Types:
    a, b = ts
    expect_same_dtype("batch_matmul", ts, ("a", "b"))
    expect_float("batch_matmul", a, "a")
    if a.rank < 2 or b.rank < 2:
        raise IRTypeError(f"batch_matmul: expected a and b of rank >= 2, got {a} @ {b}")
    (m, ka), (kb, n) = _mat(a, bool(attrs["trans_a"])), _mat(b, bool(attrs["trans_b"]))
    if ka != kb:
        raise IRTypeError(
            f"batch_matmul: inner dims differ: op(a) is [{m}, {ka}] and op(b) is [{kb}, {n}] "
            f"(a {a}, b {b}, trans_a={attrs['trans_a']}, trans_b={attrs['trans_b']})"
        )
    lead = broadcast_types(
        "batch_matmul", (TensorType(a.dtype, a.shape[:-2]), TensorType(b.dtype, b.shape[:-2]))
    )
    return (TensorType(a.dtype, (*lead, m, n)),)


def _swap(x: Array, trans: bool) -> Array:
    return np.swapaxes(x, -1, -2) if trans else x


def _batch_matmul(a: Array, b: Array, *, trans_a: bool = False, trans_b: bool = False) -> Array:
    return np.matmul(_swap(a, trans_a), _swap(b, trans_b))


def _bmm_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # y = op(A) @ op(B):  d op(A) = g @ op(B)^T,  d op(B) = op(A)^T @ g;  a transposed operand
    # takes the transpose of its cotangent, which is again one batch_matmul with swapped flags
    lhs, rhs = xs
    ta, tb = bool(attrs["trans_a"]), bool(attrs["trans_b"])
    bmm = b.batch_matmul
    ga = gb = None
    if needs[0]:
        if ta:
            ga = bmm(rhs, g, trans_a=tb, trans_b=True)
        else:
            ga = bmm(g, rhs, trans_a=False, trans_b=not tb)
        ga = G.sum_to(b, ga, b.shape(lhs))
    if needs[1]:
        if tb:
            gb = bmm(g, lhs, trans_a=True, trans_b=ta)
        else:
            gb = bmm(lhs, g, trans_a=not ta, trans_b=False)
        gb = G.sum_to(b, gb, b.shape(rhs))
    return ga, gb


def _bmm_sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # a broadcast batch dim on each side and b read transposed: the attention pattern q @ k^T
    return (rng.standard_normal((2, 1, 3, 4)), rng.standard_normal((1, 3, 5, 4))), {"trans_b": True}


BATCH_MATMUL = OpDef(
    "batch_matmul",
    2,
    _bmm_infer,
    _batch_matmul,
    _bmm_vjp,
    attrs={"trans_a": (BOOL, False), "trans_b": (BOOL, False)},
    lowering="batch_matmul",
    inputs=("a", "b"),
    sample=_bmm_sample,
    doc="op(a) [..., m, k] @ op(b) [..., k, n] -> [..., m, n], batch dims broadcast",
)


def _at_infer(ts: Types, attrs: Attrs) -> Types:
    a, b = ts
    expect_same_dtype("matmul_at", ts, ("a", "b"))
    expect_float("matmul_at", a, "a")
    if a.rank < 1 or b.rank != a.rank or a.shape[:-1] != b.shape[:-1]:
        raise IRTypeError(
            f"matmul_at: expected a [..., k] and b [..., n] with the same leading dims, "
            f"got {a} and {b}"
        )
    return (TensorType(a.dtype, (a.shape[-1], b.shape[-1])),)


def _matmul_at(a: Array, b: Array) -> Array:
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _at_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # y[k, n] = sum_i a[i, k] b[i, n]:  da[i] = g @ b[i],  db[i] = g^T @ a[i]
    lhs, rhs = xs
    ga = b.matmul(rhs, b.transpose(g, perm=(1, 0))) if needs[0] else None
    gb = b.matmul(lhs, g) if needs[1] else None
    return ga, gb


MATMUL_AT = OpDef(
    "matmul_at",
    2,
    _at_infer,
    _matmul_at,
    _at_vjp,
    lowering="matmul_at",
    inputs=("a", "b"),
    sample=lambda rng: ((rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 5))), {}),
    doc="a [..., k], b [..., n] -> rows(a)^T @ rows(b) [k, n] (one GEMM, K = leading size)",
)

OPS = (BATCH_MATMUL, MATMUL_AT)
