"""The systems the suite compares: each builds a timed forward and a timed training step.

A system's `forward(workload, data)` returns a `Forward`, its `train(workload, data)` a `Train`;
either may raise `Unavailable(reason)` (not installed, not supported for this workload, ...),
which the suite prints as "not available: reason" instead of a number. A system may also have
`prepare(workload, data)`: work that is not the system's own (ONNX Runtime: exporting the model
from PyTorch), which `suite_memory.py` runs before its baseline so it is not counted.

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


class System(Protocol):
    """What run_all needs from a system."""

    name: str

    def forward(self, w: Workload, d: Data) -> Forward: ...

    def train(self, w: Workload, d: Data) -> Train: ...


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


def build_row(system: System, w: Workload, d: Data, mode: str) -> Forward | Train:
    """`system`'s callable for one row: its forward, or its training step when `mode` is
    "train" (compiling systems compile, and call once, inside)."""
    return system.forward(w, d) if mode == "forward" else system.train(w, d)


def system_names(quick: bool, no_peers: bool) -> tuple[list[str], dict[str, str]]:
    """The names of the systems to run, lucid compiled first; and name -> reason for those
    left out. `quick` leaves out torch.compile (its compiles take minutes); `no_peers` every
    peer."""
    chosen = ["lucid compiled", "lucid eager", "numpy by hand"]
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
