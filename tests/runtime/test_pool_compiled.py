"""Pooling and padding compiled: the C of every op over a grid of geometries against its NumPy
kernel (float64: bit for bit where the orders of summation agree), and models through
lucid.compile against eager lucid, forward, backward and training, static and dynamic batch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
import lucid.optim
from lucid import nn
from lucid.ir import Builder, DType, TensorType, format, parse, trace
from lucid.ir.ops import OPS

pytestmark = pytest.mark.needs_cc


def _two(v: int | tuple[int, int]) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (v, v)


def _geometries() -> list[dict]:
    out = []
    for k, s, p, d, c in itertools.product(
        [1, 2, 3, (3, 2), (2, 4)], [1, 2, (2, 3)], [0, 1, (1, 0)], [1, (2, 1)], [False, True]
    ):
        if all(pp <= kk // 2 for pp, kk in zip(_two(p), _two(k))):
            out.append(
                {"kernel_size": _two(k), "stride": _two(s), "padding": _two(p)}
                | {
                    "dilation": _two(d),
                    "ceil_mode": c,
                }
            )
    return out


def one_node_per_case(
    cases: list[tuple[str, list[np.ndarray], dict]], options: object = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One program with one node per case, compiled once (with BackendOptions `options`) and
    run: (its results, each op's NumPy kernel on the same arrays)."""
    from lucid.runtime.backends import BackendOptions, get_backend

    b = Builder("forward")
    feeds, wants = [], []
    for name, arrays, attrs in cases:
        ins = [b.input(TensorType(DType.from_numpy(a.dtype), a.shape), "x") for a in arrays]
        b.output(b.op(name, ins, attrs))
        feeds += arrays
        wants.append(OPS[name].numpy(*arrays, **dict(b.nodes[-1].attrs)))
    executable = get_backend("c").prepare(b.build(), options or BackendOptions())
    return list(executable.run(*feeds)), wants


def _run_c(cases: list[tuple[str, list[np.ndarray], dict]]) -> None:
    """One program with one node per case; each result against the kernel."""
    gots, wants = one_node_per_case(cases)
    for got, want, (name, _, attrs) in zip(gots, wants, cases):
        assert got.shape == want.shape, (name, attrs)
        if got.dtype == np.float64 and attrs.get("output_size") != (1, 1):
            np.testing.assert_array_equal(got, want, err_msg=f"{name} {attrs}")
        elif got.dtype == np.float64:  # the global mean sums in another order (8 lanes)
            np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=f"{name} {attrs}")
        else:
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6, err_msg=f"{name} {attrs}")


GEOMETRIES = _geometries()


@pytest.mark.parametrize(
    ("dtype", "start", "every"),
    [
        (np.float64, 0, 9),  # a sample of the grid: one C build of ~100 kernels
        # the whole grid, each geometry in one of the two dtypes (their kernels differ in the
        # element type only): two C builds of ~400 kernels, half the time of the grid twice
        pytest.param(np.float64, 1, 2, marks=pytest.mark.slow),
        pytest.param(np.float32, 0, 2, marks=pytest.mark.slow),
    ],
)
def test_c_pooling_kernels_match_numpy_over_a_geometry_grid(
    dtype: type, start: int, every: int
) -> None:
    rng = np.random.default_rng(0)
    shape = (2, 3, 9, 7)
    cases = []
    for g in GEOMETRIES[start::every]:
        x = (rng.permutation(int(np.prod(shape))).reshape(shape) / 8.0).astype(dtype)
        x[0, 0, 2, 3] = x[0, 0, 2, 4]  # one tie
        y = OPS["max_pool2d"].numpy(x, **g)
        gy = rng.standard_normal(y.shape).astype(dtype)
        cases += [("max_pool2d", [x], g), ("max_pool2d_grad", [x, gy], g)]
        avg = {k: v for k, v in g.items() if k != "dilation"}
        for inc in (True, False):
            a = avg | {"count_include_pad": inc}
            ya = OPS["avg_pool2d"].numpy(x, **a)
            cases.append(("avg_pool2d", [x], a))
            ga = rng.standard_normal(ya.shape).astype(dtype)
            cases.append(("avg_pool2d_grad", [ga], a | {"input_size": shape[2:]}))
    for out in [(1, 1), (3, 2), (4, 4), (9, 7), (2, 5), (13, 11)]:
        x = rng.standard_normal(shape).astype(dtype)
        cases.append(("adaptive_avg_pool2d", [x], {"output_size": out}))
        g = rng.standard_normal((*shape[:2], *out)).astype(dtype)
        cases.append(
            ("adaptive_avg_pool2d_grad", [g], {"output_size": out, "input_size": shape[2:]})
        )
    _run_c(cases)


