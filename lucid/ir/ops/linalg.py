"""Matrix products: matmul and linear (one op, so the compiler fuses it as a unit)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops import grad as G
from lucid.ir.ops.base import Array, OpDef, expect_float, expect_same_dtype
from lucid.ir.ops.elementwise import normal
from lucid.ir.types import Attr, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def _matmul_infer(ts: Types, attrs: Attrs) -> Types:
    a, b = ts
    expect_same_dtype("matmul", ts, ("a", "b"))
    expect_float("matmul", a, "a")
    # the eager contract: a [..., m, k] or [k], b [k, n]; no batched b (use linear or reshape)
    if a.rank < 1 or b.rank != 2:
        raise IRTypeError(f"matmul: expected a [..., m, k] (or [k]) and b [k, n], got {a} @ {b}")
    if a.shape[-1] != b.shape[0]:
        raise IRTypeError(
            f"matmul: expected b of shape [{a.shape[-1]}, n] matching a's last dim "
            f"{a.shape[-1]}, got {b}"
        )
    return (TensorType(a.dtype, (*a.shape[:-1], b.shape[1])),)


def _matmul_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    lhs, rhs = xs
    ga = b.matmul(g, b.transpose(rhs, perm=(1, 0))) if needs[0] else None
    gb = None
    if needs[1]:
        # rows(a)^T @ rows(g): one GEMM over every leading axis, transpose folded into packing
        if len(b.shape(lhs)) == 1:
            gb = b.matmul(G.reshape_to(b, lhs, (b.shape(lhs)[0], 1)), G.rows(b, g))
        else:
            gb = G.rows_t_matmul(b, lhs, g)
    return ga, gb


MATMUL = OpDef(
    "matmul",
    2,
    _matmul_infer,
    np.matmul,
    _matmul_vjp,
    lowering="matmul",
    inputs=("a", "b"),
    sample=normal((2, 3, 4), (4, 5)),
    doc="a [..., m, k] @ b [k, n] -> [..., m, n] (a [k] gives [n])",
)


def _linear_infer(ts: Types, attrs: Attrs) -> Types:
    x, w = ts[0], ts[1]
    expect_same_dtype("linear", ts, ("x", "w", "b")[: len(ts)])
    expect_float("linear", x, "x")
    if x.rank < 1:
        raise IRTypeError(f"linear: expected x of shape [..., in], got the scalar {x}")
    if w.rank != 2 or w.shape[1] != x.shape[-1]:
        raise IRTypeError(
            f"linear: expected w of shape [out, {x.shape[-1]}] matching x's last dim "
            f"{x.shape[-1]}, got {w}"
        )
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise IRTypeError(
            f"linear: expected b of shape [{w.shape[0]}] matching w's out dim, got {ts[2]}"
        )
    return (TensorType(x.dtype, (*x.shape[:-1], w.shape[0])),)


def _linear(x: Array, w: Array, bias: Array | None = None) -> Array:
    y = x @ w.T
    if bias is not None:
        y += bias  # in place: y is fresh, and this spares a [..., out] temporary per layer
    return y


def _linear_vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    # dw = g2^T @ x2 stays a matmul of a transpose so GEMM packing can fold the transpose;
    # db sums g over every leading axis (the bias-grad column sum fusion folds into the GEMM).
    x, w = xs[0], xs[1]
    gw = G.rows_t_matmul(b, g, x) if needs[1] else None
    gbias = None
    if len(xs) == 3 and needs[2]:
        lead = tuple(range(len(b.shape(g)) - 1))
        gbias = b.sum(g, axes=lead) if lead else g
    gx = b.matmul(g, w) if needs[0] else None
    return (gx, gw, gbias)[: len(xs)]


LINEAR = OpDef(
    "linear",
    (2, 3),
    _linear_infer,
    _linear,
    _linear_vjp,
    lowering="linear",
    inputs=("x", "w", "b"),
    sample=normal((2, 3, 4), (5, 4), (5,)),
    doc="x [..., in] @ w[out, in].T (+ b [out]) -> [..., out]",
)

OPS = (MATMUL, LINEAR)
