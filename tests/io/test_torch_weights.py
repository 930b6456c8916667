"""PyTorch weights: a torch model's state_dict (in memory, or written by
safetensors.torch.save_file) loads into the lucid twin, and the outputs match torch's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.io
from lucid import nn

torch = pytest.importorskip("torch")
tnn = torch.nn


class Ours(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 5)
        self.emb = nn.Embedding(10, 6)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)


class Theirs(tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3, padding=1)
        self.bn = tnn.BatchNorm2d(4)
        self.ln = tnn.LayerNorm(6)
        self.fc = tnn.Linear(6, 5)
        self.emb = tnn.Embedding(10, 6)
        self.attn = tnn.MultiheadAttention(6, 2, batch_first=True)


def _theirs() -> Any:
    torch.manual_seed(0)
    t = Theirs()
    with torch.no_grad():
        for p in t.parameters():  # no default zeros/ones: every value must be carried over
            p.add_(torch.randn_like(p) * 0.1)
        t.bn(torch.randn(2, 4, 5, 5) * 2 + 1)  # train-mode pass: non-trivial running stats
    return t.eval()


def _compare(ours: Ours, theirs: Any) -> None:
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    seq = rng.standard_normal((2, 4, 6)).astype(np.float32)
    idx = rng.integers(0, 10, (2, 4)).astype(np.int64)
    ours.eval()
    T = torch.from_numpy
    with lucid.no_grad(), torch.no_grad():
        pairs = [
            (ours.bn(ours.conv(lucid.tensor(img))), theirs.bn(theirs.conv(T(img)))),
            (ours.fc(ours.ln(lucid.tensor(seq))), theirs.fc(theirs.ln(T(seq)))),
            (ours.emb(lucid.tensor(idx)), theirs.emb(T(idx))),
        ]
        q = lucid.tensor(seq)
        tq = T(seq)
        pairs.append((ours.attn(q, q, q)[0], theirs.attn(tq, tq, tq)[0]))
    for got, want in pairs:
        torch.testing.assert_close(torch.from_numpy(np.asarray(got.data)), want)


def test_names_match() -> None:
    assert sorted(Ours().state_dict()) == sorted(_theirs().state_dict())


def test_torch_state_dict_in_memory() -> None:
    theirs = _theirs()
    ours = Ours()
    ours.load_state_dict(theirs.state_dict())
    _compare(ours, theirs)


def test_torch_tensors_requiring_grad() -> None:
    theirs = _theirs()
    ours = Ours()
    ours.load_state_dict(dict(theirs.named_parameters()) | dict(theirs.named_buffers()))
    _compare(ours, theirs)


def test_torch_safetensors_file(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.torch")
    theirs = _theirs()
    st.save_file(theirs.state_dict(), str(tmp_path / "w.safetensors"))
    ours = Ours()
    ours.load_state_dict(lucid.load(tmp_path / "w.safetensors"))
    _compare(ours, theirs)


def test_mismatches_reported_at_once() -> None:
    state = _theirs().state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(2)
    state["conv.weight"] = torch.zeros(4, 3, 5, 5)
    state["emb.weight"] = torch.zeros(10, 6, dtype=torch.float64)  # can be cast: fine
    state["bn.num_batches_tracked"] = torch.tensor(1.5)  # float into int64: not safe
    ours = Ours()
    before = ours.state_dict()
    with pytest.raises(ValueError) as e:
        ours.load_state_dict(state)
    msg = str(e.value)
    assert "missing keys: fc.bias" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "shape mismatch for conv.weight: state has (4, 3, 5, 5), model has (4, 3, 3, 3)" in msg
    assert "dtype mismatch for bn.num_batches_tracked" in msg
    assert "emb.weight" not in msg
    for k, v in ours.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_gpt_twin_from_torch() -> None:
    from lucid.models.gpt import GPT, GPTConfig
    from tests.zoo.torch_gpt import GPT as TorchGPT

    cfg = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=4, n_embd=32)
    torch.manual_seed(1)
    theirs = TorchGPT(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.tied)
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    ours = GPT(cfg)
    ours.load_state_dict(theirs.state_dict())
    idx = np.random.default_rng(2).integers(0, 17, (3, 12)).astype(np.int64)
    with lucid.no_grad(), torch.no_grad():
        got = ours(lucid.tensor(idx))
        want = theirs(torch.from_numpy(idx))
    got = got[0] if isinstance(got, tuple) else got
    want = want[0] if isinstance(want, tuple) else want
    torch.testing.assert_close(torch.from_numpy(np.asarray(got.data)), want, rtol=1e-4, atol=1e-5)
