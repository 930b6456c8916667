"""Prepacked weights of one compiled forward: each GEMM weight is packed once into the layout
its micro-kernels read, and the packed copy is reused while the Parameter is unchanged.

A Parameter's `_version` grows at every in-place change lucid makes (optimizer steps,
`load_state_dict`, item assignment), and `p.data = array` replaces the array object; either
makes the next call repack that weight. Writing into `p.data[...]` directly (NumPy, behind
lucid's back) changes neither: call `lucid.compile` again, or bump `p._version`, after doing so.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

# A version no Parameter has: the slot is not packed yet.
_UNPACKED = object()


def _aligned(elems: int, dtype: np.dtype) -> np.ndarray:
    """`elems` elements of `dtype` starting on a 64-byte boundary (the kernels' aligned loads)."""
    itemsize = np.dtype(dtype).itemsize
    raw = np.empty(elems * itemsize + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    return raw[skip : skip + elems * itemsize].view(dtype)


class PackedWeights:
    """The packed weight slots of one C forward (`CExecutable.pack_slots`).

    Invariants: `table[s]` is 0 (the C packs that weight in the call) or the address of
    `buffers[s]`, which then holds the packing of `sources[s]` (the param's array) as it was at
    Parameter version `versions[s]`. `versions` is read by the compiled fast path: a call whose
    Parameter version differs takes the slow path, which repacks.
    """

    def __init__(self, forward: Any) -> None:
        self.forward = forward
        params = forward.graph.params
        self.slots: tuple[tuple[int, int], ...] = tuple(forward.pack_slots)
        self.buffers = [_aligned(n, params[p].type.dtype.np) for p, n in self.slots]
        self.table = np.zeros(max(1, len(self.slots)), np.uintp)
        self.sources: list[np.ndarray | None] = [None] * len(self.slots)
        self.versions: list[Any] = [_UNPACKED] * len(self.slots)
        self._lock = threading.Lock()  # one thread packs a slot at a time

    def refresh(self, params: Sequence[Any], arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Repack every slot whose weight changed since it was packed; returns the slot table.

        `params` are the live Parameter objects and `arrays` the checked C-contiguous arrays
        the call passes for them (graph param order)."""
        with self._lock:
            for s, (p, _) in enumerate(self.slots):
                version = getattr(params[p], "_version", None)
                if version is None:  # not a Parameter: nothing says when it changes
                    self.table[s], self.sources[s], self.versions[s] = 0, None, None
                    continue
                a = arrays[p]
                if self.sources[s] is a and self.versions[s] == version:
                    continue
                self.table[s] = 0  # never leave a half-packed buffer in the table
                self.forward.pack(s, a, self.buffers[s])
                self.sources[s], self.versions[s] = a, version
                self.table[s] = self.buffers[s].ctypes.data
        return self.table

    def nbytes(self) -> int:
        """Bytes held by the packed copies."""
        return sum(b.nbytes for b in self.buffers)
