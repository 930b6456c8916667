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
    assert w.defaults == {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}
    assert {k: v for k, v in w.param_groups[0].items() if k != "params"} == w.defaults
    s = optim.SGD(p)
    assert s.defaults == {
        "lr": 1e-3,
        "momentum": 0,
        "dampening": 0,
        "weight_decay": 0,
        "nesterov": False,
    }
    theirs = torch.optim.AdamW([torch.zeros(2, requires_grad=True)]).defaults
    assert {k: theirs[k] for k in w.defaults} == w.defaults
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


GROUPED = {
    "sgd": (
        lambda ps: optim.SGD(
            [{"params": ps[:1], "lr": 0.3, "momentum": 0.5}, {"params": ps[1:]}],
            lr=0.1,
            momentum=0.9,
        ),
        lambda ps: torch.optim.SGD(
            [{"params": ps[:1], "lr": 0.3, "momentum": 0.5}, {"params": ps[1:]}],
            lr=0.1,
            momentum=0.9,
        ),
    ),
    "adam": (
        lambda ps: optim.Adam(
            [{"params": ps[:1], "betas": (0.8, 0.99)}, {"params": ps[1:], "weight_decay": 0.1}],
            lr=0.01,
        ),
        lambda ps: torch.optim.Adam(
            [{"params": ps[:1], "betas": (0.8, 0.99)}, {"params": ps[1:], "weight_decay": 0.1}],
            lr=0.01,
        ),
    ),
    "adamw": (
        lambda ps: optim.AdamW([{"params": ps[:1], "lr": 0.05}, {"params": ps[1:]}], lr=0.01),
        lambda ps: torch.optim.AdamW([{"params": ps[:1], "lr": 0.05}, {"params": ps[1:]}], lr=0.01),
    ),
}


@pytest.mark.parametrize("name", list(GROUPED))
def test_parameter_groups_match_pytorch(name: str) -> None:
    ours, theirs = GROUPED[name]
    _run(
        ours,
        theirs,
        np.float64,
        (
            lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=7),
            lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=7),
        ),
    )


@pytest.mark.parametrize("name", list(GROUPED))
def test_a_pytorch_optimizer_state_with_groups_loads_and_continues_alike(name: str) -> None:
    """Three torch steps, its state_dict loaded into lucid; three more steps on each agree."""
    make_ours, make_theirs = GROUPED[name]
    rng = np.random.default_rng(9)
    start = [rng.standard_normal(s) for s in SHAPES]
    theirs = [torch.from_numpy(a.copy()).requires_grad_() for a in start]
    topt = make_theirs(theirs)
    for _ in range(3):
        for tp in theirs:
            tp.grad = torch.from_numpy(rng.standard_normal(tuple(tp.shape)))
        topt.step()
    ours = [nn.Parameter(tp.detach().numpy().copy()) for tp in theirs]
    opt = make_ours(ours)
    opt.load_state_dict(topt.state_dict())
    for _ in range(3):
        for p, tp in zip(ours, theirs):
            g = rng.standard_normal(p.shape)
            p.grad, tp.grad = g, torch.from_numpy(g.copy())
        opt.step()
        topt.step()
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)
