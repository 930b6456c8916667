"""The C text of an export: the header and the wrapper around emit_c's translation unit.

Every decision is made here and handed to `aot_header.h.j2` / `aot_wrapper.c.j2` as plain
data. User strings (input names, parameter paths) reach the C only as escaped string literals
or sanitised comments, never as identifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import lucid
from lucid.codegen._jinja import render
from lucid.codegen._lower import c_comment
from lucid.codegen.emit_c import ERROR_LIST, CProgram
from lucid.errors import LucidError
from lucid.ir.core import Graph
from lucid.ir.types import TensorType
from lucid.runtime import _aot_abi as abi
from lucid.runtime import _aot_weights as wts

BLOB_FILE = "weights.bin"  # inside the private build directory, so no user path reaches the C

# Codes only the wrapper returns; they follow the kernels' codes (emit_c.ERROR_LIST).
_OWN_ERRORS: tuple[tuple[str, str], ...] = (
    ("ARG", "invalid argument (nthreads < 0)"),
    ("IO", "cannot open or read the weights file"),
    ("WEIGHTS", "the weights file is not for this model, or is truncated or corrupt"),
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
    out += [_Error(f"{p}_E_{n}", nxt + i, m) for i, (n, m) in enumerate(_OWN_ERRORS)]
    return out


def _c_string(text: str) -> str:
    """`text` as a C string literal: printable ASCII kept, everything else octal-escaped."""
    body = "".join(
        ch
        if (" " <= ch <= "~" and ch not in '"\\?')
        else "".join(f"\\{b:03o}" for b in ch.encode())
        for ch in text
    )
    return f'"{body}"'


def _asm_path(path: str) -> str:
    """A file name as an assembler string inside a C string literal (both levels escaped)."""
    if any(not (" " <= ch <= "~") for ch in path):
        raise ValueError(f"refusing a file name with control or non-ASCII characters: {path!r}")
    asm = '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return asm.replace("\\", "\\\\").replace('"', '\\"')


def _type_line(role: str, i: int, hint: str | None, t: TensorType, batch: str | None) -> str:
    dims = ", ".join("batch" if d == batch else str(d) for d in t.shape)
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


def _batch_of(graph: Graph) -> str | None:
    syms = {
        d for t in (*graph.input_types, *graph.output_types) for d in t.shape if isinstance(d, str)
    }
    return next(iter(syms), None)


def _header_data(p: str, graph: Graph, errors: list[_Error], embedded: bool) -> dict[str, Any]:
    """Everything `aot_header.h.j2` lays out; every choice is made here."""
    functions = []
    for f in abi.api(p, embedded=embedded):
        doc = list(f.doc)
        lines = [f"/* {doc[0]}"] + [f" * {d}" for d in doc[1:]]
        lines[-1] += " */"
        functions.append({"decl": f.decl, "comment": "\n".join(lines)})
    note = (
        f"embedded in the library ({p}_run needs no handle); {p}_open(path) also reads a "
        "weights file of this model"
        if embedded
        else f'in a separate file: {p}_open("MODEL.weights", &err), then {p}_model_run'
    )
    return {
        "name": p,
        "prefix": p,
        "guard": f"LUCID_AOT_{p}_H",
        "lucid_version": lucid.__version__,
        "abi": abi.ABI_VERSION,
        "model_lines": _model_lines(graph, _batch_of(graph)),
        "weights_note": note,
        "errors": errors,
        "dtypes": [
            {"name": f"{p}_{d.name}", "code": c, "ctype": d.c} for d, c in abi.DTYPE_CODES.items()
        ],
        "magic": abi.MAGIC.decode(),
        "magic_size": abi.MAGIC_SIZE,
        "functions": functions,
    }


def _shape_table(types: Sequence[TensorType], batch: str | None, dims: list[str]) -> list[int]:
    """Append each shape to `dims` (the batch as -1); return where each starts."""
    at = []
    for t in types:
        at.append(len(dims))
        for d in t.shape:
            if isinstance(d, str) and d != batch:
                raise LucidError(f"type {t}: only the batch dimension may be symbolic")
            dims.append(str(abi.DYNAMIC_DIM) if isinstance(d, str) else str(d))
    return at


def _join(items: Sequence[object], end: str) -> str:
    return ", ".join([*map(str, items), end])


def _source(
    p: str,
    program: CProgram,
    graph: Graph,
    lay: wts.BlobLayout,
    header: str,
    errors: list[_Error],
    embedded: bool,
) -> str:
    """The whole translation unit: the kernels (emit_c), then the header, then the wrapper."""
    batch = program.batch_symbol
    dims: list[str] = []
    in_at = _shape_table(graph.input_types, batch, dims)
    out_at = _shape_table(graph.output_types, batch, dims)
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    crc = wts.crc32_table()
    own = {f"{p}_E_{n}" for n, _ in _OWN_ERRORS}
    wrapper = render(
        "aot_wrapper.c.j2",
        w={
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
            "input_names": _join(
                [_c_string(v.hint or f"input{i}") for i, v in enumerate(graph.inputs)], "NULL"
            ),
            "output_names": _join([_c_string(f"output{i}") for i in range(n_out)], "NULL"),
            "input_dtypes": _join([abi.DTYPE_CODES[t.dtype] for t in graph.input_types], "-1"),
            "output_dtypes": _join([abi.DTYPE_CODES[t.dtype] for t in graph.output_types], "-1"),
            "input_ranks": _join([t.rank for t in graph.input_types], "-1"),
            "output_ranks": _join([t.rank for t in graph.output_types], "-1"),
            "dims": _join(dims, "0"),
            "input_shape_at": _join(in_at, "0"),
            "output_shape_at": _join(out_at, "0"),
            "param_lines": [
                c_comment(f"{off:>12}  {v.hint}: {v.type}")
                for off, v in zip(lay.offsets, graph.params)
            ],
            "param_offsets": _join(lay.offsets, "0"),
            "param_itemsizes": _join([t.dtype.itemsize for t in graph.param_types], "0"),
            "embedded": embedded,
            "embedded_int": int(embedded),
            "blob_path": _asm_path(BLOB_FILE),
            "crc_rows": [
                " ".join(f"0x{c:08x}u," for c in crc[i : i + 6]) for i in range(0, len(crc), 6)
            ],
            "header_bytes": wts.HEADER_BYTES,
            "file_magic": wts.FILE_MAGIC.decode(),
            "file_version": wts.FILE_VERSION,
            "fingerprint": f"0x{lay.fingerprint:016x}",
            "own_errors": [e for e in errors if e.name in own],
            "sides": [{"role": "input", "count": n_in}, {"role": "output", "count": n_out}],
        },
    )
    return program.source + wrapper


def render_files(
    p: str, program: CProgram, graph: Graph, lay: wts.BlobLayout, *, embedded: bool
) -> tuple[str, str]:
    """(header text, whole C source) of model `p` around `program`."""
    errors = _errors(p)
    header = render("aot_header.h.j2", h=_header_data(p, graph, errors, embedded))
    return header, _source(p, program, graph, lay, header, errors, embedded)
