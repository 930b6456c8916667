"""An exported library runs the new activations and a softmax over the batch axis, whose
length it reads from the batch argument of each call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.runtime.aot import export
from lucid.runtime.loader import load

from ._helpers import ATOL, QUICK, RTOL, eager

pytestmark = pytest.mark.needs_cc


def test_activations_and_batch_axis_softmax_round_trip(tmp_path: Path) -> None:
    lucid.random.seed(11)
    model = nn.Sequential(
        nn.Linear(5, 8),
        nn.GELU(),
        nn.Linear(8, 8),
        nn.ELU(),
        nn.Linear(8, 8),
        nn.Softplus(beta=2.0),
        nn.Linear(8, 8),
        nn.LeakyReLU(),
        nn.Linear(8, 8),
        nn.Hardtanh(),
        nn.Linear(8, 3),
        nn.GELU(approximate="tanh"),
        nn.Softmax(dim=0),
        nn.LogSoftmax(dim=1),
    )
    model.eval()
    loaded = load(export(model, (lucid.randn(4, 5),), tmp_path / "acts", flags=QUICK).library)
    rng = np.random.default_rng(0)
    for batch in (1, 6, 33):
        x = (rng.standard_normal((batch, 5)) * 3).astype(np.float32)
        np.testing.assert_allclose(loaded(x), eager(model, x), rtol=RTOL, atol=ATOL)
