"""lucid.nn: modules, parameters, layers and losses."""

from __future__ import annotations

from lucid.nn import functional, utils
from lucid.nn.containers import ModuleDict, ModuleList
from lucid.nn.layers import (
    ELU,
    GELU,
    CrossEntropyLoss,
    Dropout,
    Flatten,
    HardSigmoid,
    Hardsigmoid,
    HardSwish,
    Hardswish,
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
    "Flatten",
    "HardSigmoid",
    "HardSwish",
    "Hardsigmoid",
    "Hardswish",
    "Hardtanh",
    "HuberLoss",
    "Identity",
    "L1Loss",
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
