"""Optimizers, schedulers and clip_grad_norm_ against PyTorch on the same gradients (optional)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from lucid import nn, optim
from lucid.optim import lr_scheduler

torch = pytest.importorskip("torch")

TOL = {np.float64: {"rtol": 1e-6, "atol": 1e-9}, np.float32: {"rtol": 1e-5, "atol": 1e-6}}
SHAPES = [(3, 4), (4,)]
STEPS = 10


def _run(
    make_ours: Callable[[list[Any]], Any],
    make_theirs: Callable[[list[Any]], Any],
    dtype: Any,
    sched: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
) -> None:
    """STEPS updates of the same parameters with the same gradients, compared after each."""
    rng = np.random.default_rng(3)
    start = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [nn.Parameter(a.copy()) for a in start]
    theirs = [torch.from_numpy(a.copy()).requires_grad_() for a in start]
    opt, topt = make_ours(ours), make_theirs(theirs)
    s, ts = (sched[0](opt), sched[1](topt)) if sched else (None, None)
    arrays = [p.data for p in ours]
    for step in range(STEPS):
        for p, tp in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, tp.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        if s is not None:
            s.step()
            ts.step()
            assert s.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12), step
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **TOL[dtype], err_msg=str(step))
    assert all(p.data is a for p, a in zip(ours, arrays))  # updated in place
    assert all(p._version == STEPS for p in ours)


OPTIMIZERS = {
    "sgd": ({"lr": 0.1}, {"lr": 0.1}),
    "sgd_momentum": ({"lr": 0.1, "momentum": 0.9}, {"lr": 0.1, "momentum": 0.9}),
    "sgd_dampening_decay": (
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
    ),
    "sgd_nesterov": (
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ),
    "adamw_defaults": ({}, {}),
    "adamw": (
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
        {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1},
    ),
    "adam_decay": ({"lr": 0.01, "weight_decay": 0.1}, {"lr": 0.01, "weight_decay": 0.1}),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_trajectories_match_torch(name: str, dtype: Any) -> None:
    ours_kw, theirs_kw = OPTIMIZERS[name]
    cls = name.split("_")[0]
    ours_cls = {"sgd": optim.SGD, "adamw": optim.AdamW, "adam": optim.Adam}[cls]
    theirs_cls = {"sgd": torch.optim.SGD, "adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[cls]
    _run(lambda ps: ours_cls(ps, **ours_kw), lambda ps: theirs_cls(ps, **theirs_kw), dtype)


def test_defaults_are_pytorchs() -> None:
    p = [nn.Parameter(np.zeros(2))]
    w = optim.AdamW(p)
    assert (w.lr, w.betas, w.eps, w.weight_decay) == (1e-3, (0.9, 0.999), 1e-8, 1e-2)
    s = optim.SGD(p)
    assert (s.lr, s.momentum, s.dampening, s.weight_decay, s.nesterov) == (1e-3, 0, 0, 0, False)
    with pytest.raises(ValueError, match="nesterov needs momentum > 0 and dampening 0"):
        optim.SGD(p, lr=0.1, nesterov=True)


SCHEDULERS = {
    "step": (
        lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5),
    ),
    "cosine": (
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01),
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01),
    ),
    "lambda": (
        lambda o: lr_scheduler.LambdaLR(o, lambda e: 0.9**e + 0.1 * (e % 2)),
        lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 0.9**e + 0.1 * (e % 2)),
    ),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduled_trajectories_match_torch(name: str, dtype: Any) -> None:
    _run(
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
        lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
        dtype,
        SCHEDULERS[name],
    )


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_scheduler_state_dict_round_trip(name: str) -> None:
    make = SCHEDULERS[name][0]
    opt = optim.SGD([nn.Parameter(np.zeros(2))], lr=0.2)
    s = make(opt)
    for _ in range(5):
        s.step()
    state = s.state_dict()
    assert "optimizer" not in state and "lr_lambda" not in state
    opt2 = optim.SGD([nn.Parameter(np.zeros(2))], lr=0.2)
    s2 = make(opt2)
    s2.load_state_dict(state)
    assert s2.last_epoch == s.last_epoch and s2.get_last_lr() == s.get_last_lr()
    s.step()
    s2.step()
    assert opt2.lr == opt.lr == s.get_last_lr()[0]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type: float, max_norm: float) -> None:
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal(s) for s in SHAPES]
    ours = [nn.Parameter(np.zeros(s)) for s in SHAPES] + [nn.Parameter(np.zeros(2))]
    theirs = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad, tp.grad = g.copy(), torch.from_numpy(g.copy())
    total = nn.utils.clip_grad_norm_(ours, max_norm, norm_type)  # the last has no grad
    ref = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    np.testing.assert_allclose(total.data, ref.numpy(), rtol=1e-12)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-12)
    assert ours[-1].grad is None
