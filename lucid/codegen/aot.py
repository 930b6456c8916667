"""The C text of an export: the header and the wrapper around emit_c's translation unit.

Every decision is made here and handed to `aot_header.h.j2` / `aot_wrapper.c.j2` as plain
data; the ABI they implement is in `aot_abi`. User strings (input names, parameter paths)
reach the C only as escaped string literals or sanitised comments, never as identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import lucid
from lucid.codegen import aot_abi as abi
from lucid.codegen._jinja import render
from lucid.codegen._lower import c_comment, c_string
from lucid.codegen.emit_c import ERROR_LIST, CProgram
from lucid.errors import LucidError
from lucid.ir.core import Graph
from lucid.ir.types import Dim, TensorType

__all__ = ["BLOB_FILE", "render_files"]

BLOB_FILE = "weights.bin"  # inside the private build directory, so no user path reaches the C

# Codes only the wrapper returns; they follow the kernels' codes (emit_c.ERROR_LIST).
_OWN_ERRORS: tuple[tuple[str, str], ...] = (
    ("ARG", "invalid argument (nthreads < 0)"),
    ("IO", "cannot open or read the weights file"),
    ("WEIGHTS", "the weights file is not for this model, or is truncated or corrupt"),
    ("HANDLE", "the model handle is NULL (a failed or missing NAME_open)"),
    (
        "CPU",
        (
            "this CPU lacks an instruction set the library was compiled for (NAME_cpu_missing "
            "names them); export it again with an older march, e.g. march='x86-64'"
        ),
    ),
)

# x86 instruction sets a build may enable (-march, -m flags): (the compiler's predefined
# macro, the name __builtin_cpu_supports knows). An exported library checks each one it was
# compiled with against the running CPU before running any code that may use it.
CPU_FEATURES: tuple[tuple[str, str], ...] = (
    ("__SSE3__", "sse3"),
    ("__SSSE3__", "ssse3"),
    ("__SSE4_1__", "sse4.1"),
    ("__SSE4_2__", "sse4.2"),
    ("__POPCNT__", "popcnt"),
    ("__AVX__", "avx"),
    ("__AVX2__", "avx2"),
    ("__FMA__", "fma"),
    ("__F16C__", "f16c"),
    ("__BMI__", "bmi"),
    ("__BMI2__", "bmi2"),
    ("__LZCNT__", "lzcnt"),
    ("__MOVBE__", "movbe"),
    ("__AVX512F__", "avx512f"),
    ("__AVX512CD__", "avx512cd"),
    ("__AVX512BW__", "avx512bw"),
    ("__AVX512DQ__", "avx512dq"),
    ("__AVX512VL__", "avx512vl"),
    ("__AVX512VNNI__", "avx512vnni"),
    ("__AVX512IFMA__", "avx512ifma"),
    ("__AVX512VBMI__", "avx512vbmi"),
    ("__AVX512VBMI2__", "avx512vbmi2"),
    ("__AVX512BITALG__", "avx512bitalg"),
    ("__AVX512VPOPCNTDQ__", "avx512vpopcntdq"),
    ("__AVX512BF16__", "avx512bf16"),
    ("__AVX512FP16__", "avx512fp16"),
    ("__AVX512VP2INTERSECT__", "avx512vp2intersect"),
    ("__AVXVNNI__", "avxvnni"),
    ("__GFNI__", "gfni"),
    ("__VAES__", "vaes"),
    ("__VPCLMULQDQ__", "vpclmulqdq"),
)


@dataclass(frozen=True)
class _Error:
    name: str
    code: int
    message: str


def _errors(p: str) -> list[_Error]:
    """The public return codes: the kernels' (renamed NAME_E_*), then the wrapper's own."""
    out = [
        _Error(e.name.replace("LUCID_", f"{p}_", 1), e.code, e.message)
        for e in ERROR_LIST
        if e.code != 0
    ]
    needed = {f"{p}_E_{n}" for n in ("NULL", "BATCH", "NOMEM")}
    if not needed <= {e.name for e in out}:
        raise LucidError(f"emit_c.ERROR_LIST lacks one of {sorted(needed)}: the wrapper needs them")
    nxt = max(e.code for e in out) + 1
    out += [
        _Error(f"{p}_E_{n}", nxt + i, m.replace("NAME_", f"{p}_"))
        for i, (n, m) in enumerate(_OWN_ERRORS)
    ]
    return out


def _asm_path(path: str) -> str:
    """A file name as an assembler string inside a C string literal (both levels escaped)."""
    if any(not (" " <= ch <= "~") for ch in path):
        raise ValueError(f"refusing a file name with control or non-ASCII characters: {path!r}")
    asm = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return asm.replace("\\", "\\\\").replace('"', '\\"')


def _type_line(role: str, i: int, hint: str | None, t: TensorType, batch: str | None) -> str:
    dims = ", ".join(_dim_note(d, batch) for d in t.shape)
    label = f" {hint}" if hint else ""
    return f"{role} {i}{label}: {t.dtype.c}[{dims}]"


def _model_lines(graph: Graph, batch: str | None) -> list[str]:
    lines = [
        c_comment(_type_line("input", i, v.hint, v.type, batch)) for i, v in enumerate(graph.inputs)
    ]
    lines += [
        c_comment(_type_line("output", i, None, t, batch)) for i, t in enumerate(graph.output_types)
    ]
    n = sum(int(np.prod([int(d) for d in v.type.shape])) for v in graph.params)
    lines.append(f"{len(graph.params)} parameter tensors, {n} values")
    return lines


def _dim_note(d: Dim, batch: str | None) -> str:
    """A dim in the header's model description: `batch`, `batch*8` or its int."""
    entry = abi.encode_dim(d, batch)
    return str(entry) if entry >= 0 else ("batch" if entry == -1 else f"batch*{-entry}")


