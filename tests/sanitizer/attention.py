"""Sanitized cases for the sequence layers and the losses (see cases.py): embedding, batched
matmul, softmax/log_softmax, scaled dot-product attention, MultiheadAttention,
TransformerEncoderLayer with dropout, cross-entropy and NLL, and the run-time index checks.

An out-of-range index or target must stop the compiled call with a clean error before any
kernel reads through it: under ASan an out-of-bounds read would abort the child instead."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.errors import LucidError
from tests.sanitizer._check import both_dtypes, check_module, compiled, random

VOCAB, T, D = 11, 6, 8
# the messages of the compiled checks (lucid/codegen/emit_c.py ERROR_LIST)
CHECK = r"an index input is out of range \(a target class of a loss\)"


class Tokens(nn.Module):
    """Token and position embeddings (a padding row) and a head: [N, T] int64 -> [N, T, V]."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D, padding_idx=0, dtype=dtype)
        self.pos = nn.Embedding(T, D, dtype=dtype)
        self.head = nn.Linear(D, VOCAB, dtype=dtype)

    def forward(self, idx: Any) -> Any:
        return self.head(self.tok(idx) + self.pos(lucid.Tensor(np.arange(T))))


def _tokens(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (n, T))


def _refused(fn: Any, good: list[np.ndarray], args: list[np.ndarray], match: str) -> None:
    """Compiled `fn` runs `good`, then raises on `args` an error whose message matches `match`.

    The good call first: a compiled module's first call of a signature traces it, running the
    eager kernels, whose own check would raise before any C ran."""
    fn(*(lucid.Tensor(a) for a in good))
    try:
        fn(*(lucid.Tensor(a) for a in args))
    except (IndexError, LucidError) as e:
        assert re.search(match, str(e)), e
        return
    raise AssertionError(f"not refused: {args}")


def embedding() -> str:
    """Forward and backward (the scattered gradient, nothing into the padding row) in both
    dtypes; indices V and -1 refused by the compiled call, statically and dynamically."""
    calls = both_dtypes(Tokens, lambda n, d: [_tokens(n, n)])
    model = Tokens()
    for dyn in (False, True):
        c = compiled(model, dyn)
        for bad in (VOCAB, -1, 2**40):
            idx = _tokens(3)
            idx[2, 4] = bad
            _refused(c, [_tokens(3)], [idx], r"embedding: an index is out of range \[0,")
            calls += 1
    return f"{calls} calls"


class Products(nn.Module):
    """Batched matmul: 3-D with a weight broadcast over the batch, 3-D by 3-D, and 4-D
    (heads) by its own transpose."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.w = nn.Parameter(random((4, 3), dtype, 1))
        self.v = nn.Parameter(random((3, 5), dtype, 2))

    def forward(self, x: Any, y: Any, z: Any) -> Any:
        h = x.reshape(-1, 2, 4) @ self.w  # [N, 2, 3]
        g = (h @ self.v) @ y.transpose(0, 2, 1)  # [N, 2, 5] @ [N, 5, 4]
        s = z @ z.transpose(0, 1, 3, 2)  # [N, 2, 3, 5] @ [N, 2, 5, 3]
        return g.reshape(-1, 8), s @ z  # [N, 2, 3, 5]


def bmm() -> str:
    """batch_matmul and matmul_at (the weight gradient summed over the batch), 3-D and 4-D."""

    def inputs(n: int, d: Any) -> list[np.ndarray]:
        return [random((n, 8), d, n), random((n, 4, 5), d, n + 1), random((n, 2, 3, 5), d, n + 2)]

    return f"{both_dtypes(Products, inputs)} calls"


class Softmaxes(nn.Module):
    """softmax and log_softmax along the last axis and an inner one, after a Linear."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.fc = nn.Linear(7, 7, dtype=dtype)

    def forward(self, x: Any) -> Any:
        h = self.fc(x)
        return F.softmax(h, -1), F.log_softmax(h, 1), nn.Softmax(dim=-1)(h * 30.0)


def softmax() -> str:
    """softmax and log_softmax (one of them on large logits), forward and backward."""
    return f"{both_dtypes(Softmaxes, lambda n, d: [random((n, 5, 7), d, n)])} calls"


class Attention(nn.Module):
    """scaled_dot_product_attention on [N, H, L, E] (self and cross, L != S): plain, causal,
    with a bool mask, with a float mask, and causal with its own scale."""

    def forward(self, q: Any, k: Any, v: Any) -> Any:
        keep = lucid.Tensor(np.tril(np.ones((5, 7), dtype=bool), 2))
        bias = lucid.Tensor(np.linspace(-2, 1, 35).reshape(5, 7).astype(q.dtype))
        return (
            F.scaled_dot_product_attention(q, k, v),
            F.scaled_dot_product_attention(q, q, q, is_causal=True),
            F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
            F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
            F.scaled_dot_product_attention(k, k, k, is_causal=True, scale=0.3),
        )


