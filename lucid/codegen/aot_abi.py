"""What an exported model shares with the programs that read it: its C ABI and weights format.

The C API is one table, `aot_api.j2` (each function's declaration and comment): the header
template (`aot_header.h.j2`) lays it out with its comments, and the loader gives the same
declarations to `cffi.FFI.cdef` (`cdef`), so the two can never disagree. Everything an exported
library defines is prefixed with its model name, so several models link into one program.

Weights blob: every parameter in graph order, C-contiguous, little-endian, in its declared
dtype, each starting at a 64-byte aligned offset (zero padding between), so the C can hand the
kernels aligned pointers straight into it. Embedded, the blob is pulled into `.rodata` with
`.incbin` (the assembler copies bytes: no 50M-element C initialiser for the compiler to parse).
As a file (written by lucid/runtime/aot.py, read by the wrapper's C), a 64-byte header
comes first (all fields little-endian):

    0  magic "LUCIDWTS"   8  u32 version   12 u32 header bytes (64)   16 u64 model fingerprint
    24 u64 blob bytes     32 u32 CRC-32 of the blob (zlib's)   36 u32 parameter count
    40 zero padding to 64
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import dataclass

import numpy as np

from lucid.codegen._jinja import render
from lucid.errors import LucidError
from lucid.ir.core import Graph
from lucid.ir.types import Dim, DType, dim_parts

__all__ = [
    "ABI_VERSION",
    "ALIGN",
    "DTYPE_CODES",
    "DYNAMIC_DIM",
    "FILE_HEADER",
    "FILE_MAGIC",
    "FILE_VERSION",
    "HEADER_BYTES",
    "MAGIC",
    "MAGIC_PREFIX",
    "MAGIC_SIZE",
    "MAGIC_SUFFIX",
    "ApiFunction",
    "BlobLayout",
    "api",
    "cdef",
    "check_prefix",
    "crc32_table",
    "decode_dim",
    "dim_text",
    "encode_dim",
    "layout",
]

ABI_VERSION = 2  # 2: NAME_cpu_missing, NAME_E_HANDLE, NAME_E_CPU
# The one data symbol the loader reads before trusting anything else in a library:
# `NAME_lucid_aot_magic`, 16 bytes, this text NUL-padded. Its prefix says "a lucid export";
# the digits say which ABI.
MAGIC_PREFIX = b"lucid-aot-abi-"
MAGIC = MAGIC_PREFIX + str(ABI_VERSION).encode()
MAGIC_SIZE = 16
MAGIC_SUFFIX = "_lucid_aot_magic"

# Stable across lucid versions (part of the ABI): never renumber, only append.
DTYPE_CODES: dict[DType, int] = {DType.F32: 0, DType.F64: 1, DType.I64: 2, DType.BOOL: 3}
# A shape entry < 0 is a multiple of the batch: DYNAMIC_DIM (-1) the batch itself, -k k times
# it (a dim N*k, as logits reshaped [N, T, V] -> [N*T, V] have). See encode_dim/decode_dim.
DYNAMIC_DIM = -1

ALIGN = 64
FILE_MAGIC = b"LUCIDWTS"
FILE_VERSION = 1
HEADER_BYTES = 64
FILE_HEADER = struct.Struct("<8sIIQQII")  # the fields above; padded with zeros to HEADER_BYTES

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ApiFunction:
    """One exported function: its C declaration (prefix applied) and its comment lines."""

    decl: str
    doc: tuple[str, ...]


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a C identifier, else ValueError (a prefix is never sanitised here)."""
    if not _IDENT.match(prefix):
        raise ValueError(f"not a C identifier: {prefix!r}")
    return prefix


def api(prefix: str, *, embedded: bool) -> list[ApiFunction]:
    """The exported functions of a library with model name `prefix`, in header order."""
    text = render("aot_api.j2", p=check_prefix(prefix), abi=ABI_VERSION)
    entries: list[tuple[str, list[str], bool]] = []
    for line in text.strip().splitlines():
        if line.startswith(" "):
            entries[-1][1].append(line.strip())
        else:
            decl, marked = line.removesuffix(" [embedded]"), line.endswith(" [embedded]")
            entries.append((decl, [], marked))
    return [
        ApiFunction(decl, tuple(doc))
        for decl, doc, embedded_only in entries
        if embedded or not embedded_only
    ]


@dataclass(frozen=True)
class _Cdef:
    prefix: str
    magic_suffix: str
    magic_size: int
    functions: list[ApiFunction]


def cdef(prefix: str, *, embedded: bool) -> str:
    """Declarations for `cffi.FFI.cdef` (ABI mode) of one exported library."""
    functions = api(prefix, embedded=embedded)
    return render("aot_cdef.h.j2", c=_Cdef(prefix, MAGIC_SUFFIX, MAGIC_SIZE, functions))


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


def crc32_table() -> list[int]:
    """zlib's CRC-32 lookup table (reflected polynomial 0xEDB88320), for the C reader."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    return table


def encode_dim(d: Dim, batch: str | None) -> int:
    """An IR dim as a shape-table entry: an int as itself, `batch` times k as -k."""
    symbol, factor = dim_parts(d)
    if symbol is None:
        return factor
    if symbol != batch:
        raise LucidError(f"dim {d}: only the batch dimension {batch} may be symbolic")
    return -factor


def decode_dim(entry: int, batch: int) -> int:
    """A shape-table entry's size at `batch` (-k: k times the batch)."""
    return entry if entry >= 0 else -entry * batch


def dim_text(entry: int) -> str:
    """A shape-table entry as people read it: `N`, `N*8`, `5`."""
    return str(entry) if entry >= 0 else ("N" if entry == DYNAMIC_DIM else f"N*{-entry}")
