"""lucid.nn: modules, parameters, layers and losses."""

from __future__ import annotations

from lucid.nn import functional, utils
from lucid.nn.containers import ModuleDict, ModuleList
from lucid.nn.conv import Conv1d, Conv2d
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
from lucid.nn.normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm

__all__ = [
    "ELU",
    "GELU",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GroupNorm",
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
    "functional",
    "utils",
]
