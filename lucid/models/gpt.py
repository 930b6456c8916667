"""A small GPT-style language model (Radford et al. 2018/2019; the layout of nanoGPT): token and
position embeddings, pre-norm blocks of causal self-attention and a GELU MLP, a final LayerNorm
and a linear head, optionally tied to the token embedding.

Names follow nanoGPT's (`transformer.wte`, `transformer.h.0.attn.c_attn`, `lm_head`), which a
PyTorch twin with the same module tree loads one to one through `state_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from lucid import nn
from lucid import random as _random
from lucid.ir.trace import row_agnostic
from lucid.nn import functional as F
from lucid.tensor import Tensor

M = TypeVar("M", bound=nn.Module)


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the model: vocabulary, context length, blocks, heads, embedding width."""

    vocab_size: int
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    tied: bool = False  # lm_head shares the token embedding's weight

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig: n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})"
            )


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)  # q, k, v in one GEMM
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    @row_agnostic  # the batch is never read: reshapes take -1 for it
    def forward(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        _, t, c = x.shape
        h = self.n_head
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.reshape(-1, t, h, c // h).permute(0, 2, 1, 3) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.permute(0, 2, 1, 3).reshape(-1, t, c)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """Linear 4C -> GELU (tanh form, as GPT-2) -> Linear C."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    @row_agnostic
    def forward(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """x + attn(ln_1(x)), then + mlp(ln_2(x)): the pre-norm residual block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    @row_agnostic
    def forward(self, x: Tensor) -> Tensor:
        """[B, T, C] -> [B, T, C]."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Next-token logits [B, T, vocab] for token ids [B, T] (T <= block_size)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(cfg.vocab_size, cfg.n_embd),
                "wpe": nn.Embedding(cfg.block_size, cfg.n_embd),
                "drop": nn.Dropout(cfg.dropout),
                "h": nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
                "ln_f": nn.LayerNorm(cfg.n_embd),
            }
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        _init_like_gpt2(self, cfg)
        if cfg.tied:
            self.lm_head.weight = self._part("wte", nn.Embedding).weight

    @row_agnostic  # reads the sequence length, never the batch
    def forward(self, idx: Tensor) -> Tensor:
        """Logits for every position of `idx`."""
        t = idx.shape[1]
        if t > self.config.block_size:
            raise ValueError(
                f"GPT: sequence of length {t} exceeds block_size {self.config.block_size}"
            )
        tr = self.transformer
        x = tr["drop"](tr["wte"](idx) + self._part("wpe", nn.Embedding).weight[:t])
        for block in self._part("h", nn.ModuleList):
            x = block(x)
        return self.lm_head(tr["ln_f"](x))

    def _part(self, name: str, kind: type[M]) -> M:
        """transformer[name], known to be a `kind` (for the type checker)."""
        part = self.transformer[name]
        assert isinstance(part, kind)
        return part

    def loss(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of the next-token predictions against `targets` [B, T]."""
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, self.config.vocab_size), targets.reshape(-1))


def _init_like_gpt2(model: GPT, cfg: GPTConfig) -> None:
    """N(0, 0.02) weights and zero biases; residual projections scaled by 1/sqrt(2 n_layer)."""
    gen = _random.generator()
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data[...] = 0.0
        elif name.endswith("weight") and p.data.ndim == 2 and ".ln_" not in name:
            std = 0.02 / np.sqrt(2 * cfg.n_layer) if name.endswith("c_proj.weight") else 0.02
            p.data[...] = (gen.standard_normal(p.data.shape) * std).astype(p.data.dtype)


class LossModule(nn.Module):
    """`model.loss(idx, targets)` as a module's forward, so `lucid.compile` can train it."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor, targets: Tensor) -> Tensor:
        """The mean next-token cross-entropy."""
        return self.model.loss(idx, targets)


def encode(text: str, vocab: str) -> np.ndarray:
    """Character ids of `text` in `vocab` (every character of text must be in vocab)."""
    index = {ch: i for i, ch in enumerate(vocab)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise ValueError(f"encode: characters not in the vocabulary: {missing[:10]!r}")
    return np.array([index[ch] for ch in text], dtype=np.int64)


def unigram_entropy(data: np.ndarray) -> float:
    """The entropy (nats per token) of the token frequencies of `data`: the loss of the best
    model that ignores context, which a trained GPT must beat."""
    p = np.bincount(data) / len(data)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def batches(
    data: np.ndarray, block_size: int, batch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`batch` random windows of `block_size` tokens of `data`, and the same windows shifted by
    one (the next-token targets)."""
    if len(data) <= block_size:
        raise ValueError(f"batches: {len(data)} tokens is too few for block_size {block_size}")
    starts = rng.integers(0, len(data) - block_size, batch)
    idx = np.stack([data[s : s + block_size] for s in starts])
    return idx, np.stack([data[s + 1 : s + 1 + block_size] for s in starts])


def sample(
    model: GPT,
    prompt: np.ndarray,
    steps: int,
    temperature: float = 1.0,
    rng: np.random.Generator | None = None,
    run: Any = None,
) -> np.ndarray:
    """Extend `prompt` (token ids) by `steps` tokens drawn from the model's softmax at
    `temperature`; `run` (default: the model) computes the logits, e.g. a compiled model."""
    if temperature <= 0:
        raise ValueError(f"sample: temperature must be positive, got {temperature}")
    rng = rng or _random.generator()
    run = run or model
    ids = [int(i) for i in prompt]
    block = model.config.block_size
    for _ in range(steps):
        context = np.array([ids[-block:]], dtype=np.int64)
        logits = np.asarray(run(Tensor(context)).data)[0, -1].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        ids.append(int(rng.choice(len(p), p=p / p.sum())))
    return np.array(ids, dtype=np.int64)
