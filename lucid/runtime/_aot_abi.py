"""The C ABI of an exported model: one table of functions shared by the header and the loader.

The header template (`aot_header.h.j2`) lays out `api(name, embedded)` with its comments; the
loader gives the same declarations to `cffi.FFI.cdef`, so the two can never disagree.
Everything an exported library defines is prefixed with its model name, so several models
link into one program.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lucid.ir.types import DType

ABI_VERSION = 1
# The one data symbol the loader reads before trusting anything else in a library:
# `NAME_lucid_aot_magic`, 16 bytes, this text NUL-padded. Its prefix says "a lucid export";
# the digits say which ABI.
MAGIC_PREFIX = b"lucid-aot-abi-"
MAGIC = MAGIC_PREFIX + str(ABI_VERSION).encode()
MAGIC_SIZE = 16
MAGIC_SUFFIX = "_lucid_aot_magic"

# Stable across lucid versions (part of the ABI): never renumber, only append.
DTYPE_CODES: dict[DType, int] = {DType.F32: 0, DType.F64: 1, DType.I64: 2, DType.BOOL: 3}
DYNAMIC_DIM = -1

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class ApiFunction:
    """One exported function: its C declaration (prefix applied) and a comment for the header."""

    decl: str
    doc: tuple[str, ...]


# (return type, name suffix, parameters, doc lines, embedded builds only); `{p}` is the prefix.
_TABLE: tuple[tuple[str, str, str, tuple[str, ...], bool], ...] = (
    ("int", "abi_version", "void",
     ("The ABI version of this library (this header was written for ABI {abi}).",), False),
    ("const char *", "lucid_version", "void",
     ("The version of lucid that exported this library.",), False),
    ("const char *", "strerror", "int code",
     ("A static message for a return code of this API; never NULL, \"ok\" for 0.",), False),
    ("int", "num_inputs", "void", ("Number of runtime inputs (weights are not inputs).",), False),
    ("int", "num_outputs", "void", ("Number of outputs.",), False),
    ("const char *", "input_name", "int i", ("Name of input i; NULL if i is out of range.",), False),
    ("const char *", "output_name", "int i", ("Name of output i; NULL if out of range.",), False),
    ("int", "input_dtype", "int i", ("{p}_dtype of input i; -1 if out of range.",), False),
    ("int", "output_dtype", "int i", ("{p}_dtype of output i; -1 if out of range.",), False),
    ("int", "input_rank", "int i", ("Rank of input i; -1 if out of range.",), False),
    ("int", "output_rank", "int i", ("Rank of output i; -1 if out of range.",), False),
    ("const int64_t *", "input_shape", "int i",
     ("Shape of input i (input_rank(i) entries, {p}_DYNAMIC for the batch dimension);",
      "static read-only data; NULL if out of range."), False),
    ("const int64_t *", "output_shape", "int i",
     ("Shape of output i, as input_shape.",), False),
    ("int", "has_embedded_weights", "void",
     ("1 if the weights are inside this library ({p}_open(NULL, ...) and {p}_run work), else 0.",),
     False),
    ("{p}_model *", "open", "const char *weights_path, int *err",
     ("A model handle. weights_path: a .weights file written by lucid.export for this model,",
      "or NULL for the embedded weights. Returns NULL on failure and sets *err (if err is",
      "not NULL) to {p}_E_NULL, {p}_E_NOMEM, {p}_E_IO or {p}_E_WEIGHTS; 0 on success.",
      "A handle is read-only once opened: any number of threads may run it at once."), False),
    ("void", "close", "{p}_model *model", ("Free a handle from {p}_open; NULL is a no-op.",), False),
    ("int", "model_run", "const {p}_model *model, const void *const *inputs, "
     "void *const *outputs, int64_t batch",
     ("Run the model on one thread. inputs: num_inputs() pointers, outputs: num_outputs()",
      "pointers, caller-allocated, C-contiguous, in the declared order, dtypes and shapes",
      "with the batch dimension equal to `batch` (>= 1; ignored beyond that check when no",
      "shape is dynamic). Returns 0 or an error code; reentrant, no global state."), False),
    ("int", "model_run_threads", "const {p}_model *model, const void *const *inputs, "
     "void *const *outputs, int64_t batch, int nthreads",
     ("{p}_model_run splitting large kernels over up to nthreads threads created for this",
      "call (0: one per online core; < 0: {p}_E_ARG). Results do not depend on nthreads."),
     False),
    ("int", "run", "const void *const *inputs, void *const *outputs, int64_t batch",
     ("{p}_model_run with the embedded weights, no handle needed; one thread.",), True),
    ("int", "run_threads", "const void *const *inputs, void *const *outputs, int64_t batch, "
     "int nthreads",
     ("{p}_model_run_threads with the embedded weights.",), True),
)


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a C identifier, else ValueError (a prefix is never sanitised here)."""
    if not _IDENT.match(prefix):
        raise ValueError(f"not a C identifier: {prefix!r}")
    return prefix


def api(prefix: str, *, embedded: bool) -> list[ApiFunction]:
    """The exported functions of a library with model name `prefix`, in header order."""
    p = check_prefix(prefix)
    out = []
    for ret, suffix, params, doc, embedded_only in _TABLE:
        if embedded_only and not embedded:
            continue
        sep = "" if ret.endswith("*") else " "
        decl = f"{ret}{sep}{p}_{suffix}({params})".replace("{p}", p)
        out.append(ApiFunction(decl, tuple(d.format(p=p, abi=ABI_VERSION) for d in doc)))
    return out


def cdef(prefix: str, *, embedded: bool) -> str:
    """Declarations for `cffi.FFI.cdef` (ABI mode) of one exported library."""
    p = check_prefix(prefix)
    lines = [f"typedef struct {p}_model {p}_model;", f"extern const char {p}{MAGIC_SUFFIX}[{MAGIC_SIZE}];"]
    lines += [f.decl + ";" for f in api(p, embedded=embedded)]
    return "\n".join(lines) + "\n"
