"""embedding: rows of a weight table picked by integer indices (+ embedding_grad).

embedding(indices, weight){padding_idx} = weight[indices]: indices i64 of any shape, weight
[V, D], result [..., D]. An index outside [0, V) is an error, never a wrap-around or a read past
the table: the kernel raises IndexError, the C returns LUCID_E_EMBED_INDEX. `padding_idx` (-1:
none, else normalised to [0, V)) only matters to the gradient: its row receives none, as in
PyTorch. The gradient is dense, embedding_grad(indices, g){num_embeddings, padding_idx} [V, D],
accumulated with np.add.at semantics (a repeated index sums its rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lucid.errors import IRTypeError
from lucid.ir.ops.base import INT, REQUIRED, Array, OpDef, expect_float
from lucid.ir.types import Attr, DType, TensorType

Types = tuple[TensorType, ...]
Attrs = Mapping[str, Attr]


def check_indices(indices: Array, num_embeddings: int) -> None:
    """IndexError naming the op, the bad index and the table size, if any index is outside
    [0, num_embeddings)."""
    if indices.size == 0:
        return
    lo, hi = int(indices.min()), int(indices.max())
    if lo < 0 or hi >= num_embeddings:
        bad = lo if lo < 0 else hi
        raise IndexError(
            f"embedding: index {bad} is out of range for a table of {num_embeddings} rows "
            f"(indices of shape {tuple(indices.shape)} must lie in [0, {num_embeddings}))"
        )


def _check_padding(op: str, padding_idx: Attr, rows: object) -> None:
    if not isinstance(padding_idx, int) or padding_idx < -1:
        raise IRTypeError(f"{op}: padding_idx must be -1 (none) or a row index, got {padding_idx}")
    if isinstance(rows, int) and padding_idx >= rows:
        raise IRTypeError(f"{op}: padding_idx {padding_idx} is not a row of a {rows}-row table")


def _infer(ts: Types, attrs: Attrs) -> Types:
    idx, w = ts
    if idx.dtype is not DType.I64:
        raise IRTypeError(f"embedding: expected i64 indices, got {idx}")
    expect_float("embedding", w, "weight")
    if w.rank != 2:
        raise IRTypeError(f"embedding: expected weight of shape [num_embeddings, dim], got {w}")
    _check_padding("embedding", attrs["padding_idx"], w.shape[0])
    return (TensorType(w.dtype, (*idx.shape, w.shape[1])),)


def _embedding(indices: Array, weight: Array, *, padding_idx: int = -1) -> Array:
    check_indices(indices, weight.shape[0])
    return weight[indices]


def _vjp(b: Any, attrs: Attrs, xs: Any, ys: Any, needs: Any, g: Any) -> tuple[Any, ...]:
    idx, w = xs
    gw = None
    if needs[1]:
        rows = b.shape(w)[0]
        gw = b.embedding_grad(idx, g, num_embeddings=rows, padding_idx=attrs["padding_idx"])
    return None, gw


def _sample(rng: np.random.Generator) -> tuple[tuple[Array, ...], dict[str, object]]:
    # repeated indices (their rows' gradients add up); no padding_idx: its zeroed gradient is
    # PyTorch's convention, not the derivative central differences measure (tested apart)
    idx = np.array([[0, 2, 2], [4, 1, 2]], dtype=np.int64)
    return (idx, rng.standard_normal((5, 3))), {}


EMBEDDING = OpDef(
    "embedding",
    2,
    _infer,
    _embedding,
    _vjp,
    attrs={"padding_idx": (INT, -1)},
    lowering="embedding",
    inputs=("indices", "weight"),
    sample=_sample,
    doc="weight[indices]: i64 [...] indices into weight [V, D] -> [..., D]",
)


def _grad_infer(ts: Types, attrs: Attrs) -> Types:
    idx, g = ts
    rows = attrs["num_embeddings"]
    if idx.dtype is not DType.I64:
        raise IRTypeError(f"embedding_grad: expected i64 indices, got {idx}")
    expect_float("embedding_grad", g, "g")
    if g.rank != idx.rank + 1 or g.shape[:-1] != idx.shape:
        raise IRTypeError(
            f"embedding_grad: expected g of shape [*indices.shape, dim] for indices {idx}, got {g}"
        )
    if not isinstance(rows, int) or rows < 0:
        raise IRTypeError(f"embedding_grad: num_embeddings must be >= 0, got {rows}")
    _check_padding("embedding_grad", attrs["padding_idx"], rows)
    return (TensorType(g.dtype, (rows, g.shape[-1])),)


def _embedding_grad(indices: Array, g: Array, *, num_embeddings: int, padding_idx: int) -> Array:
    check_indices(indices, num_embeddings)
    out = np.zeros((num_embeddings, g.shape[-1]), dtype=g.dtype)
    np.add.at(out, indices.reshape(-1), g.reshape(-1, g.shape[-1]))
    if padding_idx >= 0:
        out[padding_idx] = 0
    return out


EMBEDDING_GRAD = OpDef(
    "embedding_grad",
    2,
    _grad_infer,
    _embedding_grad,
    None,
    attrs={"num_embeddings": (INT, REQUIRED), "padding_idx": (INT, -1)},
    lowering="embedding_grad",
    inputs=("indices", "g"),
    sample=lambda rng: (
        (np.array([3, 0, 3, 1], dtype=np.int64), rng.standard_normal((4, 2))),
        {"num_embeddings": 4, "padding_idx": 0},
    ),
    doc="the dense weight gradient of embedding: g's rows added at their indices",
)

OPS = (EMBEDDING, EMBEDDING_GRAD)
