"""Models shared by the compile tests (no tests here): small MLPs (the seed model is
tests/models.py's); and `count_prepares`, which records what a backend builds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lucid import nn
from lucid.runtime import backends

BACKENDS = ["interpreter", pytest.param("c", marks=pytest.mark.needs_cc)]


def mlp(widths: list[int], act: type = nn.HardSwish, dtype: object = np.float32) -> nn.Module:
    """Linear -> act -> ... -> Linear over `widths`."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def as_f64(model: nn.Module, make) -> nn.Module:
    """A float64 twin of `model` built by `make(dtype)`, holding the same parameter values."""
    twin = make(np.float64)
    twin.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
    return twin


def count_prepares(monkeypatch: pytest.MonkeyPatch, name: str) -> list[object]:
    """Record every graph the backend `name` prepares (one per compiled signature)."""
    backend = backends.get_backend(name)
    seen: list[object] = []
    real, real_pair = backend.prepare, getattr(backend, "prepare_pair", None)

    def spy(graph, options):
        seen.append(graph)
        return real(graph, options)

    def spy_pair(graphs, options):  # a grad entry's forward and backward, built together
        seen.extend(graphs)
        return real_pair(graphs, options)

    monkeypatch.setattr(backend, "prepare", spy)
    if real_pair is not None:
        monkeypatch.setattr(backend, "prepare_pair", spy_pair)
    return seen
