"""Embedding, batched matmul, scaled_dot_product_attention, MultiheadAttention and
TransformerEncoderLayer against PyTorch (float32, torch.testing.assert_close's default
tolerances), with torch's weights copied in by state-dict name; float64 central differences
for the gradients; and the errors bad input gets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn
from tests.eager.gradcheck import check_grads, numerical_grad

torch = pytest.importorskip("torch")


def L(t: Any, grad: bool = False) -> lucid.Tensor:
    """A torch tensor as a lucid Tensor (same dtype and values)."""
    return lucid.Tensor(t.detach().numpy().copy(), requires_grad=grad)


def close(got: lucid.Tensor | np.ndarray | None, want: Any) -> None:
    """torch.testing.assert_close at its default tolerances for the dtype."""
    assert got is not None
    arr = got.numpy() if isinstance(got, lucid.Tensor) else got
    torch.testing.assert_close(torch.from_numpy(np.ascontiguousarray(arr)), want.detach())


def load_torch(module: nn.Module, tmod: Any) -> None:
    result = module.load_state_dict({k: v.detach().numpy() for k, v in tmod.state_dict().items()})
    assert not result.missing_keys and not result.unexpected_keys


# ---------------------------------------------------------------- embedding


@pytest.mark.parametrize("padding_idx", [None, 2, -1])
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
def test_embedding_matches_torch_forward_and_backward(padding_idx: Any, index_dtype: Any) -> None:
    torch.manual_seed(0)
    temb = torch.nn.Embedding(7, 5, padding_idx=padding_idx)
    emb = nn.Embedding(7, 5, padding_idx=padding_idx)
    load_torch(emb, temb)
    idx = np.array([[0, 2, 6, 2], [1, 1, 6, 3], [2, 5, 4, 0]])  # repeats and the padding row
    tout = temb(torch.from_numpy(idx))
    out = emb(lucid.Tensor(idx.astype(index_dtype)))
    close(out, tout)
    w = torch.randn(*tout.shape)
    (tout * w).sum().backward()
    (out * L(w)).sum().backward()
    close(emb.weight.grad, temb.weight.grad)
    if padding_idx is not None:
        assert not np.any(emb.weight.grad[padding_idx % 7])
        assert emb.padding_idx == padding_idx % 7


def test_embedding_init_zeroes_the_padding_row_and_reprs() -> None:
    emb = nn.Embedding(4, 3, padding_idx=1)
    assert emb.weight.shape == (4, 3) and not np.any(emb.weight.data[1])
    assert repr(emb) == "Embedding(4, 3, padding_idx=1)"


def test_embedding_gradcheck_float64() -> None:
    idx = lucid.Tensor(np.array([[3, 0], [3, 1]]))
    rng = np.random.default_rng(0)
    check_grads(lambda w: F.embedding(idx, w), rng.standard_normal((4, 3)))


@pytest.mark.parametrize("bad", [7, -1, 100])
def test_embedding_index_out_of_range_is_an_index_error(bad: int) -> None:
    emb = nn.Embedding(7, 5)
    with pytest.raises(IndexError, match=rf"embedding: index {bad} is out of range .*7 rows"):
        emb(lucid.Tensor(np.array([0, bad, 1])))


def test_embedding_argument_errors() -> None:
    with pytest.raises(TypeError, match="embedding: expected an integer index Tensor"):
        nn.Embedding(3, 2)(lucid.Tensor(np.zeros(2, np.float32)))
    with pytest.raises(ValueError, match="padding_idx 3 must lie within"):
        nn.Embedding(3, 2, padding_idx=3)
    with pytest.raises(ValueError, match="Embedding: sizes must be positive"):
        nn.Embedding(0, 2)
    with pytest.raises(ValueError, match=r"embedding: expected a float weight of shape"):
        F.embedding(lucid.Tensor(np.zeros(2, np.int64)), lucid.randn(3))


# ---------------------------------------------------------------- batched matmul

SHAPES = [
    ((2, 3, 4), (2, 4, 5)),  # bmm
    ((2, 1, 3, 4), (5, 4, 6)),  # broadcast batch dims both ways
    ((3, 4), (2, 4, 5)),  # a 2-D a against a batched b
    ((2, 3, 4), (4,)),  # matrix-vector
    ((4,), (2, 4, 5)),  # vector-matrix
    ((2, 3, 3, 4), (2, 3, 4, 2)),  # 4-D, as attention
]


@pytest.mark.parametrize(("sa", "sb"), SHAPES)
def test_batched_matmul_matches_torch(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    torch.manual_seed(1)
    ta, tb = torch.randn(*sa, requires_grad=True), torch.randn(*sb, requires_grad=True)
    a, b = L(ta, True), L(tb, True)
    tout, out = ta @ tb, a @ b
    close(out, tout)
    close(lucid.matmul(a, b), tout)
    w = torch.randn(*tout.shape)
    (tout * w).sum().backward()
    (out * L(w)).sum().backward()
    close(a.grad, ta.grad)
    close(b.grad, tb.grad)


@pytest.mark.parametrize(("sa", "sb"), SHAPES)
def test_batched_matmul_gradcheck_float64(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    rng = np.random.default_rng(2)
    check_grads(lambda a, b: a @ b, rng.standard_normal(sa), rng.standard_normal(sb))


def test_batched_matmul_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"matmul: cannot multiply shapes \(2, 3, 4\) and"):
        lucid.randn(2, 3, 4) @ lucid.randn(2, 5, 6)
    with pytest.raises(ValueError, match="batch dims of .* do not broadcast"):
        lucid.randn(2, 3, 4) @ lucid.randn(3, 4, 6)


# ---------------------------------------------------------------- attention


def _sdpa_cases() -> list[dict[str, Any]]:
    torch.manual_seed(3)
    bool_mask = torch.rand(5, 6) > 0.4
    bool_mask[:, 0] = True  # every query keeps a key: no all -inf row
    return [
        {},
        {"is_causal": True},
        {"attn_mask": bool_mask},
        {"attn_mask": torch.randn(5, 6)},
        {"attn_mask": torch.randn(2, 1, 5, 6)},  # broadcast over heads
        {"scale": 0.3},
        {"attn_mask": bool_mask, "scale": 2.0},
    ]


@pytest.mark.parametrize("case", range(7))
def test_sdpa_matches_torch(case: int) -> None:
    kw = _sdpa_cases()[case]
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, 3, n, e, requires_grad=True) for n, e in ((5, 8), (6, 8), (6, 4)))
    if kw.get("is_causal"):
        k, v = k[:, :, :5].detach().requires_grad_(), v[:, :, :5].detach().requires_grad_()
    tout = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kw)
    lq, lk, lv = L(q, True), L(k, True), L(v, True)
    lkw = {n: L(a) if isinstance(a, torch.Tensor) else a for n, a in kw.items()}
    out = F.scaled_dot_product_attention(lq, lk, lv, **lkw)
    close(out, tout)
    w = torch.randn(*tout.shape)
    (tout * w).sum().backward()
    (out * L(w)).sum().backward()
    for got, want in ((lq, q), (lk, k), (lv, v)):
        close(got.grad, want.grad)


def test_sdpa_gradcheck_float64() -> None:
    rng = np.random.default_rng(5)
    mask = lucid.Tensor(rng.standard_normal((3, 4)))
    check_grads(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
        rng.standard_normal((2, 3, 5)),
        rng.standard_normal((2, 4, 5)),
        rng.standard_normal((2, 4, 2)),
    )
    check_grads(
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5),
        *(rng.standard_normal((1, 2, 4, 3)) for _ in range(3)),
    )


def test_sdpa_dropout_one_zeroes_and_errors() -> None:
    q = lucid.randn(1, 3, 4)
    assert not np.any(F.scaled_dot_product_attention(q, q, q, dropout_p=1.0).numpy())
    with pytest.raises(ValueError, match="either attn_mask or is_causal"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=lucid.randn(3, 3), is_causal=True)
    with pytest.raises(ValueError, match=r"query \(1, 3, 4\) and key \(1, 3, 5\) must share"):
        F.scaled_dot_product_attention(q, lucid.randn(1, 3, 5), q)
    with pytest.raises(ValueError, match="batch dims of query .* do not broadcast"):
        F.scaled_dot_product_attention(
            lucid.randn(3, 3, 4), lucid.randn(2, 3, 4), lucid.randn(2, 3, 4)
        )
    with pytest.raises(ValueError, match=r"attn_mask of shape \(2, 2\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=lucid.randn(2, 2))


def _mha_pair(batch_first: bool, bias: bool = True) -> tuple[Any, nn.MultiheadAttention]:
    torch.manual_seed(6)
    tm = torch.nn.MultiheadAttention(16, 4, bias=bias, batch_first=batch_first).eval()
    lm = nn.MultiheadAttention(16, 4, bias=bias, batch_first=batch_first).eval()
    load_torch(lm, tm)
    return tm, lm


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize(
    "masks", ["none", "bool_attn", "float_attn", "3d_attn", "padding", "both", "float_padding"]
)
def test_multihead_attention_matches_torch(batch_first: bool, masks: str) -> None:
    tm, lm = _mha_pair(batch_first)
    torch.manual_seed(7)
    lq, n, s = 5, 3, 7
    q, kv = torch.randn(lq, n, 16), torch.randn(s, n, 16)
    if batch_first:
        q, kv = q.transpose(0, 1).contiguous(), kv.transpose(0, 1).contiguous()
    bool_attn = torch.rand(lq, s) > 0.7
    bool_attn[:, 0] = False  # True = not allowed; keep key 0 for every query
    pad = torch.zeros(n, s, dtype=torch.bool)
    pad[1, 4:] = True
    kw = {
        "none": {},
        "bool_attn": {"attn_mask": bool_attn},
        "float_attn": {"attn_mask": torch.randn(lq, s)},
        "3d_attn": {"attn_mask": torch.randn(n * 4, lq, s)},
        "padding": {"key_padding_mask": pad},
        "both": {"attn_mask": bool_attn, "key_padding_mask": pad},
        "float_padding": {"key_padding_mask": torch.randn(n, s)},
    }[masks]
    lkw = {k: L(v) for k, v in kw.items()}
    for avg in (True, False):
        tout, tw = tm(q, kv, kv, average_attn_weights=avg, **kw)
        out, w = lm(L(q), L(kv), L(kv), average_attn_weights=avg, **lkw)
        close(out, tout)
        close(w, tw)
    out, w = lm(L(q), L(kv), L(kv), need_weights=False, **lkw)
    assert w is None
    close(out, tm(q, kv, kv, need_weights=False, **kw)[0])


def test_multihead_self_attention_unbatched_and_without_bias() -> None:
    for batch_first in (False, True):
        tm, lm = _mha_pair(batch_first, bias=False)
        assert lm.in_proj_bias is None and lm.out_proj.bias is None
        x = torch.randn(5, 16)  # unbatched [L, E]
        tout, tw = tm(x, x, x)
        lx = L(x)
        out, w = lm(lx, lx, lx)
        close(out, tout)
        close(w, tw)
        xb = torch.randn(2, 5, 16)
        close(lm(L(xb), L(xb), L(xb))[0], tm(xb, xb, xb)[0])


def test_multihead_attention_backward_matches_torch() -> None:
    tm, lm = _mha_pair(True)
    tm.train()
    lm.train()  # dropout 0.0: training changes nothing but the tape
    x = torch.randn(2, 5, 16, requires_grad=True)
    lx = L(x, True)
    tout, _ = tm(x, x, x, need_weights=False)
    out, _ = lm(lx, lx, lx, need_weights=False)
    w = torch.randn(*tout.shape)
    (tout * w).sum().backward()
    (out * L(w)).sum().backward()
    close(lx.grad, x.grad)
    tparams = dict(tm.named_parameters())
    for name, p in lm.named_parameters():
        close(p.grad, tparams[name].grad)


def test_multihead_attention_gradcheck_float64() -> None:
    lucid.random.seed(0)
    lm = nn.MultiheadAttention(4, 2, batch_first=True, dtype=np.float64)
    rng = np.random.default_rng(8)
    mask = lucid.Tensor(rng.standard_normal((3, 3)))
    pad = lucid.Tensor(np.array([[False, False, True], [False, False, False]]))
    x = rng.standard_normal((2, 3, 4))
    check_grads(lambda x: lm(x, x, x, attn_mask=mask, key_padding_mask=pad)[0], x)
    # the parameters: central differences on their arrays, perturbed in place
    w = rng.uniform(0.5, 1.5, (2, 3, 4))

    def loss(*_: object) -> float:
        with lucid.no_grad():
            out, _ = lm(lucid.Tensor(x), lucid.Tensor(x), lucid.Tensor(x), attn_mask=mask)
        return float((out.numpy() * w).sum())

    params = list(lm.parameters())
    want = numerical_grad(loss, [p.data for p in params])
    lm.zero_grad()  # check_grads' backward above reached the parameters too
    out, _ = lm(lucid.Tensor(x), lucid.Tensor(x), lucid.Tensor(x), attn_mask=mask)
    (out * lucid.Tensor(w)).sum().backward()
    for p, g in zip(params, want):
        np.testing.assert_allclose(p.grad, g, rtol=1e-6, atol=1e-8)


def test_multihead_attention_errors() -> None:
    with pytest.raises(
        ValueError, match=r"embed_dim \(10\) must be a positive multiple of num_heads \(4\)"
    ):
        nn.MultiheadAttention(10, 4)
    lm = nn.MultiheadAttention(8, 2)
    with pytest.raises(
        ValueError, match=r"expected query of shape \[L, N, E\].*embed_dim = 8, got \(5, 2, 6\)"
    ):
        x = lucid.randn(5, 2, 6)
        lm(x, x, x)
    x = lucid.randn(5, 2, 8)
    with pytest.raises(ValueError, match=r"attn_mask must be \[L, S\] = \[5, 5\]"):
        lm(x, x, x, attn_mask=lucid.randn(4, 4))
    with pytest.raises(ValueError, match=r"key_padding_mask must be \[N, S\] = \[2, 5\]"):
        lm(x, x, x, key_padding_mask=lucid.Tensor(np.zeros((5, 2), bool)))
    with pytest.raises(ValueError, match="disagree on batch size"):
        lm(x, lucid.randn(5, 3, 8), lucid.randn(5, 3, 8))
    with pytest.raises(ValueError, match="is_causal=True needs attn_mask"):
        lm(x, x, x, is_causal=True)


# ---------------------------------------------------------------- transformer encoder layer


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_encoder_layer_matches_torch(
    norm_first: bool, activation: str, batch_first: bool
) -> None:
    torch.manual_seed(9)
    kw = {"activation": activation, "norm_first": norm_first, "batch_first": batch_first}
    tl = torch.nn.TransformerEncoderLayer(16, 4, 32, **kw).eval()
    ll = nn.TransformerEncoderLayer(16, 4, 32, **kw).eval()
    load_torch(ll, tl)
    names = {n for n, _ in ll.named_parameters()}
    assert {"self_attn.in_proj_weight", "self_attn.out_proj.weight", "linear1.weight",
            "linear2.bias", "norm1.weight", "norm2.bias"} <= names  # fmt: skip
    x = torch.randn(5, 3, 16)
    close(ll(L(x)), tl(x))
    causal = torch.nn.Transformer.generate_square_subsequent_mask(5 if not batch_first else 3)
    close(ll(L(x), src_mask=L(causal), is_causal=True), tl(x, src_mask=causal, is_causal=True))
    pad = torch.zeros(3 if not batch_first else 5, 5 if not batch_first else 3, dtype=torch.bool)
    pad[0, -1] = True
    close(ll(L(x), src_key_padding_mask=L(pad)), tl(x, src_key_padding_mask=pad))


def test_transformer_encoder_layer_backward_matches_torch() -> None:
    torch.manual_seed(10)
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    ll = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    load_torch(ll, tl)
    x = torch.randn(2, 4, 8, requires_grad=True)
    lx = L(x, True)
    tout, out = tl(x), ll(lx)
    close(out, tout)
    w = torch.randn(*tout.shape)
    (tout * w).sum().backward()
    (out * L(w)).sum().backward()
    close(lx.grad, x.grad)
    tparams = dict(tl.named_parameters())
    for name, p in ll.named_parameters():
        torch.testing.assert_close(
            torch.from_numpy(p.grad), tparams[name].grad, rtol=1e-4, atol=1e-5
        )  # LayerNorm's composed backward sums in another order than torch's fused kernel


def test_layer_norm_matches_torch_and_gradcheck() -> None:
    torch.manual_seed(11)
    tn = torch.nn.LayerNorm((3, 4), eps=1e-3)
    with torch.no_grad():
        tn.weight.normal_()
        tn.bias.normal_()
    ln = nn.LayerNorm((3, 4), eps=1e-3)
    load_torch(ln, tn)
    x = torch.randn(2, 3, 4)
    close(ln(L(x)), tn(x))
    rng = np.random.default_rng(12)
    ln64 = nn.LayerNorm(4, dtype=np.float64)
    check_grads(lambda x: ln64(x), rng.standard_normal((3, 4)))
    with pytest.raises(
        ValueError, match=r"LayerNorm: layer_norm: expected an input of shape \[\*, 3, 4\]"
    ):
        ln(lucid.randn(2, 4, 3))


def test_transformer_encoder_layer_errors() -> None:
    with pytest.raises(ValueError, match="activation should be 'relu' or 'gelu'"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")
    with pytest.raises(ValueError, match=r"embed_dim \(8\) must be a positive multiple"):
        nn.TransformerEncoderLayer(8, 3)
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(ValueError, match="MultiheadAttention: expected query of shape"):
        layer(lucid.randn(4, 2, 6))