def _batch_of(graph: Graph) -> str | None:
    syms = {s for t in (*graph.input_types, *graph.output_types) for s in t.symbols}
    return next(iter(sorted(syms)), None)


def _header_data(p: str, graph: Graph, errors: list[_Error], embedded: bool) -> dict[str, Any]:
    """Everything `aot_header.h.j2` lays out; every choice is made here."""
    return {
        "prefix": p,
        "lucid_version": lucid.__version__,
        "abi": abi.ABI_VERSION,
        "model_lines": _model_lines(graph, _batch_of(graph)),
        "embedded": embedded,
        "errors": errors,
        "dtypes": [{"name": d.name, "code": c, "ctype": d.c} for d, c in abi.DTYPE_CODES.items()],
        "magic": abi.MAGIC.decode(),
        "magic_size": abi.MAGIC_SIZE,
        "functions": abi.api(p, embedded=embedded),
    }


def _shape_table(types: Sequence[TensorType], batch: str | None, dims: list[int]) -> list[int]:
    """Append each shape to `dims` (the batch as DYNAMIC_DIM); return where each starts."""
    at = []
    for t in types:
        at.append(len(dims))
        for d in t.shape:
            try:
                dims.append(abi.encode_dim(d, batch))
            except LucidError as exc:
                raise LucidError(f"type {t}: {exc}") from None
    return at


def _wrapper_data(
    p: str,
    program: CProgram,
    graph: Graph,
    lay: abi.BlobLayout,
    header: str,
    errors: list[_Error],
    embedded: bool,
) -> dict[str, Any]:
    """Everything `aot_wrapper.c.j2` lays out; every choice is made here."""
    batch = program.batch_symbol
    dims: list[int] = []
    in_at = _shape_table(graph.input_types, batch, dims)
    out_at = _shape_table(graph.output_types, batch, dims)
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    crc = abi.crc32_table()
    own = {f"{p}_E_{n}" for n, _ in _OWN_ERRORS}
    return {
        "prefix": p,
        "impl": program.prefix,
        "header": header,
        "magic": abi.MAGIC.decode(),
        "magic_size": abi.MAGIC_SIZE,
        "abi": abi.ABI_VERSION,
        "lucid_version": lucid.__version__,
        "n_inputs": n_in,
        "n_outputs": n_out,
        "n_params": len(graph.params),
        "blob_bytes": lay.total,
        "input_names": [c_string(v.hint or f"input{i}") for i, v in enumerate(graph.inputs)],
        "output_names": [c_string(f"output{i}") for i in range(n_out)],
        "input_dtypes": [abi.DTYPE_CODES[t.dtype] for t in graph.input_types],
        "output_dtypes": [abi.DTYPE_CODES[t.dtype] for t in graph.output_types],
        "input_ranks": [t.rank for t in graph.input_types],
        "output_ranks": [t.rank for t in graph.output_types],
        "dims": dims,
        "input_shape_at": in_at,
        "output_shape_at": out_at,
        "param_lines": [
            c_comment(f"{off:>12}  {v.hint}: {v.type}") for off, v in zip(lay.offsets, graph.params)
        ],
        "param_offsets": lay.offsets,
        "param_itemsizes": [t.dtype.itemsize for t in graph.param_types],
        "embedded": embedded,
        "blob_path": _asm_path(BLOB_FILE),
        "crc_rows": [crc[i : i + 6] for i in range(0, len(crc), 6)],
        "cpu_features": [
            {"macro": macro, "name": name, "ident": re.sub(r"[^0-9a-z]", "_", name)}
            for macro, name in CPU_FEATURES
        ],
        "header_bytes": abi.HEADER_BYTES,
        "file_magic": abi.FILE_MAGIC.decode(),
        "file_version": abi.FILE_VERSION,
        "fingerprint": lay.fingerprint,
        "own_errors": [e for e in errors if e.name in own],
        "sides": [{"role": "input", "count": n_in}, {"role": "output", "count": n_out}],
    }


def render_files(
    p: str, program: CProgram, graph: Graph, lay: abi.BlobLayout, *, embedded: bool
) -> tuple[str, str]:
    """(header text, whole C source) of model `p` around `program`: the kernels (emit_c), then
    the header, then the wrapper."""
    errors = _errors(p)
    header = render("aot_header.h.j2", h=_header_data(p, graph, errors, embedded))
    wrapper = render(
        "aot_wrapper.c.j2", w=_wrapper_data(p, program, graph, lay, header, errors, embedded)
    )
    return header, program.source + wrapper
