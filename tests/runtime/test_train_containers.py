"""Compiled training of ModuleList models with each composed loss, frozen parameters, and
dtype conversion, against eager lucid from the same weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor, nn
from lucid.errors import RecompileWarning
from lucid.nn import functional as F
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc

F32 = {"rtol": 2e-5, "atol": 2e-6}
N, D, C = 8, 5, 3


def _log_softmax(z: Tensor) -> Tensor:
    """Log-probabilities for NLLLoss (unstabilised: fine for the test's small logits)."""
    return z - z.exp().sum(axis=1, keepdims=True).log()


def _row_weights(t: Tensor) -> Tensor:
    """Distinct weights per row (from the class), so each row's cotangent differs."""
    return t.astype(np.float32) * 0.5 + 1.0


class Net(nn.Module):
    """A ModuleList trunk and a ModuleDict of heads; forward returns the loss."""

    def __init__(self, loss: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(D, 8), nn.Tanh()])
        self.layers.append(nn.Linear(8, C))
        self.heads = nn.ModuleDict({"scale": nn.Linear(C, C)})
        self.loss = loss

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.loss(self.heads["scale"](x), target)


def _targets(kind: str, rng: np.random.Generator) -> np.ndarray:
    if kind == "class":
        return rng.integers(0, C, N).astype(np.int64)
    if kind == "prob":
        return rng.uniform(0, 1, (N, C)).astype(np.float32)
    return rng.standard_normal((N, C)).astype(np.float32)


LOSSES: dict[str, tuple[Any, str]] = {
    "l1": (nn.L1Loss(), "real"),
    "huber": (nn.HuberLoss(delta=0.7), "real"),
    "mse_sum": (nn.MSELoss(reduction="sum"), "real"),
    "bce_logits": (nn.BCEWithLogitsLoss(pos_weight=Tensor(np.float32([1.0, 2.0, 0.5]))), "prob"),
    "nll": (lambda z, t: F.nll_loss(_log_softmax(z), t), "class"),
    "cross_entropy_smoothing": (nn.CrossEntropyLoss(label_smoothing=0.1), "class"),
    "cross_entropy_none": (
        lambda z, t: (F.cross_entropy(z, t, reduction="none") * _row_weights(t)).sum(),
        "class",
    ),
    "cross_entropy_none_smoothing": (
        lambda z, t: (F.cross_entropy(z, t, "none", label_smoothing=0.2) * _row_weights(t)).mean(),
        "class",
    ),
    "cross_entropy_sum_smoothing": (
        nn.CrossEntropyLoss(reduction="sum", label_smoothing=0.3),
        "class",
    ),
}


def _train(model: nn.Module, run: Any, x: np.ndarray, t: np.ndarray) -> list[float]:
    opt = lucid.optim.AdamW(model.parameters(), lr=0.05)
    out = []
    for _ in range(4):
        opt.zero_grad()
        loss = run(Tensor(x), Tensor(t))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        out.append(float(loss.data))
    return out


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_compiled_training_with_each_loss_matches_eager(name: str) -> None:
    loss, kind = LOSSES[name]
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((N, D)).astype(np.float32), _targets(kind, rng)
    lucid.random.seed(4)
    model, twin = Net(loss), Net(loss)
    twin.load_state_dict(model.state_dict())
    cm = lucid.compile(model, dynamic_batch=True)
    compiled = _train(model, cm, x, t)
    eager = _train(twin, twin, x, t)
    assert len(cm.signatures) == 1  # one grad build served every step
    np.testing.assert_allclose(compiled, eager, **F32)
    for (k, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(p.data, q.data, **F32, err_msg=k)


def test_frozen_parameters_get_no_grad_compiled_or_eager() -> None:
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((N, D)).astype(np.float32), _targets("class", rng)
    lucid.random.seed(5)
    model, twin = Net(nn.CrossEntropyLoss()), Net(nn.CrossEntropyLoss())
    twin.load_state_dict(model.state_dict())
    for m in (model, twin):
        m.layers[0].requires_grad_(False)
    cm = lucid.compile(model)
    cm(Tensor(x), Tensor(t)).backward()
    twin(Tensor(x), Tensor(t)).backward()
    for (k, p), q in zip(model.named_parameters(), twin.parameters()):
        if k.startswith("layers.0."):
            assert p.grad is None and q.grad is None, k
        else:
            np.testing.assert_allclose(p.grad, q.grad, **F32, err_msg=k)
    # unfreezing is seen at the next call: the first layer gets its gradient again
    model.requires_grad_(True)
    twin.requires_grad_(True)
    model.zero_grad()
    twin.zero_grad()
    cm(Tensor(x), Tensor(t)).backward()
    twin(Tensor(x), Tensor(t)).backward()
    np.testing.assert_allclose(model.layers[0].weight.grad, twin.layers[0].weight.grad, **F32)


def test_a_dtype_change_of_the_parameters_recompiles() -> None:
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((N, D)), _targets("class", rng)
    lucid.random.seed(6)
    model = Net(nn.CrossEntropyLoss()).eval()
    cm = lucid.compile(model)
    first = cm(Tensor(x.astype(np.float32)), Tensor(t))
    assert first.dtype == np.float32
    model.double()
    with pytest.warns(RecompileWarning, match="float64 Parameter"):
        again = cm(Tensor(x), Tensor(t))
    assert again.dtype == np.float64
    np.testing.assert_allclose(again.data, model(Tensor(x), Tensor(t)).data, rtol=1e-12)
    np.testing.assert_allclose(again.data, first.data, rtol=1e-5)


def test_per_row_cross_entropy_output_and_its_backward_match_eager() -> None:
    """reduction="none" as a compiled output: [N] losses, and a backward from any cotangent."""
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((N, D)), _targets("class", rng)
    lucid.random.seed(7)
    per_row = lambda z, t: F.cross_entropy(z, t, reduction="none")
    model, twin = Net(per_row).double(), Net(per_row).double()
    twin.load_state_dict(model.state_dict())
    xs = Tensor(x, requires_grad=True)
    out = lucid.compile(model)(xs, Tensor(t))
    ref = twin(Tensor(x), Tensor(t))
    assert out.shape == (N,)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
    g = rng.standard_normal(N)
    out.backward(g)
    ref.backward(g)
    for (k, p), q in zip(model.named_parameters(), twin.parameters()):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-10, atol=1e-12, err_msg=k)
    assert xs.grad is not None and xs.grad.shape == (N, D)


