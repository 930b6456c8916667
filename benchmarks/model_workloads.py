"""The issue-15 reference models as benchmark workloads: MobileNetV3-Small and the character GPT.

Every system computes the same function from the same numbers: lucid builds and initialises the
model (`lucid.random.seed(0)`), its state dict (parameters and buffers, by name) is the data, and
the PyTorch twins of tests/zoo/ and the JAX twins of peers/jax_models.py load it by name.
Dropout is off everywhere (p = 0: random draws are not what is timed and would differ between
systems). A training step is forward + mean cross-entropy + backward + plain SGD (lr 1e-3).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from workloads import Data, Workload

ROOT = Path(__file__).resolve().parents[1]


def gpt_config(w: Workload):
    """The lucid GPTConfig of a gpt workload (sizes = vocab, block, layers, heads, embd)."""
    from lucid.models.gpt import GPTConfig

    vocab, block, n_layer, n_head, n_embd = w.sizes
    return GPTConfig(
        vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd
    )


def lucid_model(w: Workload):
    """A freshly initialised lucid model of `w` (seeded, so every call gives the same weights)."""
    import lucid

    lucid.random.seed(0)
    if w.model == "mnv3":
        from lucid.models.mobilenetv3 import mobilenet_v3_small

        return mobilenet_v3_small(num_classes=1000, dropout=0.0)
    if w.model == "gpt":
        from lucid.models.gpt import GPT

        return GPT(gpt_config(w))
    raise ValueError(f"unknown model {w.model!r} in workload {w.name!r}")


def make_model_data(w: Workload) -> Data:
    """lucid's state dict, the input (images or token ids) and the class targets of `w`."""
    model = lucid_model(w)
    rng = np.random.default_rng(0)
    if w.model == "mnv3":
        x = rng.standard_normal((w.batch, *w.sizes)).astype(np.float32)
        target = rng.integers(0, 1000, w.batch)
        calibrate_batch_norm(model, rng.standard_normal((8, *w.sizes)).astype(np.float32))
    else:
        vocab, block = w.sizes[:2]
        x = rng.integers(0, vocab, (w.batch, block))
        target = rng.integers(0, vocab, (w.batch, block))
    state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    names = [n for n, _ in model.named_parameters()]
    return Data([], x, target, state=state, param_names=names)


def calibrate_batch_norm(model, images: np.ndarray) -> None:
    """Set every BatchNorm's running statistics to those of `images` (one train-mode forward
    with momentum 1), as a trained network has them.

    At torchvision's initialisation the running statistics are mean 0, variance 1, and an
    eval-mode MobileNetV3 shrinks its activations about tenfold per block: the logits are
    ~1e-9, and a forward check against them would pass whatever a system computed."""
    import lucid
    from lucid import nn

    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    model.train()
    with lucid.no_grad():
        model(lucid.Tensor(images))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def lucid_loaded(w: Workload, d: Data):
    """lucid's model of `w` holding a private copy of the workload's state."""
    model = lucid_model(w)
    assert d.state is not None
    model.load_state_dict({k: v.copy() for k, v in d.state.items()})
    return model


def torch_twin(w: Workload, d: Data):
    """The PyTorch twin of tests/zoo/ holding a copy of lucid's state (strict load by name)."""
    import torch

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    if w.model == "mnv3":
        from tests.zoo.torch_mobilenet import MobileNetV3Small

        model = MobileNetV3Small(num_classes=1000, dropout=0.0)
    else:
        from tests.zoo.torch_gpt import GPT

        c = gpt_config(w)
        model = GPT(c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, c.tied)
    assert d.state is not None
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in d.state.items()})
    return model


def logits_2d(logits):
    """[B, T, V] -> [B*T, V] (GPT); [N, classes] unchanged: what cross-entropy takes."""
    return logits.reshape(-1, logits.shape[-1]) if logits.ndim == 3 else logits
