"""The GPT's training idiom, `cross_entropy(logits.reshape(-1, V), targets.reshape(-1))`,
compiled with a dynamic batch: the flattened logits are f32[N*T,V], a dim that is the batch
symbol times a constant. One compiled signature serves every batch size (training: loss and
every gradient equal eager's within float32 tolerance), the exported loss and flattened-logits
libraries take any batch, and (when PyTorch is installed) the compiled loss and gradients
match PyTorch's twin. Without torch everything but the last test runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import Tensor, nn
from lucid.errors import RecompileWarning
from lucid.models.gpt import GPT, GPTConfig, LossModule
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc

CFG = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
F32 = {"rtol": 2e-5, "atol": 2e-6}  # float32, GEMMs summed in another order than NumPy's


def _model() -> GPT:
    lucid.random.seed(0)
    return GPT(CFG)


def _tokens(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, CFG.vocab_size, (n, CFG.block_size))


def _loss_and_grads(
    step: nn.Module, model: GPT, idx: np.ndarray, targets: np.ndarray
) -> tuple[float, dict[str, np.ndarray]]:
    for p in model.parameters():
        p.grad = None
    loss = step(Tensor(idx), Tensor(targets))
    loss.backward()
    grads = {name: np.array(p.grad) for name, p in model.named_parameters()}
    return float(loss.data), grads


def test_compiled_dynamic_loss_and_grads_match_eager_at_two_batch_sizes() -> None:
    model = _model()
    eager = LossModule(model)
    step = lucid.compile(eager, dynamic_batch=True)
    for n in (2, 5):
        idx, targets = _tokens(n, seed=n), _tokens(n, seed=10 + n)
        want_loss, want = _loss_and_grads(eager, model, idx, targets)
        got_loss, got = _loss_and_grads(step, model, idx, targets)
        np.testing.assert_allclose(got_loss, want_loss, **F32)
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], err_msg=name, **F32)
    assert len(step.signatures) == 1  # no recompile for the second batch size
    forward = lucid.ir.format(step.graph())
    assert f": f32[N*{CFG.block_size},{CFG.vocab_size}]" in forward
    assert f": i64[N*{CFG.block_size}]" in forward
    assert step.c_source is not None and step.backward_source is not None
    # the cross-entropy's rows and the GEMMs' M are computed from the batch argument
    assert f"batch * {CFG.block_size}" in step.c_source
    assert f"batch * {CFG.block_size}" in step.backward_source


def test_compiled_dynamic_training_follows_eager_over_sgd_steps() -> None:
    """Three SGD steps at alternating batch sizes: the compiled model's parameters follow
    eager's, with one compiled signature throughout. (SGD, not Adam: Adam's update is about
    lr * sign(g) for a gradient near zero, so float32 noise of 1e-6 in such a gradient flips
    it, which says nothing about the compiled code.)"""
    params = []
    for compiled in (False, True):
        model = _model()
        step: nn.Module = LossModule(model)
        run = lucid.compile(step, dynamic_batch=True) if compiled else step
        opt = lucid.optim.SGD(model.parameters(), lr=0.5)
        for k, n in enumerate((3, 1, 4)):
            opt.zero_grad()
            run(Tensor(_tokens(n, seed=k)), Tensor(_tokens(n, seed=20 + k))).backward()
            opt.step()
        if compiled:
            assert len(run.signatures) == 1  # type: ignore[attr-defined]
        params.append({name: np.array(p.data) for name, p in model.named_parameters()})
    for name in params[0]:
        np.testing.assert_allclose(params[1][name], params[0][name], rtol=1e-4, atol=1e-5)


class _FlatLogits(nn.Module):
    """The GPT's logits flattened as the loss reads them: [N*T, V]."""

    def __init__(self, model: GPT) -> None:
        super().__init__()
        self.model = model

    def forward(self, idx: Tensor) -> Tensor:
        return self.model(idx).reshape(-1, CFG.vocab_size)