def sdpa() -> str:
    """SDPA without and with the causal mask and explicit masks, both dtypes."""

    def inputs(n: int, d: Any) -> list[np.ndarray]:
        q, k = random((n, 2, 5, 4), d, n), random((n, 2, 7, 4), d, n + 1)
        return [q, k, random((n, 2, 7, 3), d, n + 2)]

    return f"{both_dtypes(lambda d: Attention(), inputs)} calls"


class Cross(nn.Module):
    """MultiheadAttention (batch_first): self-attention with a key padding mask, and
    cross-attention to a longer memory returning per-head weights."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(8, 2, batch_first=True, dtype=dtype)
        self.cross = nn.MultiheadAttention(8, 4, batch_first=True, dtype=dtype)

    def forward(self, x: Any, memory: Any, pad: Any) -> Any:
        h, w = self.self_attn(x, x, x, key_padding_mask=pad)
        y, w2 = self.cross(h, memory, memory, average_attn_weights=False)
        return y, w, w2


def mha() -> str:
    """MultiheadAttention forward and backward, both dtypes."""

    def inputs(n: int, d: Any) -> list[np.ndarray]:
        pad = np.zeros((n, 5), dtype=bool)
        pad[:, -1] = True  # the last key position of every row is padding
        return [random((n, 5, 8), d, n), random((n, 9, 8), d, n + 1), pad]

    return f"{both_dtypes(Cross, inputs)} calls"


class Encoder(nn.Module):
    """TransformerEncoderLayer (batch_first) with a causal float mask."""

    def __init__(self, dtype: Any, norm_first: bool, activation: str) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, activation=activation, batch_first=True,
            norm_first=norm_first, dtype=dtype,
        )  # fmt: skip
        self.causal = lucid.Tensor(np.triu(np.full((5, 5), -np.inf), 1).astype(dtype))

    def forward(self, x: Any) -> Any:
        return self.layer(x, src_mask=self.causal, is_causal=True)


def encoder() -> str:
    """TransformerEncoderLayer: norm_first both ways, GELU and ReLU, a causal mask, both
    dtypes; then in training mode with dropout 0.2 (the dropout kernel; after the same
    lucid.random.seed the compiled call draws eager's masks)."""
    calls = 0
    for norm_first, act in ((True, "gelu"), (False, "relu")):
        calls += both_dtypes(
            lambda d, nf=norm_first, a=act: Encoder(d, nf, a).eval(),
            lambda n, d: [random((n, 5, 8), d, n)],
        )
    lucid.random.seed(4)
    train = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2, batch_first=True).train()
    calls += check_module(train, lambda n: [random((n, 5, 8), seed=n)], seed=6)
    return f"{calls} calls"


class Losses(nn.Module):
    """cross_entropy (mean, sum, none, label smoothing) and nll_loss (with ignore_index and
    class weights) of a Linear's logits against int64 targets."""

    def __init__(self, dtype: Any = np.float32) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4, dtype=dtype)
        self.w = lucid.Tensor(np.array([0.5, 1.0, 2.0, 1.5], dtype=dtype))

    def forward(self, x: Any, t: Any) -> Any:
        logits = self.fc(x)
        logp = F.log_softmax(logits, 1)
        return (
            F.cross_entropy(logits, t),
            F.cross_entropy(logits, t, reduction="none"),
            F.cross_entropy(logits, t, reduction="sum", label_smoothing=0.1),
            F.nll_loss(logp, t, ignore_index=2),
            F.nll_loss(logp, t, weight=self.w, reduction="sum"),
        )


def losses() -> str:
    """Cross-entropy and NLL forward and backward; targets 4, -1 and 2**40 refused by the
    compiled call (the cross_entropy kernel's own check and index_check), statically and
    dynamically; NLL's ignore_index outside [0, C) is allowed, nothing else."""

    def inputs(n: int, d: Any) -> list[np.ndarray]:
        return [random((n, 6), d, n), np.arange(n) % 4]

    calls = both_dtypes(Losses, inputs)
    ce = lambda x, t: F.cross_entropy(x, t, reduction="sum")
    nll = lambda x, t: F.nll_loss(F.log_softmax(x, 1), t, ignore_index=-100)
    for name, fn in (("cross_entropy", ce), ("nll_loss", nll)):

        class One(nn.Module):
            def __init__(self, f: Any = fn) -> None:
                super().__init__()
                self.fc = nn.Linear(6, 4)
                self.f = f

            def forward(self, x: Any, t: Any) -> Any:
                return self.f(self.fc(x), t)

        model = One()
        for dyn in (False, True):
            c = compiled(model, dyn)
            if name == "nll_loss":  # ignore_index rows are skipped, not read
                t = np.array([0, -100, 3])
                with lucid.no_grad():
                    want = model(lucid.Tensor(random((3, 6))), lucid.Tensor(t)).numpy()
                    got = c(lucid.Tensor(random((3, 6))), lucid.Tensor(t)).numpy()
                np.testing.assert_allclose(got, want, rtol=1e-5)
            for bad in (4, -1, 2**40):
                good = [random((3, 6)), np.array([0, 3, 1])]
                _refused(c, good, [random((3, 6)), np.array([0, bad, 1])], CHECK)
                calls += 1
    return f"{calls} calls"
