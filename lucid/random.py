"""lucid's one source of randomness: a module-level NumPy Generator.

Everything random in lucid (randn, rand, Linear's initialisation, Dropout's masks) draws from
`generator()`, so `lucid.random.seed(n)` makes a whole program reproducible.

Dropout draws one seed per call with `draw_seed()`, eager and compiled alike: its mask is a
counter-based hash of (seed, element index) (lucid/ir/ops/dropout.py), so a compiled call,
which draws the same seeds in the same order at run time, computes eager's masks bit for bit,
and a backward recomputes its forward's mask from the same seed.

Threads: `draw_seed` draws under a lock (and NumPy's Generator locks each call too), so draws
from several threads never corrupt the generator's state. Which thread gets which draw is up
to the scheduler: a multi-threaded program is reproducible only if its draws are ordered.

Fork: a child made by `os.fork()` (multiprocessing's "fork" start method, a pool of data
workers) must not repeat its parent's or its siblings' random numbers: that is the duplicate
seed bug of PyTorch DataLoader workers sharing NumPy's global state. So the child replaces the
generator at once with one seeded from the parent's seed sequence and the fork's ordinal (a
`SeedSequence` spawn key: the k-th fork since the last `seed()`). Every child's stream differs
from its parent's and its siblings', and still a program that calls `seed(n)` and then forks in
the same order gets the same child streams on every run (an unseeded parent's sequence came
from OS entropy, so its children's do too). The parent's own stream is not touched by forking.
A child that wants a stream of its own choosing calls `seed()` itself. A reference kept to the
old generator (`g = generator()` before the fork) still holds the copied state: look the
generator up on each use.
"""

from __future__ import annotations

import os
import threading

import numpy as np

_lock = threading.Lock()  # guards the three names below and draw_seed's draw
_sequence: np.random.SeedSequence = np.random.SeedSequence()
_generator: np.random.Generator = np.random.Generator(np.random.PCG64(_sequence))
_forks = 0  # children forked since `_sequence` was set: the spawn index of the next one


def seed(value: int) -> None:
    """Restart lucid's generator from `value` (a non-negative int)."""
    global _sequence, _generator, _forks
    sequence = np.random.SeedSequence(value)  # the stream np.random.default_rng(value) gives
    generator = np.random.Generator(np.random.PCG64(sequence))
    with _lock:
        _sequence, _generator, _forks = sequence, generator, 0


def generator() -> np.random.Generator:
    """The generator all lucid randomness draws from (look it up on each use: seed replaces it)."""
    return _generator


def draw_seed() -> int:
    """A fresh seed in [0, 2**63) from the generator: one per Dropout call, eager or compiled."""
    with _lock:
        return int(_generator.integers(2**63, dtype=np.int64))


def _reseed_child() -> None:
    """After os.fork(), in the child: a stream of its own, spawned from the parent's sequence."""
    global _lock, _sequence, _generator, _forks
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    parent = _sequence
    child = np.random.SeedSequence(
        parent.entropy, spawn_key=(*parent.spawn_key, _forks), pool_size=parent.pool_size
    )
    _sequence, _generator, _forks = child, np.random.Generator(np.random.PCG64(child)), 0


def _count_fork() -> None:
    """After os.fork(), in the parent: the next child gets the next spawn index."""
    global _forks
    with _lock:
        _forks += 1


if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork to guard against
    os.register_at_fork(after_in_child=_reseed_child, after_in_parent=_count_fork)
