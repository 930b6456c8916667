"""Pooling and padding against PyTorch: values and gradients (float32, assert_close's default
tolerances) over a grid of kernel/stride/padding/dilation/ceil_mode/count_include_pad and odd
sizes; the modules' names and defaults; errors for inputs PyTorch refuses."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _pair_run(lucid_fn, torch_fn, x: np.ndarray, seed: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Forward and input gradient (for a random cotangent) of both, compared."""
    lx = lucid.Tensor(x, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ly, ty = lucid_fn(lx), torch_fn(tx)
    torch.testing.assert_close(torch.from_numpy(np.asarray(ly.data)), ty.detach())
    w = np.random.default_rng(seed).standard_normal(ty.shape).astype(x.dtype)
    ly.backward(w)
    ty.backward(torch.from_numpy(w))
    torch.testing.assert_close(torch.from_numpy(lx.grad), tx.grad)


def _two(v: int | tuple[int, int]) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (v, v)


def _legal(k: int | tuple[int, int], p: int | tuple[int, int]) -> bool:
    """PyTorch's rule: padding at most half the kernel."""
    return all(pp <= kk // 2 for pp, kk in zip(_two(p), _two(k)))


def _distinct(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """float32 values without ties (max pooling's gradient is then unambiguous)."""
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n).reshape(shape) / 7.0 - n / 14.0).astype(
        np.float32
    )


MAX_GRID = [
    (k, s, p, d, c)
    for k, s, p, d, c in itertools.product(
        [1, 2, 3, (3, 2)], [None, 1, 2, (2, 3)], [0, 1, (1, 0)], [1, 2, (1, 2)], [False, True]
    )
    if _legal(k, p)
]


@pytest.mark.parametrize(("k", "s", "p", "d", "ceil"), MAX_GRID)
def test_max_pool2d_matches_torch(k, s, p, d, ceil) -> None:  # type: ignore[no-untyped-def]
    x = _distinct((2, 3, 9, 8), seed=hash((str(k), str(s))) % 100)
    kw = {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": ceil}
    _pair_run(lambda t: F.max_pool2d(t, **kw), lambda t: TF.max_pool2d(t, **kw), x)


AVG_GRID = [
    (k, s, p, c, inc)
    for k, s, p, c, inc in itertools.product(
        [1, 2, 3, (3, 2), (2, 4)],
        [None, 1, 2, (2, 3)],
        [0, 1, (1, 0)],
        [False, True],
        [True, False],
    )
    if _legal(k, p)
]


@pytest.mark.parametrize(("k", "s", "p", "ceil", "inc"), AVG_GRID)
def test_avg_pool2d_matches_torch(k, s, p, ceil, inc) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 7)).astype(np.float32)
    kw = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
    kw["count_include_pad"] = inc
    _pair_run(lambda t: F.avg_pool2d(t, **kw), lambda t: TF.avg_pool2d(t, **kw), x)


@pytest.mark.parametrize("out", [1, 2, 3, (4, 5), (7, 1), (9, 7), (5, None), (13, 11)])
def test_adaptive_avg_pool2d_matches_torch(out) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(4).standard_normal((2, 3, 9, 7)).astype(np.float32)
    _pair_run(lambda t: F.adaptive_avg_pool2d(t, out), lambda t: TF.adaptive_avg_pool2d(t, out), x)


def test_global_average_pool_of_a_large_plane_matches_torch() -> None:
    """MobileNetV3's head: 576 channels of 7 x 7, and an odd plane size for the lane tail."""
    for shape in [(2, 576, 7, 7), (3, 5, 13, 11)]:
        x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
        pool = nn.AdaptiveAvgPool2d(1)
        _pair_run(pool, torch.nn.AdaptiveAvgPool2d(1), x)


PADS = [(1, 2), (2, 1, 1, 3), (0, 0, 3, 0), (1, 1, 1, 1, 1, 1), (3, 3, 0, 0, 1, 0)]
PAD_CASES = [(p, m) for p in PADS for m in ("constant", "reflect", "replicate", "circular")]
PAD_CASES += [((-1, 2, 2, -2), "constant"), ((0, -3, 1, 1, -1, 0), "constant")]


