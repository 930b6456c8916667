"""Weights loaded from a file reach compiled code: loaded before lucid.compile, or loaded into
a model that is already compiled (the compiled module reads parameters live) (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn


def _model(seed: int) -> nn.Module:
    lucid.random.seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.HardSwish(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
    )


@pytest.mark.needs_cc
def test_weights_loaded_before_or_after_compiling_reach_the_compiled_model(tmp_path: Path) -> None:
    trained = _model(1).train()
    x = lucid.Tensor(np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32))
    trained(x)  # moves the BatchNorm running statistics away from their initial values
    trained.eval()
    path = tmp_path / "trained.safetensors"
    lucid.save(trained.state_dict(), path)
    with lucid.no_grad():
        want = trained(x).data

    before = _model(2).eval()
    before.load_state_dict(lucid.load(path))
    after = _model(3).eval()
    compiled_after = lucid.compile(after)
    with lucid.no_grad():
        stale = compiled_after(x).data  # the initial weights
        after.load_state_dict(lucid.load(path))
        fresh = compiled_after(x).data
        loaded = lucid.compile(before)(x).data
    np.testing.assert_allclose(loaded, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fresh, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(stale, want, atol=1e-3)  # so the load did change what runs
