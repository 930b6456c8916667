"""lucid's one source of randomness: a module-level NumPy Generator.

Everything random in lucid (randn, rand, Linear's initialisation, Dropout's masks) draws from
`generator()`, so `lucid.random.seed(n)` makes a whole program reproducible.
"""

from __future__ import annotations

import numpy as np

_generator: np.random.Generator = np.random.default_rng()


def seed(value: int) -> None:
    """Restart lucid's generator from `value`."""
    global _generator
    _generator = np.random.default_rng(value)


def generator() -> np.random.Generator:
    """The generator all lucid randomness draws from (look it up on each use: seed replaces it)."""
    return _generator
