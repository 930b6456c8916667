"""`lucid.export`: a model as a self-contained shared library with a C header, no Python needed.

Pipeline: trace -> default passes -> `emit_c` (prefix `NAME_impl`, internal) -> codegen wraps
that translation unit with the public API (lucid/codegen/aot.py, templates `aot_header.h.j2`,
`aot_wrapper.c.j2`) -> this module writes the files and links them with lucid's own compiler
call: no Python headers, no RUNPATH, `-fvisibility=hidden` so only `NAME_*` API symbols are
exported. Weights are a 64-byte-aligned blob (format in lucid/codegen/aot_abi.py) embedded
with `.incbin` or written beside the library as a `.weights` file.
"""

from __future__ import annotations

import keyword
import os
import re
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

import lucid
from lucid.codegen import aot_abi as abi
from lucid.codegen.aot import BLOB_FILE, render_files
from lucid.codegen.emit_c import CodegenOptions, IsaOption, emit_c
from lucid.errors import LucidError, LucidWarning
from lucid.ir.core import Graph
from lucid.runtime.build import BuildOptions, resolve_compiler, run_compiler

__all__ = ["ExportResult", "export", "model_name"]

# -ffp-contract=off and no fast-math: the library must give eager lucid's (NumPy's) results.
DEFAULT_FLAGS: tuple[str, ...] = ("-O3", "-ffp-contract=off", "-fno-math-errno")
_LINK: tuple[str, ...] = ("-shared", "-fPIC", "-fvisibility=hidden", "-Wl,--no-undefined")
_LIBS: tuple[str, ...] = ("-lm", "-lpthread")
# The GEMM micro-kernel family a -march level guarantees; anything else gets portable C.
_ISA_OF_MARCH: dict[str, IsaOption] = {"x86-64-v3": "avx2", "x86-64-v4": "avx512", "native": "auto"}
_MAX_NAME = 48  # emit_c caps its prefix (NAME_impl) at 64 characters


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
    pkg_config: Path | None = None  # PATH.pc: `pkg-config --cflags --libs` for C consumers
    cmake_config: Path | None = None  # <stem>Config.cmake: find_package(<stem> CONFIG)


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
    specialize: bool = False,
) -> ExportResult:
    """Write PATH.so, PATH.h and PATH.c (and PATH.weights with weights="file") for `model`.

    A library cannot check at run time the Python decisions forward takes on the batch size
    (`if x.shape[0] > 4:`): with `dynamic_batch`, such a model is refused with an error naming
    each decision's line, unless `specialize=True`, which exports it for the example's batch
    size only (a static batch), with a warning."""
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

    graph = _optimised_graph(model, inputs, dynamic_batch, passes, specialize)
    arrays = param_arrays(model, graph)
    # per-call threads: the library promises no global mutable state (NAME_run is reentrant)
    codegen = CodegenOptions(
        isa=_isa(march), prefix=f"{name}_impl", threads="spawn", int_calls=False
    )  # the wrapper calls NAME_impl_run_packed
    program = emit_c(graph, codegen)
    lay = abi.layout(graph)
    embedded = weights == "embedded"
    header, source = render_files(name, program, graph, lay, embedded=embedded)

    stem.parent.mkdir(parents=True, exist_ok=True)
    out = {ext: stem.with_name(stem.name + ext) for ext in (".so", ".h", ".c", ".weights")}
    out[".h"].write_text(header, encoding="utf-8")
    out[".c"].write_text(source, encoding="utf-8")
    weights_path = None
    if not embedded:
        weights_path = out[".weights"]
        write_weights_file(weights_path, lay, arrays)
    compile_start = time.perf_counter()
    command = _compile(options, source, lay, arrays if embedded else None, out[".so"])
    done = time.perf_counter()
    pc = cmake = None
    if re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", stem.name) and not re.search(
        r"[\x00-\x1f\x7f]", str(stem.parent.resolve())
    ):
        pc, cmake = _consumer_files(out[".so"], name)
    else:  # a name pkg-config and CMake could not take, or a path that would break their files
        warnings.warn(
            f"lucid.export: no {stem.name}.pc / {stem.name}Config.cmake written: the file name "
            "must be letters, digits and ._+- for pkg-config and CMake",
            LucidWarning,
            stacklevel=2,
        )
    return ExportResult(
        out[".so"],
        out[".h"],
        out[".c"],
        weights_path,
        name,
        graph,
        command,
        done - start,
        done - compile_start,
        pc,
        cmake,
    )


