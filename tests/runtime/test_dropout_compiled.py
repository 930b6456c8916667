"""Dropout in training mode, compiled: the same masks as eager under lucid.random.seed.

The mask is a hash of (seed, element index) (lucid/ir/ops/dropout.py); eager draws one seed per
call from lucid.random, and a compiled call draws the same seeds at run time (a graph input,
never a constant), so both compute the same masks, and the compiled backward reuses them.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.errors import LucidError
from lucid.ir.ops import dropout as D

pytestmark = pytest.mark.filterwarnings("ignore::lucid.errors.RecompileWarning")
P = 0.3


class TwoDropouts(nn.Module):
    """Linear -> ReLU -> Dropout(0.3) -> Linear -> Dropout(0.5): two seeds per call, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(5, 16)
        self.drop1 = nn.Dropout(P)
        self.fc2 = nn.Linear(16, 4)
        self.drop2 = nn.Dropout(0.5)

    def forward(self, x: lucid.Tensor) -> lucid.Tensor:
        return self.drop2(self.fc2(self.drop1(self.fc1(x).relu())))


def _model() -> TwoDropouts:
    lucid.random.seed(0)
    return TwoDropouts().train()


def _x(rows: int, cols: int = 5, dtype: type = np.float32) -> lucid.Tensor:
    return lucid.Tensor(np.random.default_rng(rows).standard_normal((rows, cols)).astype(dtype))


def _seeded(seed: int, fn, *args):
    lucid.random.seed(seed)
    return fn(*args)


def _drops(y: np.ndarray) -> np.ndarray:
    return y == 0


# ---------------------------------------------------------------- forward


STATIC_SLOW = [pytest.param(False, marks=pytest.mark.slow), True]  # static: one build per batch


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic_batch", STATIC_SLOW)
def test_compiled_masks_equal_eager_under_seed(dynamic_batch: bool) -> None:
    model = _model()
    compiled = lucid.compile(model, dynamic_batch=dynamic_batch)
    with lucid.no_grad():
        for rows in (1, 7, 64):
            x = _x(rows)
            for s in (1, 2):
                eager = _seeded(s, model, x).data
                got = _seeded(s, compiled, x).data  # the first call of a shape traces first
                np.testing.assert_array_equal(_drops(got), _drops(eager))
                np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-6)
    assert "dropout" in compiled.c_source and "rng_seed" not in str(compiled.signatures)


@pytest.mark.needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_alone_is_bitwise_eager(dtype: type) -> None:
    model = nn.Sequential(nn.Dropout(P)).train()
    compiled = lucid.compile(model, dynamic_batch=True)
    interpreted = lucid.compile(model, backend="interpreter")
    x = _x(33, 17, dtype)
    with lucid.no_grad():
        eager = _seeded(9, model, x).data
        for runner in (compiled, compiled, interpreted):  # the slow path, the fast path, NumPy
            got = _seeded(9, runner, x).data
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, eager)


@pytest.mark.needs_cc
def test_compiled_calls_draw_exactly_what_eager_draws() -> None:
    model = _model()
    compiled = lucid.compile(model)
    x = _x(4)
    with lucid.no_grad():
        _seeded(3, model, x)
        after_eager = lucid.random.draw_seed()
        _seeded(3, compiled, x)  # traces (drawing nothing), then draws two seeds
        assert lucid.random.draw_seed() == after_eager
        _seeded(3, compiled, x)  # the fast path draws the same two
        assert lucid.random.draw_seed() == after_eager


@pytest.mark.needs_cc
def test_consecutive_calls_draw_different_masks() -> None:
    model = nn.Sequential(nn.Dropout(0.5)).train()
    compiled = lucid.compile(model)
    x = lucid.ones(64, 64)
    with lucid.no_grad():
        masks = [_drops(compiled(x).data) for _ in range(3)]
    assert not np.array_equal(masks[0], masks[1]) and not np.array_equal(masks[1], masks[2])
    # independent masks agree on a quarter of the elements each way: p^2 + (1 - p)^2 = 1/2
    agree = np.mean(masks[0] == masks[1])
    assert abs(agree - 0.5) < 5 * np.sqrt(0.25 / masks[0].size)


