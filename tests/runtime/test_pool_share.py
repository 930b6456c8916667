"""One worker pool per process (parallel.c.j2, backends.share_pool): every compiled module with
the same pool code uses the pool of the first one loaded, so a forward and its backward, or two
models, never keep two sets of workers spinning on the same cores. Results stay those of each
module's own pool: the pool only decides which thread runs a task."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import lucid
from lucid import nn
from lucid.runtime import backends
from tests.runtime.test_fork import _wait as wait_child

pytestmark = pytest.mark.needs_cc


def _pool_of(executable) -> int:
    """The address of the pool state `executable`'s calls use (0: it has no pool)."""
    return int(getattr(executable.lib, f"{executable.prefix}_pool_share")(0))


def _mlp(seed: int, width: int) -> nn.Module:
    lucid.random.seed(seed)
    return nn.Sequential(nn.Linear(256, width), nn.HardSwish(), nn.Linear(width, 256))


@pytest.fixture
def two_threads():
    """Compiled calls split their GEMMs over two threads (the pool's workers) during the test."""
    before = lucid.get_num_threads()
    lucid.set_num_threads(2)
    yield
    lucid.set_num_threads(before)


def _two_models(seeds: tuple[int, int], widths: tuple[int, int], rows: int):
    """Two eval-mode MLPs of other widths, compiled, and an input batch of `rows`."""
    a, b = (_mlp(s, w).eval() for s, w in zip(seeds, widths))
    return a, b, lucid.compile(a), lucid.compile(b), lucid.randn(rows, 256)


def test_forward_backward_and_another_model_use_one_pool(two_threads) -> None:
    a, b = _mlp(1, 384), _mlp(2, 320).eval()
    x = lucid.randn(128, 256)
    ca, cb = lucid.compile(a), lucid.compile(b)
    out = ca(x)
    (out * out).mean().backward()
    grads = [p.grad.copy() for p in a.parameters()]
    with lucid.no_grad():
        got_b = cb(x).data
    entry = ca.entry()
    assert entry.grad is not None
    programs = [entry.forward, entry.grad.executable, cb.entry().forward]
    pools = {_pool_of(e) for e in programs}
    assert len(pools) == 1 and 0 not in pools, pools
    code = getattr(programs[0].lib, f"{programs[0].prefix}_pool_code")()
    assert backends._POOLS[code] in pools
    # what each module computes through the shared pool is what eager lucid computes
    a.zero_grad()
    ref = a(x)
    (ref * ref).mean().backward()
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, a.parameters()):
        np.testing.assert_allclose(g, p.grad, rtol=1e-4, atol=1e-6)
    with lucid.no_grad():
        np.testing.assert_allclose(got_b, b(x).data, rtol=1e-5, atol=1e-5)


def test_share_pool_hands_later_modules_the_first_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry: the first module of a pool code keeps its own pool and registers it, later
    ones of that code are handed it, another code gets its own, and a module without a pool
    (code 0) is left alone."""
    monkeypatch.setattr(backends, "_POOLS", {})
    calls: list[tuple[str, int]] = []

    def module(name: str, code: int, own: int) -> SimpleNamespace:
        def share(state: int) -> int:
            calls.append((name, state))
            return own if state == 0 else state

        return SimpleNamespace(p_pool_code=lambda: code, p_pool_share=share)

    backends.share_pool(module("first", 7, 1000), "p")
    backends.share_pool(module("second", 7, 2000), "p")
    backends.share_pool(module("other", 9, 3000), "p")
    backends.share_pool(module("none", 0, 0), "p")
    assert calls == [("first", 0), ("second", 1000), ("other", 0)]
    assert backends._POOLS == {7: 1000, 9: 3000}


def test_fork_after_two_modules_shared_the_pool(two_threads) -> None:
    """A child forked after two modules ran on the shared pool re-initialises that one pool
    (its workers do not exist in the child) and computes the parent's results with both."""
    _, _, ca, cb, x = _two_models((3, 4), (512, 448), 256)
    with lucid.no_grad():
        want = (ca(x).data.copy(), cb(x).data.copy())
    assert _pool_of(ca.entry().forward) == _pool_of(cb.entry().forward) != 0
    pid = os.fork()
    if pid == 0:  # the child must never return into pytest
        code = 1
        try:
            with lucid.no_grad():
                ok = all(
                    np.array_equal(ca(x).data, want[0]) and np.array_equal(cb(x).data, want[1])
                    for _ in range(3)
                )
            code = 0 if ok else 2
        finally:
            os._exit(code)
    assert wait_child(pid, 60) == 0, "the child computed other results than its parent"


def test_two_threads_running_two_models_on_one_pool(two_threads) -> None:
    """Two Python threads calling two models at once: one owns the shared pool for a call, the
    other runs that call on threads of its own (never waits), and both keep eager's results."""
    a, b, ca, cb, x = _two_models((5, 6), (384, 384), 256)
    with lucid.no_grad():
        want = {id(ca): a(x).data, id(cb): b(x).data}
    failures: list[str] = []

    def hammer(model) -> None:
        for _ in range(30):
            got = model(x.data)
            if not np.allclose(got.data, want[id(model)], rtol=1e-5, atol=1e-5):
                failures.append("a result differs from eager")

    with lucid.no_grad():
        threads = [threading.Thread(target=hammer, args=(m,)) for m in (ca, cb)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a call hung"
    assert not failures