def consumer_flags(library: Path, directory: str | None = None) -> list[str]:
    """The flags a C program needs to include the header of `library` and link against it from
    any directory: -I and -L of its directory, -l:FILE (the name it records, its SONAME) and the
    directory as the program's run path. `directory` defaults to the absolute one."""
    where = str(library.parent.resolve()) if directory is None else directory
    return [f"-I{where}", f"-L{where}", f"-l:{library.name}", f"-Wl,-rpath,{where}"]


def _consumer_files(so: Path, name: str) -> tuple[Path, Path]:
    """Write STEM.pc (pkg-config) and STEMConfig.cmake (CMake) beside `so`, so a C or C++
    program builds against it from any directory: `pkg-config --cflags --libs STEM` with
    PKG_CONFIG_PATH=<dir>, or find_package(STEM CONFIG) with STEM_DIR=<dir> and the target
    lucid::STEM. Both record the library's absolute directory as its run path."""
    where = so.parent.resolve()
    stem = so.name.removesuffix(".so")
    if re.search(r"\s", str(where)):
        warnings.warn(
            f"lucid.export: {where} has white space, which {stem}.pc cannot quote: "
            "pkg-config will split the path",
            LucidWarning,
            stacklevel=3,
        )
    pc = so.with_name(stem + ".pc")
    pc.write_text(
        f"# pkg-config file of the model {name!r} exported by lucid {lucid.__version__}\n"
        f"libdir={where}\n"
        f"includedir={where}\n"
        "\n"
        f"Name: {stem}\n"
        f"Description: the model {name}, exported by lucid (C ABI {abi.ABI_VERSION})\n"
        f"Version: {lucid.__version__}\n"
        f"Libs: {' '.join(consumer_flags(so, '${libdir}')[1:])}\n"
        "Libs.private: -lm -lpthread\n"
        "Cflags: -I${includedir}\n",
        encoding="utf-8",
    )
    cmake = so.with_name(stem + "Config.cmake")
    cmake.write_text(
        f"# CMake package of the model {name!r} exported by lucid {lucid.__version__}:\n"
        f"#   find_package({stem} CONFIG REQUIRED)  (with -D{stem}_DIR=<this directory>)\n"
        f"#   target_link_libraries(app PRIVATE lucid::{stem})\n"
        f"set({stem}_VERSION {lucid.__version__})\n"
        f"if(NOT TARGET lucid::{stem})\n"
        f"  add_library(lucid::{stem} SHARED IMPORTED)\n"
        f"  set_target_properties(lucid::{stem} PROPERTIES\n"
        f'    IMPORTED_LOCATION "${{CMAKE_CURRENT_LIST_DIR}}/{so.name}"\n'
        f'    IMPORTED_SONAME "{so.name}"\n'
        f'    INTERFACE_INCLUDE_DIRECTORIES "${{CMAKE_CURRENT_LIST_DIR}}")\n'
        "endif()\n",
        encoding="utf-8",
    )
    return pc, cmake


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


def _isa(march: str) -> IsaOption:
    return _ISA_OF_MARCH.get(march, "scalar")


def _optimised_graph(
    model: Any,
    inputs: Sequence[Any],
    dynamic_batch: bool,
    passes: Sequence[str] | None,
    specialize: bool = False,
) -> Graph:
    """Trace `model` and run the default pipeline (or `passes`) over it; decisions on a dynamic
    batch size fail, or with `specialize` give a graph for the example's batch size."""
    from lucid.ir.passes import PassManager, default_pipeline
    from lucid.ir.trace import Guard, decision_error, trace

    guards: list[Guard] = []
    graph = trace(model, *inputs, dynamic_batch=dynamic_batch, guards=guards)
    _refuse_random(model, graph, len(inputs))
    if guards:
        if not specialize:
            raise decision_error(
                model,
                guards,
                "an exported library cannot check them when it is called: export with "
                "dynamic_batch=False, or pass specialize=True to export for the example's "
                "batch size only",
            )
        warnings.warn(
            f"lucid.export: forward decides on the batch size ({guards[0]}); exporting for "
            "the example's batch size only (specialize=True): other batch sizes are refused",
            LucidWarning,
            stacklevel=3,
        )
        graph = trace(model, *inputs, dynamic_batch=False)
    names = list(passes) if passes is not None else default_pipeline()
    return PassManager(names).run(graph)[0]


