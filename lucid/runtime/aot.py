"""`lucid.export`: a model as a self-contained shared library with a C header, no Python needed.

Pipeline: trace -> default passes -> `emit_c` (prefix `NAME_impl`, internal) -> this module
wraps that translation unit with the public API of `_aot_abi` (templates `aot_header.h.j2`,
`aot_wrapper.c.j2`) and links it with lucid's own compiler call: no Python headers, no
RUNPATH, `-fvisibility=hidden` so only `NAME_*` API symbols are exported. Weights are a
64-byte-aligned blob (`_aot_weights`) embedded with `.incbin` or written beside the library.
"""

from __future__ import annotations

import keyword
import os
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import lucid
from lucid.codegen._jinja import render
from lucid.codegen.emit_c import ERROR_LIST, CodegenOptions, CProgram, emit_c
from lucid.errors import BuildError, LucidError
from lucid.ir.core import Graph
from lucid.ir.types import DType, TensorType
from lucid.runtime import _aot_abi as abi
from lucid.runtime import _aot_weights as wts
from lucid.runtime.build import BuildOptions, _resolve_compiler

__all__ = ["ExportResult", "export", "model_name"]

# -ffp-contract=off and no fast-math: the library must give eager lucid's (NumPy's) results.
DEFAULT_FLAGS: tuple[str, ...] = ("-O3", "-ffp-contract=off", "-fno-math-errno")
_LINK: tuple[str, ...] = ("-shared", "-fPIC", "-fvisibility=hidden", "-Wl,--no-undefined")
_LIBS: tuple[str, ...] = ("-lm", "-lpthread")
# The GEMM micro-kernel family a -march level guarantees; anything else gets portable C.
_ISA_OF_MARCH = {"x86-64-v3": "avx2", "x86-64-v4": "avx512", "native": "auto"}
_MAX_NAME = 48  # emit_c caps its prefix (NAME_impl) at 64 characters
_BLOB_FILE = "weights.bin"  # inside the private build directory, so no user path reaches the C

# Codes only the wrapper returns; they follow the kernels' codes (emit_c.ERROR_LIST).
_OWN_ERRORS: tuple[tuple[str, str], ...] = (
    ("ARG", "invalid argument (nthreads < 0)"),
    ("IO", "cannot open or read the weights file"),
    ("WEIGHTS", "the weights file is not for this model, or is truncated or corrupt"),
)


@dataclass(frozen=True)
class ExportResult:
    """What `export` wrote, and how: paths, the C model name, the compiler command, timings."""

    library: Path
    header: Path
    source: Path
    weights: Path | None  # the .weights file for weights="file"
    name: str
    graph: Graph  # the optimised graph the library runs
    command: list[str]
    seconds: float
    compile_seconds: float


