"""Parameter groups, as in PyTorch: per-group hyperparameters, state dicts that keep the
groups, schedulers that scale each group's own rate (issue 16: resumable training)."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.optim import lr_scheduler


def _params(seed: int = 0) -> list[nn.Parameter]:
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s)) for s in [(3, 4), (4,), (2, 2)]]


def _grads(params: list[nn.Parameter], rng: np.random.Generator) -> None:
    for p in params:
        p.grad = rng.standard_normal(p.shape)


MAKERS = {
    "sgd": lambda ps: optim.SGD(
        [{"params": ps[:2], "lr": 0.3, "momentum": 0.5}, {"params": ps[2:], "nesterov": True}],
        lr=0.1,
        momentum=0.9,
    ),
    "adam": lambda ps: optim.Adam(
        [{"params": ps[:1], "betas": (0.8, 0.99)}, {"params": ps[1:], "weight_decay": 0.1}],
        lr=0.01,
    ),
    "adamw": lambda ps: optim.AdamW(
        [{"params": ps[:1], "lr": 0.05}, {"params": ps[1:], "weight_decay": 0.0}], lr=0.01
    ),
}


def test_groups_fill_defaults_and_number_parameters_in_order() -> None:
    ps = _params()
    opt = MAKERS["sgd"](ps)
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.1]
    assert [g["momentum"] for g in opt.param_groups] == [0.5, 0.9]
    assert opt.params == ps
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sd["param_groups"][1]["nesterov"] is True


def test_a_group_with_lr_zero_leaves_its_parameters_alone() -> None:
    ps = _params()
    opt = optim.SGD([{"params": ps[:1], "lr": 0.0}, {"params": ps[1:]}], lr=0.5)
    before = [p.data.copy() for p in ps]
    _grads(ps, np.random.default_rng(1))
    opt.step()
    np.testing.assert_array_equal(ps[0].data, before[0])
    assert not np.array_equal(ps[1].data, before[1])
    opt.lr = 0.25  # sets every group
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]


@pytest.mark.parametrize("name", list(MAKERS))
def test_resuming_from_a_state_dict_is_bitwise_with_groups(name: str) -> None:
    """Six steps straight, or three, a save/load through lucid.save into a fresh optimizer,
    and three more: the same weights, bit for bit (float64)."""
    straight, resumed = _params(), _params()
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    opt = MAKERS[name](straight)
    for _ in range(6):
        _grads(straight, rng_a)
        opt.step()
    first = MAKERS[name](resumed)
    for _ in range(3):
        _grads(resumed, rng_b)
        first.step()
    state = first.state_dict()
    second = MAKERS[name](resumed)
    second.load_state_dict(state)
    for _ in range(3):
        _grads(resumed, rng_b)
        second.step()
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_a_scheduler_scales_each_groups_own_rate() -> None:
    ps = _params()
    opt = optim.SGD([{"params": ps[:1], "lr": 1.0}, {"params": ps[1:]}], lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert sched.get_last_lr() == [1.0, 0.1]
    sched.step()
    assert sched.get_last_lr() == [0.5, 0.05]
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.05]


def test_group_errors_are_clear() -> None:
    ps = _params()
    with pytest.raises(TypeError, match="all tensors or all parameter-group dicts"):
        optim.SGD([ps[0], {"params": ps[1:]}])
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}])
    with pytest.raises(ValueError, match=r"unknown parameter-group option\(s\) \['betas'\]"):
        optim.SGD([{"params": ps, "betas": (0.9, 0.9)}])
    with pytest.raises(ValueError, match="group 1 is empty"):
        optim.Adam([{"params": ps}, {"params": []}])
    with pytest.raises(ValueError, match="learning rate must be >= 0"):
        optim.Adam([{"params": ps, "lr": -1.0}])
    two = MAKERS["adam"](ps)
    with pytest.raises(ValueError, match=r"the state has 2 parameter group\(s\), this optimizer 1"):
        optim.Adam(_params()).load_state_dict(two.state_dict())


def test_add_param_group_extends_the_optimizer() -> None:
    ps = _params()
    opt = optim.Adam(ps[:2], lr=0.01)
    opt.add_param_group({"params": ps[2:], "lr": 0.5})
    assert opt.params == ps and [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    _grads(ps, np.random.default_rng(2))
    opt.step()
    assert opt.state_dict()["state"][2]["exp_avg"].shape == (2, 2)


def test_groups_through_compiled_training() -> None:
    """A frozen-backbone idiom: the body at a small rate, the head at a large one."""
    lucid.random.seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.HardSwish(), nn.Linear(8, 2))
    opt = optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.0}, {"params": model[2].parameters()}],
        lr=0.1,
    )
    body = model[0].weight.data.copy()
    head = model[2].weight.data.copy()
    x = lucid.Tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    lucid.compile(model, backend="interpreter")(x).sum().backward()
    opt.step()
    np.testing.assert_array_equal(model[0].weight.data, body)
    assert not np.array_equal(model[2].weight.data, head)
