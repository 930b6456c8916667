"""nn.MultiheadAttention and nn.TransformerEncoderLayer, with PyTorch's names and semantics.

Parameters and submodules carry torch's names (`in_proj_weight`, `in_proj_bias`,
`out_proj.weight`, `self_attn`, `linear1`, `norm1`, ...), so a torch state dict loads one to
one. Heads are split as [batch, heads, length, head_dim] (never batch * heads in one dim: under
a dynamic batch a dim is an int or one symbol), and attention runs as batch_matmul + softmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from lucid import random as _random
from lucid.nn import functional as F
from lucid.nn._attention_functional import attention
from lucid.nn.layers import Dropout, Linear
from lucid.nn.module import Module, Parameter
from lucid.nn.normalization import LayerNorm
from lucid.tensor import Tensor


class MultiheadAttention(Module):
    """torch.nn.MultiheadAttention (same embed dim for query, key and value): inputs [L, N, E]
    ([N, L, E] with batch_first, [L, E] unbatched); forward returns (output, weights), weights
    [N, L, S] averaged over heads ([N, H, L, S] if not average_attn_weights) or None when
    need_weights=False. Bool masks: True means the position does NOT take part."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of "
                f"num_heads ({num_heads})"
            )
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must lie in [0, 1], got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        dt = np.dtype(np.float32 if dtype is None else dtype)
        # torch's init: xavier_uniform_ on the [3E, E] in-projection, zero biases
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))
        rng = _random.generator()
        self.in_proj_weight = Parameter(rng.uniform(-bound, bound, (3 * embed_dim, embed_dim)), dt)
        self.in_proj_bias = Parameter(np.zeros(3 * embed_dim), dt) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dt)
        if bias:
            self.out_proj.bias = Parameter(np.zeros(embed_dim), dt)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from query to key/value; see the class doc for shapes."""
        if is_causal and attn_mask is None:
            # torch: is_causal is only a hint that attn_mask is the causal mask
            raise ValueError(
                "MultiheadAttention: is_causal=True needs attn_mask (the causal mask it hints at)"
            )
        unbatched = query.ndim == 2
        q, k, v = (
            self._batched(n, t) for n, t in zip(("query", "key", "value"), (query, key, value))
        )
        if unbatched and key_padding_mask is not None:
            key_padding_mask = key_padding_mask.reshape(1, *key_padding_mask.shape)
        if not self.batch_first:  # [L, N, E] -> [N, L, E]
            q, k, v = (t.permute(1, 0, 2) for t in (q, k, v))
        n, length, source = q.shape[0], q.shape[1], k.shape[1]
        if k.shape[0] != n or v.shape[0] != n or v.shape[1] != source:
            raise ValueError(
                f"MultiheadAttention: query {query.shape}, key {key.shape} and value "
                f"{value.shape} disagree on batch size or key/value length"
            )
        qh, kh, vh = self._project(query is key and key is value, q, k, v)
        # torch's MHA convention: a bool mask is True where attention is NOT allowed
        masks = []
        if attn_mask is not None:
            masks.append(("attn_mask", self._attn_mask(attn_mask, length, source), False))
        if key_padding_mask is not None:
            pad = self._padding_mask(key_padding_mask, n, source)
            masks.append(("key_padding_mask", pad, False))
        p = self.dropout if self.training else 0.0
        out, weights = attention("MultiheadAttention", qh, kh, vh, masks, p, False, None)
        # [N, H, L, hd] -> [N, L, E] -> out_proj
        out = self.out_proj(out.permute(0, 2, 1, 3).reshape(-1, length, self.embed_dim))
        if not self.batch_first:
            out = out.permute(1, 0, 2)
        if unbatched:
            out = out.reshape(length, self.embed_dim)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(1)
        if unbatched:
            weights = weights.reshape(*weights.shape[1:])
        return out, weights

    def _batched(self, name: str, t: Tensor) -> Tensor:
        """t as a rank-3 Tensor (an unbatched [L, E] gets a batch of 1), shape-checked."""
        if not isinstance(t, Tensor) or t.ndim not in (2, 3) or t.shape[-1] != self.embed_dim:
            layout = "[N, L, E]" if self.batch_first else "[L, N, E]"
            raise ValueError(
                f"MultiheadAttention: expected {name} of shape {layout} or [L, E] with "
                f"E = embed_dim = {self.embed_dim}, got {getattr(t, 'shape', type(t).__name__)}"
            )
        if t.ndim == 2:
            return t.reshape(1, *t.shape) if self.batch_first else t.reshape(t.shape[0], 1, -1)
        return t

    def _project(self, same: bool, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, ...]:
        """The in-projections, split into heads: each [N, H, len, head_dim]."""
        e, w, b = self.embed_dim, self.in_proj_weight, self.in_proj_bias
        if same:  # self-attention: one GEMM for q, k and v
            parts = F.linear(q, w, b).chunk(3, dim=-1)
        else:
            parts = tuple(
                F.linear(x, w[i * e : (i + 1) * e], None if b is None else b[i * e : (i + 1) * e])
                for i, x in enumerate((q, k, v))
            )
        return tuple(
            t.reshape(-1, t.shape[1], self.num_heads, self.head_dim).permute(0, 2, 1, 3)
            for t in parts
        )

    def _attn_mask(self, mask: Tensor, length: Any, source: Any) -> Tensor:
        """attn_mask [L, S] or [N * H, L, S] as a mask broadcasting to [N, H, L, S]."""
        if mask.ndim == 2 and tuple(mask.shape) == (length, source):
            return mask
        if mask.ndim == 3 and tuple(mask.shape[1:]) == (length, source):
            return mask.reshape(-1, self.num_heads, length, source)
        raise ValueError(
            f"MultiheadAttention: attn_mask must be [L, S] = [{length}, {source}] or "
            f"[N * num_heads, L, S], got {mask.shape}"
        )

    def _padding_mask(self, mask: Tensor, n: Any, source: Any) -> Tensor:
        """key_padding_mask [N, S] as [N, 1, 1, S]."""
        if tuple(mask.shape) != (n, source):
            raise ValueError(
                f"MultiheadAttention: key_padding_mask must be [N, S] = [{n}, {source}], got "
                f"{mask.shape}"
            )
        return mask.reshape(-1, 1, 1, source)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"bias={self.in_proj_bias is not None}, batch_first={self.batch_first}"
        )


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}


class TransformerEncoderLayer(Module):
    """torch.nn.TransformerEncoderLayer: self-attention then a feed-forward block, each with a
    residual connection and LayerNorm (after it, or before it with norm_first)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(
                    f"TransformerEncoderLayer: activation should be 'relu' or 'gelu', not "
                    f"{activation!r}"
                )
            self.activation_name = activation
            activation = _ACTIVATIONS[activation]
        else:
            self.activation_name = getattr(activation, "__name__", "custom")
        self.activation = activation
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, dtype=dtype
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """One encoder layer over src ([L, N, E], or [N, L, E] with batch_first)."""
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))

    def _sa_block(
        self, x: Tensor, mask: Tensor | None, pad: Tensor | None, is_causal: bool
    ) -> Tensor:
        out, _ = self.self_attn(
            x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=False, is_causal=is_causal
        )
        return self.dropout1(out)

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def extra_repr(self) -> str:
        return f"activation={self.activation_name}, norm_first={self.norm_first}"
