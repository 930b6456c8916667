"""Shape ops, cat/stack/split, basic indexing and reductions compiled: static and dynamic batch, forward and
backward against eager; cutting the batch axis under a dynamic batch is a TraceError."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.errors import TraceError
from lucid.ir import format, parse, trace


class Mixer(nn.Module):
    """Every new op on the feature axes of a [N, 8] and a [N, 3] input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 5)

    def forward(self, x, y):  # type: ignore[no-untyped-def]
        a, b = x.split([3, 5], 1)
        h = lucid.cat([b, y, a[:, ::2]], dim=1)  # [N, 10]
        s = lucid.stack([h, h * 2.0], dim=1)  # [N, 2, 10]
        z = s[:, 1, 2:9].unsqueeze(1).squeeze(1)  # [N, 7]
        z = lucid.cat([z, x[..., -1, None]], 1)  # [N, 8]
        c0, c1 = z.chunk(2, dim=-1)
        z = lucid.cat([c1, c0], 1).permute(1, 0).permute(1, 0)
        return self.fc(z).flatten(1).view(-1, 5), s[:, :, None].flatten(1)


def _inputs(n: int, dtype: type) -> tuple[lucid.Tensor, lucid.Tensor]:
    rng = np.random.default_rng(n)
    x = lucid.Tensor(rng.standard_normal((n, 8)).astype(dtype), requires_grad=True)
    y = lucid.Tensor(rng.standard_normal((n, 3)).astype(dtype), requires_grad=True)
    return x, y


def _run(model, x, y):  # type: ignore[no-untyped-def]
    """Outputs, and gradients of inputs and parameters for a weighted sum of the outputs."""
    for t in (x, y, *model.parameters()):
        t.grad = None
    outs = model(x, y)
    loss = sum(
        (o * lucid.Tensor(np.linspace(-1, 1, o.size).reshape(o.shape), dtype=o.dtype)).sum()
        for o in outs
    )
    loss.backward()
    return [o.data.copy() for o in outs], [x.grad, y.grad, *(p.grad for p in model.parameters())]


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compiled_forward_and_backward_match_eager(dynamic: bool, dtype: type) -> None:
    model = Mixer()
    if dtype == np.float64:
        model.fc.weight.data = model.fc.weight.data.astype(np.float64)
        model.fc.bias.data = model.fc.bias.data.astype(np.float64)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-13}
    for n in (6, 9) if dynamic else (6,):
        x, y = _inputs(n, dtype)
        want_out, want_grads = _run(model, x, y)
        got_out, got_grads = _run(compiled, x, y)
        for g, w in zip(got_out + got_grads, want_out + want_grads):
            np.testing.assert_allclose(g, w, **tol)


def test_dynamic_trace_keeps_the_batch_symbol_and_round_trips_as_text() -> None:
    x, y = _inputs(4, np.float32)
    graph = trace(Mixer(), x, y, dynamic_batch=True)
    assert [str(v.type) for v in graph.outputs] == ["f32[N,5]", "f32[N,20]"]
    text = format(graph)
    assert "slice" in text and "concat" in text and "axes=[1]" in text
    assert format(parse(text)) == text


class CutsTheBatch(nn.Module):
    def forward(self, x):  # type: ignore[no-untyped-def]
        return x[:3] * 2.0  # LOC-cut


def test_cutting_the_batch_axis_is_refused_with_its_line() -> None:
    x, _ = _inputs(4, np.float32)
    with pytest.raises(TraceError) as info:
        trace(CutsTheBatch(), x, dynamic_batch=True)
    lines, first = inspect.getsourcelines(CutsTheBatch.forward)
    line = first + next(i for i, t in enumerate(lines) if "LOC-cut" in t)
    text = str(info.value)
    assert f"{__file__}:{line}: in CutsTheBatch" in text
    assert "cannot slice the symbolic dim N of [N,8] (axis 0)" in text
    # the same model traces with a static batch
    assert str(trace(CutsTheBatch(), x).outputs[0].type) == "f32[3,8]"


def test_cat_along_the_batch_axis_is_refused_under_a_dynamic_batch() -> None:
    class CatRows(nn.Module):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return lucid.cat([x, x], 0)

    x, _ = _inputs(4, np.float32)
    with pytest.raises(TraceError, match=r"concat: cannot concatenate along the symbolic dim"):
        trace(CatRows(), x, dynamic_batch=True)


class Stats(nn.Module):
    """max over the feature axis, var/std over the batch axis, argmax, of a [N, 4] input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, y):  # type: ignore[no-untyped-def]
        h = self.fc(x)
        top, where = h.max(1, keepdim=True)
        low = h.min(dim=0).values
        picked = (where == lucid.arange(4)).astype(h.dtype)  # one-hot of the argmax
        spread = h.var(0) + h.std(0, correction=0) + h.var()
        out = (h - top) * picked + low * spread + h.min() + y.max(0)[0]
        return out, h.argmin(1).astype(h.dtype)


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_reductions_match_eager(dynamic: bool) -> None:
    model = Stats()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    for n in (6, 9) if dynamic else (6,):
        rng = np.random.default_rng(n)
        x = lucid.Tensor(rng.standard_normal((n, 4)).astype(np.float32), requires_grad=True)
        y = lucid.Tensor(rng.standard_normal((n, 4)).astype(np.float32), requires_grad=True)
        want_out, want_grads = _run(model, x, y)
        got_out, got_grads = _run(compiled, x, y)
        for g, w in zip(got_out + got_grads, want_out + want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_dynamic_trace_of_reductions_keeps_the_batch_symbol() -> None:
    x = lucid.Tensor(np.ones((5, 4), np.float32))
    graph = trace(Stats(), x, x, dynamic_batch=True)
    assert [str(v.type) for v in graph.outputs] == ["f32[N,4]", "f32[N]"]
    text = format(graph)
    assert "argmax" in text and "= max" in text and "dim" in text  # var divides by N - 1
    assert format(parse(text)) == text


class Masks(nn.Module):
    def forward(self, x, y):  # type: ignore[no-untyped-def]
        s = x.reshape(-1, 2, 4)  # [N, 2, 4]: the masked dims are static
        return s.tril(1).flatten(1) + s.triu().flatten(1), x.masked_fill(x > 0.5, 2.0) * y


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_masks_match_eager(dynamic: bool) -> None:
    model = Masks()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    for n in (6, 9) if dynamic else (6,):
        rng = np.random.default_rng(n)
        x = lucid.Tensor(rng.standard_normal((n, 8)).astype(np.float32), requires_grad=True)
        y = lucid.Tensor(rng.standard_normal((n, 8)).astype(np.float32), requires_grad=True)
        want_out, want_grads = _run(model, x, y)
        got_out, got_grads = _run(compiled, x, y)
        for g, w in zip(got_out + got_grads, want_out + want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
