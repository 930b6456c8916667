"""A conv model that flattens [N, C, H, W] to [N*C, H*W] (and GroupNorm-style to [N, G, rest]
and [N*G, rest]) compiled with a dynamic batch: forward and training against eager lucid at
several batch sizes with one compiled signature, a float64 central-difference check of the
compiled gradients, eager against PyTorch, and the sizes the C reads from the batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import Tensor, nn
from lucid.errors import TraceError
from tests.eager.gradcheck import check_grads

pytestmark = pytest.mark.needs_cc

C, H, W, G = 4, 6, 5, 2


class ConvFlat(nn.Module):
    """Conv, then rows of one channel's plane: a softmax over each plane, a Linear over it (a
    GEMM whose M is 4N), and the sum of squares per group of channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, C, 3, padding=1)
        self.fc = nn.Linear(H * W, 7)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.conv(x)  # [N, C, H, W]
        n = h.shape[0]
        rows = h.reshape(-1, H * W)  # [N*C, H*W]
        planes = F.softmax(rows, dim=1).reshape(n, C, H, W)  # back to [N, C, H, W]
        groups = h.reshape(n, G, -1).reshape(-1, C // G * H * W)  # [N, G, .] then [N*G, .]
        return self.fc(rows).tanh(), planes * x.sum(1, keepdims=True), (groups * groups).sum(1)


def _x(n: int, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, H, W)).astype(dtype)


def _loss(outs: tuple[Tensor, ...]) -> Tensor:
    a, b, c = outs
    return (a * a).sum() + (b * b).mean() + c.mean()


def _run(fn: Any, model: nn.Module, x: np.ndarray) -> list[np.ndarray]:
    for p in model.parameters():
        p.grad = None
    xt = Tensor(x, requires_grad=True)
    outs = fn(xt)
    _loss(outs).backward()
    return [o.data for o in outs] + [np.array(p.grad) for p in model.parameters()] + [xt.grad]


def test_types_hold_the_scaled_batch_and_the_c_reads_it() -> None:
    lucid.random.seed(0)
    model = ConvFlat()
    compiled = lucid.compile(model, dynamic_batch=True)
    with lucid.no_grad():
        compiled(Tensor(_x(2)))
    assert [str(t) for t in compiled.graph().output_types] == [
        "f32[N*4,7]",
        "f32[N,4,6,5]",
        "f32[N*2]",
    ]
    text = lucid.ir.format(compiled.graph())
    assert ": f32[N*4,30]" in text and ": f32[N*2,60]" in text
    src = compiled.c_source
    assert src is not None and "batch * 4" in src and "batch * 2" in src


def test_compiled_forward_and_training_match_eager_at_several_batch_sizes() -> None:
    lucid.random.seed(0)
    model = ConvFlat()
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 3, 2):
        x = _x(n, seed=n)
        want, got = _run(model, model, x), _run(compiled, model, x)
        for k, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, k
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=f"result {k}, n={n}")
    assert len(compiled.signatures) == 1


@pytest.mark.filterwarnings("ignore::lucid.errors.RecompileWarning")  # see the last assert
def test_compiled_float64_gradients_match_central_differences() -> None:
    lucid.random.seed(0)
    model = ConvFlat().double()
    compiled = lucid.compile(model, dynamic_batch=True)
    for n in (1, 2):

        def op(x: Tensor) -> Tensor:
            return _loss(compiled(x))

        check_grads(op, _x(n, seed=5 + n, dtype=np.float64))
    # two entries whatever the batch: gradients for x and the parameters (the backward under
    # test), and the parameters only (the differences' calls pass x without requires_grad)
    assert len(compiled.signatures) == 2