def test_c_global_pool_lane_sum_covers_every_element() -> None:
    """Planes shorter than, equal to and longer than the 8 lanes, not multiples of 8."""
    rng = np.random.default_rng(1)
    cases = [
        ("adaptive_avg_pool2d", [rng.standard_normal((2, 3, h, w))], {"output_size": (1, 1)})
        for h, w in [(1, 1), (1, 7), (2, 4), (3, 3), (7, 7), (5, 13)]
    ]
    from lucid.runtime.backends import BackendOptions, get_backend

    b = Builder("forward")
    for _, (x,), attrs in cases:
        b.output(b.op("adaptive_avg_pool2d", [b.input(TensorType(DType.F64, x.shape), "x")], attrs))
    got = get_backend("c").prepare(b.build(), BackendOptions()).run(*(c[1][0] for c in cases))
    for g, (_, (x,), _) in zip(got, cases):
        np.testing.assert_allclose(g, x.mean(axis=(2, 3), keepdims=True), rtol=1e-14, atol=1e-15)


def test_a_big_global_pool_splits_its_planes_across_threads_with_the_same_means() -> None:
    """4 x 600 planes of 7 x 7 (117600 elements: several threads' worth): each plane's mean
    is computed as on one thread, so 1, 2 and 3 threads give the same bits, and eager's means."""
    model = nn.AdaptiveAvgPool2d(1)
    compiled = lucid.compile(model, dynamic_batch=True)
    x = np.random.default_rng(2).standard_normal((4, 600, 7, 7)).astype(np.float32)
    before = lucid.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            lucid.set_num_threads(threads)
            with lucid.no_grad():
                outs.append(compiled(lucid.Tensor(x)).data)
    finally:
        lucid.set_num_threads(before)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    with lucid.no_grad():
        want = model(lucid.Tensor(x)).data
    np.testing.assert_allclose(outs[0], want, rtol=1e-6, atol=1e-7)
    assert "on the planes of 49 elements [begin, end)" in (compiled.c_source or "")