@pytest.mark.parametrize(("pads", "mode"), PAD_CASES)
def test_pad_matches_torch(pads, mode) -> None:  # type: ignore[no-untyped-def]
    # PyTorch pads k dims in the non-constant modes of a (k + 2)-d input only; constant: 4-d
    rank = 4 if mode == "constant" else len(pads) // 2 + 2
    x = np.random.default_rng(6).standard_normal((2, 3, 5, 6, 4)[:rank]).astype(np.float32)
    kw = {"mode": mode}
    if mode == "constant":
        kw["value"] = 0.5
    _pair_run(lambda t: F.pad(t, pads, **kw), lambda t: TF.pad(t, pads, **kw), x)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_of_a_3d_input_over_its_last_dim(mode: str) -> None:
    x = np.random.default_rng(7).standard_normal((2, 3, 7)).astype(np.float32)
    _pair_run(lambda t: F.pad(t, (3, 2), mode), lambda t: TF.pad(t, (3, 2), mode), x)


def test_one_d_pooling_matches_torch() -> None:
    x = _distinct((2, 3, 11))
    for k, s, p, d, ceil in [(3, 2, 1, 1, True), (2, None, 0, 2, False), (4, 3, 2, 1, True)]:
        kw = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
        _pair_run(nn.MaxPool1d(dilation=d, **kw), torch.nn.MaxPool1d(dilation=d, **kw), x, seed=k)
        _pair_run(nn.AvgPool1d(**kw), torch.nn.AvgPool1d(**kw), x)
        _pair_run(
            lambda t, kw=kw: F.avg_pool1d(t, **kw, count_include_pad=False),
            lambda t, kw=kw: TF.avg_pool1d(t, **kw, count_include_pad=False),
            x,
        )
    for out in (1, 4, 11):
        _pair_run(nn.AdaptiveAvgPool1d(out), torch.nn.AdaptiveAvgPool1d(out), x)


def test_unbatched_inputs_match_torch() -> None:
    x = _distinct((3, 8, 9))
    _pair_run(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1), x)
    _pair_run(nn.AvgPool2d(2), torch.nn.AvgPool2d(2), x)
    _pair_run(nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3)), x)
    _pair_run(nn.MaxPool1d(2), torch.nn.MaxPool1d(2), x[0])


def test_padding_modules_match_torch() -> None:
    x = np.random.default_rng(8).standard_normal((2, 3, 5, 6)).astype(np.float32)
    pairs = [
        (nn.ZeroPad2d(2), torch.nn.ZeroPad2d(2)),
        (nn.ZeroPad2d((1, 0, 2, 3)), torch.nn.ZeroPad2d((1, 0, 2, 3))),
        (nn.ConstantPad2d((1, 2, 0, 1), -3.0), torch.nn.ConstantPad2d((1, 2, 0, 1), -3.0)),
        (nn.ReflectionPad2d((2, 1, 3, 4)), torch.nn.ReflectionPad2d((2, 1, 3, 4))),
        (nn.ReplicationPad2d(3), torch.nn.ReplicationPad2d(3)),
    ]
    for ours, theirs in pairs:
        _pair_run(ours, theirs, x)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_like_torch() -> None:
    x = np.zeros((1, 2, 6, 6), dtype=np.float32)
    x[0, 1, ::2] = 1.0  # ties inside every window
    for kw in [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1}]:
        _pair_run(
            lambda t, kw=kw: F.max_pool2d(t, **kw), lambda t, kw=kw: TF.max_pool2d(t, **kw), x
        )


def test_max_pool_propagates_nan_and_handles_infinities_like_torch() -> None:
    x = _distinct((1, 1, 6, 6))
    x[0, 0, 1, 1] = np.nan
    x[0, 0, 4, :] = -np.inf
    x[0, 0, 0, 5] = np.inf
    got = F.max_pool2d(lucid.Tensor(x), 2).data
    want = TF.max_pool2d(torch.tensor(x), 2).numpy()
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[0, 0, 0, 0]) and got[0, 0, 0, 2] == np.inf


