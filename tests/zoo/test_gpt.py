"""The GPT-style character model (lucid.models.gpt) against the same architecture in PyTorch
from the same weights: logits (float32), gradients (float64), compiled and exported forward,
compiled training, and training on the shipped text to below the unigram entropy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor
from lucid.models.gpt import (
    GPT,
    GPTConfig,
    LossModule,
    encode,
    sample,
)
from tests.aot._helpers import QUICK

torch = pytest.importorskip("torch")
from tests.zoo.torch_gpt import GPT as TorchGPT  # needs torch, imported above

pytestmark = pytest.mark.needs_cc

CFG = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=4, n_embd=32)
F32 = {"rtol": 1e-4, "atol": 1e-5}


def _pair(cfg: GPTConfig = CFG, dtype: type = np.float32) -> tuple[GPT, torch.nn.Module]:
    lucid.random.seed(0)
    ours = GPT(cfg)
    if dtype == np.float64:
        ours = ours.double()
    theirs = TorchGPT(cfg.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.tied)
    if dtype == np.float64:
        theirs = theirs.double()
    state = {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=not cfg.tied)
    return ours, theirs


def _tokens(n: int, t: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, (n, t)).astype(np.int64)


def test_names_match_the_torch_twin() -> None:
    ours, theirs = _pair()
    assert set(ours.state_dict()) == set(theirs.state_dict())


@pytest.mark.parametrize("tied", [False, True])
def test_logits_match_torch(tied: bool) -> None:
    cfg = GPTConfig(**{**CFG.__dict__, "tied": tied})
    ours, theirs = _pair(cfg)
    idx = _tokens(3, cfg.block_size)
    with lucid.no_grad():
        got = ours(Tensor(idx)).data
    with torch.no_grad():
        want = theirs(torch.from_numpy(idx)).numpy()
    np.testing.assert_allclose(got, want, **F32)


def test_gradients_match_torch_in_float64() -> None:
    ours, theirs = _pair(dtype=np.float64)
    idx, targets = _tokens(2, 10), _tokens(2, 10, seed=2)
    ours.loss(Tensor(idx), Tensor(targets)).backward()
    logits = theirs(torch.from_numpy(idx))
    torch.nn.functional.cross_entropy(
        logits.reshape(-1, CFG.vocab_size), torch.from_numpy(targets).reshape(-1)
    ).backward()
    tgrads = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad, tgrads[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name
        )


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_forward_matches_eager(dynamic: bool) -> None:
    ours, _ = _pair()
    compiled = lucid.compile(ours, dynamic_batch=dynamic)
    for n in (2, 5) if dynamic else (2,):
        idx = _tokens(n, CFG.block_size, seed=n)
        with lucid.no_grad():
            np.testing.assert_allclose(compiled(Tensor(idx)).data, ours(Tensor(idx)).data, **F32)


def test_compiled_training_matches_eager() -> None:
    idx, targets = _tokens(4, CFG.block_size), _tokens(4, CFG.block_size, seed=3)
    runs = []
    for compiled in (False, True):
        model, _ = _pair()
        step = LossModule(model)
        run = lucid.compile(step) if compiled else step
        opt = lucid.optim.AdamW(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = run(Tensor(idx), Tensor(targets))
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
        runs.append(losses)
    np.testing.assert_allclose(runs[1], runs[0], rtol=1e-4)


def test_exported_forward_matches_eager(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    ours, _ = _pair()
    idx = _tokens(2, CFG.block_size)
    lib = load(lucid.export(ours, (idx,), tmp_path / "gpt", flags=QUICK).library)
    with lucid.no_grad():
        np.testing.assert_allclose(lib(idx), ours(Tensor(idx)).data, **F32)
    with pytest.raises(IndexError):
        lib(np.full_like(idx, CFG.vocab_size))  # a token id past the vocabulary


def test_sample_extends_the_prompt() -> None:
    ours, _ = _pair()
    out = sample(ours, np.array([1, 2, 3]), steps=5, rng=np.random.default_rng(0))
    assert out.shape == (8,) and list(out[:3]) == [1, 2, 3]
    assert ((0 <= out) & (out < CFG.vocab_size)).all()


def test_encode_refuses_unknown_characters() -> None:
    with pytest.raises(ValueError, match=r"not in the vocabulary: \['z'\]"):
        encode("abz", "ab")
