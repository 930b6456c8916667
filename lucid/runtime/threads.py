"""The thread count compiled code may use: set once in Python, passed to the C at every call."""

from __future__ import annotations

import operator
import os

__all__ = ["get_num_threads", "set_num_threads"]


def available_cores() -> int:
    """Cores this process may run on (its affinity mask), not the machine's total."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


# Read by the compiled call path as a module global (one dict lookup); never baked into a build,
# so changing it takes effect at the next call of every compiled module.
num_threads: int = available_cores()


def set_num_threads(n: int) -> None:
    """Use at most `n` threads (n >= 1) in compiled code from the next call on."""
    try:
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)  # accepts NumPy integers, refuses floats and bools
    except TypeError:
        raise TypeError(
            f"set_num_threads: expected an int >= 1, got {type(n).__name__} {n!r}"
        ) from None
    if n < 1:
        raise ValueError(f"set_num_threads: expected an int >= 1, got {n}")
    global num_threads
    num_threads = n


def get_num_threads() -> int:
    """The thread count compiled code uses (default: the cores available to this process)."""
    return num_threads
