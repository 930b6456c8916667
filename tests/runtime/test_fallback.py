"""Models lucid cannot trace: one error listing every problem, or eager with fallback="eager"."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import FallbackWarning, TraceError

THIS_FILE = re.escape(Path(__file__).name)


class ReadsValues(nn.Module):
    """Two untraceable constructs: a branch on a tensor's value and .item()."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        if y.sum() > 0:  # data-dependent control flow
            y = y * 2
        return y + y.mean().item()


def _x(n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)


def test_untraceable_model_is_one_error_listing_every_line() -> None:
    compiled = lucid.compile(ReadsValues())
    with pytest.raises(TraceError) as info:
        compiled(_x(2))
    text = str(info.value)
    assert "2 unsupported operation(s)" in text
    assert re.search(rf"{THIS_FILE}:\d+: in ReadsValues: bool\(Tensor\)", text), text
    assert re.search(rf"{THIS_FILE}:\d+: in ReadsValues: Tensor.item\(\)", text), text


@pytest.mark.needs_cc
def test_fallback_eager_runs_the_model_eagerly_after_one_warning() -> None:
    lucid.random.seed(0)
    model = ReadsValues()
    compiled = lucid.compile(model, fallback="eager")
    with pytest.warns(FallbackWarning, match=r"(?s)runs eagerly \(fallback='eager'\).*item"):
        got = compiled(_x(2))
    np.testing.assert_array_equal(got.data, model(lucid.tensor(_x(2))).data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # warned once for this signature
        for _ in range(2):
            np.testing.assert_array_equal(compiled(_x(2)).data, model(lucid.tensor(_x(2))).data)
    got.sum().backward()  # eager outputs keep their autograd history
    assert model.fc.weight.grad is not None


def test_fallback_is_checked() -> None:
    with pytest.raises(ValueError, match="fallback must be 'error' or 'eager'"):
        lucid.compile(ReadsValues(), fallback="python")
    with pytest.raises(ValueError, match="contradicts options\\['fullgraph'\\]"):
        lucid.compile(ReadsValues(), fallback="eager", options={"fullgraph": True})
