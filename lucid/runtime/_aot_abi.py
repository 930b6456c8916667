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


# The API as C, `{p}` standing for the model name: a declaration line, then its comment lines
# (indented). "[embedded]" marks functions only libraries with embedded weights define. A
# backslash at a line end continues a declaration (the string literal joins the lines).
_SPEC = """
int {p}_abi_version(void)
    The ABI version of this library (this header was written for ABI {abi}).
const char *{p}_lucid_version(void)
    The version of lucid that exported this library.
const char *{p}_strerror(int code)
    A static message for a return code of this API; never NULL, "ok" for 0.
int {p}_num_inputs(void)
    Number of runtime inputs (weights are not inputs).
int {p}_num_outputs(void)
    Number of outputs.
const char *{p}_input_name(int i)
    Name of input i; NULL if i is out of range.
const char *{p}_output_name(int i)
    Name of output i; NULL if out of range.
int {p}_input_dtype(int i)
    {p}_dtype of input i; -1 if out of range.
int {p}_output_dtype(int i)
    {p}_dtype of output i; -1 if out of range.
int {p}_input_rank(int i)
    Rank of input i; -1 if out of range.
int {p}_output_rank(int i)
    Rank of output i; -1 if out of range.
const int64_t *{p}_input_shape(int i)
    Shape of input i (input_rank(i) entries, {p}_DYNAMIC for the batch dimension);
    static read-only data; NULL if out of range.
const int64_t *{p}_output_shape(int i)
    Shape of output i, as input_shape.
int {p}_has_embedded_weights(void)
    1 if the weights are inside this library ({p}_open(NULL, ...) and {p}_run work), else 0.
{p}_model *{p}_open(const char *weights_path, int *err)
    A model handle. weights_path: a .weights file written by lucid.export for this model,
    or NULL for the embedded weights. Returns NULL on failure and sets *err (if err is
    not NULL) to {p}_E_NULL, {p}_E_NOMEM, {p}_E_IO or {p}_E_WEIGHTS; 0 on success.
    The handle keeps the large GEMM weights packed in the layout the kernels read (about one
    more copy of them), so its runs skip packing them; {p}_run, which has no handle, packs
    them in every call. A handle is read-only once opened: any number of threads may run it
    at once.
void {p}_close({p}_model *model)
    Free a handle from {p}_open; NULL is a no-op.
int {p}_model_run(const {p}_model *model, const void *const *inputs, void *const *outputs, \
int64_t batch)
    Run the model on one thread. inputs: num_inputs() pointers, outputs: num_outputs()
    pointers, caller-allocated, C-contiguous, in the declared order, dtypes and shapes
    with the batch dimension equal to `batch` (>= 1; ignored beyond that check when no
    shape is dynamic). Returns 0 or an error code; reentrant, no global state.
int {p}_model_run_threads(const {p}_model *model, const void *const *inputs, \
void *const *outputs, int64_t batch, int nthreads)
    {p}_model_run splitting large kernels over up to nthreads threads created for this
    call (0: one per online core; < 0: {p}_E_ARG). Results do not depend on nthreads.
int {p}_run(const void *const *inputs, void *const *outputs, int64_t batch) [embedded]
    {p}_model_run with the embedded weights, no handle needed; one thread.
int {p}_run_threads(const void *const *inputs, void *const *outputs, int64_t batch, \
int nthreads) [embedded]
    {p}_model_run_threads with the embedded weights.
"""


def _parse_spec() -> list[tuple[str, list[str], bool]]:
    """(declaration, comment lines, embedded only) for each function of _SPEC."""
    entries: list[tuple[str, list[str], bool]] = []
    for line in _SPEC.strip().splitlines():
        if line.startswith(" "):
            entries[-1][1].append(line.strip())
        else:
            decl, marked = line.removesuffix(" [embedded]"), line.endswith(" [embedded]")
            entries.append((decl, [], marked))
    return entries


_ENTRIES = _parse_spec()


def check_prefix(prefix: str) -> str:
    """`prefix` if it is a C identifier, else ValueError (a prefix is never sanitised here)."""
    if not _IDENT.match(prefix):
        raise ValueError(f"not a C identifier: {prefix!r}")
    return prefix


def api(prefix: str, *, embedded: bool) -> list[ApiFunction]:
    """The exported functions of a library with model name `prefix`, in header order."""
    p = check_prefix(prefix)
    return [
        ApiFunction(decl.format(p=p), tuple(d.format(p=p, abi=ABI_VERSION) for d in doc))
        for decl, doc, embedded_only in _ENTRIES
        if embedded or not embedded_only
    ]


def cdef(prefix: str, *, embedded: bool) -> str:
    """Declarations for `cffi.FFI.cdef` (ABI mode) of one exported library."""
    p = check_prefix(prefix)
    lines = [
        f"typedef struct {p}_model {p}_model;",
        f"extern const char {p}{MAGIC_SUFFIX}[{MAGIC_SIZE}];",
    ]
    lines += [f.decl + ";" for f in api(p, embedded=embedded)]
    return "\n".join(lines) + "\n"
