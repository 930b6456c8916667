"""The systems the suite compares: each builds a timed forward and a timed training step.

A row is built in two steps, the same for every system. `model(workload, data, mode)` makes what
the system's user already has before they reach for the system: the model holding its weights,
in the system's own form (a lucid or PyTorch Module, JAX's parameter arrays, for ONNX Runtime
the serialized .onnx graph exported from PyTorch). `forward(workload, data, model)` returns a
`Forward` and `train(workload, data, model)` a `Train`: all the system does to get ready to run
(lucid.compile, torch.compile, an InferenceSession, jax.jit) and, for compiling systems, the
first call. `suite_memory.py` makes the model before its baseline and counts only the second
step. Any of them may raise `Unavailable(reason)` (not installed, not supported for this
workload, ...), which the suite prints as "not available: reason" instead of a number.

A training step is the same everywhere: forward, mean squared error against `data.target`,
backward producing every parameter gradient, then one plain SGD update (lr = workloads.LR).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from workloads import Data, Workload


class Unavailable(Exception):
    """This system cannot run this row; the message says why."""


@dataclass
class Forward:
    """One forward call, and how to turn its result into an ndarray for the output check."""

    call: Callable[[], object]
    result: Callable[[object], np.ndarray]
    first_call_s: float | None = None  # compile + first call, for systems that compile


@dataclass
class Train:
    """One training step, and the current weights [W1, b1, W2, b2, ...] for the update check."""

    step: Callable[[], object]
    params: Callable[[], list[np.ndarray]]
    first_call_s: float | None = None
    # what first_call_s timed, to time again once compiled (suite_compile: the warm overhead)
    first_again: Callable[[], object] | None = None


class System(Protocol):
    """What run_all needs from a system."""

    name: str

    def model(self, w: Workload, d: Data, mode: str) -> object: ...

    def forward(self, w: Workload, d: Data, model: object) -> Forward: ...

    def train(self, w: Workload, d: Data, model: object) -> Train: ...


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def flat(weights: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """[(W1, b1), (W2, b2)] -> [W1, b1, W2, b2]."""
    return [a for pair in weights for a in pair]


# the peers and the module each needs (ONNX Runtime also needs onnx to build its graphs)
PEER_MODULES = {
    "pytorch eager": "torch",
    "torch.compile": "torch",
    "onnxruntime": "onnxruntime",
    "jax jit": "jax",
}


def make_system(name: str, threads: int) -> System:
    """The system called `name` (lucid's, NumPy by hand or a peer), set to `threads` threads
    where it has a switch; a peer's module must be installed."""
    if name == "lucid compiled":
        from peers.lucid_systems import LucidCompiled

        return LucidCompiled()
    if name == "lucid step":
        from peers.lucid_systems import LucidStep

        return LucidStep()
    if name == "lucid eager":
        from peers.lucid_systems import LucidEager

        return LucidEager()
    if name == "numpy by hand":
        from peers.numpy_hand import NumpyHand

        return NumpyHand()
    if name == "pytorch eager":
        from peers.torch_systems import TorchEager

        return TorchEager(threads)
    if name == "torch.compile":
        from peers.torch_systems import TorchCompile

        return TorchCompile(threads)
    if name == "onnxruntime":
        from peers.onnxrt import OnnxRuntime

        return OnnxRuntime(threads)
    if name == "jax jit":
        from peers.jax_system import JaxJit

        return JaxJit()
    raise ValueError(f"unknown system {name!r}")


def user_model(system: System, w: Workload, d: Data, mode: str) -> object:
    """The model `system`'s user has before using the system, for the row (w, mode): a fresh
    one each time (a training step updates its weights)."""
    if mode == "train" and "train" not in w.modes:
        raise Unavailable("forward only")
    return system.model(w, d, mode)


def ready(system: System, w: Workload, d: Data, mode: str, model: object) -> Forward | Train:
    """`system`'s callable for one row, made from the user's `model`: its forward, or its
    training step when `mode` is "train" (compiling systems compile, and call once, inside)."""
    return system.forward(w, d, model) if mode == "forward" else system.train(w, d, model)


def build_row(system: System, w: Workload, d: Data, mode: str) -> Forward | Train:
    """`system`'s callable for one row, from a model of its own: `ready(user_model(...))`."""
    return ready(system, w, d, mode, user_model(system, w, d, mode))


def system_names(quick: bool, no_peers: bool) -> tuple[list[str], dict[str, str]]:
    """The names of the systems to run, lucid compiled first; and name -> reason for those
    left out. `quick` leaves out torch.compile (its compiles take minutes); `no_peers` every
    peer."""
    chosen = ["lucid compiled", "lucid step", "lucid eager", "numpy by hand"]
    skipped: dict[str, str] = {}
    for name, module in PEER_MODULES.items():
        if no_peers:
            skipped[name] = "skipped by --no-peers"
        elif quick and name == "torch.compile":
            skipped[name] = "skipped by --quick (slow to compile)"
        elif not installed(module) or (name == "onnxruntime" and not installed("onnx")):
            skipped[name] = f"{module} not installed (pip install '.[bench]')"
        else:
            chosen.append(name)
    return chosen, skipped


def systems(threads: int, quick: bool, no_peers: bool) -> tuple[list[System], dict[str, str]]:
    """The systems of `system_names`, built; and name -> reason for those left out."""
    names, skipped = system_names(quick, no_peers)
    return [make_system(n, threads) for n in names], skipped
