"""Sanitized cases for the issue-15 layers and ops, one function per family (see cases.py).

Each builds small models with the sanitizer flags, runs them compiled (forward, and forward
plus backward: training through lucid.compile) at a static batch and at two sizes of a dynamic
batch, on 2 threads, and compares with eager lucid (tests/sanitizer/_check.py). Returns a short
summary of what ran."""

from __future__ import annotations

from typing import Any

import numpy as np

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.ir import grad, trace
from lucid.ir.ops import OPS
from lucid.runtime.backends import BackendOptions, get_backend
from lucid.runtime.build import BuildOptions
from tests.runtime.test_normalization_compiled import Text, Vision
from tests.runtime.test_pool_compiled import GEOMETRIES, PoolNet, one_node_per_case
from tests.sanitizer._check import (
    both_dtypes,
    check_module,
    close,
    random,
)
from tests.sanitizer._san import FLAGS, LINK, gcc

# ---------------------------------------------------------------- convolution


class ConvNet(nn.Module):
    """Every conv C path: im2col + GEMM with padding and stride, depthwise (channel multiplier,
    strided; dilated plane-wide), 1x1 direct, grouped "valid", asymmetric "same" pads."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.b = nn.Conv2d(8, 16, 5, stride=2, padding=2, groups=8)
        self.c = nn.Conv2d(16, 16, 3, padding=(0, 3), dilation=(1, 3), groups=16)
        self.d = nn.Conv2d(16, 8, 1)
        self.e = nn.Conv2d(8, 6, (2, 3), stride=(1, 2), padding="valid", groups=2)
        self.f = nn.Conv2d(6, 4, 4, padding="same")

    def forward(self, x: Any) -> Any:
        h = self.a(x).relu()
        h = F.hardswish(self.b(h))
        h = self.c(h) + 0.5
        return self.f(self.e(self.d(h).relu()))


class Conv1dNet(nn.Module):
    """Conv1d: plain, strided and dilated, depthwise."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv1d(3, 6, 3, stride=2, padding=1, dilation=2)
        self.b = nn.Conv1d(6, 6, 5, padding="same", groups=6)

    def forward(self, x: Any) -> Any:
        return self.b(self.a(x).relu())


def conv() -> str:
    """Conv2d and Conv1d paths (float32 and float64), then a model big enough for 2 threads to
    split the (image, group) tasks and the depthwise planes."""
    calls = both_dtypes(lambda d: ConvNet().to(d), lambda n, d: [random((n, 3, 17, 15), d, n)])
    calls += both_dtypes(lambda d: Conv1dNet().to(d), lambda n, d: [random((n, 3, 23), d, n)])
    big = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.Conv2d(32, 32, 3, padding=1, groups=32),
        nn.Conv2d(32, 16, 1),
    )
    calls += check_module(big, lambda n: [random((n + 3, 3, 40, 40), seed=n)], dynamic=(False,))
    return f"{calls} calls"


# ---------------------------------------------------------------- pooling and padding

_KERNEL_OPTIONS = BackendOptions(
    build=BuildOptions(cc=gcc(), flags=FLAGS, extra_link=LINK), split=False
)


def _one_program(cases: list[tuple[str, list[np.ndarray], dict[str, Any]]]) -> int:
    """One sanitized program holding one node per case; each result against the op's NumPy
    kernel (the eager implementation)."""
    gots, wants = one_node_per_case(cases, _KERNEL_OPTIONS)
    for got, want in zip(gots, wants, strict=True):
        close(got, want, want.dtype, "pooling kernel")
    return len(cases)


def _pool_cases(dtype: Any, rng: np.random.Generator) -> list[Any]:
    """A sample of the pooling geometry grid on a plane and a tiny one, adaptive pools that
    shrink and grow, every pad mode on ranks 1-5, and negative pads (crops)."""
    cases: list[Any] = []
    for shape in [(2, 3, 9, 7), (1, 2, 2, 3)]:
        for g in GEOMETRIES[::6]:
            try:
                y = OPS["max_pool2d"].numpy(np.zeros(shape, dtype), **g)
            except ValueError:
                continue  # the plane is too small for this geometry
            x = rng.standard_normal(shape).astype(dtype)
            cases += [
                ("max_pool2d", [x], g),
                ("max_pool2d_grad", [x, rng.standard_normal(y.shape).astype(dtype)], g),
            ]
            for inc in (True, False):
                a = {k: v for k, v in g.items() if k != "dilation"} | {"count_include_pad": inc}
                try:
                    ya = OPS["avg_pool2d"].numpy(x, **a)
                except ValueError:
                    continue
                gy = rng.standard_normal(ya.shape).astype(dtype)
                cases += [
                    ("avg_pool2d", [x], a),
                    ("avg_pool2d_grad", [gy], a | {"input_size": shape[2:]}),
                ]
    for out in [(1, 1), (3, 2), (9, 7), (13, 11)]:
        x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
        gy = rng.standard_normal((2, 3, *out)).astype(dtype)
        cases += [
            ("adaptive_avg_pool2d", [x], {"output_size": out}),
            ("adaptive_avg_pool2d_grad", [gy], {"output_size": out, "input_size": (9, 7)}),
        ]
    pad_cases = [
        ((7,), (3, 2)),
        ((2, 3, 5, 6), (2, 1, 4, 3)),
        ((2, 3, 5, 6), (0, 0, 1, 2)),
        ((4, 5), (4, 4, 3, 3)),
        ((2, 3, 4, 5, 6), (1, 2, 3, 0, 2, 3)),
    ]
    for mode in ("constant", "reflect", "replicate", "circular"):
        for shape, pads in pad_cases:
            if mode == "reflect":  # a reflection needs pads smaller than the axis
                pads = tuple(min(p, n - 1) for p, n in zip(pads, np.repeat(shape[::-1], 2)))
            x = rng.standard_normal(shape).astype(dtype)
            y = OPS["pad"].numpy(x, pads=pads, mode=mode, value=1.5)
            gy = rng.standard_normal(y.shape).astype(dtype)
            cases += [
                ("pad", [x], {"pads": pads, "mode": mode, "value": 1.5}),
                ("pad_grad", [gy], {"pads": pads, "mode": mode}),
            ]
    for pads in [(-1, 2, 2, -2), (-2, -3, 0, 0)]:
        x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
        y = OPS["pad"].numpy(x, pads=pads, mode="constant", value=0.0)
        gy = rng.standard_normal(y.shape).astype(dtype)
        cases += [
            ("pad", [x], {"pads": pads, "mode": "constant", "value": 0.0}),
            ("pad_grad", [gy], {"pads": pads, "mode": "constant"}),
        ]
    return cases


