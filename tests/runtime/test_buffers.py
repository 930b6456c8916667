"""Tensor attributes of a module (buffers) are read at every compiled call, like parameters,
so an in-place change is seen; before, they were traced as constants and went stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc


class Masked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.mask = lucid.tensor(np.ones(4, np.float32))
        self.unused = lucid.tensor(np.zeros(2))

    def forward(self, x: Any) -> Any:
        return self.fc(x) * self.mask


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)


def test_named_buffers_lists_plain_tensor_attributes_once() -> None:
    outer = nn.Sequential(Masked())
    outer.shared = outer[0].mask
    # one buffer per tensor, under the first name the walk (root first) meets
    assert [name for name, _ in outer.named_buffers()] == ["shared", "0.unused"]


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_in_place_buffer_changes_are_seen_forward_and_backward(mode: str) -> None:
    lucid.random.seed(0)
    model = getattr(Masked(), mode)()
    compiled = lucid.compile(model, dynamic_batch=True)
    graph_params = None
    for step, n in enumerate((2, 5, 2)):
        model.mask[step] = 0.0  # item assignment: same tensor, new values
        x = _x(n)
        y = compiled(x)
        np.testing.assert_allclose(y.data, model(lucid.tensor(x)).data, rtol=1e-6, atol=1e-6)
        y.sum().backward()
        got = model.fc.weight.grad
        model.zero_grad()
        model(lucid.tensor(x)).sum().backward()
        np.testing.assert_allclose(got, model.fc.weight.grad, rtol=1e-6, atol=1e-6)
        model.zero_grad()
        graph_params = [p.hint for p in compiled.stages()["traced"].params]
    assert graph_params == ["fc.weight", "fc.bias", "mask"]  # an unread buffer is no param
    assert model.mask.grad is None  # a buffer is never trained


@pytest.mark.slow
def test_export_embeds_buffers(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    model = Masked().eval()
    model.mask[2] = 5.0
    lib = load(lucid.export(model, (_x(3),), tmp_path / "m", flags=QUICK).library)
    with lucid.no_grad():
        np.testing.assert_allclose(
            lib(_x(4)), model(lucid.tensor(_x(4))).data, rtol=1e-6, atol=1e-6
        )
