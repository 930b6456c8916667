"""The weights blob of an exported model: layout, the blob itself, and the `.weights` file.

Blob: every parameter in graph order, C-contiguous, little-endian, in its declared dtype, each
starting at a 64-byte aligned offset (zero padding between), so the C can hand the kernels
aligned pointers straight into it. Embedded, the blob is pulled into `.rodata` with `.incbin`
(the assembler copies bytes: no 50M-element C initialiser for the compiler to parse). As a
file, a 64-byte header comes first (all fields little-endian):

    0  magic "LUCIDWTS"   8  u32 version   12 u32 header bytes (64)   16 u64 model fingerprint
    24 u64 blob bytes     32 u32 CRC-32 of the blob (zlib's)   36 u32 parameter count
    40 zero padding to 64
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lucid.ir.core import Graph

ALIGN = 64
FILE_MAGIC = b"LUCIDWTS"
FILE_VERSION = 1
HEADER_BYTES = 64
_HEADER = struct.Struct("<8sIIQQII")  # the fields above; padded with zeros to HEADER_BYTES


@dataclass(frozen=True)
class BlobLayout:
    """Where each parameter sits in the blob. Invariant: offsets are 64-aligned and increasing."""

    names: tuple[str, ...]
    offsets: tuple[int, ...]
    nbytes: tuple[int, ...]
    total: int  # blob size, a multiple of 64 (at least 64, so the C never sees an empty blob)
    fingerprint: int  # u64 identifying the parameter list; a weights file must match it


def layout(graph: Graph) -> BlobLayout:
    """The blob layout of `graph`'s parameters (types only: no data needed)."""
    names, offsets, sizes, described = [], [], [], []
    at = 0
    for p in graph.params:
        t = p.type
        shape = [int(d) for d in t.shape]  # parameters have static shapes
        size = int(np.prod(shape, dtype=np.int64)) * t.dtype.np.itemsize
        names.append(p.hint or "")
        offsets.append(at)
        sizes.append(size)
        described.append([p.hint, str(t.dtype), shape, at])
        at += -(-size // ALIGN) * ALIGN
    total = max(at, ALIGN)
    digest = hashlib.sha256(json.dumps(["lucid-weights", FILE_VERSION, described]).encode())
    fingerprint = int.from_bytes(digest.digest()[:8], "little")
    return BlobLayout(tuple(names), tuple(offsets), tuple(sizes), total, fingerprint)


def _le(a: np.ndarray) -> np.ndarray:
    """`a` C-contiguous and little-endian (a byte swap only on a big-endian host or array)."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def write_blob(
    f: BinaryIO, lay: BlobLayout, arrays: Sequence[np.ndarray], *, crc: bool = True
) -> int:
    """Write the blob of `arrays` (graph param order) to `f`; return its CRC-32 (0 if not crc)."""
    value = 0
    at = 0
    for offset, size, a in zip(lay.offsets, lay.nbytes, arrays):
        pad = bytes(offset - at)
        data = memoryview(_le(a)).cast("B")
        if len(data) != size:
            raise ValueError(f"parameter has {len(data)} bytes, the layout expects {size}")
        for chunk in (pad, data):
            f.write(chunk)
            if crc:  # 0.5 s for 200 MB: only the weights file's header needs it
                value = zlib.crc32(chunk, value)
        at = offset + size
    tail = bytes(lay.total - at)
    f.write(tail)
    return zlib.crc32(tail, value) if crc else 0


def write_blob_file(path: Path, lay: BlobLayout, arrays: Sequence[np.ndarray]) -> None:
    """The bare blob at `path`, for `.incbin`."""
    with open(path, "wb") as f:
        write_blob(f, lay, arrays, crc=False)


def write_weights_file(path: Path, lay: BlobLayout, arrays: Sequence[np.ndarray]) -> None:
    """A `.weights` file: header then blob; the CRC is patched in after the blob is written."""
    with open(path, "wb") as f:
        f.write(bytes(HEADER_BYTES))
        crc = write_blob(f, lay, arrays)
        f.seek(0)
        f.write(
            _HEADER.pack(
                FILE_MAGIC,
                FILE_VERSION,
                HEADER_BYTES,
                lay.fingerprint,
                lay.total,
                crc,
                len(lay.offsets),
            )
        )


def crc32_table() -> list[int]:
    """zlib's CRC-32 lookup table (reflected polynomial 0xEDB88320), for the C reader."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table