def pool() -> str:
    """Every pooling and padding kernel against its NumPy kernel (both dtypes), then PoolNet
    (reflect/replicate/constant pads and every pooling layer) compiled, trained and run at a
    dynamic batch; and the reverse pass run directly through the backend."""
    rng = np.random.default_rng(0)
    kernels = sum(_one_program(_pool_cases(d, rng)) for d in (np.float64, np.float32))
    lucid.random.seed(0)
    calls = check_module(PoolNet(), lambda n: [random((n, 4, 11, 10), seed=n)])
    g = trace(PoolNet(), lucid.randn(2, 4, 11, 10), dynamic_batch=True)
    r = grad(g, wrt_inputs=[True])
    fwd = get_backend("c").prepare(r.forward, _KERNEL_OPTIONS)
    bwd = get_backend("c").prepare(r.backward, _KERNEL_OPTIONS)
    params = [p.data for p in PoolNet().parameters()]
    for n in (1, 5):
        x = random((n, 4, 11, 10), seed=n)
        outs = fwd.run(x, *params)
        grads = bwd.run(*r.backward_args([x], params, outs, [np.ones_like(outs[0])]))
        assert grads[0].shape == x.shape and all(np.isfinite(gr).all() for gr in grads)
    return f"{kernels} kernels, {calls} calls"


# ---------------------------------------------------------------- normalization


_NORMS = [
    (lambda: Vision(), (3, 5, 5)),
    (lambda: Vision(momentum=None), (3, 5, 5)),  # cumulative average: num_batches_tracked
    (lambda: Text(), (4, 8)),
    (lambda: nn.Sequential(nn.LayerNorm(13), nn.Tanh()), (7, 13)),
    (lambda: nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU()), (5,)),
    (lambda: nn.Sequential(nn.GroupNorm(2, 6), nn.BatchNorm2d(6)), (6, 3, 7)),
    (lambda: nn.Sequential(nn.LayerNorm(300), nn.Tanh()), (300,)),  # moments: chunks + tail
    (lambda: nn.Sequential(nn.BatchNorm2d(4), nn.GroupNorm(2, 4)), (4, 17, 17)),
]


class Norms(nn.Module):
    """Every model of _NORMS side by side, one input each: one program (one build) for all."""

    def __init__(self, dtype: Any) -> None:
        super().__init__()
        self.parts = nn.ModuleList([make().to(dtype) for make, _ in _NORMS])

    def forward(self, *xs: Any) -> Any:
        return tuple(part(x) for part, x in zip(self.parts, xs, strict=True))


def norm() -> str:
    """BatchNorm1d/2d in training (batch statistics, running-stat write-back, checked after;
    float32 and float64) and eval mode (float32), LayerNorm (with a run of 300: the moments
    kernel's chunked path and its tail), GroupNorm."""
    calls = 0
    for dtype in (np.float32, np.float64):

        def inputs(n: int, d: Any = dtype) -> list[np.ndarray]:
            return [random((n, *feat), d, n + i) for i, (_, feat) in enumerate(_NORMS)]

        eager, model = Norms(dtype), Norms(dtype)
        model.load_state_dict(eager.state_dict())
        calls += check_module(model.train(), inputs)
        # the running statistics the compiled calls wrote back equal eager's: check_module
        # made 2 training-mode calls (eager, then compiled) at the static batch 3 and 4 at
        # each dynamic batch size (a no-grad forward, then a training call): replay them
        for n, times in ((3, 2), (2, 4), (5, 4)):
            for _ in range(times):
                eager(*(lucid.Tensor(a) for a in inputs(n)))
        for (name, w), g in zip(eager.state_dict().items(), model.state_dict().values()):
            if "running" in name or "num_batches" in name:
                close(g, w, w.dtype if w.dtype.kind == "f" else dtype, name)
        if dtype == np.float32:  # eval: the running statistics read, not written
            calls += check_module(model.eval(), inputs)
    return f"{calls} calls"
