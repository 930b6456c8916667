"""Shape ops, cat/stack/split/chunk, basic indexing and max/min/argmax/var/std against PyTorch: values and gradients,
float32 (torch's default tolerances) and float64 (tight); bad arguments name the op and shapes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import lucid

torch = pytest.importorskip("torch")
DTYPES = [np.float32, np.float64]


def _tol(dtype: type) -> dict[str, float]:
    """torch's defaults for float32 (assert_close picks them), tight for float64."""
    return {} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-14}


def _check(
    fn_lucid: Callable[..., Any],
    fn_torch: Callable[..., Any],
    shapes: list[tuple[int, ...]],
    dtype: type,
) -> None:
    """Same outputs (one tensor or a tuple) and the same input gradients for a weighted sum."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(dtype) for s in shapes]
    xs = [lucid.Tensor(a, requires_grad=True) for a in arrays]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    got, want = fn_lucid(*xs), fn_torch(*ts)
    got = got if isinstance(got, tuple) else (got,)
    want = tuple(want) if isinstance(want, (tuple, list)) else (want,)
    assert len(got) == len(want)
    loss_l: Any = 0.0
    loss_t: Any = 0.0
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == tuple(w.shape)
        torch.testing.assert_close(torch.from_numpy(np.asarray(g.data)), w.detach(), **_tol(dtype))
        weight = np.asarray(rng.standard_normal(g.shape) + k, dtype=dtype)
        loss_l = loss_l + (g * lucid.Tensor(weight)).sum()
        loss_t = loss_t + (w * torch.from_numpy(weight)).sum()
    loss_l.backward()
    loss_t.backward()
    for x, t in zip(xs, ts):
        torch.testing.assert_close(torch.from_numpy(x.grad), t.grad, **_tol(dtype))


CASES: list[tuple[str, Callable[..., Any], Callable[..., Any], list[tuple[int, ...]]]] = [
    ("unsqueeze0", lambda x: x.unsqueeze(0), lambda x: x.unsqueeze(0), [(2, 3)]),
    ("unsqueeze-1", lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1), [(2, 3)]),
    ("squeeze", lambda x: x.squeeze(), lambda x: x.squeeze(), [(1, 3, 1, 2)]),
    ("squeeze_dim", lambda x: x.squeeze(2), lambda x: x.squeeze(2), [(1, 3, 1, 2)]),
    ("squeeze_not1", lambda x: x.squeeze(1), lambda x: x.squeeze(1), [(1, 3, 1, 2)]),
    ("squeeze_tuple", lambda x: x.squeeze((0, 2)), lambda x: x.squeeze((0, 2)), [(1, 3, 1, 2)]),
    ("permute", lambda x: x.permute(2, 0, 1), lambda x: x.permute(2, 0, 1), [(2, 3, 4)]),
    ("permute_neg", lambda x: x.permute((-1, 0, 1)), lambda x: x.permute((-1, 0, 1)), [(2, 3, 4)]),
    ("flatten", lambda x: x.flatten(), lambda x: x.flatten(), [(2, 3, 4)]),
    ("flatten1", lambda x: x.flatten(1), lambda x: x.flatten(1), [(2, 3, 4)]),
    ("flatten_mid", lambda x: x.flatten(0, 1), lambda x: x.flatten(0, 1), [(2, 3, 4)]),
    ("view", lambda x: x.view(4, -1), lambda x: x.view(4, -1), [(2, 3, 4)]),
    ("lucid.flatten", lambda x: lucid.flatten(x, 1), lambda x: torch.flatten(x, 1), [(2, 3, 4)]),
    ("lucid.unsqueeze", lambda x: lucid.unsqueeze(x, 1), lambda x: torch.unsqueeze(x, 1), [(2, 3)]),
    ("cat0", lambda a, b: lucid.cat([a, b]), lambda a, b: torch.cat([a, b]), [(2, 3), (4, 3)]),
    (
        "cat1",
        lambda a, b, c: lucid.cat([a, b, c], dim=1),
        lambda a, b, c: torch.cat([a, b, c], dim=1),
        [(2, 3), (2, 1), (2, 5)],
    ),
    (
        "cat_neg",
        lambda a, b: lucid.cat((a, b), -1),
        lambda a, b: torch.cat((a, b), -1),
        [(2, 3, 2), (2, 3, 4)],
    ),
    ("cat_self", lambda a: lucid.cat([a, a], 1), lambda a: torch.cat([a, a], 1), [(2, 3)]),
    ("stack0", lambda a, b: lucid.stack([a, b]), lambda a, b: torch.stack([a, b]), [(2, 3)] * 2),
    (
        "stack_last",
        lambda a, b: lucid.stack([a, b], -1),
        lambda a, b: torch.stack([a, b], -1),
        [(2, 3)] * 2,
    ),
    ("split_int", lambda x: x.split(2, 1), lambda x: x.split(2, 1), [(3, 5)]),
    ("split_list", lambda x: x.split([1, 3, 1], 1), lambda x: x.split([1, 3, 1], 1), [(3, 5)]),
    ("split_zero", lambda x: x.split([0, 3], 0), lambda x: x.split([0, 3], 0), [(3, 5)]),
    ("lucid.split", lambda x: lucid.split(x, 2), lambda x: torch.split(x, 2), [(5, 2)]),
    ("chunk", lambda x: x.chunk(3, 1), lambda x: x.chunk(3, 1), [(2, 7)]),
    ("chunk_fewer", lambda x: x.chunk(4, 0), lambda x: x.chunk(4, 0), [(6, 2)]),
    ("lucid.chunk", lambda x: lucid.chunk(x, 2, -1), lambda x: torch.chunk(x, 2, -1), [(2, 5)]),
    ("index_int", lambda x: x[1], lambda x: x[1], [(3, 4)]),
    ("index_negative", lambda x: x[-1, -2], lambda x: x[-1, -2], [(3, 4)]),
    ("index_slices", lambda x: x[1:, ::2], lambda x: x[1:, ::2], [(3, 4)]),
    ("index_steps", lambda x: x[:, 1:7:3], lambda x: x[:, 1:7:3], [(2, 9)]),
    ("index_clamped", lambda x: x[-10:10, 2:100], lambda x: x[-10:10, 2:100], [(3, 4)]),
    ("index_empty", lambda x: x[2:1], lambda x: x[2:1], [(3, 4)]),
    ("index_ellipsis", lambda x: x[..., 1], lambda x: x[..., 1], [(2, 3, 4)]),
    ("index_ellipsis_mid", lambda x: x[0, ..., 1:], lambda x: x[0, ..., 1:], [(2, 3, 4)]),
    ("index_none", lambda x: x[None, :, None], lambda x: x[None, :, None], [(2, 3)]),
    (
        "index_mixed",
        lambda x: x[1, None, ::2, ..., -1],
        lambda x: x[1, None, ::2, ..., -1],
        [(2, 3, 4)],
    ),
    ("index_whole", lambda x: x[:] * 1.0, lambda x: x[:] * 1.0, [(2, 3)]),
    ("index_scalar", lambda x: x[1, 2], lambda x: x[1, 2], [(3, 4)]),
]


REDUCTIONS: list[tuple[str, Callable[..., Any], Callable[..., Any], list[tuple[int, ...]]]] = [
    ("max", lambda x: x.max(), lambda x: x.max(), [(3, 4)]),
    ("min", lambda x: lucid.min(x), lambda x: torch.min(x), [(3, 4)]),
    ("max_dim", lambda x: x.max(1)[0], lambda x: x.max(1)[0], [(3, 4)]),
    ("max_values", lambda x: x.max(dim=0).values, lambda x: x.max(dim=0).values, [(3, 4)]),
    ("min_keepdim", lambda x: x.min(-1, keepdim=True)[0], lambda x: x.min(-1, True)[0], [(3, 4)]),
    ("max_3d", lambda x: lucid.max(x, 1)[0], lambda x: torch.max(x, 1)[0], [(2, 3, 4)]),
    ("var", lambda x: x.var(), lambda x: x.var(), [(3, 4)]),
    ("var_dim", lambda x: x.var(0), lambda x: x.var(0), [(3, 4)]),
    (
        "var_dims",
        lambda x: x.var((0, 2), keepdim=True),
        lambda x: x.var((0, 2), keepdim=True),
        [(2, 3, 4)],
    ),
    ("var_c0", lambda x: x.var(1, correction=0), lambda x: x.var(1, correction=0), [(3, 4)]),
    ("std", lambda x: lucid.std(x, -1), lambda x: torch.std(x, -1), [(3, 4)]),
    (
        "masked_fill",
        lambda x: x.masked_fill(x.data > 0.3, -1.5),
        lambda x: x.masked_fill(x > 0.3, -1.5),
        [(3, 4)],
    ),
    ("tril", lambda x: x.tril(), lambda x: x.tril(), [(2, 3, 4)]),
    ("tril_k", lambda x: x.tril(-1), lambda x: x.tril(-1), [(4, 3)]),
    ("triu", lambda x: x.triu(1), lambda x: x.triu(1), [(3, 4)]),
    ("std_c2", lambda x: x.std(correction=2), lambda x: x.std(correction=2), [(3, 4)]),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fl, ft, shapes", REDUCTIONS, ids=[c[0] for c in REDUCTIONS])
def test_reductions_match_torch(name: str, fl: Any, ft: Any, shapes: Any, dtype: type) -> None:
    _check(fl, ft, shapes, dtype)  # random normals: no ties, where max's rules differ


@pytest.mark.parametrize("which", ["max", "min", "argmax", "argmin"])
def test_indices_match_torch_including_ties_and_nan(which: str) -> None:
    a = np.array([[1.0, 3.0, 3.0, -2.0], [0.0, np.nan, 5.0, np.nan], [-1.0, -1.0, -1.0, -1.0]])
    x, t = lucid.Tensor(a), torch.tensor(a)
    for dim in (0, 1, -1):
        if which in ("max", "min"):
            got, want = getattr(x, which)(dim), getattr(t, which)(dim)
            np.testing.assert_array_equal(got.values.data, want.values.numpy())
            got_i, want_i = got.indices, want.indices
        else:
            got_i, want_i = getattr(x, which)(dim), getattr(t, which)(dim)
        assert got_i.dtype == np.int64 and got_i.shape == tuple(want_i.shape)
        if which.startswith("arg"):  # torch.max(dim)'s index among ties is unspecified
            np.testing.assert_array_equal(got_i.data, want_i.numpy())
    flat = getattr(x, "argmax" if "max" in which else "argmin")()
    assert flat.shape == () and int(flat.data) == 5  # the first NaN
    kept = getattr(x, which)(keepdim=True, dim=1)
    assert (kept if which.startswith("arg") else kept.values).shape == (3, 1)


def test_max_shares_the_gradient_among_ties() -> None:
    """Documented choice: PyTorch's amax rule, an even share per tied element."""
    x = lucid.Tensor(np.array([[2.0, 2.0, 1.0], [0.0, 3.0, 3.0]]), requires_grad=True)
    x.max(1).values.sum().backward()
    np.testing.assert_array_equal(x.grad, [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    x.grad = None
    x.max().backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert x.argmax(1).requires_grad is False


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fl, ft, shapes", CASES, ids=[c[0] for c in CASES])
def test_matches_torch(name: str, fl: Any, ft: Any, shapes: Any, dtype: type) -> None:
    _check(fl, ft, shapes, dtype)


def test_advanced_indexing_still_runs_eagerly_with_a_gradient() -> None:
    x = lucid.Tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    x[np.array([0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize(
    "fn, error, match",
    [
        (lambda x: x.unsqueeze(3), IndexError, r"unsqueeze: dim 3 is out of range .*\(2, 3\)"),
        (lambda x: x.permute(0), ValueError, r"permute: \(0,\) names 1 dims.*\(2, 3\)"),
        (lambda x: x.permute(0, 0), ValueError, r"transpose: .* not a permutation"),
        (lambda x: x.flatten(1, 0), ValueError, r"flatten: start_dim 1 comes after end_dim 0"),
        (lambda x: x.squeeze(5), IndexError, r"squeeze: dim 5 is out of range"),
        (lambda x: x.split([1, 1], 1), ValueError, r"split: sizes \[1, 1\] .* sum to 3.*\(2, 3\)"),
        (lambda x: x.split(0), ValueError, r"split: split_size must be positive"),
        (lambda x: x.chunk(0), ValueError, r"chunk: chunks must be positive"),
        (
            lambda x: lucid.cat([x, lucid.ones(3, 2)]),
            ValueError,
            r"cat: tensors must have the same shape except in dim 0, got shapes \(2, 3\), \(3, 2\)",
        ),
        (lambda x: lucid.cat([x, x], 2), IndexError, r"cat: dim 2 is out of range .*\(2, 3\)"),
        (lambda x: lucid.cat([]), TypeError, r"cat: expected a non-empty sequence"),
        (
            lambda x: lucid.cat([x, x.astype(np.float64)]),
            TypeError,
            r"cat: tensors have different dtypes",
        ),
        (
            lambda x: lucid.stack([x, x.T]),
            ValueError,
            r"stack: tensors must all have the same shape, got shapes \(2, 3\), \(3, 2\)",
        ),
        (lambda x: x[3], IndexError, r"index 3 is out of bounds for dimension 0 with size 2"),
        (lambda x: x[0, 0, 0], IndexError, r"too many indices .* shape \(2, 3\)"),
        (lambda x: x[::-1], ValueError, r"step must be positive, got -1"),
        (lambda x: x[..., 0, ...], IndexError, r"single ellipsis"),
        (lambda x: x.max(2), IndexError, r"max: dim 2 is out of range .*\(2, 3\)"),
        (lambda x: x.argmin(-3), IndexError, r"argmin: dim -3 is out of range"),
        (lambda x: x[:0].max(), ValueError, r"max: the tensor of shape \(0, 3\) is empty"),
        (lambda x: x.var(4), ValueError, r"var: axis 4 is out of range"),
        (lambda x: x.astype(np.int64).var(), TypeError, r"mean: expected a floating-point"),
    ],
)
def test_bad_arguments_name_the_op_and_the_shapes(fn: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        fn(lucid.ones(2, 3))
