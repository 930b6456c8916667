"""lucid.nn: modules, parameters, layers and losses."""

from __future__ import annotations

from lucid.nn import functional
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
from lucid.nn.module import LoadResult, Module, Parameter, Sequential

__all__ = [
    "ELU",
    "GELU",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "HardSigmoid",
    "HardSwish",
    "Hardtanh",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LoadResult",
    "LogSoftmax",
    "MSELoss",
    "Module",
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
]
