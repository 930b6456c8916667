"""Normalization layers against PyTorch (float32, torch.testing.assert_close's default
tolerances): outputs, gradients, running statistics after several steps, state dicts, and the
errors for bad inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn

torch = pytest.importorskip("torch")
assert_close = torch.testing.assert_close


def _data(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # an offset mean and a scale far from 1, so normalization has work to do
    return (rng.standard_normal(shape) * 3 + 2).astype(np.float32)


def _pair(ours: nn.Module, theirs: Any, rng: np.random.Generator) -> None:
    """Random weights in `ours`, copied into `theirs` through the state dict."""
    for p in ours.parameters():
        p.data[...] = rng.standard_normal(p.shape)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})


def _same_state(ours: nn.Module, theirs: Any) -> None:
    mine, want = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(want)
    for k in mine:
        assert_close(torch.tensor(mine[k]), want[k], msg=k)


BN_CASES = [
    (nn.BatchNorm1d, "BatchNorm1d", (8, 5)),
    (nn.BatchNorm1d, "BatchNorm1d", (6, 5, 7)),
    (nn.BatchNorm2d, "BatchNorm2d", (4, 5, 3, 6)),
]


@pytest.mark.parametrize(("cls", "tname", "shape"), BN_CASES)
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"momentum": None},
        {"momentum": 0.3, "eps": 1e-3},
        {"affine": False},
        {"track_running_stats": False},
    ],
    ids=["default", "momentum_none", "momentum_eps", "no_affine", "no_running_stats"],
)
def test_batchnorm_train_steps_then_eval_match_torch(cls, tname, shape, kwargs) -> None:
    rng = np.random.default_rng(1)
    c = shape[1]
    ours, theirs = cls(c, **kwargs), getattr(torch.nn, tname)(c, **kwargs)
    _pair(ours, theirs, rng)
    for _ in range(4):  # several steps: the running statistics accumulate
        x = _data(rng, shape)
        xt = torch.tensor(x, requires_grad=True)
        xl = lucid.tensor(x, requires_grad=True)
        y, yt = ours(xl), theirs(xt)
        assert_close(torch.tensor(y.data), yt.detach())
        g = rng.standard_normal(shape).astype(np.float32)
        y.backward(g)
        yt.backward(torch.tensor(g))
        assert_close(torch.tensor(xl.grad), xt.grad)
        for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
            assert_close(torch.tensor(p.grad), tp.grad, msg=name)
            p.grad, tp.grad = None, None
        _same_state(ours, theirs)
    ours.eval()
    theirs.eval()
    x = _data(rng, shape)
    assert_close(torch.tensor(ours(lucid.tensor(x)).data), theirs(torch.tensor(x)).detach())
    _same_state(ours, theirs)


def test_batchnorm_buffers_and_state_dict_keys_are_pytorchs() -> None:
    ours, theirs = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert ours.state_dict()["num_batches_tracked"].dtype == np.int64
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in ours.named_buffers()] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    assert nn.BatchNorm1d(3, track_running_stats=False).state_dict().keys() == {"weight", "bias"}
    assert repr(ours) == repr(theirs)
    assert repr(nn.LayerNorm(4, bias=False)) == repr(torch.nn.LayerNorm(4, bias=False))
    assert repr(nn.GroupNorm(2, 4)) == repr(torch.nn.GroupNorm(2, 4))
    no_bias = nn.BatchNorm1d(3, bias=False)
    assert list(no_bias.state_dict()) == list(torch.nn.BatchNorm1d(3, bias=False).state_dict())
    # torch's trained state loads into lucid, buffers included
    theirs.train()(torch.randn(4, 3, 2, 2) * 5)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    _same_state(ours, theirs)


def test_functional_batch_norm_matches_torch() -> None:
    rng = np.random.default_rng(2)
    x = _data(rng, (6, 4, 5))
    w, b = rng.standard_normal(4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    trm, trv = torch.zeros(4), torch.ones(4)
    rm_l, rv_l = lucid.tensor(rm), lucid.tensor(rv)
    y = F.batch_norm(
        lucid.tensor(x), rm_l, rv_l, lucid.tensor(w), lucid.tensor(b), training=True, momentum=0.2
    )
    yt = torch.nn.functional.batch_norm(
        torch.tensor(x), trm, trv, torch.tensor(w), torch.tensor(b), training=True, momentum=0.2
    )
    assert_close(torch.tensor(y.data), yt)
    assert_close(torch.tensor(rm_l.data), trm)
    assert_close(torch.tensor(rv_l.data), trv)
    # eval: the running statistics normalize
    rm2, rv2 = lucid.tensor(rm + 1), lucid.tensor(rv * 2)
    y = F.batch_norm(lucid.tensor(x), rm2, rv2, None, None, training=False)
    # (lucid.tensor copied rm and rv; torch updated trm and trv in place above)
    yt = torch.nn.functional.batch_norm(
        torch.tensor(x), torch.tensor(rm + 1), torch.tensor(rv * 2), training=False
    )
    assert_close(torch.tensor(y.data), yt)


@pytest.mark.parametrize(
    ("shape", "normalized", "kwargs"),
    [
        ((5, 8), 8, {}),
        ((2, 3, 16), (16,), {"eps": 1e-3}),
        ((2, 3, 4, 5), (4, 5), {}),
        ((3, 7), [7], {"elementwise_affine": False}),
        ((3, 2, 7), 7, {"bias": False}),
    ],
)
def test_layernorm_matches_torch(shape, normalized, kwargs) -> None:
    rng = np.random.default_rng(3)
    ours, theirs = nn.LayerNorm(normalized, **kwargs), torch.nn.LayerNorm(normalized, **kwargs)
    _pair(ours, theirs, rng)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = _data(rng, shape)
    xl, xt = lucid.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xl), theirs(xt)
    assert_close(torch.tensor(y.data), yt.detach())
    g = rng.standard_normal(shape).astype(np.float32)
    y.backward(g)
    yt.backward(torch.tensor(g))
    assert_close(torch.tensor(xl.grad), xt.grad)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(torch.tensor(p.grad), tp.grad, msg=name)


@pytest.mark.parametrize(
    ("groups", "shape", "affine"),
    [(2, (3, 4, 5), True), (3, (2, 6, 3, 4), True), (1, (2, 4, 3), False), (4, (2, 4, 2, 2), True)],
)
def test_groupnorm_matches_torch(groups, shape, affine) -> None:
    rng = np.random.default_rng(4)
    c = shape[1]
    ours, theirs = (
        nn.GroupNorm(groups, c, affine=affine),
        torch.nn.GroupNorm(groups, c, affine=affine),
    )
    _pair(ours, theirs, rng)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    x = _data(rng, shape)
    xl, xt = lucid.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = ours(xl), theirs(xt)
    assert_close(torch.tensor(y.data), yt.detach())
    g = rng.standard_normal(shape).astype(np.float32)
    y.backward(g)
    yt.backward(torch.tensor(g))
    assert_close(torch.tensor(xl.grad), xt.grad)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters()):
        assert_close(torch.tensor(p.grad), tp.grad, msg=name)


# ---------------------------------------------------------------- bad input


def _x(*shape: int) -> lucid.Tensor:
    return lucid.tensor(np.ones(shape, np.float32))


@pytest.mark.parametrize(
    ("module", "x", "match"),
    [
        (
            nn.BatchNorm1d(3),
            _x(4, 5),
            r"BatchNorm1d: expected 3 channels \(axis 1\), got input of shape \(4, 5\)",
        ),
        (
            nn.BatchNorm1d(3),
            _x(2, 3, 4, 5),
            r"BatchNorm1d: expected 2D or 3D input, got 4D input of shape \(2, 3, 4, 5\)",
        ),
        (
            nn.BatchNorm2d(3),
            _x(2, 3, 4),
            r"BatchNorm2d: expected 4D input, got 3D input of shape \(2, 3, 4\)",
        ),
        (nn.BatchNorm2d(3), _x(2, 4, 2, 2), r"BatchNorm2d: expected 3 channels"),
        (
            nn.BatchNorm1d(3),
            _x(1, 3),
            r"Expected more than 1 value per channel when training, got input size \(1, 3\)",
        ),
        (
            nn.BatchNorm2d(3),
            _x(1, 3, 1, 1),
            r"Expected more than 1 value per channel when training",
        ),
        (
            nn.LayerNorm(4),
            _x(2, 5),
            r"LayerNorm: layer_norm: expected an input of shape \[\*, 4\] .*got \(2, 5\)",
        ),
        (nn.LayerNorm((2, 4)), _x(4), r"expected an input of shape \[\*, 2, 4\]"),
        (
            nn.GroupNorm(2, 4),
            _x(2, 6, 3),
            r"GroupNorm: expected an input of shape \[N, 4, \*\], got \(2, 6, 3\)",
        ),
        (
            nn.GroupNorm(2, 4),
            _x(4),
            r"GroupNorm: expected an input of shape \[N, 4, \*\], got \(4,\)",
        ),
    ],
)
def test_bad_inputs_name_the_layer_and_the_shapes(module, x, match) -> None:
    with pytest.raises(ValueError, match=match):
        module(x)


def test_bad_arguments() -> None:
    with pytest.raises(
        ValueError, match="num_channels \\(6\\) must be a positive multiple of num_groups \\(4\\)"
    ):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        nn.BatchNorm2d(0)
    with pytest.raises(ValueError, match="normalized_shape must be positive ints"):
        nn.LayerNorm((3, 0))
    with pytest.raises(TypeError, match="batch_norm: expected a floating-point Tensor"):
        F.batch_norm(lucid.tensor(np.ones((2, 3), np.int64)), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: weight has shape \(4,\), expected \(3,\)"):
        F.batch_norm(_x(2, 3), None, None, _x(4), training=True)
    with pytest.raises(ValueError, match="running_mean and running_var are required"):
        F.batch_norm(_x(2, 3), None, None, training=False)
    with pytest.raises(
        ValueError, match=r"group_norm: the 5 channels .* cannot be split into 2 groups"
    ):
        F.group_norm(_x(2, 5, 3), 2)
    # one value per channel is fine in eval mode (running statistics), as in PyTorch
    bn = nn.BatchNorm1d(3).eval()
    assert bn(_x(1, 3)).shape == (1, 3)


def test_double_converts_running_statistics_like_torch() -> None:
    rng = np.random.default_rng(6)
    ours, theirs = nn.BatchNorm2d(3).double(), torch.nn.BatchNorm2d(3).double()
    assert ours.running_mean.dtype == np.float64 and ours.num_batches_tracked.dtype == np.int64
    x = rng.standard_normal((4, 3, 2, 2)) * 2 + 1
    assert_close(torch.tensor(ours(lucid.tensor(x)).data), theirs(torch.tensor(x)).detach())
    _same_state(ours, theirs)