@pytest.mark.needs_cc
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_keep_rate_and_scale(dtype: type) -> None:
    """p = 0.3 over 10^6 elements: within 5 sigma of the binomial; kept values are exactly
    x * dtype(1 / (1 - p)) (the rounded scale; within an ulp of x / (1 - p))."""
    model = nn.Sequential(nn.Dropout(P)).train()
    compiled = lucid.compile(model)
    x = _x(1000, 1000, dtype)
    with lucid.no_grad():
        y = _seeded(11, compiled, x).data
        np.testing.assert_array_equal(y, _seeded(11, model, x).data)  # eager hashes in blocks
    n = y.size
    kept = ~_drops(y)
    assert abs(kept.sum() - n * (1 - P)) < 5 * np.sqrt(n * P * (1 - P))
    scale = dtype(1.0 / (1.0 - P))
    np.testing.assert_array_equal(y[kept], x.data[kept] * scale)
    np.testing.assert_allclose(y[kept], x.data[kept] / (1 - P), rtol=np.finfo(dtype).eps)
    # no structure along the flat index: each half, and even/odd positions, keep at 1 - p too
    for part in (kept[:500], kept[500:], kept.ravel()[::2], kept.ravel()[1::2]):
        assert abs(part.mean() - (1 - P)) < 5 * np.sqrt(P * (1 - P) / part.size)


def test_keep_mask_matches_the_documented_hash() -> None:
    """The vectorised kernel is splitmix64 seeded at mix64(seed), element by element (also
    across the blocks it hashes in)."""
    seed, p, n = -987654321, 0.25, 3 * D._BLOCK + 5
    key = D.mix64(seed)
    got = D.keep_mask(n, seed, p)
    edges = [0, 1, D._BLOCK - 1, D._BLOCK, 2 * D._BLOCK + 1, n - 1]
    for i in [*range(50), *edges]:
        h = D.mix64(key + (i + 1) * D.GAMMA)
        assert 0 <= h < 1 << 64 and got[i] == (h >= D.threshold(p))
    assert D.threshold(0.0) == 0 and D.threshold(0.5) == 1 << 63 and D.threshold(0.75) == 3 << 62


@pytest.mark.needs_cc
def test_p_zero_is_the_identity_and_p_one_drops_everything() -> None:
    x = _x(6, 4)
    with lucid.no_grad():
        identity = lucid.compile(nn.Sequential(nn.Dropout(0.0)).train())
        np.testing.assert_array_equal(identity(x).data, x.data)
        assert "dropout" not in str(identity.graph())
        zeros = lucid.compile(nn.Sequential(nn.Dropout(1.0)).train())
        np.testing.assert_array_equal(zeros(x).data, np.zeros((6, 4), np.float32))
        np.testing.assert_array_equal(nn.Dropout(1.0).train()(x).data, np.zeros((6, 4)))
    assert "every element is dropped" in zeros.c_source


@pytest.mark.needs_cc
def test_eval_mode_is_the_identity_with_no_seed() -> None:
    model = _model().eval()
    compiled = lucid.compile(model)
    x = _x(5)
    with lucid.no_grad():
        np.testing.assert_allclose(compiled(x).data, model(x).data, rtol=1e-5, atol=1e-6)
    graph = compiled.graph()
    assert len(graph.inputs) == 1 and all(n.op != "dropout" for n in graph.nodes)


# ---------------------------------------------------------------- backward


def _eager_grads(model: nn.Module, x: np.ndarray, w: np.ndarray, seed: int) -> list[np.ndarray]:
    for p in model.parameters():
        p.grad = None
    xt = lucid.Tensor(x, requires_grad=True)
    lucid.random.seed(seed)
    out = model(xt)
    out = out[0] if isinstance(out, tuple) else out
    (out * lucid.Tensor(w)).sum().backward()
    return [xt.grad, *(p.grad for p in model.parameters())]


@pytest.mark.needs_cc
@pytest.mark.parametrize("dynamic_batch", STATIC_SLOW)
def test_compiled_backward_reuses_the_forward_masks(dynamic_batch: bool) -> None:
    model = _model()
    compiled = lucid.compile(model, dynamic_batch=dynamic_batch)
    for rows, seed in ((8, 4), (8, 5), (3, 6)):  # slow path, fast path, another batch
        x = _x(rows).data
        w = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
        want = _eager_grads(model, x, w, seed)
        got = _eager_grads(compiled, x, w, seed)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    backward = compiled.stages(which="backward")["optimized"]
    assert sum(n.op == "dropout" for n in backward.nodes) == 2  # recomputed, not saved masks