def test_module_defaults_and_repr_follow_torch() -> None:
    m = nn.MaxPool2d(3)
    assert (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) == (3, 3, 0, 1, False)
    a = nn.AvgPool2d(2, stride=1)
    assert (a.stride, a.padding, a.ceil_mode, a.count_include_pad) == (1, 0, False, True)
    assert "kernel_size=3" in repr(m) and "output_size=1" in repr(nn.AdaptiveAvgPool2d(1))
    assert not list(m.parameters()) and m.state_dict() == {}


# ---------------------------------------------------------------- errors


def _raises(exc: type, match: str, fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(exc, match=match):
        fn(*args, **kwargs)


def test_bad_inputs_give_clear_errors_naming_the_layer_and_shape() -> None:
    x = lucid.randn(2, 3, 5, 5)
    _raises(ValueError, r"MaxPool2d: expected a \[N, C, H, W\].*\(5, 5\)", nn.MaxPool2d(2), x[0, 0])
    _raises(ValueError, r"max_pool2d: input \[2, 3, 5, 5\] is too small", F.max_pool2d, x, 7)
    _raises(ValueError, r"avg_pool2d: .*too small", F.avg_pool2d, x, (2, 6))
    _raises(
        ValueError, r"MaxPool2d: padding \(2, 2\) must be at most half", nn.MaxPool2d(3, 1, 2), x
    )
    _raises(
        ValueError,
        r"AvgPool2d: padding \(2, 0\) must be at most half",
        nn.AvgPool2d(3, 1, (2, 0)),
        x,
    )
    _raises(ValueError, r"stride must be 2 positive", F.max_pool2d, x, 2, 0)
    _raises(ValueError, r"dilation must be 2 positive", F.max_pool2d, x, 2, 1, 0, 0)
    _raises(ValueError, r"kernel_size must be 2 positive", F.avg_pool2d, x, 0)
    _raises(TypeError, r"kernel_size must be an int or 2 ints", F.max_pool2d, x, (1, 2, 3))
    _raises(TypeError, r"max_pool2d: expected a floating-point", F.max_pool2d, x.astype("int64"), 2)
    _raises(NotImplementedError, r"return_indices", F.max_pool2d, x, 2, return_indices=True)
    _raises(NotImplementedError, r"return_indices", nn.MaxPool2d, 2, return_indices=True)
    _raises(NotImplementedError, r"divisor_override", nn.AvgPool2d, 2, divisor_override=3)
    _raises(ValueError, r"output_size must be 2 positive ints", F.adaptive_avg_pool2d, x, (0, 2))
    _raises(ValueError, r"AdaptiveAvgPool1d: expected a \[N, C, L\]", nn.AdaptiveAvgPool1d(2), x)
    _raises(
        ValueError,
        r"max_pool1d: input \[3, 5, 5\] is too small for kernel_size=\(9,\)",
        F.max_pool1d,
        x[0],
        9,
    )


def test_bad_padding_gives_clear_errors() -> None:
    x = lucid.randn(2, 3, 4, 5)
    _raises(
        ValueError,
        r"reflect padding \(5, 0\) of axis 3 must be less than its size 5",
        F.pad,
        x,
        (5, 0),
        "reflect",
    )
    _raises(ValueError, r"circular padding \(0, 6\) of axis 3", F.pad, x, (0, 6), "circular")
    _raises(ValueError, r"even length", F.pad, x, (1, 2, 3))
    _raises(ValueError, r"even length", F.pad, x, (1,) * 10)
    _raises(ValueError, r"mode must be one of", F.pad, x, (1, 1), "wrap")
    _raises(ValueError, r"negative padding", F.pad, x, (-1, 1), "replicate")
    _raises(ValueError, r"leaves axis 3 .* with size 0", F.pad, x, (-3, -2))
    _raises(ValueError, r"does not take a value", F.pad, x, (1, 1), "reflect", 2.0)
    _raises(TypeError, r"pad must be a tuple of ints", F.pad, x, 1)
    _raises(ValueError, r"ReflectionPad2d: pad: reflect padding", nn.ReflectionPad2d(4), x)
