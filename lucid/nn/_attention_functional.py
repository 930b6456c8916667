"""The functional forms of embedding and attention (re-exported by lucid.nn.functional).

embedding is one op of the table; scaled_dot_product_attention is composed of table ops:
`batch_matmul(q, k){trans_b}` (k is read transposed by the GEMM packing, no transpose node),
a scale, the mask (`where` for a bool mask, `add` for a float one), `softmax` along the last
dim, optional `dropout`, and `batch_matmul(p, v)`. So it traces, differentiates and compiles
like any other chain of ops, under a dynamic batch too.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucid import _hooks
from lucid import random as _random
from lucid.functional import where as select
from lucid.ir.ops import OPS
from lucid.tensor import Tensor, apply

_BATCH_MATMUL = OPS["batch_matmul"]
_EMBEDDING = OPS["embedding"]
_CAST = OPS["cast"]
_DROPOUT = OPS["dropout"]


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None) -> Tensor:
    """weight[input] for integer indices of any shape into weight [num_embeddings, dim]; an
    index outside [0, num_embeddings) raises IndexError. The gradient into weight is dense
    (repeated indices add up), and the `padding_idx` row receives none."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        what = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: expected an integer index Tensor (int64 or int32), got {what}")
    if weight.ndim != 2 or weight.dtype.kind != "f":
        raise ValueError(
            f"embedding: expected a float weight of shape [num_embeddings, embedding_dim], got "
            f"{weight.dtype} {weight.shape}"
        )
    if input.dtype != np.int64:
        input = apply(_CAST, (input,), {"dtype": np.dtype(np.int64)})
    pad = normalize_padding_idx("embedding", padding_idx, weight.shape[0])
    return apply(_EMBEDDING, (input, weight), {"padding_idx": pad})


def normalize_padding_idx(where: str, padding_idx: int | None, rows: int) -> int:
    """padding_idx as a row index (a negative one counts from the end), -1 for None."""
    if padding_idx is None:
        return -1
    if not -rows <= padding_idx < rows:
        raise ValueError(
            f"{where}: padding_idx {padding_idx} must lie within [{-rows}, {rows - 1}] for "
            f"{rows} embeddings"
        )
    return int(padding_idx) % rows


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(q @ k^T * scale + mask) @ v, as torch's: q [..., L, E], k [..., S, E], v [..., S,
    Ev] -> [..., L, Ev]; scale defaults to 1/sqrt(E); a bool attn_mask says which positions
    take part (True), a float one is added to the scores; is_causal keeps key j <= query i.
    Dropout (dropout_p > 0) applies to the attention weights whenever it is asked for, as in
    torch (pass dropout_p=0.0 outside training)."""
    masks = () if attn_mask is None else (("attn_mask", attn_mask, True),)
    where = "scaled_dot_product_attention"
    out, _ = attention(where, query, key, value, masks, dropout_p, is_causal, scale)
    return out


def attention(
    where: str,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    masks: Sequence[tuple[str, Any, bool]],
    dropout_p: float,
    is_causal: bool,
    scale: float | None,
) -> tuple[Tensor, Tensor]:
    """(output, attention weights) of SDPA. `masks` are (name, mask, keep) applied in order: a
    float mask is added to the scores; a bool one puts -inf where it is False if `keep` (SDPA's
    convention: True takes part), where it is True otherwise (MultiheadAttention's)."""
    _check_qkv(where, query, key, value)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{where}: dropout_p must lie in [0, 1], got {dropout_p}")
    if is_causal and masks:
        raise ValueError(f"{where}: pass either attn_mask or is_causal=True, not both")
    e = query.shape[-1]
    s = (1.0 / math.sqrt(operator.index(e))) if scale is None else float(scale)
    # the scale multiplies q ([..., L, E]), not the scores ([..., L, S]): a pass over the
    # smaller tensor, as torch's reference math does
    scores = apply(_BATCH_MATMUL, (query * s, key), {"trans_a": False, "trans_b": True})
    if is_causal:  # a constant mask: a symbolic length specializes the trace, as tril does
        rows, cols = (operator.index(d) for d in scores.shape[-2:])
        masks = (("causal mask", _causal_mask(rows, cols), True),)
    for name, mask, keep in masks:
        scores = _apply_mask(where, name, scores, mask, keep)
    weights = scores.softmax(-1)
    if dropout_p > 0.0:  # F.dropout's op; this module sits below functional, which re-exports it
        weights = apply(_DROPOUT, (weights, _seed()), {"p": float(dropout_p)})
    out = apply(_BATCH_MATMUL, (weights, value), {"trans_a": False, "trans_b": False})
    return out, weights


def _seed() -> Tensor:
    """One dropout call's seed, as F.dropout draws it: from lucid.random when eager, else the
    graph input the tracer binds (never a constant of the graph)."""
    seed = _hooks.rng_seed()
    if seed is None:
        seed = Tensor(np.array(_random.draw_seed(), dtype=np.int64))
    return seed


@functools.lru_cache(maxsize=16)
def _causal_mask(rows: int, cols: int) -> Tensor:
    """The [rows, cols] causal mask (True on and below the diagonal), one read-only Tensor per
    size shared by every layer and call: a trace then records one constant for it, where each
    layer's own 64 x 64 mask was a constant node of 4096 elements to build, check and print
    (4 layers: a third of the small GPT's trace time)."""
    mask = Tensor(np.tril(np.ones((rows, cols), dtype=bool)))
    mask.data.flags.writeable = False
    return mask


def _apply_mask(where: str, name: str, scores: Tensor, mask: Any, keep: bool) -> Tensor:
    """scores with the mask applied: bool -> -inf where the position is masked out (not
    `keep`), float -> added. The mask must broadcast to the scores' shape."""
    if not isinstance(mask, Tensor):
        mask = Tensor(np.asarray(mask))
    try:
        fits = np.broadcast_shapes(mask.data.shape, scores.data.shape) == scores.data.shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{where}: {name} of shape {mask.shape} does not broadcast to the attention "
            f"scores of shape {scores.shape} ([..., L, S])"
        )
    if mask.dtype == np.bool_:
        if keep:  # True: takes part
            return select(mask, scores, float("-inf"))
        return scores.masked_fill(mask, float("-inf"))
    if mask.dtype != scores.dtype:
        raise TypeError(
            f"{where}: a float {name} must have the dtype of the query ({scores.dtype}), got "
            f"{mask.dtype}"
        )
    return scores + mask


def _check_qkv(where: str, q: Tensor, k: Tensor, v: Tensor) -> None:
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, Tensor) or t.ndim < 2 or t.dtype.kind != "f":
            raise ValueError(
                f"{where}: expected {name} a float Tensor of rank >= 2 ([..., L, E]), got "
                f"{getattr(t, 'shape', type(t).__name__)}"
            )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"{where}: query {q.shape} and key {k.shape} must share their last dim (E)"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"{where}: key {k.shape} and value {v.shape} must have the same length S (dim -2)"
        )
    try:
        np.broadcast_shapes(q.data.shape[:-2], k.data.shape[:-2], v.data.shape[:-2])
    except ValueError:
        raise ValueError(
            f"{where}: the batch dims of query {q.shape}, key {k.shape} and value {v.shape} "
            "do not broadcast"
        ) from None
    if not q.dtype == k.dtype == v.dtype:
        dtypes = f"{q.dtype}, {k.dtype}, {v.dtype}"
        raise TypeError(f"{where}: query, key and value dtypes differ: {dtypes}")
