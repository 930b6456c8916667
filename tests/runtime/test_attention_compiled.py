"""Embedding, batched matmul and attention compiled: forward and backward against eager lucid,
training steps, static and dynamic batch; out-of-range indices raise from the C; export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn, optim
from lucid.errors import LucidError
from lucid.runtime.aot import export
from lucid.runtime.loader import load

pytestmark = pytest.mark.needs_cc

VOCAB, D, T = 13, 16, 6


class TinyGPT(nn.Module):
    """Token embedding + position embedding, one causal pre-norm encoder layer, a vocab head."""

    def __init__(self, dtype: type = np.float32, norm_first: bool = True) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D, padding_idx=0, dtype=dtype)
        self.pos = nn.Embedding(T, D, dtype=dtype)
        self.layer = nn.TransformerEncoderLayer(
            D, 4, 32, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first,
            dtype=dtype,
        )  # fmt: skip
        self.head = nn.Linear(D, VOCAB, dtype=dtype)
        causal = np.triu(np.full((T, T), -np.inf), 1).astype(dtype)
        self.causal = lucid.Tensor(causal)

    def forward(self, idx: lucid.Tensor) -> lucid.Tensor:
        positions = lucid.Tensor(np.arange(T))
        h = self.tok(idx) + self.pos(positions)
        h = self.layer(h, src_mask=self.causal, is_causal=True)
        return self.head(h)


def _tokens(n: int, seed: int = 0) -> lucid.Tensor:
    return lucid.Tensor(np.random.default_rng(seed).integers(0, VOCAB, (n, T)))


def _loss_and_grads(model: nn.Module, fn, idx: lucid.Tensor):  # type: ignore[no-untyped-def]
    model.zero_grad()
    logits = fn(idx)
    targets = lucid.Tensor(np.roll(idx.numpy(), -1, axis=1).reshape(-1))
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets)
    loss.backward()
    return logits.numpy().copy(), [p.grad.copy() for p in model.parameters()]


@pytest.mark.filterwarnings("error::lucid.errors.RecompileWarning")  # one graph for every N
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tiny_gpt_compiled_matches_eager_forward_and_backward(dynamic: bool, dtype: type) -> None:
    lucid.random.seed(0)
    model = TinyGPT(dtype)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    tol = {"rtol": 2e-4, "atol": 2e-5} if dtype == np.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for n in (3, 5) if dynamic else (3,):
        idx = _tokens(n, n)
        want_out, want_grads = _loss_and_grads(model, model, idx)
        got_out, got_grads = _loss_and_grads(model, compiled, idx)
        np.testing.assert_allclose(got_out, want_out, **tol)
        for (name, _), g, w in zip(model.named_parameters(), got_grads, want_grads):
            np.testing.assert_allclose(g, w, **tol, err_msg=name)
        assert not np.any(got_grads[0][0])  # the padding row gets no gradient


@pytest.mark.parametrize("dynamic", [False, True])
def test_training_steps_compiled_follow_eager(dynamic: bool) -> None:
    lucid.random.seed(1)
    eager_model = TinyGPT(np.float64, norm_first=False)
    lucid.random.seed(1)
    model = TinyGPT(np.float64, norm_first=False)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    opts = [optim.SGD(m.parameters(), lr=0.1) for m in (eager_model, model)]
    losses = []
    for step in range(3):
        idx = _tokens(4 + step if dynamic else 4, step)
        for m, fn, opt in ((eager_model, eager_model, opts[0]), (model, compiled, opts[1])):
            opt.zero_grad()
            logits = fn(idx)
            targets = lucid.Tensor(np.roll(idx.numpy(), -1, axis=1).reshape(-1))
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets)
            loss.backward()
            opt.step()
            losses.append(float(loss.item()))
    np.testing.assert_allclose(losses[1::2], losses[0::2], rtol=1e-10)
    assert losses[-1] < losses[0]  # it learns
    for (name, p), q in zip(model.named_parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-9, atol=1e-12, err_msg=name)


class BatchedProducts(nn.Module):
    """The fuzzer's former known bug ([N, a, b] @ w under a dynamic batch, in grad mode) and a
    batched product of two activations with a broadcast batch dim."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(np.random.default_rng(0).standard_normal((4, 3)), dtype=np.float32)
        self.v = nn.Parameter(np.random.default_rng(1).standard_normal((1, 3, 5)), dtype=np.float32)

    def forward(self, x: lucid.Tensor, y: lucid.Tensor) -> lucid.Tensor:
        h = x.reshape(-1, 2, 4) @ self.w  # [N, 2, 3]
        g = h @ self.v  # [N, 2, 5], v broadcast over the batch
        return (g @ y.transpose(0, 2, 1)).reshape(-1, 8)  # [N, 2, 5] @ [N, 5, 4]


