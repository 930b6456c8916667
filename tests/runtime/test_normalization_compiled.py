"""Normalization layers through lucid.compile against eager lucid: forward, training steps
(gradients, parameters, running statistics and num_batches_tracked after every step), static
and dynamic batch; eval-mode folding into the Linear before; the variance kernel; export."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lucid
import lucid.optim
from lucid import nn
from lucid.errors import TraceError
from lucid.ir.passes import FUSION_PASSES
from lucid.ir.trace import trace
from tests.aot._helpers import QUICK

pytestmark = pytest.mark.needs_cc
RTOL, ATOL = 2e-5, 2e-5  # float32; reductions sum in another order than NumPy's


class Vision(nn.Module):
    """[N, 3, 5, 5] -> BatchNorm2d -> ReLU -> GroupNorm -> flatten -> Linear -> BatchNorm1d."""

    def __init__(self, momentum: float | None = 0.1) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3, momentum=momentum)
        self.gn = nn.GroupNorm(3, 3)
        self.fc = nn.Linear(75, 6)
        self.bn1 = nn.BatchNorm1d(6, momentum=momentum)

    def forward(self, x: Any) -> Any:
        y = self.gn(self.bn(x).relu())
        return self.bn1(self.fc(y.reshape(-1, 75)))


class Text(nn.Module):
    """[N, 4, 8] -> LayerNorm(8) -> BatchNorm1d(4) on [N, C, L] -> flatten -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(32, 5)

    def forward(self, x: Any) -> Any:
        return self.fc(self.bn(self.ln(x)).reshape(-1, 32))


def _randomize(model: nn.Module, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(p.data.dtype) * 0.5 + (
            1.0 if p.data.ndim == 1 else 0.0
        )


def _twins(make: Any) -> tuple[nn.Module, nn.Module]:
    a, b = make(), make()
    _randomize(a, 0)
    b.load_state_dict(a.state_dict())
    return a, b


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].dtype == sb[k].dtype
        np.testing.assert_allclose(sa[k], sb[k], rtol=RTOL, atol=ATOL, err_msg=k)


CASES = [
    (Vision, (3, 5, 5)),
    (lambda: Vision(momentum=None), (3, 5, 5)),
    (Text, (4, 8)),
]


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
@pytest.mark.parametrize(("make", "feature"), CASES, ids=["vision", "vision_cumulative", "text"])
def test_training_steps_match_eager(make: Any, feature: tuple[int, ...], dynamic: bool) -> None:
    eager, model = _twins(make)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    opt_e = lucid.optim.SGD(eager.parameters(), lr=0.05, momentum=0.9)
    opt_c = lucid.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(1)
    batches = (6, 9, 4, 6) if dynamic else (6, 6, 6, 6)
    for n in batches:
        x = (rng.standard_normal((n, *feature)) * 2 + 1).astype(np.float32)
        outs = []
        for net, run, opt in ((eager, eager, opt_e), (model, compiled, opt_c)):
            opt.zero_grad()
            y = run(lucid.tensor(x))
            (y * y).mean().backward()
            outs.append((y.data.copy(), {k: p.grad.copy() for k, p in net.named_parameters()}))
            opt.step()
        np.testing.assert_allclose(outs[1][0], outs[0][0], rtol=RTOL, atol=ATOL)
        for k in outs[0][1]:
            np.testing.assert_allclose(
                outs[1][1][k], outs[0][1][k], rtol=1e-4, atol=1e-4, err_msg=k
            )
        _same_state(eager, model)  # parameters, running statistics, num_batches_tracked
    # the running statistics are graph outputs, written back after every call
    last = "bn" if make is Text else "bn1"
    hints = [hint for _, _, hint in compiled.entry().state_slots]
    assert hints[-3:] == [
        f"{last}.num_batches_tracked",
        f"{last}.running_mean",
        f"{last}.running_var",
    ]
    assert int(model.state_dict()[f"{last}.num_batches_tracked"]) == len(batches)
    # then inference in eval mode: the running statistics normalize
    eager.eval()
    compiled.eval()
    x = (rng.standard_normal((5, *feature)) * 2 + 1).astype(np.float32)
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.tensor(x)).data, eager(lucid.tensor(x)).data, rtol=RTOL, atol=ATOL
        )
    _same_state(eager, model)


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_forward_only_training_call_updates_running_statistics(dynamic: bool) -> None:
    eager, model = _twins(Vision)
    compiled = lucid.compile(model, dynamic_batch=dynamic)
    rng = np.random.default_rng(2)
    for n in (4, 7, 4) if dynamic else (4, 4, 4):
        x = rng.standard_normal((n, 3, 5, 5)).astype(np.float32)
        with lucid.no_grad():
            np.testing.assert_allclose(
                compiled(lucid.tensor(x)).data, eager(lucid.tensor(x)).data, rtol=RTOL, atol=ATOL
            )
        _same_state(eager, model)
    assert int(model.bn.num_batches_tracked.data) == 3
    graph = compiled.graph()
    assert len(graph.outputs) == 1 + 6  # forward's output, then two BatchNorms' three buffers
    assert compiled.entry().fast is None  # the write-back lives in the checked slow path


