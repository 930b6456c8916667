"""Optimizer and scheduler state dicts: a float64 run split in two by save -> load into fresh
objects ends with bitwise the same weights as the run done in one go."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.io
import lucid.optim
from lucid import nn
from lucid.optim import lr_scheduler

X = np.random.default_rng(0).standard_normal((16, 5))
Y = np.random.default_rng(1).standard_normal((16, 2))

OPTIMS: dict[str, Callable[[Any], lucid.optim.Optimizer]] = {
    "sgd-momentum": lambda p: lucid.optim.SGD(
        p, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True
    ),
    "adam": lambda p: lucid.optim.Adam(p, lr=0.01, weight_decay=1e-3),
    "adamw": lambda p: lucid.optim.AdamW(p, lr=0.01),
}


def _fresh(opt: str) -> tuple[nn.Module, lucid.optim.Optimizer, lr_scheduler.LRScheduler]:
    lucid.random.seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 2)).double()
    optim = OPTIMS[opt](model.parameters())
    return model, optim, lr_scheduler.StepLR(optim, step_size=3, gamma=0.5)


def _train(model: nn.Module, optim: lucid.optim.Optimizer, sched: Any, steps: int) -> None:
    for _ in range(steps):
        optim.zero_grad()
        loss = ((model(lucid.tensor(X)) - lucid.tensor(Y)) ** 2).mean()
        loss.backward()
        optim.step()
        sched.step()


@pytest.mark.parametrize("opt", list(OPTIMS))
@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_split_run_is_bitwise_identical(
    tmp_path: Path, opt: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if fmt == "safetensors":
        pytest.importorskip("safetensors")
    else:
        monkeypatch.setattr(lucid.io, "_have_safetensors", lambda: False)
    whole = _fresh(opt)
    _train(*whole, 10)

    first = _fresh(opt)
    _train(*first, 4)
    model, optim, sched = first
    ckpt = {"model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict()}
    lucid.save(ckpt, tmp_path / "ckpt")
    del first, model, optim, sched

    model, optim, sched = _fresh(opt)
    loaded = lucid.load(tmp_path / "ckpt")
    model.load_state_dict(loaded["model"])
    optim.load_state_dict(loaded["optim"])
    sched.load_state_dict(loaded["sched"])
    _train(model, optim, sched, 6)

    for k, v in whole[0].state_dict().items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(model.state_dict()[k], v, err_msg=k)
    assert optim.lr == whole[1].lr


def test_layout_matches_pytorch() -> None:
    torch = pytest.importorskip("torch")
    model, optim, sched = _fresh("adamw")
    _train(model, optim, sched, 2)
    ours = optim.state_dict()
    tmodel = torch.nn.Sequential(
        torch.nn.Linear(5, 8), torch.nn.LayerNorm(8), torch.nn.Tanh(), torch.nn.Linear(8, 2)
    )
    topt = torch.optim.AdamW(tmodel.parameters(), lr=0.01)
    tmodel(torch.zeros(1, 5)).sum().backward()
    topt.step()
    theirs = topt.state_dict()
    assert set(ours["state"]) == set(theirs["state"])
    assert set(ours["state"][0]) == set(theirs["state"][0])
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]
    assert set(ours["param_groups"][0]) <= set(theirs["param_groups"][0])


def test_bad_optimizer_state_reports_every_problem() -> None:
    model, optim, _ = _fresh("adam")
    _train(model, optim, lr_scheduler.StepLR(optim, 3), 1)
    state = optim.state_dict()
    state["state"][0]["exp_avg"] = np.zeros((3, 3))
    del state["state"][1]["exp_avg_sq"]
    state["state"][99] = {}
    before = [m.copy() for m in optim._m]
    with pytest.raises(ValueError) as e:
        optim.load_state_dict(state)
    msg = str(e.value)
    assert "state 0.exp_avg has shape (3, 3)" in msg
    assert "state 1 has no exp_avg_sq" in msg
    assert "unknown parameter 99" in msg
    for a, b in zip(before, optim._m, strict=True):
        np.testing.assert_array_equal(a, b)