@pytest.mark.filterwarnings("error::lucid.errors.RecompileWarning")
@pytest.mark.parametrize("dynamic", [False, True])
def test_batched_matmul_compiled_backward(dynamic: bool) -> None:
    model = BatchedProducts()
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    for n in (3, 7) if dynamic else (3,):
        rng = np.random.default_rng(n)
        xa = rng.standard_normal((n, 8)).astype(np.float32)
        ya = rng.standard_normal((n, 4, 5)).astype(np.float32)
        results = []
        for fn in (model, compiled):
            model.zero_grad()
            x, y = lucid.Tensor(xa, requires_grad=True), lucid.Tensor(ya, requires_grad=True)
            out = fn(x, y)
            (out * out).sum().backward()
            results.append([out.numpy(), x.grad, y.grad, model.w.grad, model.v.grad])
        for got, want in zip(results[1], results[0]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamic", [False, True])
def test_out_of_range_index_raises_from_compiled_code(dynamic: bool) -> None:
    model = nn.Embedding(5, 3)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    ok = lucid.Tensor(np.array([[0, 4], [2, 1]]))
    np.testing.assert_array_equal(compiled(ok).numpy(), model(ok).numpy())
    for bad in (5, -1):
        with pytest.raises(IndexError, match=r"embedding: an index is out of range"):
            compiled(lucid.Tensor(np.array([[0, 1], [bad, 2]])))


def test_export_tiny_gpt_and_bad_index(tmp_path: Path) -> None:
    lucid.random.seed(3)
    model = TinyGPT().eval()
    result = export(model, (_tokens(2),), tmp_path / "gpt")
    loaded = load(result.library)
    for n in (1, 4):
        idx = _tokens(n, 10 + n)
        with lucid.no_grad():
            want = model(idx).numpy()
        np.testing.assert_allclose(loaded(idx.numpy()), want, rtol=2e-5, atol=2e-5)
    bad = _tokens(2).numpy()
    bad[1, 3] = VOCAB
    with pytest.raises(LucidError, match="embedding: an index is out of range"):
        loaded(bad)


@pytest.mark.parametrize("dynamic", [False, True])
def test_dropout_in_training_draws_eagers_masks(dynamic: bool) -> None:
    """TransformerEncoderLayer in training mode (dropout 0.2 on the attention weights, the
    feed-forward and both residual branches): the compiled call, after the same
    lucid.random.seed, draws eager's masks, so output and gradients agree."""
    lucid.random.seed(4)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2, batch_first=True).train()
    compiled = lucid.compile(layer, dynamic_batch=dynamic)
    x = np.random.default_rng(5).standard_normal((3, 4, 8)).astype(np.float32)
    results = []
    for fn in (layer, compiled):
        layer.zero_grad()
        lucid.random.seed(6)
        xt = lucid.Tensor(x, requires_grad=True)
        out = fn(xt)
        (out * out).sum().backward()
        results.append([out.numpy(), xt.grad, *(p.grad for p in layer.parameters())])
    with lucid.no_grad():
        plain = layer.eval()(lucid.Tensor(x)).numpy()
    assert not np.allclose(results[0][0], plain)  # dropout did act in training mode
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_every_causal_layer_shares_one_mask_constant() -> None:
    """is_causal's mask is one read-only Tensor per size, so a trace of several causal layers
    records it once (each layer's own mask was a constant node of T*T elements to build, check
    and print: a third of the small GPT's trace time), and compiled still matches eager."""
    from lucid.ir.trace import trace

    class Causal(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.ModuleList([nn.Linear(D, 3 * D) for _ in range(3)])

        def forward(self, x: lucid.Tensor) -> lucid.Tensor:
            for p in self.proj:
                q, k, v = p(x).split(D, dim=2)
                x = x + F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return x

    lucid.random.seed(1)
    model = Causal().eval()
    x = np.random.default_rng(0).standard_normal((2, T, D)).astype(np.float32)
    graph = trace(model, x)
    masks = [n for n in graph.nodes if n.op == "constant" and n.result.type.dtype.value == "bool"]
    assert len(masks) == 1 and masks[0].result.type.shape == (T, T)
    with lucid.no_grad():
        want = model(lucid.Tensor(x)).data
        got = lucid.compile(model)(x).data
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    from lucid.nn._attention_functional import _causal_mask

    with pytest.raises(ValueError, match="read-only"):  # the shared mask cannot be written
        _causal_mask(T, T).data[0, 1] = True