def test_compiled_flat_logits_output_takes_every_batch_size() -> None:
    """An output whose first dim is N*T: the slow path's first call, then the generated fast
    path, allocate it from the batch."""
    model = _model()
    flat = _FlatLogits(model)
    compiled = lucid.compile(flat, dynamic_batch=True)
    with lucid.no_grad():
        for n in (2, 3, 1, 3):
            idx = _tokens(n, seed=n)
            got = compiled(Tensor(idx)).data
            assert got.shape == (n * CFG.block_size, CFG.vocab_size)
            np.testing.assert_allclose(got, flat(Tensor(idx)).data, **F32)
    assert len(compiled.signatures) == 1


def test_exported_loss_and_flat_logits_at_two_batch_sizes(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    model = _model()
    example = _tokens(2, seed=0)
    loss_lib = load(
        lucid.export(LossModule(model), (example, example), tmp_path / "loss", flags=QUICK).library
    )
    exported = lucid.export(_FlatLogits(model), (example,), tmp_path / "flat", flags=QUICK)
    flat_lib = load(exported.library)
    header = exported.header.read_text()
    assert f"output 0: float[batch*{CFG.block_size}, {CFG.vocab_size}]" in header
    assert repr(flat_lib).endswith(f"-> (output0: f32[N*{CFG.block_size},{CFG.vocab_size}]))")
    for n in (1, 4):
        idx, targets = _tokens(n, seed=n), _tokens(n, seed=30 + n)
        with lucid.no_grad():
            want_loss = LossModule(model)(Tensor(idx), Tensor(targets)).data
            want_flat = _FlatLogits(model)(Tensor(idx)).data
        np.testing.assert_allclose(loss_lib(idx, targets), want_loss, **F32)
        got = flat_lib(idx)
        assert got.shape == (n * CFG.block_size, CFG.vocab_size)
        np.testing.assert_allclose(got, want_flat, **F32)


def test_targets_that_do_not_fit_the_logits_are_a_clear_error() -> None:
    """targets [N, T-1] against logits [N, T, V], or targets of another batch than idx: the
    flattened rows differ, and the error names the cross-entropy and both sizes (the eager
    kernel, which the trace runs, says so first, as eager lucid does)."""
    step = lucid.compile(LossModule(_model()), dynamic_batch=True)
    idx = _tokens(2, seed=1)
    with pytest.raises(
        ValueError, match=r"cross_entropy: expected target of shape \(16,\), got \(14,\)"
    ):
        step(Tensor(idx), Tensor(idx[:, :-1]))
    with (
        pytest.warns(RecompileWarning),  # a new signature: traced again, and refused
        pytest.raises(
            ValueError, match=r"cross_entropy: expected target of shape \(16,\), got \(24,\)"
        ),
    ):
        step(Tensor(idx), Tensor(_tokens(3, seed=2)))  # a batch of 2 and one of 3


def test_compiled_dynamic_loss_and_grads_match_torch() -> None:
    torch = pytest.importorskip("torch")
    from tests.zoo.torch_gpt import GPT as TorchGPT

    model = _model()
    twin = TorchGPT(CFG.vocab_size, CFG.block_size, CFG.n_layer, CFG.n_head, CFG.n_embd, False)
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
    step = lucid.compile(LossModule(model), dynamic_batch=True)
    for n in (2, 3):
        idx, targets = _tokens(n, seed=n), _tokens(n, seed=40 + n)
        got_loss, got = _loss_and_grads(step, model, idx, targets)
        twin.zero_grad()
        logits = twin(torch.from_numpy(idx))
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, CFG.vocab_size), torch.from_numpy(targets).reshape(-1)
        )
        loss.backward()
        torch.testing.assert_close(torch.tensor(got_loss), loss.detach())  # default f32 tols
        tgrads = dict(twin.named_parameters())
        for name, g in got.items():
            torch.testing.assert_close(
                torch.from_numpy(g), tgrads[name].grad, rtol=1e-4, atol=1e-5, msg=name
            )