def test_state_outputs_are_listed_in_trace_and_refused_without_a_list() -> None:
    model = Vision()
    x = np.zeros((4, 3, 5, 5), np.float32)
    state: list[str] = []
    graph = trace(model, x, state=state)
    assert state == [
        "bn.num_batches_tracked",
        "bn.running_mean",
        "bn.running_var",
        "bn1.num_batches_tracked",
        "bn1.running_mean",
        "bn1.running_var",
    ]
    want = ["i64[]", "f32[3]", "f32[3]", "i64[]", "f32[6]", "f32[6]"]
    assert [str(t) for t in graph.output_types[1:]] == want
    assert int(model.bn.num_batches_tracked.data) == 0  # a trace writes nothing
    with pytest.raises(
        TraceError, match=r"writes the buffer\(s\) 'bn.num_batches_tracked'.*model.eval\(\)"
    ):
        trace(model, x)
    with pytest.raises(TraceError, match="writes the buffer"):  # before the batch-size guard
        trace(model, x, dynamic_batch=True)
    trace(model.eval(), x)  # eval mode writes nothing


def test_batch_of_one_in_training_is_refused_compiled_too() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    compiled = lucid.compile(model, dynamic_batch=True)
    compiled(lucid.tensor(np.ones((3, 3), np.float32)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the guard N > 1 fails: a new trace, which raises
        with pytest.raises(
            ValueError, match="Expected more than 1 value per channel when training"
        ):
            compiled(lucid.tensor(np.ones((1, 3), np.float32)))
    assert int(model[1].num_batches_tracked.data) == 1  # the refused call wrote nothing


@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_batchnorm_traces_as_one_node_that_expands_before_fusion(affine: str) -> None:
    # each affine form records one batch_norm node (bias alone: then an add); the compiled
    # forward, whose pipeline expands it first, matches eager; eager's kernel is PyTorch's
    # spelling, x * scale + shift, to the last bit
    bn = nn.BatchNorm2d(4, affine=affine != "none", bias=affine in ("both", "bias"))
    if affine == "bias":
        bn.weight = None
    _randomize(bn, 7)
    bn.running_mean.data[...] = np.linspace(-1, 1, 4)
    bn.running_var.data[...] = np.linspace(0.5, 2, 4)
    bn.eval()
    x = np.random.default_rng(8).standard_normal((3, 4, 2, 5)).astype(np.float32)
    ops = [n.op for n in trace(bn, x).nodes]
    assert ops.count("batch_norm") == 1 and "mul" not in ops
    compiled = lucid.compile(bn)
    with lucid.no_grad():
        eager = bn(lucid.tensor(x)).data
        np.testing.assert_allclose(compiled(lucid.tensor(x)).data, eager, rtol=RTOL, atol=ATOL)
    stages = compiled.stages()
    (node,) = [n for n in stages["traced"].nodes if n.op == "batch_norm"]
    expanded = stages["expand"].nodes
    assert "batch_norm" not in [n.op for n in expanded]
    assert node.loc is not None and all(n.loc == node.loc for n in expanded)  # the user's line
    f32 = np.float32
    scale = f32(1.0) / np.sqrt(bn.running_var.data + f32(bn.eps))
    if bn.weight is not None:
        scale = scale * bn.weight.data
    shift = -(bn.running_mean.data * scale)
    if affine == "both":
        shift = bn.bias.data + shift
    want = x * scale.reshape(4, 1, 1) + shift.reshape(4, 1, 1)
    if affine == "bias":
        want = want + bn.bias.data.reshape(4, 1, 1)
    np.testing.assert_array_equal(eager, want)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dynamic"])
def test_eval_folds_batchnorm_into_the_linear(dynamic: bool, bias: bool) -> None:
    lucid.random.seed(3)
    model = nn.Sequential(nn.Linear(6, 5, bias=bias), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2))
    _randomize(model, 4)
    model[1].running_mean.data[...] = np.linspace(-1, 1, 5)
    model[1].running_var.data[...] = np.linspace(0.5, 2, 5)
    model.eval()
    passes = [
        "expand",
        "canonicalize",
        "fold_affine",
        "constfold",
        "cse",
        "dce",
        *FUSION_PASSES,
        "dce",
    ]
    compiled = lucid.compile(model, dynamic_batch=dynamic, options={"passes": passes})
    x = np.random.default_rng(5).standard_normal((7, 6)).astype(np.float32)
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.tensor(x)).data, model(lucid.tensor(x)).data, rtol=1e-5, atol=1e-5
        )
    before, after = compiled.stages()["canonicalize"], compiled.stages()["fold_affine"]

    def big(g: Any) -> list[str]:  # the ops on [batch, ...] values
        return [n.op for n in g.nodes if n.results[0].type.shape[:1] in (("N",), (7,))]

    assert big(before).count("mul") == 1 and big(before).count("add") == 1
    assert big(after).count("mul") == 0 and big(after).count("add") == 0
    folded = next(n for n in after.nodes if n.op == "linear")
    assert folded.inputs[1] not in after.params  # the weight is scaled per channel
    # a state dict loaded after compiling is seen: the fold reads the buffers at every call
    model[1].running_var.data[...] *= 4
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.tensor(x)).data, model(lucid.tensor(x)).data, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: nn.LayerNorm(16), (5, 3, 16)),  # runs shorter than a chunk: the tail loop
        (lambda: nn.LayerNorm(300), (4, 300)),  # one chunk of 256, then a tail of 44
        (lambda: nn.BatchNorm2d(4), (3, 4, 17, 17)),  # channels: 3 runs of 289 each
    ],
    ids=["short_rows", "long_rows", "channels"],
)
def test_the_moments_kernel_matches_eager(make: Any, shape: tuple[int, ...]) -> None:
    model = make()
    compiled = lucid.compile(model, dynamic_batch=True)
    # a large mean and a small spread: cancellation would show here
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32) * 0.1 + 100
    with lucid.no_grad():
        np.testing.assert_allclose(
            compiled(lucid.tensor(x)).data, model(lucid.tensor(x)).data, rtol=5e-4, atol=5e-4
        )
    source = compiled.c_source
    assert "= moments" in source and "the corrected two-pass formula" in source


@pytest.mark.slow
def test_export_eval_and_refuse_training(tmp_path: Path) -> None:
    from lucid.runtime.loader import load

    eager, model = _twins(Vision)
    rng = np.random.default_rng(7)
    for _ in range(3):  # train the running statistics
        model(lucid.tensor(rng.standard_normal((6, 3, 5, 5)).astype(np.float32)))
    model.eval()
    x = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    lib = load(lucid.export(model, (x,), tmp_path / "m", flags=QUICK).library)
    with lucid.no_grad():
        for n in (4, 1, 9):
            xs = rng.standard_normal((n, 3, 5, 5)).astype(np.float32)
            np.testing.assert_allclose(lib(xs), model(lucid.tensor(xs)).data, rtol=RTOL, atol=ATOL)
    with pytest.raises(TraceError, match="running statistics of a BatchNorm in training mode"):
        lucid.export(eager.train(), (x,), tmp_path / "t", flags=QUICK)