def test_eager_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    lucid.random.seed(0)
    model = ConvFlat()
    conv, fc = torch.nn.Conv2d(3, C, 3, padding=1), torch.nn.Linear(H * W, 7)
    with torch.no_grad():
        for mine, theirs in ((model.conv, conv), (model.fc, fc)):
            theirs.weight.copy_(torch.from_numpy(mine.weight.data))
            theirs.bias.copy_(torch.from_numpy(mine.bias.data))
    x = _x(3, seed=9)
    tx = torch.from_numpy(x).requires_grad_()
    h = conv(tx)
    rows = h.reshape(-1, H * W)
    groups = h.reshape(3, G, -1).reshape(-1, C // G * H * W)
    touts = (
        fc(rows).tanh(),
        torch.softmax(rows, 1).reshape(3, C, H, W) * tx.sum(1, keepdim=True),
        (groups * groups).sum(1),
    )
    ((touts[0] ** 2).sum() + (touts[1] ** 2).mean() + touts[2].mean()).backward()
    got = _run(lucid.compile(model, dynamic_batch=True), model, x)
    want = [t.detach().numpy() for t in touts]
    want += [p.grad.numpy() for p in (conv.weight, conv.bias, fc.weight, fc.bias)]
    want += [tx.grad.numpy()]
    for k, (g, w) in enumerate(zip(got, want)):
        torch.testing.assert_close(torch.from_numpy(g), torch.from_numpy(w), msg=f"result {k}")


class OddRows(nn.Module):
    """[N, 4] read as rows of 8: a whole number of rows only for an even batch."""

    def forward(self, x: Tensor) -> Tensor:
        return x.reshape(-1, 8).sum(1)


def test_a_reshape_the_batch_does_not_fit_is_refused_naming_the_shapes() -> None:
    """Eager takes an even batch, but no single compiled graph serves every batch: the trace
    fails with the reshape, both shapes and the line; a static batch compiles."""
    x = np.ones((4, 4), np.float32)
    with pytest.raises(
        TraceError,
        match=r"(?s)test_scaled_batch_compiled.py:\d+.*reshape: cannot reshape f32\[N,4\] "
        r"\(N\*4 elements\) to \[-1,8\]: the -1 would be N\*4 / 8, not a whole dim",
    ):
        lucid.compile(OddRows(), dynamic_batch=True)(Tensor(x))
    with lucid.no_grad():
        np.testing.assert_array_equal(lucid.compile(OddRows())(Tensor(x)).data, np.full(2, 8.0))


def test_c_binds_the_batch_from_an_input_that_holds_only_a_scaled_dim() -> None:
    """The backward of the GPT's loss reads f32[N*8,11] and i64[N*8] and no plain N: the C
    executable takes the batch as rows / 8 and sizes its output [N,8,11] from it."""
    from lucid.ir import grad, interpret, parse
    from lucid.runtime.backends import BackendOptions, get_backend

    backward = grad(
        parse(
            "graph @loss(%logits: f32[N,8,11], %targets: i64[N,8]) -> (f32[]) {\n"
            "  %0 = reshape %logits {shape=[-1, 11]} : f32[N*8,11]\n"
            "  %1 = reshape %targets {shape=[-1]} : i64[N*8]\n"
            '  %2 = cross_entropy %0, %1 {reduction="mean"} : f32[]\n'
            "  return %2\n}\n"
        )
    ).backward
    assert [str(t) for t in backward.input_types] == ["f32[N*8,11]", "i64[N*8]", "f32[]"]
    executable = get_backend("c").prepare(backward, BackendOptions())
    assert executable.batch_from == (0, 0, 8)  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for n in (1, 3):
        arrays = (
            rng.standard_normal((8 * n, 11)).astype(np.float32),
            rng.integers(0, 11, 8 * n),
            np.array(0.5, np.float32),
        )
        (got,) = executable.run(*arrays)
        (want,) = interpret(backward, *arrays)
        assert got.shape == (n, 8, 11)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


class SizeReads(nn.Module):
    """A flattened batch's size read back: as a number (a mean over N*3 elements) and as the
    first dim of a tensor created in forward."""

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1)  # [N*3]
        mean = flat.sum() / flat.shape[0]  # N*3 computed in the graph from the batch
        ones = lucid.zeros(flat.shape[0], 2) + 1.0  # a [N*3, 2] broadcast
        return (flat - mean).reshape(-1, 1) * ones


def test_a_scaled_size_read_as_a_number_and_as_a_dim() -> None:
    compiled = lucid.compile(SizeReads(), dynamic_batch=True)
    with lucid.no_grad():
        for n in (2, 5):
            x = _x(n, seed=n)[:, :, 0, 0].copy()  # [n, 3]
            got = compiled(Tensor(x)).data
            want = SizeReads()(Tensor(x)).data
            assert got.shape == (3 * n, 2)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert len(compiled.signatures) == 1
    text = lucid.ir.format(compiled.graph())
    assert "broadcast" in text and "f32[N*3,2]" in text
