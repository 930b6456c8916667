"""nn.Embedding: a lookup table of `num_embeddings` vectors of size `embedding_dim`."""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid import random as _random
from lucid.nn import functional as F
from lucid.nn._attention_functional import normalize_padding_idx
from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor


class Embedding(Module):
    """weight[input] for integer indices of any shape; weight [num_embeddings, embedding_dim]
    is drawn from N(0, 1) (the `padding_idx` row zeroed), as in torch.nn.Embedding."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"Embedding: sizes must be positive, got num_embeddings={num_embeddings}, "
                f"embedding_dim={embedding_dim}"
            )
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        pad = normalize_padding_idx("Embedding", padding_idx, num_embeddings)
        self.padding_idx = None if pad < 0 else pad
        dt = np.dtype(np.float32 if dtype is None else dtype)
        weight = _random.generator().standard_normal((num_embeddings, embedding_dim))
        if self.padding_idx is not None:
            weight[self.padding_idx] = 0
        self.weight = Parameter(weight, dtype=dt)

    def forward(self, input: Tensor) -> Tensor:
        """Look up the rows named by `input`."""
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"
