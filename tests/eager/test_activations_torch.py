"""GELU, LeakyReLU, ELU, Softplus, Hardtanh, Softmax and LogSoftmax against PyTorch: values
and gradients, float32 (torch's default tolerances) and float64 (tight), kinks included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# (name, lucid functional, torch functional, kwargs)
ELEMENTWISE: list[tuple[str, Callable[..., Any], Callable[..., Any], dict[str, Any]]] = [
    ("gelu", F.gelu, TF.gelu, {}),
    ("gelu_tanh", F.gelu, TF.gelu, {"approximate": "tanh"}),
    ("leaky_relu", F.leaky_relu, TF.leaky_relu, {}),
    ("leaky_relu_0.2", F.leaky_relu, TF.leaky_relu, {"negative_slope": 0.2}),
    ("elu", F.elu, TF.elu, {}),
    ("elu_0.5", F.elu, TF.elu, {"alpha": 0.5}),
    ("softplus", F.softplus, TF.softplus, {}),
    ("softplus_beta2", F.softplus, TF.softplus, {"beta": 2.0, "threshold": 3.0}),
    ("hardtanh", F.hardtanh, TF.hardtanh, {}),
    ("hardtanh_wide", F.hardtanh, TF.hardtanh, {"min_val": -2.0, "max_val": 0.5}),
]
SOFTMAX = [("softmax", F.softmax, TF.softmax), ("log_softmax", F.log_softmax, TF.log_softmax)]
DTYPES = [np.float32, np.float64]


def _tol(dtype: type) -> dict[str, float]:
    """torch's defaults for float32 (assert_close picks them), tight for float64."""
    return {} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


def _elementwise_input(dtype: type) -> np.ndarray:
    rng = np.random.default_rng(0)
    # the kinks and switches themselves: 0, +-1, 0.5, -2, softplus' beta x = threshold (1.5, 20)
    edges = [0.0, -0.0, 1.0, -1.0, 0.5, -2.0, 1.5, 20.0, 25.0, -30.0, 40.0, -40.0]
    return np.concatenate([rng.standard_normal(52) * 4, edges]).reshape(8, 8).astype(dtype)


def _compare(
    ours: Callable[[lucid.Tensor], lucid.Tensor],
    theirs: Callable[[Any], Any],
    x: np.ndarray,
) -> None:
    """Values and input gradients (for a random upstream gradient) against torch."""
    w = np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)
    xl = lucid.Tensor(x, requires_grad=True)
    y = ours(xl)
    y.backward(w)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(w))
    assert y.dtype == x.dtype
    torch.testing.assert_close(torch.from_numpy(y.numpy()), yt.detach(), **_tol(x.dtype))
    torch.testing.assert_close(torch.from_numpy(xl.grad), xt.grad, **_tol(x.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ELEMENTWISE, ids=[c[0] for c in ELEMENTWISE])
def test_elementwise_activation_matches_torch(case: tuple, dtype: type) -> None:
    _, ours, theirs, kwargs = case
    _compare(lambda t: ours(t, **kwargs), lambda t: theirs(t, **kwargs), _elementwise_input(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("case", SOFTMAX, ids=[c[0] for c in SOFTMAX])
def test_softmax_matches_torch_along_every_dim(case: tuple, dim: int, dtype: type) -> None:
    _, ours, theirs = case
    x = (np.random.default_rng(2).standard_normal((3, 4, 5)) * 5).astype(dtype)
    _compare(lambda t: ours(t, dim), lambda t: theirs(t, dim), x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_large_logits(dtype: type) -> None:
    x = np.array([[1000.0, 1000.0, -1000.0], [-1e4, -1e4 + 1.0, -1e4 + 2.0]], dtype=dtype)
    for ours, theirs in ((F.softmax, TF.softmax), (F.log_softmax, TF.log_softmax)):
        y = ours(lucid.Tensor(x), 1).numpy()
        assert np.isfinite(y).all()
        torch.testing.assert_close(torch.from_numpy(y), theirs(torch.tensor(x), 1), **_tol(dtype))


def test_tensor_methods_and_modules_agree_with_the_functional_forms() -> None:
    x = lucid.Tensor(np.random.default_rng(3).standard_normal((4, 6)))
    np.testing.assert_array_equal(x.softmax(-1).numpy(), F.softmax(x, 1).numpy())
    np.testing.assert_array_equal(x.log_softmax(0).numpy(), nn.LogSoftmax(dim=0)(x).numpy())
    np.testing.assert_array_equal(nn.Softmax(1)(x).numpy(), F.softmax(x, -1).numpy())
    pairs = [
        (nn.GELU(approximate="tanh"), F.gelu(x, approximate="tanh")),
        (nn.LeakyReLU(0.3), F.leaky_relu(x, 0.3)),
        (nn.ELU(alpha=2.0), F.elu(x, 2.0)),
        (nn.Softplus(beta=2.0, threshold=1.0), F.softplus(x, 2.0, 1.0)),
        (nn.Hardtanh(-0.5, 0.25), F.hardtanh(x, -0.5, 0.25)),
    ]
    for module, want in pairs:
        np.testing.assert_array_equal(module(x).numpy(), want.numpy())


def test_defaults_and_reprs_follow_torch() -> None:
    pairs = [
        (nn.GELU(), torch.nn.GELU()),
        (nn.LeakyReLU(), torch.nn.LeakyReLU()),
        (nn.ELU(), torch.nn.ELU()),
        (nn.Softplus(), torch.nn.Softplus()),
        (nn.Hardtanh(), torch.nn.Hardtanh()),
        (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
    ]
    for ours, theirs in pairs:
        for attr in ("approximate", "negative_slope", "alpha", "beta", "threshold", "dim"):
            if hasattr(theirs, attr):
                assert getattr(ours, attr) == getattr(theirs, attr), (ours, attr)
        for attr in ("min_val", "max_val"):
            if hasattr(theirs, attr):
                assert getattr(ours, attr) == getattr(theirs, attr)
    assert repr(nn.GELU()) == "GELU(approximate='none')"
    assert repr(nn.Softplus()) == "Softplus(beta=1.0, threshold=20.0)"
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)"


def test_bad_arguments_raise_errors_naming_the_op_and_shape() -> None:
    x = lucid.Tensor(np.zeros((3, 4), np.float32))
    with pytest.raises(IndexError, match=r"softmax: dim 2 is out of range for a tensor of shape "):
        F.softmax(x, 2)
    with pytest.raises(IndexError, match=r"\(3, 4\) \(expected dim in \[-2, 1\]\)"):
        x.log_softmax(-3)
    with pytest.raises(TypeError, match="softmax: dim must be an int"):
        F.softmax(x, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="log_softmax: expected a floating-point Tensor"):
        F.log_softmax(lucid.Tensor(np.array([1, 2])), 0)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        F.gelu(x, approximate="erf")
    with pytest.raises(ValueError, match="GELU: approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="Hardtanh: min_val must be less than max_val"):
        nn.Hardtanh(1.0, -1.0)
    with pytest.raises(ValueError, match="leaky_relu: inplace=True is not supported"):
        nn.LeakyReLU(inplace=True)(x)
    with pytest.raises(ValueError, match="softplus: beta must not be 0"):
        F.softplus(x, beta=0)
    with pytest.raises(TypeError, match="elu: expected a floating-point Tensor"):
        F.elu(lucid.Tensor(np.array([1, 2])))