def _refuse_random(model: Any, graph: Graph, n_inputs: int) -> None:
    """LucidError if the graph takes seeds (inputs past the examples, lucid/ir/trace.py): their
    masks need a fresh draw from lucid.random at every call, and the library has no lucid.random
    (a seed baked in would repeat one mask forever: a silent wrong answer)."""
    if len(graph.inputs) == n_inputs:
        return
    where = next((n.loc for n in graph.nodes if n.op == "dropout" and n.loc), None)
    raise LucidError(
        f"cannot export {type(model).__name__}: it runs Dropout in training mode"
        + (f" ({where})" if where else "")
        + ", whose masks need a fresh random seed at every call, which an exported library "
        "cannot draw; call model.eval() before lucid.export (Dropout is then the identity)"
    )


def param_arrays(
    model: Any, graph: Graph, error: type[LucidError] = LucidError
) -> list[np.ndarray]:
    """The model's parameter and buffer arrays in graph order, checked against the graph's
    types (a mismatch raises `error`: lucid.export's and lucid.onnx.export's own class)."""
    found = dict([*model.named_parameters(), *model.named_buffers()])
    arrays = []
    for value in graph.params:
        p = found.get(value.hint or "")
        if p is None:
            raise error(f"graph parameter {value.hint!r} is not a parameter of the model")
        a = np.asarray(p.data)
        if a.dtype != value.type.dtype.np or a.shape != value.type.shape:
            raise error(f"parameter {value.hint}: expected {value.type}, has {a.dtype}{a.shape}")
        arrays.append(a)
    return arrays


def _compile(
    options: BuildOptions,
    source: str,
    lay: abi.BlobLayout,
    arrays: list[np.ndarray] | None,
    so: Path,
) -> list[str]:
    """Compile `source` (and the blob, if embedded) into `so`; return the command (argv)."""
    compiler = resolve_compiler(options.cc)
    with tempfile.TemporaryDirectory(prefix="lucid-export-", dir=so.parent) as tmp:
        work = Path(tmp)
        (work / "model.c").write_text(source, encoding="utf-8")
        if arrays is not None:
            write_blob_file(work / BLOB_FILE, lay, arrays)
        command = [
            *compiler,
            *_LINK,
            # the name programs linked against it record (DT_NEEDED), not the path given at
            # link time: found through their run path from any directory
            "-Xlinker",
            "-soname",
            "-Xlinker",
            so.name,
            *options.flags,
            "model.c",
            "-o",
            "model.so",
            *options.extra_link,
        ]
        run_compiler(command, work, what=so.name, where=f"the source is {so.with_suffix('.c')}")
        os.replace(work / "model.so", so)  # atomic: a running program never sees half a file
    return command


# ------------------------------------------------------------------------------ weights


def _le(a: np.ndarray) -> np.ndarray:
    """`a` C-contiguous and little-endian (a byte swap only on a big-endian host or array)."""
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.astype(a.dtype.newbyteorder("<"))
    return a


def write_blob(
    f: BinaryIO, lay: abi.BlobLayout, arrays: Sequence[np.ndarray], *, crc: bool = True
) -> int:
    """Write the blob of `arrays` (graph param order) to `f`; return its CRC-32 (0 if not crc)."""
    value = 0
    at = 0
    for offset, size, a in zip(lay.offsets, lay.nbytes, arrays):
        pad = bytes(offset - at)
        data = _le(a).data.cast("B")  # .data: the array's memoryview
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


def write_blob_file(path: Path, lay: abi.BlobLayout, arrays: Sequence[np.ndarray]) -> None:
    """The bare blob at `path`, for `.incbin`."""
    with open(path, "wb") as f:
        write_blob(f, lay, arrays, crc=False)


def write_weights_file(path: Path, lay: abi.BlobLayout, arrays: Sequence[np.ndarray]) -> None:
    """A `.weights` file: header then blob; the CRC is patched in after the blob is written."""
    with open(path, "wb") as f:
        f.write(bytes(abi.HEADER_BYTES))
        crc = write_blob(f, lay, arrays)
        f.seek(0)
        f.write(
            abi.FILE_HEADER.pack(
                abi.FILE_MAGIC,
                abi.FILE_VERSION,
                abi.HEADER_BYTES,
                lay.fingerprint,
                lay.total,
                crc,
                len(lay.offsets),
            )
        )