@pytest.mark.parametrize("hw", [(7, 7), (3, 5), (8, 8), (2, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_global_pool_planes_four_at_a_time_equal_each_plane_alone(hw, dtype) -> None:  # type: ignore[no-untyped-def]
    """Planes of at most 64 elements are summed four at a time (adaptive_avg_pool2d.c.j2):
    a batch of 5 images of 3 planes (three groups of four, then three alone) gives each image
    the bits that image alone gives (its 3 planes all alone), special values included, and
    eager's means."""
    model = nn.AdaptiveAvgPool2d(1)
    compiled = lucid.compile(model, dynamic_batch=True)
    x = np.random.default_rng(5).standard_normal((5, 3, *hw)).astype(dtype)
    x[0, 1, 0, 0] = np.inf
    x[2, 0, -1, -1] = np.nan
    x[3, 2] = -0.0
    with lucid.no_grad():
        full = compiled(lucid.Tensor(x)).data
        for i in range(5):
            np.testing.assert_array_equal(compiled(lucid.Tensor(x[i : i + 1])).data[0], full[i])
        want = model(lucid.Tensor(x)).data
    assert full[0, 1, 0, 0] == np.inf and np.isnan(full[2, 0, 0, 0])
    tol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(full, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_c_pad_kernels_match_numpy(dtype: type) -> None:
    rng = np.random.default_rng(2)
    cases = []
    for mode in ("constant", "reflect", "replicate", "circular"):
        for shape, pads in [
            ((7,), (3, 2)),
            ((2, 3, 5, 6), (2, 1)),
            ((2, 3, 5, 6), (2, 1, 4, 3)),
            ((2, 3, 5, 6), (0, 0, 1, 2)),
            ((2, 3, 4, 5, 6), (1, 2, 3, 0, 2, 3)),
            ((4, 5), (5, 5, 4, 4)),
        ]:
            if mode == "reflect":
                pads = tuple(min(p, n - 1) for p, n in zip(pads, np.repeat(shape[::-1], 2)))
            x = rng.standard_normal(shape).astype(dtype)
            attrs = {"pads": pads, "mode": mode, "value": -2.5}
            y = OPS["pad"].numpy(x, **attrs)
            cases.append(("pad", [x], attrs))
            cases.append(("pad_grad", [rng.standard_normal(y.shape).astype(dtype)], attrs | {}))
            cases[-1][2].pop("value")
    for pads in [(-1, 2, 2, -2), (-2, -3, 0, 0), (0, 0, -1, 3)]:  # constant crops
        x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
        y = OPS["pad"].numpy(x, pads=pads, mode="constant", value=1.0)
        cases.append(("pad", [x], {"pads": pads, "mode": "constant", "value": 1.0}))
        g = rng.standard_normal(y.shape).astype(dtype)
        cases.append(("pad_grad", [g], {"pads": pads, "mode": "constant"}))
    _run_c(cases)


# ---------------------------------------------------------------- models through lucid.compile


class PoolNet(nn.Module):
    """Padding and every pooling layer around a per-channel scale and a classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(np.linspace(0.5, 1.5, 4).reshape(1, 4, 1, 1).astype(np.float32))
        self.pad = nn.ReflectionPad2d((1, 2, 2, 1))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.avgpool = nn.AvgPool2d((2, 3), stride=1, padding=1, count_include_pad=False)
        self.adapt = nn.AdaptiveAvgPool2d((2, 3))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * 6 + 4, 5)

    def forward(self, x):  # type: ignore[no-untyped-def]
        h = self.pad(x) * self.scale
        h = self.maxpool(h)
        h = F.pad(h, (1, 1, 0, 2), mode="replicate")
        h = self.avgpool(h).tanh()
        h = F.pad(h, (1, 0, 1, 0), value=0.5)
        feats = lucid.cat([self.adapt(h).flatten(1), self.gap(h).flatten(1)], dim=1)
        return self.fc(feats)


def _batch(n: int, dtype: type = np.float32) -> lucid.Tensor:
    x = np.random.default_rng(n).standard_normal((n, 4, 11, 10)).astype(dtype)
    return lucid.Tensor(x, requires_grad=True)


def _step(model, x):  # type: ignore[no-untyped-def]
    for p in (x, *model.parameters()):
        p.grad = None
    out = model(x)
    w = lucid.Tensor(np.linspace(-1, 1, out.data.size).reshape(out.shape).astype(np.float32))
    (out * w).sum().backward()
    return [out.data.copy(), x.grad, *(p.grad for p in model.parameters())]


@pytest.mark.filterwarnings("error")  # a recompile or an eager fallback would warn
@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_forward_and_backward_match_eager(dynamic: bool) -> None:
    lucid.random.seed(3)
    model = PoolNet()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    for n in (3, 1, 6) if dynamic else (3,):
        x = _batch(n)
        want, got = _step(model, x), _step(compiled, x)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("dynamic", [False, True])
def test_training_through_the_compiled_model_matches_eager(dynamic: bool) -> None:
    lucid.random.seed(4)
    model = PoolNet()
    initial = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((8, 4, 11, 10)).astype(np.float32)
    t = np.arange(8, dtype=np.int64) % 5

    def train(run) -> list[float]:  # type: ignore[no-untyped-def]
        model.load_state_dict(initial)
        opt = lucid.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
        out = []
        for step in range(6):
            rows = slice(4 * (step % 2), 4 * (step % 2) + 4) if dynamic else slice(0, 8)
            opt.zero_grad()
            loss = F.cross_entropy(run(lucid.Tensor(x[rows])), lucid.Tensor(t[rows]))
            loss.backward()
            opt.step()
            out.append(float(loss.data))
        return out

    compiled = lucid.compile(model, dynamic_batch=dynamic)
    got = train(compiled)
    got_state = {k: v.copy() for k, v in model.state_dict().items()}
    want = train(model)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert got[-1] < got[0]
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got_state[k], v, rtol=1e-5, atol=1e-6, err_msg=k)


def test_dynamic_trace_keeps_the_batch_symbol_and_round_trips_as_text() -> None:
    graph = trace(PoolNet(), _batch(2), dynamic_batch=True)
    text = format(graph)
    for op in ("pad", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
        assert f"= {op} " in text
    assert "f32[N,4,14,13]" in text  # the reflect-padded input keeps the batch symbol
    assert format(parse(text)) == text


def test_one_d_pooling_and_unbatched_input_compile() -> None:
    model = nn.Sequential(
        nn.MaxPool1d(3, 2, 1), nn.AvgPool1d(2, ceil_mode=True), nn.AdaptiveAvgPool1d(2)
    )
    x = lucid.Tensor(np.random.default_rng(5).standard_normal((3, 4, 13)).astype(np.float32))
    compiled = lucid.compile(model, dynamic_batch=True)
    np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(compiled(x[:2]).data, model(x[:2]).data, rtol=1e-6, atol=1e-7)


def test_bad_inputs_fail_clearly_when_compiled_and_in_the_ir() -> None:
    from lucid.errors import IRTypeError

    compiled = lucid.compile(nn.MaxPool2d(5), dynamic_batch=True)
    with pytest.raises(ValueError, match=r"MaxPool2d: input \[2, 3, 4, 4\] is too small"):
        compiled(lucid.randn(2, 3, 4, 4))
    bad = [
        ((2, 3, 4, 4), "max_pool2d", {"kernel_size": (5, 5), "stride": (1, 1)}, "too small"),
        (("N", 3, "H", 4), "avg_pool2d", {"kernel_size": (2, 2), "stride": (1, 1)}, "static"),
        ((2, 3, 4), "max_pool2d", {"kernel_size": (2, 2), "stride": (1, 1)}, "4-D input"),
        (
            (2, 3, 4, 4),
            "max_pool2d",
            {"kernel_size": (2, 2), "stride": (1, 1), "padding": (2, 0)},
            "at most half",
        ),
        (("N", 3, 4, 4), "pad", {"pads": (0, 0, 0, 0, 0, 0, 1, 1)}, "symbolic dim N"),
        ((2, 3), "pad", {"pads": (3, 0), "mode": "reflect"}, "less than its size 3"),
        ((2, 3, 4, 4), "adaptive_avg_pool2d", {"output_size": (0, 2)}, "positive ints"),
    ]
    for shape, op, attrs, why in bad:
        b = Builder("f")
        x = b.input(TensorType(DType.F32, shape), "x")
        with pytest.raises(IRTypeError, match=f"{op}: .*{why}"):
            b.op(op, [x], attrs)