def test_appending_to_a_module_list_recompiles() -> None:
    rng = np.random.default_rng(6)
    x, t = rng.standard_normal((N, D)).astype(np.float32), _targets("real", rng)
    lucid.random.seed(8)
    model = Net(nn.L1Loss()).eval()
    cm = lucid.compile(model)
    cm(Tensor(x), Tensor(t))
    model.layers.append(nn.ReLU())
    with pytest.warns(RecompileWarning, match=r"self\.layers\.3 was added"):
        out = cm(Tensor(x), Tensor(t))
    np.testing.assert_allclose(out.data, model(Tensor(x), Tensor(t)).data, **F32)


@pytest.mark.parametrize("name", ["nll", "cross_entropy_smoothing"])
@pytest.mark.parametrize("dynamic", [False, True])
def test_out_of_range_targets_raise_compiled_as_eagerly(name: str, dynamic: bool) -> None:
    """The composed losses pick classes through a one-hot mask, where an out-of-range class
    would silently add nothing: the index_check op makes compiled calls refuse it like eager."""
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((N, D)).astype(np.float32), _targets("class", rng)
    lucid.random.seed(10)
    model = Net(LOSSES[name][0])
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    np.testing.assert_allclose(
        compiled(Tensor(x), Tensor(t)).data, model(Tensor(x), Tensor(t)).data, **F32
    )
    for bad in (C, -1):
        t_bad = t.copy()
        t_bad[N // 2] = bad
        with pytest.raises(IndexError, match=r"target classes must lie in \[0, 3\)"):
            model(Tensor(x), Tensor(t_bad))
        with pytest.raises(IndexError, match="index input is out of range"):
            compiled(Tensor(x), Tensor(t_bad))
    ignored = t.copy()
    ignored[0] = -100  # nll_loss's default ignore_index: allowed, and the row counts for nothing
    if name == "nll":
        np.testing.assert_allclose(
            compiled(Tensor(x), Tensor(ignored)).data,
            model(Tensor(x), Tensor(ignored)).data,
            **F32,
        )


def test_exported_loss_refuses_out_of_range_targets(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    rng = np.random.default_rng(11)
    x, t = rng.standard_normal((N, D)).astype(np.float32), _targets("class", rng)
    lucid.random.seed(12)
    model = Net(LOSSES["nll"][0]).eval()
    lib = load(lucid.export(model, (x, t), tmp_path / "m", flags=QUICK).library)
    np.testing.assert_allclose(lib(x, t), model(Tensor(x), Tensor(t)).data, **F32)
    t[1] = C
    with pytest.raises(IndexError, match="index input is out of range"):
        lib(x, t)
