"""MobileNetV3-Small written in lucid against the same architecture in PyTorch (torchvision's
names), from one state dict: eager, compiled (static and dynamic batch) and exported in eval
mode, and the loss trajectory of a few SGD steps in training mode.

The quick tests use 10 classes and small images (64x64: the network downsamples by 32); the
full 224x224 comparison at batch 1 and 8 is marked slow. Tolerances (float32): logits agree
within atol = 2e-4 * max|logit| + rtol 1e-3, the error of ~50 layers of float32 convolutions
summed in other orders (measured: see the closing note of issue 15).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor
from lucid.models import load_torchvision_state_dict, mobilenet_v3_small
from lucid.nn import functional as F
from tests.aot._helpers import QUICK

torch = pytest.importorskip("torch")
from tests.zoo.torch_mobilenet import MobileNetV3Small  # needs torch, imported above

pytestmark = pytest.mark.needs_cc


def _close(ours: np.ndarray, theirs: np.ndarray) -> None:
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=2e-4 * scale)


def _pair(num_classes: int = 10, seed: int = 0) -> tuple[lucid.nn.Module, torch.nn.Module]:
    """(lucid model, torch model) with the same weights, in eval mode: the torch model's
    BatchNorm statistics and affine parameters are randomised first, so eval mode is not the
    identity normalisation a fresh model has."""
    torch.manual_seed(seed)
    theirs = MobileNetV3Small(num_classes=num_classes)
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.num_batches_tracked.fill_(seed + 3)
    ours = mobilenet_v3_small(num_classes=num_classes)
    load_torchvision_state_dict(ours, theirs.state_dict())
    return ours.eval(), theirs.eval()


def _images(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, size, size)).astype(np.float32)


def _torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_parameter_names_and_count_match_torchvision() -> None:
    ours, theirs = _pair(num_classes=1000)
    want = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    got = {k: tuple(np.shape(v)) for k, v in ours.state_dict().items()}
    assert got == want
    assert sum(p.data.size for p in ours.parameters()) == 2_542_856  # torchvision's count


def test_state_dict_round_trips_buffers() -> None:
    ours, theirs = _pair()
    state = ours.state_dict()
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(state[k], v.numpy(), err_msg=k)
    assert state["features.0.1.num_batches_tracked"].dtype == np.int64


def test_eager_eval_matches_torch() -> None:
    ours, theirs = _pair()
    x = _images(2, 64)
    with lucid.no_grad():
        _close(ours(Tensor(x)).data, _torch(theirs, x))


@pytest.mark.parametrize("dynamic", [False, True])
def test_compiled_eval_matches_torch(dynamic: bool) -> None:
    ours, theirs = _pair()
    compiled = lucid.compile(ours, dynamic_batch=dynamic)
    for n in (2, 3) if dynamic else (2,):
        x = _images(n, 64, seed=n)
        with lucid.no_grad():
            _close(compiled(Tensor(x)).data, _torch(theirs, x))


def test_compiled_eval_applies_batch_norm_inside_the_convolutions() -> None:
    """Eval BatchNorm is a per-channel scale and shift computed on [C] (from the live
    buffers) and applied in the epilogue of the convolution before it: every conv2d of the
    optimized graph sits in a fused_conv whose body multiplies and adds, and no statistics
    (moments) are computed."""
    import re

    from lucid.ir import trace
    from lucid.ir.passes import default_pipeline, run_passes

    ours, _ = _pair()
    with lucid.no_grad():
        graph = run_passes(trace(ours, _images(1, 64)), default_pipeline())
    text = str(graph)
    assert "moments" not in text
    top = [n.op for n in graph.nodes]
    assert "conv2d" not in top and top.count("fused_conv") == 52  # 52 convolutions
    bodies = re.findall(r"= fused_conv .*?yield", text, re.DOTALL)
    with_bn = [b for b in bodies if re.search(r"= mul .*\n.*= add ", b)]
    assert len(with_bn) == 52 - 18  # all but the squeeze-excite convs (9 blocks x fc1, fc2)


def test_exported_library_matches_torch(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    ours, theirs = _pair()
    x = _images(2, 64)
    lib = load(lucid.export(ours, (x,), tmp_path / "mnv3", flags=QUICK).library)
    _close(lib(x), _torch(theirs, x))
    x3 = _images(3, 64, seed=5)  # the export's batch is dynamic
    _close(lib(x3), _torch(theirs, x3))


@pytest.mark.slow  # ~35 s: the first compile of forward + backward of 52 convolutions
def test_training_steps_follow_torch() -> None:
    """Batch statistics, running-stat updates and SGD with momentum, compiled, against torch:
    the loss of each step and the running statistics after the last."""
    ours, theirs = _pair()
    ours.train()
    theirs.train()
    ours.classifier[2].p = 0.0  # dropout draws differ between the two libraries' generators
    theirs.classifier[2].p = 0.0
    x = _images(8, 64, seed=7)
    t = np.random.default_rng(8).integers(0, 10, 8)
    opt = lucid.optim.SGD(ours.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.05, momentum=0.9)
    compiled = lucid.compile(ours)
    losses, tlosses = [], []
    for _ in range(4):
        opt.zero_grad()
        loss = F.cross_entropy(compiled(Tensor(x)), t)
        loss.backward()
        opt.step()
        losses.append(float(loss.data))
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(t))
        tloss.backward()
        topt.step()
        tlosses.append(float(tloss.detach()))
    np.testing.assert_allclose(losses, tlosses, rtol=2e-3)
    assert losses[-1] < losses[0]
    state = ours.state_dict()
    for k, v in theirs.state_dict().items():
        if "running" in k or "num_batches" in k:
            np.testing.assert_allclose(state[k], v.numpy(), rtol=1e-3, atol=1e-5, err_msg=k)


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8])
def test_full_size_eval_matches_torch(batch: int, tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    ours, theirs = _pair(num_classes=1000)
    x = _images(batch, 224, seed=batch)
    want = _torch(theirs, x)
    with lucid.no_grad():
        _close(ours(Tensor(x)).data, want)
        _close(lucid.compile(ours, dynamic_batch=True)(Tensor(x)).data, want)
    lib = load(lucid.export(ours, (x,), tmp_path / "mnv3").library)
    _close(lib(x), want)
