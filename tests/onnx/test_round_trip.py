"""lucid model -> lucid.onnx.export -> lucid.onnx.load: the imported module gives the same
numbers as the original, eagerly and compiled with a dynamic batch, for MobileNetV3-Small and
the GPT (issue 16's round trip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
from lucid.models import GPT, GPTConfig
from tests.onnx.test_export_models import _close_model, _mobilenet

pytest.importorskip("onnx")


def _round_trip(model: lucid.nn.Module, example: np.ndarray, path: Path) -> lucid.nn.Module:
    lucid.onnx.export(model, lucid.Tensor(example), path)
    return lucid.onnx.load(path)


@pytest.mark.needs_cc
def test_mobilenet_round_trip(tmp_path: Path) -> None:
    model = _mobilenet(10)
    rng = np.random.default_rng(5)
    example = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    back = _round_trip(model, example, tmp_path / "m.onnx")
    compiled = lucid.compile(back, dynamic_batch=True)
    with lucid.no_grad():
        for n in (2, 3):
            x = rng.standard_normal((n, 3, 64, 64)).astype(np.float32)
            want = model(lucid.Tensor(x)).data
            _close_model(back(lucid.Tensor(x)).data, want)
            _close_model(compiled(lucid.Tensor(x)).data, want)


@pytest.mark.needs_cc
def test_gpt_round_trip(tmp_path: Path) -> None:
    lucid.random.seed(8)
    cfg = GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=4, n_embd=32)
    model = GPT(cfg).eval()
    rng = np.random.default_rng(6)
    example = rng.integers(0, cfg.vocab_size, (2, 10))
    back = _round_trip(model, example, tmp_path / "gpt.onnx")
    # compiled at the example's batch only: with dynamic_batch=True the re-imported GPT does
    # not trace yet (a position tensor folded at import keeps the probe's batch; see issue 16)
    compiled = lucid.compile(back)
    with lucid.no_grad():
        for n in (2, 1):
            idx = example if n == 2 else rng.integers(0, cfg.vocab_size, (n, 10))
            want = model(lucid.Tensor(idx)).data
            np.testing.assert_allclose(back(lucid.Tensor(idx)).data, want, rtol=1e-4, atol=1e-5)
            if n == 2:
                got = compiled(lucid.Tensor(idx)).data
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.needs_cc
def test_an_out_of_range_token_is_refused_after_the_round_trip(tmp_path: Path) -> None:
    lucid.random.seed(8)
    cfg = GPTConfig(vocab_size=17, block_size=12, n_layer=1, n_head=2, n_embd=8)
    back = _round_trip(GPT(cfg).eval(), np.zeros((2, 5), np.int64), tmp_path / "g.onnx")
    with pytest.raises(IndexError):
        back(lucid.Tensor(np.full((2, 5), 17, np.int64)))
