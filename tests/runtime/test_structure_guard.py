"""A module changed after its first compiled call is traced again, with a warning naming the
change (issue 14), never silently run with the old graph; parameter values are not guards."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import RecompileWarning
from tests.runtime.test_compile_models import BACKENDS


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.scale = 0.5
        self.use_relu = False

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        y = self.fc(x) * self.scale
        return y.relu() if self.use_relu else y


def _x(batch: int = 4) -> lucid.Tensor:
    return lucid.Tensor(np.random.default_rng(batch).standard_normal((batch, 3)).astype(np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_changes_after_the_first_call_recompile_and_match_eager(backend: str) -> None:
    lucid.random.seed(6)
    model = Net()
    compiled = lucid.compile(model, backend=backend)
    x = _x()
    changes = [
        (lambda: setattr(model, "scale", 2.0), "self.scale changed 0.5 -> 2.0"),
        (lambda: setattr(model, "use_relu", True), "self.use_relu changed False -> True"),
        (lambda: setattr(model, "fc", nn.Linear(3, 2)), "self.fc was replaced by another object"),
        (lambda: setattr(model.fc, "bias", None), "self.fc.bias changed"),
    ]
    with lucid.no_grad():
        np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-6)
        for change, reason in changes:
            change()
            with pytest.warns(RecompileWarning, match=reason.replace(".", r"\.")):
                got = compiled(x)
            np.testing.assert_allclose(got.data, model(x).data, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-6, atol=1e-7)


def test_unchanged_structure_and_parameter_values_do_not_recompile() -> None:
    model = Net()
    compiled = lucid.compile(model, backend="interpreter")
    x = _x()
    with lucid.no_grad():
        compiled(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.scale = 0.5  # assigned, but to the same value
        model.fc.weight = nn.Parameter(np.ones((2, 3), np.float32))  # same shape: a value
        model.fc.bias.data *= 3  # in place
        with lucid.no_grad():
            np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-6)
    assert len(compiled.signatures) == 1
