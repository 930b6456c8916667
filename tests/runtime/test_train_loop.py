"""Training loops through lucid.compile match eager training from the same initial weights."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import nn
from lucid.nn import functional as F
from tests.runtime.test_compile_models import mlp

STEPS = 30


def data(dtype: object) -> tuple[np.ndarray, np.ndarray]:
    """A fixed classification problem: 64 points in 10-D, 4 classes from a random linear map."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 10)).astype(dtype)
    t = (x @ rng.standard_normal((10, 4))).argmax(1).astype(np.int64)
    return x, t


def losses(model: nn.Module, run, make_opt, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The loss at each of STEPS minibatch steps (batches of 16, cycling)."""
    opt = make_opt(model.parameters())
    out = []
    for step in range(STEPS):
        rows = slice(16 * (step % 4), 16 * (step % 4 + 1))
        opt.zero_grad()
        loss = F.cross_entropy(run(lucid.Tensor(x[rows])), lucid.Tensor(t[rows]))
        loss.backward()
        opt.step()
        out.append(float(loss.data))
    return np.array(out)


OPTIMIZERS = {
    "sgd_momentum": lambda ps: lucid.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adam": lambda ps: lucid.optim.Adam(ps, lr=0.01),
}


@pytest.mark.parametrize(
    ("dtype", "rtol"), [(np.float32, 1e-4), (np.float64, 1e-10)], ids=["f32", "f64"]
)
@pytest.mark.needs_cc
@pytest.mark.slow
def test_loss_curves_match_eager(dtype, rtol):
    x, t = data(dtype)
    lucid.random.seed(7)
    model = mlp([10, 32, 32, 4], nn.HardSwish, dtype)
    initial = {k: v.copy() for k, v in model.state_dict().items()}
    cm = lucid.compile(model, dynamic_batch=True)
    for name, make_opt in OPTIMIZERS.items():
        model.load_state_dict(initial)
        compiled = losses(model, cm, make_opt, x, t)
        model.load_state_dict(initial)
        eager = losses(model, model, make_opt, x, t)
        assert eager[-1] < 0.7 * eager[0], name  # it learns: the comparison is not vacuous
        np.testing.assert_allclose(compiled, eager, rtol=rtol, err_msg=name)
    assert len(cm.signatures) == 1  # both optimizers, all steps: one grad build


def test_train_digits_example_learns(capsys):
    pytest.importorskip("sklearn")
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "examples" / "train_digits.py"
    spec = importlib.util.spec_from_file_location("train_digits", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    accuracy = example.main(["--epochs", "4"])
    out = capsys.readouterr().out
    assert "epoch   4/4" in out and "test accuracy" in out
    assert accuracy > 0.85
