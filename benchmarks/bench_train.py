"""One training step through compiled lucid against eager lucid, NumPy by hand and PyTorch.

A training step here is: forget the grads, run the forward, then the backward of
sum(output) (ones-seeded, lucid's default), producing the gradient of every parameter. The
optimizer step is left out (it is the same NumPy code for compiled and eager lucid); the
input does not require grad. Timings are medians of many repetitions (benchmarks/_common.py).

Run: python benchmarks/bench_train.py
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import per_call, print_table

import lucid
from lucid import nn


class TwoLayer(nn.Module):
    """Linear(d_in, d_hidden) -> HardSwish -> Linear(d_hidden, d_out), named like the seed."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, d_hidden)
        self.hardswish = nn.HardSwish()
        self.fc2 = nn.Linear(d_hidden, d_out)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        """fc2(hardswish(fc1(x)))."""
        return self.fc2(self.hardswish(self.fc1(x)))


def numpy_step(model: TwoLayer, x: np.ndarray) -> Callable[[], object]:
    """The same step written by hand in NumPy: forward, then every parameter's gradient."""
    w1, b1 = model.fc1.weight.data, model.fc1.bias.data
    w2, b2 = model.fc2.weight.data, model.fc2.bias.data

    def step() -> object:
        z = x @ w1.T
        z += b1
        s = z / 6 + 0.5  # hardswish(z) = z * clip(z / 6 + 1/2, 0, 1)
        np.clip(s, 0, 1, out=s)
        h = z * s
        y = h @ w2.T
        y += b2
        dy = np.ones_like(y)
        dw2, db2 = dy.T @ h, dy.sum(0)
        dh = dy @ w2
        slope = z / 3 + 0.5  # hardswish'(z): z/3 + 1/2 on [-3, 3], 1 above, 0 below
        slope[z > 3] = 1
        slope[z < -3] = 0
        dz = dh * slope
        return dz.T @ x, dz.sum(0), dw2, db2

    return step


def lucid_step(model: nn.Module, run: Callable[..., lucid.Tensor], x: np.ndarray):
    """A step through `run` (the compiled module or the eager model)."""
    params = list(model.parameters())
    xt = lucid.Tensor(x)

    def step() -> object:
        for p in params:
            p.grad = None
        run(xt).backward()
        return params[0].grad

    return step


def torch_step(model: TwoLayer, x: np.ndarray) -> Callable[[], object] | None:
    """The same step in PyTorch eager (None when torch is not installed)."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    tm = torch.nn.Sequential(
        torch.nn.Linear(model.fc1.in_features, model.fc1.out_features),
        torch.nn.Hardswish(),
        torch.nn.Linear(model.fc2.in_features, model.fc2.out_features),
    )
    with torch.no_grad():
        for (_, p), q in zip(model.named_parameters(), tm.parameters()):
            q.copy_(torch.from_numpy(p.data))
    xt = torch.from_numpy(x)

    def step() -> object:
        tm.zero_grad(set_to_none=True)
        tm(xt).sum().backward()
        return tm[0].weight.grad

    return step


def check(model: TwoLayer, cm: object, x: np.ndarray) -> None:
    """Compiled and hand-written grads agree, so the timed code computes the same thing."""
    want = numpy_step(model, x)()
    lucid_step(model, cm, x)()  # type: ignore[arg-type]
    got = (model.fc1.weight.grad, model.fc1.bias.grad, model.fc2.weight.grad, model.fc2.bias.grad)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))


def bench(title: str, model: TwoLayer, batch: int, budget: float) -> dict[str, float | None]:
    """Time one training step of every system on a random batch."""
    x = np.random.default_rng(0).standard_normal((batch, model.fc1.in_features)).astype(np.float32)
    cm = lucid.compile(model)
    check(model, cm, x)
    systems = {
        "lucid compiled": lucid_step(model, cm, x),
        "lucid eager": lucid_step(model, model, x),
        "numpy by hand": numpy_step(model, x),
        "pytorch eager": torch_step(model, x),
    }
    rows = {
        name: per_call(fn, budget=budget) if fn is not None else None
        for name, fn in systems.items()
    }
    print_table(title, rows, baseline="lucid compiled")
    return rows


def threads_line() -> str:
    """The thread counts in use: lucid's compiled code and NumPy's BLAS."""
    blas = "unknown"
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    return f"threads: lucid compiled {lucid.get_num_threads()}, numpy BLAS {blas or 'none'}"


def main() -> None:
    """Print both tables and whether the targets are met."""
    print(threads_line())
    print("training step = grads to None, forward, backward of sum(output) (no optimizer step)")
    lucid.random.seed(0)
    wide = bench(
        "Linear(1024,1024) -> HardSwish -> Linear(1024,1024), batch 256, float32",
        TwoLayer(1024, 1024, 1024),
        256,
        budget=3.0,
    )
    seed = bench(
        "seed model Linear(3,5) -> HardSwish -> Linear(5,2), batch 1", TwoLayer(3, 5, 2), 1, 0.5
    )
    c_wide, np_wide = wide["lucid compiled"], wide["numpy by hand"]
    assert c_wide is not None and np_wide is not None
    print(
        f"\ntarget 1 (compiled <= numpy by hand at 1024 wide): {c_wide / np_wide:.2f}x numpy,",
        "met" if c_wide <= np_wide else "MISSED",
    )
    c_seed = seed["lucid compiled"]
    others = {k: v for k, v in seed.items() if k != "lucid compiled" and v is not None}
    best = min(others, key=lambda k: others[k])
    assert c_seed is not None
    print(
        f"target 2 (compiled fastest at batch 1): fastest other is {best} at {others[best] / c_seed:.2f}x compiled,",
        "met" if c_seed < others[best] else "MISSED",
    )


if __name__ == "__main__":
    main()
