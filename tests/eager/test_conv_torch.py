"""Conv2d / Conv1d in eager lucid against PyTorch: values and gradients over a grid of stride,
padding (ints, tuples, "valid", "same"), dilation, groups (depthwise included), bias and odd
sizes; the modules' parameters, init and state-dict names; float64 central differences; and
the errors a bad input gets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn
from tests.eager.gradcheck import check_grads

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# (in_c, out_c, kernel, stride, padding, dilation, groups, bias, input H x W)
CASES_2D = [
    (3, 4, 3, 1, 0, 1, 1, True, (7, 9)),
    (3, 5, 3, 2, 1, 1, 1, True, (11, 10)),
    (4, 6, (3, 2), (2, 1), (1, 0), (1, 2), 2, False, (9, 8)),
    (6, 6, 3, 1, 1, 1, 6, True, (8, 7)),  # depthwise
    (6, 6, 3, 2, 1, 1, 6, False, (9, 9)),  # depthwise, stride 2
    (4, 8, 5, 1, 2, 2, 4, True, (10, 11)),  # depthwise with channel multiplier 2, dilated
    (5, 7, 1, 1, 0, 1, 1, True, (6, 5)),  # pointwise
    (4, 4, 4, 1, "same", 1, 1, True, (7, 6)),  # even kernel: asymmetric "same"
    (4, 6, (2, 3), 1, "same", (2, 1), 2, False, (5, 9)),
    (3, 2, 3, 3, "valid", 1, 1, True, (10, 8)),
    (2, 3, (1, 4), (1, 3), (0, 2), 1, 1, True, (1, 13)),
]


@pytest.mark.parametrize("case", CASES_2D, ids=[str(i) for i in range(len(CASES_2D))])
def test_conv2d_forward_and_gradients_match_torch(case: tuple) -> None:
    cin, cout, k, s, p, d, g, bias, hw = case
    lucid.random.seed(7)
    layer = nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ref = torch.nn.Conv2d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ref.load_state_dict({name: torch.tensor(v) for name, v in layer.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, cin, *hw)).astype(np.float32)
    xl = lucid.Tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    y, yt = layer(xl), ref(xt)
    torch.testing.assert_close(torch.tensor(y.data), yt.detach())
    w = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    y.backward(w)
    yt.backward(torch.tensor(w))
    torch.testing.assert_close(torch.tensor(xl.grad), xt.grad)
    torch.testing.assert_close(torch.tensor(layer.weight.grad), ref.weight.grad)
    if bias:
        torch.testing.assert_close(torch.tensor(layer.bias.grad), ref.bias.grad)


@pytest.mark.parametrize(
    "cin, cout, k, s, p, d, g, bias",
    [
        (3, 4, 3, 1, 0, 1, 1, True),
        (4, 6, 3, 2, 1, 1, 2, False),
        (4, 4, 4, 1, "same", 2, 4, True),
        (2, 3, 5, 3, "valid", 1, 1, True),
        (3, 3, 1, 1, 0, 1, 3, True),
    ],
)
def test_conv1d_forward_and_gradients_match_torch(cin, cout, k, s, p, d, g, bias) -> None:
    lucid.random.seed(3)
    layer = nn.Conv1d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ref = torch.nn.Conv1d(cin, cout, k, stride=s, padding=p, dilation=d, groups=g, bias=bias)
    ref.load_state_dict({name: torch.tensor(v) for name, v in layer.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((2, cin, 17)).astype(np.float32)
    xl, xt = lucid.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = layer(xl), ref(xt)
    torch.testing.assert_close(torch.tensor(y.data), yt.detach())
    w = np.random.default_rng(1).standard_normal(yt.shape).astype(np.float32)
    y.backward(w)
    yt.backward(torch.tensor(w))
    torch.testing.assert_close(torch.tensor(xl.grad), xt.grad)
    torch.testing.assert_close(torch.tensor(layer.weight.grad), ref.weight.grad)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d"), [(2, 3, 1, 1, 1), (2, (3, 2), 2, (2, 1), 1), (2, 3, 1, "same", 2), (1, 4, 1, "same", 1), (1, 3, 2, 2, 1)]
)  # fmt: skip
def test_padding_modes_match_torch(mode: str, n: int, k, s, p, d) -> None:  # type: ignore[no-untyped-def]
    lucid.random.seed(5)
    cls, ref_cls = (nn.Conv2d, torch.nn.Conv2d) if n == 2 else (nn.Conv1d, torch.nn.Conv1d)
    layer = cls(4, 6, k, stride=s, padding=p, dilation=d, groups=2, padding_mode=mode)
    ref = ref_cls(4, 6, k, stride=s, padding=p, dilation=d, groups=2, padding_mode=mode)
    ref.load_state_dict({name: torch.tensor(v) for name, v in layer.state_dict().items()})
    assert f"padding_mode='{mode}'" in repr(layer)
    x = np.random.default_rng(0).standard_normal((2, 4, *(7, 6)[:n])).astype(np.float32)
    xl, xt = lucid.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, yt = layer(xl), ref(xt)
    torch.testing.assert_close(torch.tensor(y.data), yt.detach())
    (y * y).sum().backward()
    (yt * yt).sum().backward()
    torch.testing.assert_close(torch.tensor(xl.grad), xt.grad)
    torch.testing.assert_close(torch.tensor(layer.weight.grad), ref.weight.grad)


def test_functional_forms_match_torch() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got = F.conv2d(lucid.Tensor(x), lucid.Tensor(w), lucid.Tensor(b), 2, (1, 2), 1, 2)
    want = TF.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), 2, (1, 2), 1, 2)
    torch.testing.assert_close(torch.tensor(got.data), want)
    x1, w1 = x[:, :, 0], w[:, :, 0]
    got1 = F.conv1d(lucid.Tensor(x1), lucid.Tensor(w1), None, 1, "same", 2, 2)
    want1 = TF.conv1d(torch.tensor(x1), torch.tensor(w1), None, 1, "same", 2, 2)
    torch.testing.assert_close(torch.tensor(got1.data), want1)


def test_unbatched_inputs_are_a_batch_of_one_as_in_torch() -> None:
    lucid.random.seed(1)
    c2, c1 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv1d(3, 4, 3, stride=2)
    r2, r1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv1d(3, 4, 3, stride=2)
    for mine, ref in ((c2, r2), (c1, r1)):
        ref.load_state_dict({name: torch.tensor(v) for name, v in mine.state_dict().items()})
    x2 = np.random.default_rng(0).standard_normal((3, 6, 5)).astype(np.float32)
    x1 = x2[:, 0]
    for mine, ref, x in ((c2, r2, x2), (c1, r1, x1)):
        got = mine(lucid.Tensor(x))
        want = ref(torch.tensor(x))
        assert got.shape == tuple(want.shape)
        torch.testing.assert_close(torch.tensor(got.data), want.detach())


def test_parameters_init_and_state_dict_follow_torch() -> None:
    lucid.random.seed(0)
    layer = nn.Conv2d(6, 8, (3, 5), groups=2)
    ref = torch.nn.Conv2d(6, 8, (3, 5), groups=2)
    assert list(layer.state_dict()) == list(ref.state_dict()) == ["weight", "bias"]
    assert layer.weight.shape == tuple(ref.weight.shape) == (8, 3, 3, 5)
    assert layer.weight.dtype == np.float32 and layer.bias.shape == (8,)
    bound = 1 / np.sqrt(3 * 3 * 5)  # kaiming_uniform(a=sqrt(5)): 1/sqrt(fan_in), bias too
    for p in (layer.weight.data, layer.bias.data):
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound
    assert nn.Conv2d(2, 2, 3, bias=False).bias is None
    c1 = nn.Conv1d(4, 2, 3)
    assert c1.weight.shape == (2, 4, 3) and list(c1.state_dict()) == ["weight", "bias"]
    assert repr(layer) == "Conv2d(6, 8, kernel_size=(3, 5), stride=(1, 1), groups=2)"


def test_float64_gradients_match_central_differences() -> None:
    rng = np.random.default_rng(4)
    for s, p, d, g in [((1, 1), 1, 1, 1), ((2, 1), (0, 2), (2, 1), 2), ((2, 2), 1, 1, 4)]:
        x = rng.standard_normal((2, 4, 6, 7))
        w = rng.standard_normal((4, 4 // g, 3, 2))
        b = rng.standard_normal(4)
        check_grads(lambda x, w, b, s=s, p=p, d=d, g=g: F.conv2d(x, w, b, s, p, d, g), x, w, b)
    x1, w1 = rng.standard_normal((2, 3, 9)), rng.standard_normal((6, 1, 4))
    check_grads(lambda x, w: F.conv1d(x, w, None, 2, 1, 1, 3), x1, w1)


def _msg(fn, *args) -> str:
    with pytest.raises((ValueError, TypeError)) as e:
        fn(*args)
    return str(e.value)


def test_bad_inputs_name_the_layer_and_the_shapes() -> None:
    layer = nn.Conv2d(4, 8, 3)
    model = nn.Sequential(layer)
    x5 = lucid.Tensor(np.zeros((1, 4, 9, 9, 1), np.float32))
    msg = _msg(model, x5)
    assert "Conv2d(4, 8" in msg and "'0'" in msg and "(1, 4, 9, 9, 1)" in msg
    msg = _msg(layer, lucid.Tensor(np.zeros((1, 3, 9, 9), np.float32)))
    assert "expected input with 4 channels" in msg and "(1, 3, 9, 9)" in msg
    msg = _msg(layer, lucid.Tensor(np.zeros((1, 4, 2, 9), np.float32)))
    assert "kernel size 3x3" in msg and "larger than the padded input 2x9" in msg
    msg = _msg(lambda: nn.Conv2d(4, 6, 3, groups=4))
    assert "groups=4 must divide" in msg and "out_channels=6" in msg
    msg = _msg(lambda: nn.Conv2d(4, 4, 3, stride=2, padding="same"))
    assert "'same'" in msg and "stride" in msg
    msg = _msg(lambda: nn.Conv2d(4, 4, 3, padding="full"))
    assert "padding must be" in msg
    msg = _msg(lambda: nn.Conv2d(4, 4, 3, padding_mode="mirror"))
    assert "padding_mode must be one of" in msg and "'mirror'" in msg
    msg = _msg(nn.Conv1d(2, 2, 3), lucid.Tensor(np.zeros((2, 2, 4, 4), np.float32)))
    assert "Conv1d(2, 2" in msg and "(2, 2, 4, 4)" in msg
    w = lucid.Tensor(np.zeros((6, 2, 3, 3), np.float32))
    msg = _msg(F.conv2d, lucid.Tensor(np.zeros((1, 4, 5, 5), np.float32)), w, None, 1, 0, 1, 3)
    assert "conv2d: groups=3 must divide" in msg
    msg = _msg(F.conv2d, lucid.Tensor(np.zeros((1, 4, 5, 5), np.float64)), w)
    assert "dtype" in msg
    msg = _msg(
        F.conv2d,
        lucid.Tensor(np.zeros((1, 4, 5, 5), np.float32)),
        w,
        lucid.Tensor(np.zeros(5, np.float32)),
        1,
        0,
        1,
        2,
    )
    assert "bias must have shape (6,)" in msg


def test_stride_and_dilation_grid_matches_torch() -> None:
    """Every combination on a small odd-sized input, forward only (the op's gradients share
    the same unfold and are checked above)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 9, 11)).astype(np.float32)
    for s, p, d, g in itertools.product((1, 2, 3), (0, 1, 2), (1, 2), (1, 2, 4)):
        w = rng.standard_normal((4, 4 // g, 3, 3)).astype(np.float32)
        got = F.conv2d(lucid.Tensor(x), lucid.Tensor(w), None, s, p, d, g)
        want = TF.conv2d(torch.tensor(x), torch.tensor(w), None, s, p, d, g)
        torch.testing.assert_close(torch.tensor(got.data), want, msg=f"{s} {p} {d} {g}")
