"""lucid.nn: modules, parameters, layers and losses."""

from __future__ import annotations

from lucid.nn import functional, utils
from lucid.nn._layernorm_minimal import LayerNorm
from lucid.nn.attention import MultiheadAttention, TransformerEncoderLayer
from lucid.nn.containers import ModuleDict, ModuleList
from lucid.nn.embedding import Embedding
from lucid.nn.layers import (
    ELU,
    GELU,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    HardSigmoid,
    HardSwish,
    Hardtanh,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MSELoss,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from lucid.nn.losses import BCEWithLogitsLoss, HuberLoss, L1Loss, NLLLoss
from lucid.nn.module import LoadResult, Module, Parameter, Sequential

__all__ = [
    "ELU",
    "GELU",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "HardSigmoid",
    "HardSwish",
    "Hardtanh",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LoadResult",
    "LogSoftmax",
    "MSELoss",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "NLLLoss",
    "Parameter",
    "ReLU",
    "ReLU6",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Tanh",
    "TransformerEncoderLayer",
    "functional",
    "utils",
]
