"""The two reference models compiled and exported against eager lucid, without PyTorch (so
that CI, which has no torch, runs them): MobileNetV3-Small and the character GPT, forward at
several batch sizes and training steps, and the GPT trained on the shipped text.
(tests/zoo/test_mobilenetv3.py and test_gpt.py compare with PyTorch when it is installed.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor
from lucid.models import mobilenet_v3_small
from lucid.models.gpt import GPT, GPTConfig, LossModule, batches, encode, unigram_entropy
from lucid.nn import functional as F
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc

STEPS = 300  # of the text-training test: about 8 s compiled on 2 cores (AMD EPYC)


def _mnv3() -> lucid.nn.Module:
    lucid.random.seed(0)
    model = mobilenet_v3_small(num_classes=10)
    rng = np.random.default_rng(1)
    for name, buf in model.named_buffers():  # non-trivial eval statistics
        if name.endswith("running_mean"):
            buf.data[...] = rng.normal(0, 0.1, buf.shape)
        elif name.endswith("running_var"):
            buf.data[...] = rng.uniform(0.5, 1.5, buf.shape)
    return model


def _images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 64, 64)).astype(np.float32)


def _close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * float(np.abs(want).max()))


def test_mobilenet_compiled_and_exported_match_eager(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    model = _mnv3().eval()
    compiled = lucid.compile(model, dynamic_batch=True)
    lib = load(lucid.export(model, (_images(2),), tmp_path / "mnv3", flags=QUICK).library)
    for n in (1, 2, 5):
        x = _images(n, seed=n)
        with lucid.no_grad():
            want = model(Tensor(x)).data
            _close(compiled(Tensor(x)).data, want)
        _close(lib(x), want)


def test_mobilenet_compiled_training_matches_eager() -> None:
    """Two SGD steps in training mode (batch statistics, running-stat write-back) compiled
    and eager from the same start: losses, and the running statistics after."""
    x, t = _images(4, seed=3), np.random.default_rng(4).integers(0, 10, 4)
    runs = []
    for compiled in (False, True):
        model = _mnv3().train()
        model.classifier[2].p = 0.0  # no dropout draws: the two runs must see the same masks
        run = lucid.compile(model) if compiled else model
        opt = lucid.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(run(Tensor(x)), t)
            loss.backward()
            opt.step()
            losses.append(float(loss.data))
        runs.append((losses, model.state_dict()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-4)
    for k, v in runs[0][1].items():
        if "running" in k or "num_batches" in k:
            np.testing.assert_allclose(runs[1][1][k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def test_training_on_the_shipped_text_beats_the_unigram_entropy() -> None:
    """A few hundred compiled AdamW steps of a small model on examples/data: the loss must end
    well below the unigram entropy (what no model without context can beat)."""
    data_dir = Path(__file__).parents[2] / "examples" / "data"
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted(data_dir.glob("*.txt")))
    vocab = "".join(sorted(set(text)))
    data = encode(text, vocab)
    floor = unigram_entropy(data)
    lucid.random.seed(0)
    cfg = GPTConfig(len(vocab), block_size=32, n_layer=2, n_head=4, n_embd=48)
    model = GPT(cfg)
    step = lucid.compile(LossModule(model))
    opt = lucid.optim.AdamW(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(STEPS):
        idx, targets = batches(data, cfg.block_size, 16, rng)
        opt.zero_grad()
        loss = step(Tensor(idx), Tensor(targets))
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
    final = float(np.mean(losses[-20:]))
    assert final < floor - 0.5, (final, floor)
