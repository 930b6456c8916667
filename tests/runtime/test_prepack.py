"""Prepacked weights in lucid.compile: a forward-only entry packs each GEMM weight once and
reuses it while the Parameter is unchanged; an optimizer step, load_state_dict, item assignment
or a new `.data` array makes the next call repack. The compiled result must always be the one
of the current weights (checked against eager lucid), and bitwise the unpacked call's."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

import lucid
from lucid import nn, optim
from lucid.nn import functional as F
from lucid.runtime import _prepack

pytestmark = pytest.mark.needs_cc


def model() -> nn.Module:
    """Linear(64, 200) -> HardSwish -> Linear(200, 48): weights big enough for the blocked GEMM."""
    lucid.random.seed(3)
    return nn.Sequential(nn.Linear(64, 200), nn.HardSwish(), nn.Linear(200, 48))


def eager(m: nn.Module, x: np.ndarray) -> np.ndarray:
    with lucid.no_grad():
        return m(lucid.Tensor(x)).data


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((37, 64)).astype(np.float32)


@pytest.fixture
def refreshes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the slots repacked (PackedWeights.refresh calls that packed something)."""
    packed: list[int] = []
    real = _prepack.PackedWeights.refresh

    def spy(self, params, arrays):
        before = list(self.versions)
        table = real(self, params, arrays)
        packed.append(sum(a != b for a, b in zip(before, self.versions)))
        return table

    monkeypatch.setattr(_prepack.PackedWeights, "refresh", spy)
    return packed


def check(cm, m: nn.Module, x: np.ndarray) -> None:
    """Compiled == eager (f32 tolerance) and == the unpacked C call bit for bit."""
    got = cm(x).data
    np.testing.assert_allclose(got, eager(m, x), rtol=1e-5, atol=1e-5)
    e = cm.entry()
    (unpacked,) = e.forward.run(x, *e.params())
    np.testing.assert_array_equal(got, unpacked)


def test_weights_are_packed_once_and_reused(x: np.ndarray, refreshes: list[int]) -> None:
    m = model().eval()
    cm = lucid.compile(m)
    check(cm, m, x)
    e = cm.entry()
    assert e.packed is not None and [p for p, _ in e.packed.slots] == [0, 2]  # the two weights
    assert sum(refreshes) == 2
    for _ in range(5):
        check(cm, m, x)
    assert sum(refreshes) == 2, "an unchanged weight was packed again"
    assert e.fast is not None  # and the calls went through the fast path, which cannot pack


def test_an_optimizer_step_repacks(x: np.ndarray, refreshes: list[int]) -> None:
    m = model()
    cm = lucid.compile(m.eval())
    check(cm, m, x)
    m.train()
    opt = optim.SGD(m.parameters(), lr=0.1)
    loss = F.mse_loss(m(lucid.Tensor(x)), lucid.Tensor(np.ones((37, 48), np.float32)))
    loss.backward()
    opt.step()
    m.eval()
    before = sum(refreshes)
    check(cm, m, x)
    assert sum(refreshes) == before + 2


def test_load_state_dict_item_assignment_and_new_arrays_repack(x: np.ndarray) -> None:
    m = model().eval()
    cm = lucid.compile(m)
    check(cm, m, x)
    other = model()
    for p in other.parameters():
        p.data *= 3
    m.load_state_dict(other.state_dict())
    check(cm, m, x)
    with lucid.no_grad():
        m[0].weight[:5] = 0.0
    check(cm, m, x)
    m[2].weight.data = np.ascontiguousarray(m[2].weight.data[::-1])
    check(cm, m, x)


@pytest.mark.slow
def test_training_entries_pack_in_the_call(x: np.ndarray) -> None:
    """Weights change after every step there: the grad entry has no packed copies."""
    m = model().train()
    cm = lucid.compile(m)
    out = cm(lucid.Tensor(x, requires_grad=True))
    out.sum().backward()
    assert cm.entry().grad is not None and cm.entry().packed is None


def test_concurrent_calls_after_a_change(x: np.ndarray) -> None:
    """Threads racing into the first call after a weight change all get the new result."""
    m = model().eval()
    cm = lucid.compile(m)
    cm(x)
    with lucid.no_grad():
        m[0].weight[...] = m[0].weight.data * 0.5
    want = eager(m, x)
    results: list[np.ndarray] = []

    def run() -> None:
        for _ in range(5):
            results.append(cm(x).data)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 15
    for r in results:
        np.testing.assert_allclose(r, want, rtol=1e-5, atol=1e-5)


def test_conv_weights_are_packed_as_a_and_repacked_when_changed(refreshes: list[int]) -> None:
    """A conv's GEMM takes its weight as A (y = w @ col): packed once per change like a Linear's
    B, for a 1x1 conv (x read in place) and a 3x3 one (im2col); bitwise the unpacked call."""
    lucid.random.seed(4)
    m = nn.Sequential(
        nn.Conv2d(24, 40, 1), nn.HardSwish(), nn.Conv2d(40, 36, 3, padding=1, stride=2)
    ).eval()
    x = np.random.default_rng(1).standard_normal((3, 24, 15, 13)).astype(np.float32)
    cm = lucid.compile(m)
    check(cm, m, x)
    e = cm.entry()
    assert e.packed is not None and [p for p, _ in e.packed.slots] == [0, 2]  # both weights
    assert "_gemm_pack_a(const float *restrict A" in cm.c_source
    assert sum(refreshes) == 2
    check(cm, m, x)
    assert sum(refreshes) == 2, "an unchanged weight was packed again"
    with lucid.no_grad():
        m[2].weight[:, :3] = 0.25
    check(cm, m, x)
    assert sum(refreshes) == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_prepacked_conv_weight_over_several_k_blocks_and_partial_panels(dtype: type) -> None:
    """K = 300 x 3 x 3 = 2700 spans several K blocks of the packed A; 23 output channels leave
    the last micro-panel of rows partial; both dtypes, bitwise the unpacked call."""
    lucid.random.seed(5)
    m = nn.Conv2d(300, 23, 3, padding=1, dtype=dtype).eval()
    x = np.random.default_rng(2).standard_normal((2, 300, 9, 11)).astype(dtype)
    cm = lucid.compile(m)
    got = cm(x).data
    tol = 1e-4 if dtype is np.float32 else 1e-11
    np.testing.assert_allclose(got, eager(m, x), rtol=tol, atol=tol)
    e = cm.entry()
    assert e.packed is not None and e.packed.nbytes() > 0
    (unpacked,) = e.forward.run(x, *e.params())
    np.testing.assert_array_equal(got, unpacked)
    kcs = [int(v) for v in re.findall(r"cache blocks mc=\d+ kc=(\d+)", cm.c_source)]
    assert kcs and all(kc < 2700 for kc in kcs)  # more than one K block
