"""An exported library runs pooling and padding: a small conv-free image model whose batch it
reads from each call, against eager lucid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.runtime.aot import export
from lucid.runtime.loader import load

from ._helpers import ATOL, QUICK, RTOL, eager

pytestmark = pytest.mark.needs_cc


class PoolHead(nn.Module):
    """Pads in every mode, the three poolings and a classifier on the pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, dilation=(1, 2), ceil_mode=True)
        self.avgpool = nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.adapt = nn.AdaptiveAvgPool2d((3, 2))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3 * (6 + 1), 4)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = F.pad(x, (2, 1, 1, 2), mode="reflect")
        h = self.maxpool(h)
        h = F.pad(h, (1, 1, 1, 1), mode="circular")
        h = F.pad(h, (0, 2, 1, 0), mode="replicate")
        h = self.avgpool(F.pad(h, (1, 0, 0, 1), value=-0.5))
        feats = lucid.cat([self.adapt(h).flatten(1), self.gap(h).flatten(1)], dim=1)
        return self.fc(feats)


def test_pooling_model_round_trips_through_export(tmp_path: Path) -> None:
    lucid.random.seed(5)
    model = PoolHead()
    example = (lucid.randn(2, 3, 13, 12),)
    loaded = load(export(model, example, tmp_path / "pool", flags=QUICK).library)
    rng = np.random.default_rng(0)
    for batch in (1, 4, 9):
        x = rng.standard_normal((batch, 3, 13, 12)).astype(np.float32)
        np.testing.assert_allclose(loaded(x), eager(model, x), rtol=RTOL, atol=ATOL)