@pytest.mark.needs_cc
@pytest.mark.slow
def test_training_steps_follow_eager() -> None:
    """A few SGD steps with dropout: compiled and eager parameters stay together."""
    eager_model, compiled_model = _model(), _model()
    compiled = lucid.compile(compiled_model)
    opts = [optim.SGD(m.parameters(), lr=0.1) for m in (eager_model, compiled_model)]
    x = _x(16).data
    for step in range(4):
        for run, opt in zip((eager_model, compiled), opts):
            opt.zero_grad()
            lucid.random.seed(100 + step)
            (run(lucid.Tensor(x)) ** 2).mean().backward()
            opt.step()
    for a, b in zip(eager_model.parameters(), compiled_model.parameters()):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- threads and fork


@pytest.mark.needs_cc
def test_threads_calling_one_compiled_model_get_valid_distinct_masks() -> None:
    model = nn.Sequential(nn.Dropout(0.5)).train()
    compiled = lucid.compile(model)
    x = lucid.ones(32, 32)
    with lucid.no_grad():
        compiled(x)  # compile once, before the threads
    masks: list[bytes] = []
    failures: list[str] = []

    def work() -> None:
        try:
            for _ in range(25):
                y = compiled(x).data
                if not np.all((y == 0) | (y == 2)):
                    failures.append("a value that is neither dropped nor scaled")
                masks.append(np.packbits(y == 0).tobytes())
        except Exception as exc:  # noqa: BLE001  # surfaced below: lost in a thread otherwise
            failures.append(repr(exc))

    # no_grad around the threads, not in them: grad mode is one process-wide flag, and
    # threads entering and leaving no_grad at once can leave it off
    with lucid.no_grad():
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures
    assert len(masks) == 100 and len(set(masks)) == 100  # no two calls shared a seed


def _child_mask(compiled: object, x: lucid.Tensor) -> bytes:
    """Fork; the child sends the mask of one compiled call; its exit code must be 0."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must never return into pytest
        code = 1
        try:
            os.close(read)
            with lucid.no_grad():
                mask = np.packbits(compiled(x).data == 0).tobytes()  # type: ignore[operator]
            with os.fdopen(write, "wb") as pipe:
                pipe.write(mask)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return data
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child did not finish")
        time.sleep(0.01)


@pytest.mark.needs_cc
def test_forked_children_draw_their_own_masks_reproducibly() -> None:
    compiled = lucid.compile(nn.Sequential(nn.Dropout(0.5)).train())
    x = lucid.ones(16, 16)
    with lucid.no_grad():
        compiled(x)  # built in the parent
    runs = []
    for _ in range(2):
        lucid.random.seed(21)
        first, second = _child_mask(compiled, x), _child_mask(compiled, x)
        with lucid.no_grad():
            parent = np.packbits(compiled(x).data == 0).tobytes()
        runs.append((first, second, parent))
        assert len({first, second, parent}) == 3  # parent and children all differ
    assert runs[0] == runs[1]  # seed(21) then the same forks: the same streams


# ---------------------------------------------------------------- export


def test_export_refuses_training_dropout(tmp_path) -> None:
    model = _model()
    with pytest.raises(LucidError, match=r"model\.eval\(\) before lucid\.export"):
        lucid.export(model, _x(2), tmp_path / "m")
    assert not list(tmp_path.iterdir())


class AlwaysDrops(nn.Module):
    """F.dropout with training=True whatever the mode: an eval-mode graph that takes a seed."""

    def __init__(self, as_tuple: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 6)
        self.as_tuple = as_tuple

    def forward(self, x: lucid.Tensor) -> Any:
        y = lucid.nn.functional.dropout(self.fc(x), 0.5, training=True)
        return (y,) if self.as_tuple else y


@pytest.mark.needs_cc
@pytest.mark.parametrize("as_tuple", [False, True])  # the inlined late backward, and late()
def test_eval_call_backward_recomputes_with_the_calls_own_seeds(as_tuple: bool) -> None:
    """An eval-mode call with grad on is differentiable; its backward reruns the call through a
    grad entry, which must reuse the seeds the call drew, not draw new ones."""
    lucid.random.seed(0)
    model = AlwaysDrops(as_tuple).eval()
    compiled = lucid.compile(model)
    x = _x(4)
    for seed in (1, 2):  # the slow path, then the fast path
        want = _eager_grads(model, x.data, np.ones((4, 6), np.float32), seed)[1:]
        for p in model.parameters():
            p.grad = None
        lucid.random.seed(seed)
        out = compiled(x)
        out = out[0] if as_tuple else out
        lucid.random.draw_seed()  # a draw between forward and backward must not matter
        out.sum().backward()
        for p, e in zip(model.parameters(), want):
            np.testing.assert_allclose(p.grad, e, rtol=1e-5, atol=1e-6)
