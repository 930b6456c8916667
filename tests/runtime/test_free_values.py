"""Plain values traced code reads from outside the model (module globals, closure cells) are
guarded (lucid/runtime/_freevals.py): changing one after a call recompiles with a warning
naming it, and the result is eager's; an unchanged value (a NaN included) never recompiles."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.errors import RecompileWarning
from lucid.nn import functional as F
from lucid.runtime._freevals import FreeValues, forwards

pytestmark = pytest.mark.needs_cc

SCALE = 1.0
OFFSET = np.zeros(2, np.float32)


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.fc(x) * SCALE + lucid.Tensor(OFFSET)


X = np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)


def _agree(cm: lucid.runtime.compiled.CompiledModule, model: nn.Module) -> None:
    with lucid.no_grad():
        np.testing.assert_allclose(cm(X).data, model(lucid.Tensor(X)).data, rtol=1e-6)


def test_a_changed_global_or_global_array_recompiles_with_a_warning() -> None:
    global SCALE
    lucid.random.seed(0)
    model = Scaled()
    cm = lucid.compile(model)
    try:
        _agree(cm, model)
        SCALE = 3.0
        with pytest.warns(RecompileWarning, match="global 'SCALE' .* changed"):
            _agree(cm, model)
        OFFSET[1] = 5.0  # written in place: the traced constant is a copy
        with pytest.warns(RecompileWarning, match="global 'OFFSET'"):
            _agree(cm, model)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unchanged: no recompile
            _agree(cm, model)
        assert len(cm.signatures) == 1
    finally:
        SCALE = 1.0
        OFFSET[:] = 0.0


def test_a_closure_value_is_guarded_and_a_nan_does_not_recompile_forever() -> None:
    lucid.random.seed(1)
    cfg = {"shift": float("nan")}

    class Shift(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            return self.fc(x) + cfg["shift"]

    model = Shift()
    cm = lucid.compile(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):  # a NaN equals itself here: one build
            with lucid.no_grad():
                assert np.isnan(cm(X).data).all()
    cfg["shift"] = 0.5
    with pytest.warns(RecompileWarning, match="closure variable 'cfg'"):
        _agree(cm, model)


def test_a_training_step_reading_a_closure_value_recompiles() -> None:
    def make() -> tuple[nn.Module, optim.SGD]:
        lucid.random.seed(2)
        m = nn.Sequential(nn.Linear(3, 4), nn.HardSwish(), nn.Linear(4, 2))
        return m, optim.SGD(m.parameters(), lr=0.1)

    (m, opt), (me, opte) = make(), make()
    weight = {"w": 1.0}
    y = np.ones((2, 2), np.float32)

    def stepper(model: nn.Module, o: optim.SGD):
        def step(a: lucid.Tensor, b: lucid.Tensor) -> lucid.Tensor:
            o.zero_grad()
            loss = F.mse_loss(model(a), b) * weight["w"]
            loss.backward()
            o.step()
            return loss

        return step

    compiled, eager = lucid.compile(stepper(m, opt)), stepper(me, opte)
    for w in (1.0, 1.0, 4.0):
        weight["w"] = w
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = compiled(lucid.Tensor(X), lucid.Tensor(y))
        want = eager(lucid.Tensor(X), lucid.Tensor(y))
        recompiled = [c for c in caught if issubclass(c.category, RecompileWarning)]
        assert bool(recompiled) == (w == 4.0), [str(c.message) for c in caught]  # only a change
        np.testing.assert_allclose(got.data, want.data, rtol=1e-6)
        for p, q in zip(m.parameters(), me.parameters(), strict=True):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-6, atol=1e-7)


def test_lucid_models_read_no_outside_values() -> None:
    """Nothing to compare per call for lucid's own models (the call path stays lean)."""
    from lucid.models.gpt import GPT, GPTConfig

    assert FreeValues.of(forwards(GPT(GPTConfig(vocab_size=11, n_layer=1)))) is None
