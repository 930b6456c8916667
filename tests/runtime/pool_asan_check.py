"""Every pooling/padding kernel (forward and gradient, float32 and float64; a sample of the
geometry grid, tiny planes, every pad mode, crops) and a pooling model's forward and backward
programs with a dynamic batch, built with -fsanitize=address,undefined and run.

Not collected by pytest (minutes of instrumented builds). Run from the repository root:
    ASAN_OPTIONS=detect_leaks=0 \
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
    LUCID_CACHE_DIR=$(mktemp -d) PYTHONPATH=. python tests/runtime/pool_asan_check.py
"""

from __future__ import annotations

import numpy as np

import lucid
from lucid.ir import Builder, DType, TensorType, grad, trace
from lucid.ir.ops import OPS
from lucid.runtime.backends import BackendOptions, get_backend
from lucid.runtime.build import BuildOptions
from tests.runtime.test_pool_compiled import GEOMETRIES, PoolNet

SAN = BuildOptions(
    flags=(
        "-O1",
        "-ffp-contract=off",
        "-fno-math-errno",
        "-g",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        "-fno-omit-frame-pointer",
    ),
    extra_link=("-lm", "-lpthread", "-fsanitize=address,undefined"),
)
OPTS = BackendOptions(build=SAN, split=False)
rng = np.random.default_rng(0)


def run(cases):
    """One instrumented program of one node per case; results against the NumPy kernels."""
    b = Builder("forward")
    feeds, wants = [], []
    for name, arrays, attrs in cases:
        ins = [b.input(TensorType(DType.from_numpy(a.dtype), a.shape), "x") for a in arrays]
        b.output(b.op(name, ins, attrs))
        feeds += arrays
        wants.append(OPS[name].numpy(*arrays, **dict(b.nodes[-1].attrs)))
    ex = get_backend("c").prepare(b.build(), OPTS)
    for got, want in zip(ex.run(*feeds), wants):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    return len(cases)


n = 0
for dtype in (np.float64, np.float32):
    cases = []
    for shape in [(2, 3, 9, 7), (1, 2, 2, 3)]:
        for g in GEOMETRIES[::6]:
            try:
                y = OPS["max_pool2d"].numpy(np.zeros(shape, dtype), **g)
            except ValueError:
                continue  # too small for this geometry
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
                cases += [
                    ("avg_pool2d", [x], a),
                    (
                        "avg_pool2d_grad",
                        [rng.standard_normal(ya.shape).astype(dtype)],
                        a | {"input_size": shape[2:]},
                    ),
                ]
    for out in [(1, 1), (3, 2), (9, 7), (13, 11)]:
        x = rng.standard_normal((2, 3, 9, 7)).astype(dtype)
        cases += [
            ("adaptive_avg_pool2d", [x], {"output_size": out}),
            (
                "adaptive_avg_pool2d_grad",
                [rng.standard_normal((2, 3, *out)).astype(dtype)],
                {"output_size": out, "input_size": (9, 7)},
            ),
        ]
    for mode in ("constant", "reflect", "replicate", "circular"):
        for shape, pads in [
            ((7,), (3, 2)),
            ((2, 3, 5, 6), (2, 1, 4, 3)),
            ((2, 3, 5, 6), (0, 0, 1, 2)),
            ((4, 5), (4, 4, 3, 3)),
            ((2, 3, 4, 5, 6), (1, 2, 3, 0, 2, 3)),
        ]:
            if mode == "reflect":
                pads = tuple(min(p, n_ - 1) for p, n_ in zip(pads, np.repeat(shape[::-1], 2)))
            x = rng.standard_normal(shape).astype(dtype)
            y = OPS["pad"].numpy(x, pads=pads, mode=mode, value=1.5)
            cases += [
                ("pad", [x], {"pads": pads, "mode": mode, "value": 1.5}),
                (
                    "pad_grad",
                    [rng.standard_normal(y.shape).astype(dtype)],
                    {"pads": pads, "mode": mode},
                ),
            ]
    for pads in [(-1, 2, 2, -2), (-2, -3, 0, 0)]:
        x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
        y = OPS["pad"].numpy(x, pads=pads, mode="constant", value=0.0)
        cases += [
            ("pad", [x], {"pads": pads, "mode": "constant", "value": 0.0}),
            (
                "pad_grad",
                [rng.standard_normal(y.shape).astype(dtype)],
                {"pads": pads, "mode": "constant"},
            ),
        ]
    n += run(cases)
    print("ran", n, flush=True)
# the model with a dynamic batch: forward and backward programs, batches 1..5
lucid.random.seed(0)
model = PoolNet()

g = trace(model, lucid.randn(2, 4, 11, 10), dynamic_batch=True)
r = grad(g, wrt_inputs=[True])
fwd = get_backend("c").prepare(r.forward, OPTS)
bwd = get_backend("c").prepare(r.backward, OPTS)
params = [p.data for p in model.parameters()]
for batch in (1, 2, 5):
    x = rng.standard_normal((batch, 4, 11, 10)).astype(np.float32)
    outs = fwd.run(x, *params)
    cot = [np.ones_like(outs[0])]
    grads = bwd.run(*r.backward_args([x], params, outs, cot))
    assert grads[0].shape == x.shape and all(np.isfinite(g).all() for g in grads)
    n += 2
print(f"ASan+UBSan: {n} kernels/programs ran clean")