def model_name(stem: str) -> str:
    """A C identifier from a file stem: "my-model" -> "my_model", "3net" -> "m_3net"."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", stem).strip("_") or "model"
    if name[0].isdigit() or keyword.iskeyword(name):
        name = "m_" + name
    return name[:_MAX_NAME]


def export(
    model: Any,
    example_inputs: Any,
    path: str | os.PathLike[str],
    *,
    dynamic_batch: bool = True,
    name: str | None = None,
    weights: str = "embedded",
    with_backward: bool = False,
    march: str = "x86-64-v3",
    cc: str | None = None,
    flags: Sequence[str] | None = None,
    passes: Sequence[str] | None = None,
) -> ExportResult:
    """Write PATH.so, PATH.h and PATH.c (and PATH.weights with weights="file") for `model`."""
    start = time.perf_counter()
    if with_backward:
        raise NotImplementedError(
            "lucid.export(with_backward=True) is not available yet: exported libraries run the "
            "forward pass only. Train in Python, then export the trained model."
        )
    if weights not in ("embedded", "file"):
        raise ValueError(f"weights must be 'embedded' or 'file', not {weights!r}")
    stem = Path(os.fspath(path))
    if name is None:
        name = model_name(stem.name)
    elif not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or len(name) > _MAX_NAME:
        raise ValueError(
            f"name {name!r} is not a C identifier of at most {_MAX_NAME} characters starting "
            f"with a letter (try {model_name(name)!r})"
        )
    options = _build_options(march, cc, flags)
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)

    graph = _optimised_graph(model, inputs, dynamic_batch, passes)
    arrays = _param_arrays(model, graph)
    program = emit_c(graph, CodegenOptions(isa=_isa(march), prefix=f"{name}_impl"))  # type: ignore[arg-type]
    lay = wts.layout(graph)
    embedded = weights == "embedded"
    errors = _errors(name)
    header = render("aot_header.h.j2", h=_header_data(name, graph, errors, embedded))
    source = _source(name, program, graph, lay, header, errors, embedded)

    stem.parent.mkdir(parents=True, exist_ok=True)
    out = {ext: stem.with_name(stem.name + ext) for ext in (".so", ".h", ".c", ".weights")}
    out[".h"].write_text(header, encoding="utf-8")
    out[".c"].write_text(source, encoding="utf-8")
    weights_path = None
    if not embedded:
        weights_path = out[".weights"]
        wts.write_weights_file(weights_path, lay, arrays)
    compile_start = time.perf_counter()
    command = _compile(options, source, lay, arrays if embedded else None, out[".so"])
    done = time.perf_counter()
    return ExportResult(
        out[".so"], out[".h"], out[".c"], weights_path, name, graph, command,
        done - start, done - compile_start,
    )


def _build_options(march: str, cc: str | None, flags: Sequence[str] | None) -> BuildOptions:
    """Flags checked by BuildOptions (it refuses fast-math and friends), -march added."""
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", march):
        raise ValueError(f"march {march!r} is not a -march value")
    chosen = list(DEFAULT_FLAGS if flags is None else flags)
    if isinstance(flags, str):
        raise TypeError(f"flags must be a list of strings, one flag each, not {flags!r}")
    if not any(f.startswith("-march=") for f in chosen):
        chosen.append(f"-march={march}")
    return BuildOptions(cc=cc, flags=tuple(chosen), extra_link=_LIBS)


def _isa(march: str) -> str:
    return _ISA_OF_MARCH.get(march, "scalar")


def _optimised_graph(
    model: Any, inputs: Sequence[Any], dynamic_batch: bool, passes: Sequence[str] | None
) -> Graph:
    """Trace `model` and run the default pipeline (or `passes`) over it."""
    from lucid.ir.passes import PassManager, default_pipeline
    from lucid.ir.trace import trace

    graph = trace(model, *inputs, dynamic_batch=dynamic_batch)
    names = list(passes) if passes is not None else default_pipeline()
    return PassManager(names).run(graph)[0]


def _param_arrays(model: Any, graph: Graph) -> list[np.ndarray]:
    """The model's parameter arrays in graph order, checked against the graph's types."""
    found = {name: p for name, p in model.named_parameters()}
    arrays = []
    for value in graph.params:
        p = found.get(value.hint or "")
        if p is None:
            raise LucidError(f"graph parameter {value.hint!r} is not a parameter of the model")
        a = np.asarray(p.data)
        if a.dtype != value.type.dtype.np or a.shape != value.type.shape:
            raise LucidError(f"parameter {value.hint}: expected {value.type}, has {a.dtype}{a.shape}")
        arrays.append(a)
    return arrays


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
        ch if (" " <= ch <= "~" and ch not in '"\\?') else "".join(f"\\{b:03o}" for b in ch.encode())
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


def _comment_text(text: str) -> str:
    from lucid.codegen._lower import c_comment

    return c_comment(text)


def _model_lines(graph: Graph, batch: str | None) -> list[str]:
    lines = [_comment_text(_type_line("input", i, v.hint, v.type, batch)) for i, v in enumerate(graph.inputs)]
    lines += [_comment_text(_type_line("output", i, None, t, batch)) for i, t in enumerate(graph.output_types)]
    n = sum(int(np.prod([int(d) for d in v.type.shape])) for v in graph.params)
    lines.append(f"{len(graph.params)} parameter tensors, {n} values")
    return lines


def _batch_of(graph: Graph) -> str | None:
    syms = {d for t in (*graph.input_types, *graph.output_types) for d in t.shape if isinstance(d, str)}
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
        "weights file of this model" if embedded else
        f"in a separate file: {p}_open(\"MODEL.weights\", &err), then {p}_model_run"
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
    p: str, program: CProgram, graph: Graph, lay: wts.BlobLayout, header: str,
    errors: list[_Error], embedded: bool,
) -> str:
    """The whole translation unit: the kernels (emit_c), then the header, then the wrapper."""
    batch = program.batch_symbol
    dims: list[str] = []
    in_at = _shape_table(graph.input_types, batch, dims)
    out_at = _shape_table(graph.output_types, batch, dims)
    n_in, n_out = len(graph.inputs), len(graph.outputs)
    crc = wts.crc32_table()
    own = {f"{p}_E_{n}" for n, _ in _OWN_ERRORS}
    wrapper = render("aot_wrapper.c.j2", w={
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
        "input_names": _join([_c_string(v.hint or f"input{i}") for i, v in enumerate(graph.inputs)], "NULL"),
        "output_names": _join([_c_string(f"output{i}") for i in range(n_out)], "NULL"),
        "input_dtypes": _join([abi.DTYPE_CODES[t.dtype] for t in graph.input_types], "-1"),
        "output_dtypes": _join([abi.DTYPE_CODES[t.dtype] for t in graph.output_types], "-1"),
        "input_ranks": _join([t.rank for t in graph.input_types], "-1"),
        "output_ranks": _join([t.rank for t in graph.output_types], "-1"),
        "dims": _join(dims, "0"),
        "input_shape_at": _join(in_at, "0"),
        "output_shape_at": _join(out_at, "0"),
        "param_lines": [
            _comment_text(f"{off:>12}  {v.hint}: {v.type}")
            for off, v in zip(lay.offsets, graph.params)
        ],
        "param_offsets": _join(lay.offsets, "0"),
        "embedded": embedded,
        "embedded_int": int(embedded),
        "blob_path": _asm_path(_BLOB_FILE),
        "crc_rows": [
            " ".join(f"0x{c:08x}u," for c in crc[i : i + 6]) for i in range(0, len(crc), 6)
        ],
        "header_bytes": wts.HEADER_BYTES,
        "file_magic": wts.FILE_MAGIC.decode(),
        "file_version": wts.FILE_VERSION,
        "fingerprint": f"0x{lay.fingerprint:016x}",
        "own_errors": [e for e in errors if e.name in own],
        "sides": [{"role": "input", "count": n_in}, {"role": "output", "count": n_out}],
    })
    return program.source + wrapper


def _compile(
    options: BuildOptions, source: str, lay: wts.BlobLayout, arrays: list[np.ndarray] | None,
    so: Path,
) -> list[str]:
    """Compile `source` (and the blob, if embedded) into `so`; return the command (argv)."""
    compiler = _resolve_compiler(options.cc)
    with tempfile.TemporaryDirectory(prefix="lucid-export-", dir=so.parent) as tmp:
        work = Path(tmp)
        (work / "model.c").write_text(source, encoding="utf-8")
        if arrays is not None:
            wts.write_blob_file(work / _BLOB_FILE, lay, arrays)
        command = [
            *compiler, *_LINK, *options.flags, "model.c", "-o", "model.so", *options.extra_link,
        ]
        try:
            run = subprocess.run(
                command, cwd=work, check=False, capture_output=True, text=True,
                errors="replace", timeout=1800,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"could not run the C compiler: {exc}\n  command: {shlex.join(command)}") from exc
        if run.returncode != 0:
            raise BuildError(
                f"C compilation of {so.name} failed (exit {run.returncode}); the source is "
                f"{so.with_suffix('.c')}\n  command: {shlex.join(command)}\n{run.stderr.rstrip()}"
            )
        os.replace(work / "model.so", so)  # atomic: a running program never sees half a file
    return command
