"""lucid.random: seed compatibility, draws from several threads, and fresh streams after fork."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import random as R

fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_seed_gives_the_stream_of_default_rng() -> None:
    R.seed(123)
    np.testing.assert_array_equal(R.generator().random(5), np.random.default_rng(123).random(5))


def test_draw_seed_is_a_non_negative_int64_and_reproducible() -> None:
    R.seed(4)
    first = [R.draw_seed() for _ in range(100)]
    R.seed(4)
    assert [R.draw_seed() for _ in range(100)] == first
    assert all(0 <= s < 2**63 for s in first) and len(set(first)) == 100


def test_threads_drawing_at_once_get_the_sequential_draws() -> None:
    """Eight threads draw 4000 seeds in all: exactly the 4000 a single thread draws, in some
    order (a corrupted generator would repeat or invent values)."""
    R.seed(8)
    sequential = sorted(R.draw_seed() for _ in range(4000))
    R.seed(8)
    drawn: list[list[int]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(k: int) -> None:
        start.wait()
        drawn[k].extend(R.draw_seed() for _ in range(500))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for part in drawn for s in part) == sequential


def _in_child(fn) -> bytes:
    """Run fn() in a forked child and return the bytes it produced (exit code must be 0)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child must never return into pytest
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as pipe:
                pipe.write(fn())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return data
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("forked child did not finish (a lock inherited locked?)")
        time.sleep(0.01)


def _mask() -> bytes:
    x = lucid.ones(8, 8)
    return np.packbits(F.dropout(x, 0.5).data == 0).tobytes()


@fork_only
def test_forked_children_do_not_repeat_the_parent_or_each_other() -> None:
    runs = []
    for _ in range(2):
        R.seed(1)
        children = [_in_child(_mask) for _ in range(3)]
        parent = _mask()
        assert len({*children, parent}) == 4
        runs.append((children, parent))
    assert runs[0] == runs[1]  # seed(1), then the same forks: the same streams


@fork_only
def test_a_childs_children_get_streams_of_their_own() -> None:
    R.seed(3)
    nested = _in_child(lambda: _in_child(_mask) + _mask())  # a grandchild's mask, the child's
    grandchild, child = nested[:8], nested[8:]
    assert len({grandchild, child, _in_child(_mask), _mask()}) == 4


@fork_only
def test_fork_while_another_thread_holds_the_lock() -> None:
    """The child gets a lock of its own; the parent's fork count waits for the holder."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with R._lock:
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    threading.Timer(0.2, release.set).start()
    try:
        assert len(_in_child(lambda: R.draw_seed().to_bytes(8, "little"))) == 8
    finally:
        release.set()
        holder.join()
