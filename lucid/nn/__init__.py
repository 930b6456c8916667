"""lucid.nn: modules, parameters, layers and losses."""

from __future__ import annotations

from lucid.nn import functional, utils
from lucid.nn.containers import ModuleDict, ModuleList
from lucid.nn.layers import (
    CrossEntropyLoss,
    Dropout,
    Flatten,
    HardSigmoid,
    HardSwish,
    Identity,
    Linear,
    MSELoss,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Tanh,
)
from lucid.nn.losses import BCEWithLogitsLoss, HuberLoss, L1Loss, NLLLoss
from lucid.nn.module import LoadResult, Module, Parameter, Sequential

__all__ = [
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "HardSigmoid",
    "HardSwish",
    "HuberLoss",
    "Identity",
    "L1Loss",
    "Linear",
    "LoadResult",
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
    "Tanh",
    "functional",
    "utils",
]
