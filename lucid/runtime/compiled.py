"""`lucid.compile(model)`: trace per input signature, optimize, build, then call compiled code.

A call whose signature (input dtypes and shapes, the batch dim excluded with dynamic_batch,
and the model's train/eval mode) was seen before goes through a small Python function
generated for that signature (`_fast_source`): it checks every input against the graph types,
checks each parameter's array identity against the last validated one, allocates the outputs
and calls the C with the arrays passed as object addresses. Anything unusual (a new
signature, a non-contiguous input, a replaced parameter array, an empty batch) takes the slow
path, which validates completely, then calls the same executable.

Training through compiled code arrives with the autodiff issue: for now a compiled module
runs forward only, and its outputs never require grad, even when inputs do.
"""

from __future__ import annotations

import builtins
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lucid.errors import InputError, LucidError
from lucid.ir.core import Graph
from lucid.ir.types import DType, TensorType
from lucid.runtime import threads as _threads
from lucid.runtime.backends import BackendOptions, BuildInfo, Executable, get_backend
from lucid.runtime.build import DEFAULT_FLAGS, BuildOptions
from lucid.tensor import Tensor

__all__ = ["CompileOptions", "CompiledModule", "Signature", "compile"]

_OPTION_KEYS = ("fusion", "passes", "isa", "cflags", "cc", "debug_dir")


@dataclass(frozen=True)
class CompileOptions:
    """The `options=` of lucid.compile, validated: every field has a meaning, nothing else."""

    fusion: bool = True
    passes: tuple[str, ...] | None = None  # replaces the default pipeline when given
    isa: str = "auto"
    build: BuildOptions = field(default_factory=BuildOptions)
    debug_dir: Path | None = None

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> CompileOptions:
        """Validate the user's dict; unknown keys are an error listing the valid ones."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(_OPTION_KEYS))
        if unknown:
            raise ValueError(
                f"lucid.compile: unknown option(s) {', '.join(map(repr, unknown))}; "
                f"valid options: {', '.join(_OPTION_KEYS)}"
            )
        passes = options.get("passes")
        if passes is not None:
            if isinstance(passes, str) or not all(isinstance(p, str) for p in passes):
                raise TypeError(
                    f"lucid.compile: 'passes' must be a list of pass names, not {passes!r}"
                )
            passes = tuple(passes)
        cflags = options.get("cflags", DEFAULT_FLAGS)
        if isinstance(cflags, str):
            raise TypeError(f"lucid.compile: 'cflags' must be a list of flags, not {cflags!r}")
        debug_dir = options.get("debug_dir")
        return cls(
            fusion=bool(options.get("fusion", True)),
            passes=passes,
            isa=str(options.get("isa", "auto")),
            build=BuildOptions(cc=options.get("cc"), flags=tuple(cflags)),
            debug_dir=Path(debug_dir) if debug_dir is not None else None,
        )


@dataclass(frozen=True)
class Signature:
    """What a compiled graph was specialised for: input types (`N` = batch) and train/eval."""

    inputs: tuple[TensorType, ...]
    training: bool

    def __str__(self) -> str:
        mode = "train" if self.training else "eval"
        return f"({', '.join(map(str, self.inputs))}) {mode}"


_BATCH = "N"


def _key(arrays: tuple[np.ndarray, ...], dynamic: bool, training: bool) -> tuple[Any, ...]:
    """The dict key of a signature: cheap to compute from arrays, equal iff signatures are."""
    if dynamic:
        return (tuple((a.dtype, a.ndim, a.shape[1:]) for a in arrays), training)
    return (tuple((a.dtype, a.shape) for a in arrays), training)


def _type_of(a: np.ndarray) -> str:
    """`f64[2,3]` for an array (its numpy dtype when lucid has no name for it)."""
    try:
        name = str(DType.from_numpy(a.dtype))
    except (LucidError, KeyError, TypeError, ValueError):
        name = str(a.dtype)
    return f"{name}[{','.join(map(str, a.shape))}]"


def _wrap(a: np.ndarray) -> Tensor:
    """A Tensor around `a` without the copy Tensor() makes; it never requires grad."""
    t = Tensor.__new__(Tensor)
    t.data, t.requires_grad, t.keep_grad, t.grad = a, False, False, None
    t._parents, t._backward = (), None
    return t


def _label(role: str, i: int, hint: str | None) -> str:
    return f"{role} {i} ({hint})" if hint else f"{role} {i}"


class _Entry:
    """Everything compiled for one signature.

    Invariants: `forward` runs `stages['optimized']`; `param_slots[i]` finds the live Parameter
    of graph param i; `pcache` is None or (arrays, ids) where every array was validated against
    its graph param type and is C-contiguous (so its id may go to the C). `backward` is reserved
    for the autodiff issue (compiled backward graphs) and is None for now.
    """

    def __init__(
        self,
        module: Any,
        signature: Signature,
        stages: dict[str, Graph],
        forward: Executable,
        out_kind: type | None,
        debug_path: Path | None,
    ) -> None:
        self.signature = signature
        self.stages = stages
        self.forward = forward
        self.backward: Executable | None = None
        self.out_kind = out_kind
        self.debug_path = debug_path
        graph = forward.graph
        self.graph = graph
        owners = {name: m for name, m in module.named_modules()}
        self.param_slots: list[tuple[dict[str, Any], str, str]] = []
        for p in graph.params:
            hint = p.hint or ""
            owner_path, _, leaf = hint.rpartition(".")
            owner = owners.get(owner_path)
            if owner is None or leaf not in owner._parameters:
                raise LucidError(f"compiled graph param {hint!r} is not a parameter of the model")
            self.param_slots.append((owner._parameters, leaf, hint))
        self.pcache: tuple[tuple[np.ndarray, ...], tuple[int, ...]] | None = None
        self.fast: Any = None

    def params(self) -> tuple[np.ndarray, ...]:
        """The live parameter arrays, validated; refreshes `pcache` when all can go to C as is."""
        arrays = []
        direct = True
        for i, ((slots, leaf, hint), value) in enumerate(zip(self.param_slots, self.graph.params)):
            p = slots.get(leaf)
            a = getattr(p, "data", None)
            want = value.type
            if not isinstance(a, np.ndarray):
                raise InputError(
                    f"{_label('param', i, hint)}: expected {want}, but the model "
                    f"no longer has an array there (got {type(p).__name__})"
                )
            if a.dtype != want.dtype.np or a.shape != want.shape:
                raise InputError(
                    f"{_label('param', i, hint)}: expected {want}, got {_type_of(a)}; the "
                    "parameter changed since compilation: call lucid.compile(model) again"
                )
            if not (a.flags.c_contiguous and a.flags.aligned):
                a, direct = np.ascontiguousarray(a), False  # a copy per call: never cached
            arrays.append(a)
        if direct:
            self.pcache = (tuple(arrays), tuple(map(id, arrays)))
        return tuple(arrays)

    def check_inputs(self, arrays: tuple[np.ndarray, ...]) -> int:
        """Check arrays against the graph's input types; return the batch (1 when static)."""
        bound: dict[str, int] = {}
        for i, (a, value) in enumerate(zip(arrays, self.graph.inputs)):
            want = value.type
            if a.dtype != want.dtype.np or a.ndim != want.rank:
                raise InputError(
                    f"{_label('input', i, value.hint)}: expected {want}, got {_type_of(a)}"
                )
            for dim, n in zip(want.shape, a.shape):
                if isinstance(dim, int) and dim != n:
                    raise InputError(
                        f"{_label('input', i, value.hint)}: expected {want}, got {_type_of(a)}"
                    )
                if isinstance(dim, str) and bound.setdefault(dim, n) != n:
                    raise InputError(
                        f"{_label('input', i, value.hint)}: expected {want}, got {_type_of(a)}: "
                        f"{dim} is {n} here but {bound[dim]} in an earlier input"
                    )
        return bound.get(_BATCH, 1)

    def run(self, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The checked slow path: validate everything, then run the executable."""
        batch = self.check_inputs(arrays)
        arrays = tuple(
            a if a.flags.c_contiguous and a.flags.aligned else np.ascontiguousarray(a)
            for a in arrays
        )
        params = self.params()
        if batch == 0 or any(a.size == 0 for a in arrays):
            from lucid.ir.interpret import interpret  # the C asks for batch >= 1

            return tuple(np.array(o) for o in interpret(self.graph, *arrays, *params))
        return self.forward.run(*arrays, *params)


def _fast_source(entry: _Entry) -> str:
    """Python source of `fast(args)` for a C entry: the result, or None to take the slow path.

    Only indices and fixed names go into the text (never hints or other user strings); the
    values it needs are bound in its namespace by `_make_fast`.
    """
    g = entry.graph
    dynamic = any(not t.is_static for t in g.input_types)
    n_in, n_par, n_out = len(g.inputs), len(g.params), len(g.outputs)
    lines = [
        "def fast(args):",
        f"    if len(args) != {n_in} or module.training is not training:",
        "        return None",
    ]
    for i in range(n_in):
        lines += [
            f"    x{i} = args[{i}]",
            f"    if type(x{i}) is Tensor:",
            f"        x{i} = x{i}.data",
            f"    if type(x{i}) is not ndarray or x{i}.dtype is not dt{i} or x{i}.strides != st{i}:",
            "        return None",
        ]
        if dynamic and i == 0:
            lines += [
                "    s0 = x0.shape",
                "    n = s0[0]",
                "    if n < 1 or s0[1:] != shape0:",
                "        return None",
            ]
        elif dynamic:
            lines += [
                f"    s{i} = x{i}.shape",
                f"    if s{i}[0] != n or s{i}[1:] != shape{i}:",
                "        return None",
            ]
        else:
            lines += [f"    if x{i}.shape != shape{i}:", "        return None"]
    if not dynamic:
        lines.append("    n = 1")
    lines.append("    cached = entry.pcache")
    if n_par:
        lines += ["    if cached is None:", "        return None", "    arrays, ids = cached"]
        for j in range(n_par):  # identity and shape: `a.shape = ...` keeps the identity
            lines += [
                f"    p{j} = slot{j}[leaf{j}].data",
                f"    if p{j} is not arrays[{j}] or p{j}.shape != pshape{j}:",
                "        return None",
            ]
    for k, t in enumerate(g.output_types):
        shape = f"(n,) + oshape{k}" if t.shape[:1] == (_BATCH,) else f"oshape{k}"
        lines.append(f"    y{k} = empty({shape}, odt{k})")
    args = [
        *(f"id(x{i})" for i in range(n_in)),
        *(["*ids"] if n_par else []),
        *(f"id(y{k})" for k in range(n_out)),
        "n",
        "threads.num_threads",
    ]
    lines += [
        f"    code = call({', '.join(args)})",
        "    if code:",
        "        raise forward.error(code)",
    ]
    for k in range(n_out):
        lines += [
            f"    t{k} = new(Tensor)",
            f"    t{k}.data = y{k}",
            f"    t{k}.requires_grad = False",
            f"    t{k}.keep_grad = False",
            f"    t{k}.grad = None",
            f"    t{k}._parents = ()",
            f"    t{k}._backward = None",
        ]
    outs = ", ".join(f"t{k}" for k in range(n_out))
    if entry.out_kind is None:
        lines.append(f"    return {outs}")
    elif entry.out_kind is tuple:
        lines.append(f"    return ({outs},)")
    else:
        lines.append(f"    return out_kind(({outs},))")
    return "\n".join(lines) + "\n"


def _make_fast(entry: _Entry, module: Any) -> Any:
    """Compile `_fast_source(entry)` with its constants bound; None if the entry has no C."""
    g, forward = entry.graph, entry.forward
    call = getattr(forward, "call_objects", None)
    if call is None or any(0 in t.shape for t in (*g.input_types, *g.output_types)):
        return None
    ns: dict[str, Any] = {
        "module": module,
        "training": entry.signature.training,
        "Tensor": Tensor,
        "ndarray": np.ndarray,
        "empty": np.empty,
        "new": Tensor.__new__,
        "entry": entry,
        "call": call,
        "forward": forward,
        "threads": _threads,
        "out_kind": entry.out_kind,
    }
    for i, t in enumerate(g.input_types):
        dt = t.dtype.np
        static = tuple(1 if isinstance(d, str) else d for d in t.shape)
        ns[f"dt{i}"] = np.empty(0, dt).dtype  # the dtype instance arrays carry, for `is`
        ns[f"st{i}"] = np.empty(static, dt).strides
        ns[f"shape{i}"] = t.shape[1:] if not t.is_static else t.shape
    for j, (slots, leaf, _) in enumerate(entry.param_slots):
        ns[f"slot{j}"], ns[f"leaf{j}"] = slots, leaf
        ns[f"pshape{j}"] = g.params[j].type.shape
    for k, t in enumerate(g.output_types):
        ns[f"odt{k}"] = t.dtype.np
        ns[f"oshape{k}"] = t.shape[1:] if t.shape[:1] == (_BATCH,) else t.shape
        if any(isinstance(d, str) for d in ns[f"oshape{k}"]):
            return None  # a symbol past axis 0: leave it to the generic path
    code = builtins.compile(_fast_source(entry), f"<lucid fast path @{g.name}>", "exec")
    exec(code, ns)  # noqa: S102  (text from _fast_source: indices and fixed names only)
    return ns["fast"]


class _ReturnSpy:
    """Stands in for the model while it is traced, to see whether forward returned a tuple or
    list (the graph only has a list of outputs). Subclassed per model class so that trace
    errors name the model's own class."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.kind: type | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def __call__(self, *args: Any) -> Any:
        out = self._module(*args)
        self.kind = type(out) if isinstance(out, (tuple, list)) else None
        return out


_SPIES: dict[str, type] = {}


def _spy(module: Any) -> _ReturnSpy:
    name = type(module).__name__
    cls = _SPIES.setdefault(name, type(name, (_ReturnSpy,), {}))
    return cls(module)  # type: ignore[no-any-return]


def _pipeline(options: CompileOptions) -> list[str]:
    """Pass names to run: the explicit list, else the default pipeline."""
    from lucid.ir.passes import default_pipeline

    return (
        list(options.passes)
        if options.passes is not None
        else default_pipeline(fusion=options.fusion)
    )


def _optimize(graph: Graph, names: list[str]) -> dict[str, Graph]:
    """'traced', the graph after each pass (one verified PassManager per pass, so each stage is
    kept), and 'optimized'."""
    stages = {"traced": graph}
    if names:
        from lucid.ir.passes import PassManager

        for name in names:
            graph = PassManager([name]).run(graph)[0]
            key, k = name, 2
            while key in stages:
                key, k = f"{name}#{k}", k + 1
            stages[key] = graph
    stages["optimized"] = graph
    return stages


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "graph"


def _dump(directory: Path, signature: Signature, stages: dict[str, Graph]) -> None:
    """Write the signature and the IR after each stage, numbered in order."""
    from lucid.ir.printer import format as format_graph

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "signature.txt").write_text(str(signature) + "\n", encoding="utf-8")
    for i, (name, graph) in enumerate(stages.items()):
        path = directory / f"{i:02d}-{_slug(name)}.lir"
        path.write_text(format_graph(graph, locs=True) + "\n", encoding="utf-8")


class CompiledModule:
    """A model compiled per input signature by `lucid.compile`.

    Invariants: `_entries` maps a signature key to its _Entry and only grows (under `_lock`);
    `_fast` is the generated fast path of the most recently compiled or used entry, or None;
    nothing mutable is shared between concurrent calls except parameter caches, which are
    replaced whole. Parameters are read from the model at every call.
    """

    def __init__(
        self, module: Any, backend: str, dynamic_batch: bool, options: CompileOptions
    ) -> None:
        self.module = module
        self.backend = get_backend(backend)
        self.dynamic_batch = bool(dynamic_batch)
        self.options = options
        self._entries: dict[tuple[Any, ...], _Entry] = {}
        self._order: list[_Entry] = []
        self._lock = threading.Lock()
        self._fast: Any = None

    def __call__(self, *args: Any) -> Any:
        fast = self._fast
        if fast is not None:
            out = fast(args)
            if out is not None:
                return out
        return self._call_slow(args)

    def _call_slow(self, args: tuple[Any, ...]) -> Any:
        arrays = tuple(a.data if isinstance(a, Tensor) else np.asarray(a) for a in args)
        training = bool(self.module.training)
        key = _key(arrays, self.dynamic_batch, training)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._compile(key, arrays, training)
        self._fast = entry.fast
        outs = entry.run(arrays)
        tensors = tuple(map(_wrap, outs))
        if entry.out_kind is None:
            return tensors[0]
        return tensors if entry.out_kind is tuple else entry.out_kind(tensors)

    def _compile(
        self, key: tuple[Any, ...], arrays: tuple[np.ndarray, ...], training: bool
    ) -> _Entry:
        """Trace, optimize and prepare the entry for a new signature (once per key)."""
        from lucid.ir.trace import trace

        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                return entry
            spy = _spy(self.module)
            try:
                traced = trace(spy, *arrays, dynamic_batch=self.dynamic_batch)
            except (LucidError, ValueError, TypeError) as exc:
                raise self._mismatch(arrays, exc) from exc
            signature = Signature(traced.input_types, training)
            names = _pipeline(self.options)
            if self.options.passes is None and hasattr(self.backend, "pipeline"):
                names = self.backend.pipeline(names)  # what this backend can run
            stages = _optimize(traced, names)
            debug_path = self._debug_path(signature)
            if debug_path is not None:
                _dump(debug_path, signature, stages)
            forward = self.backend.prepare(
                stages["optimized"],
                BackendOptions(
                    isa=self.options.isa, build=self.options.build, debug_dir=debug_path
                ),
            )
            entry = _Entry(self.module, signature, stages, forward, spy.kind, debug_path)
            entry.fast = _make_fast(entry, self.module)
            self._entries[key] = entry
            self._order.append(entry)
            return entry

    def _mismatch(self, arrays: tuple[np.ndarray, ...], exc: Exception) -> Exception:
        """A failed trace for a new signature: an InputError against the last compiled types."""
        if not self._order:
            return exc
        graph = self._order[-1].graph
        if len(arrays) != len(graph.inputs):
            return InputError(f"expected {len(graph.inputs)} input(s), got {len(arrays)}: {exc}")
        for i, (a, v) in enumerate(zip(arrays, graph.inputs)):
            want = v.type
            fits = (
                a.dtype == want.dtype.np
                and a.ndim == want.rank
                and all(isinstance(d, str) or d == n for d, n in zip(want.shape, a.shape))
            )
            if not fits:
                return InputError(
                    f"{_label('input', i, v.hint)}: expected {want}, got {_type_of(a)} "
                    f"(tracing with it failed: {exc})"
                )
        return exc

    def _debug_path(self, signature: Signature) -> Path | None:
        """Where to write this graph's IR, C and build command: options, else $LUCID_DEBUG_DIR."""
        root = self.options.debug_dir
        if root is None and os.environ.get("LUCID_DEBUG_DIR"):
            root = Path(os.environ["LUCID_DEBUG_DIR"])
        if root is None:
            return None
        stamp = f"{os.getpid()}-{time.time_ns() % 10**9:09d}"
        return (
            root
            / f"{_slug(type(self.module).__name__)}-{len(self._order)}-{_slug(str(signature))}-{stamp}"
        )

    # -- inspection ---------------------------------------------------------------------
    def entry(self, signature: Signature | None = None) -> _Entry:
        """The entry of `signature` (default: the most recently compiled)."""
        if not self._order:
            raise LucidError("nothing compiled yet: call the compiled module once first")
        if signature is None:
            return self._order[-1]
        for e in self._order:
            if e.signature == signature:
                return e
        raise KeyError(
            f"no compiled signature {signature}; have: {[str(s) for s in self.signatures]}"
        )

    @property
    def signatures(self) -> list[Signature]:
        """Every compiled signature, oldest first."""
        return [e.signature for e in self._order]

    def stages(self, signature: Signature | None = None) -> dict[str, Graph]:
        """The IR at each stage: 'traced', after each pass, 'optimized'."""
        return dict(self.entry(signature).stages)

    def graph(self, signature: Signature | None = None) -> Graph:
        """The optimized graph that runs."""
        return self.entry(signature).graph

    @property
    def c_source(self) -> str | None:
        """The generated C of the most recent signature (None for the interpreter)."""
        return self.entry().forward.source

    @property
    def build_info(self) -> BuildInfo | None:
        """Path, cache hit, seconds and command of the most recent build (None: no C)."""
        return self.entry().forward.build_info

    def describe(self) -> str:
        """One line per compiled signature."""
        return "\n".join(f"{e.signature}: {e.forward.describe()}" for e in self._order)

    def __repr__(self) -> str:
        head = (
            f"CompiledModule({type(self.module).__name__}, backend={self.backend.name!r}, "
            f"dynamic_batch={self.dynamic_batch}, {len(self._order)} signature(s))"
        )
        return "\n".join([head, *("  " + line for line in self.describe().splitlines())])

    # -- passthrough to the model ------------------------------------------------------
    def parameters(self) -> Iterator[Any]:
        """The model's parameters (read live by compiled calls)."""
        return self.module.parameters()

    def named_parameters(self) -> Iterator[tuple[str, Any]]:
        """The model's (path, parameter) pairs."""
        return self.module.named_parameters()

    def state_dict(self) -> dict[str, np.ndarray]:
        """The model's state_dict."""
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> Any:
        """Load into the model in place; compiled calls see it without recompiling."""
        return self.module.load_state_dict(state, strict)

    def train(self, mode: bool = True) -> CompiledModule:
        """Set the model's mode (part of the signature: the other mode compiles separately)."""
        self.module.train(mode)
        return self

    def eval(self) -> CompiledModule:
        """Evaluation mode for the model."""
        return self.train(False)


def compile(
    model: Any,
    *,
    backend: str = "c",
    dynamic_batch: bool = False,
    options: Mapping[str, Any] | None = None,
) -> CompiledModule:
    """Compile `model` lazily: each new input signature is traced, optimized and built at its
    first call. Outputs never require grad (training through compile comes with autodiff)."""
    from lucid.nn import Module

    if not isinstance(model, Module):
        raise TypeError(f"lucid.compile: expected a lucid.nn.Module, got {type(model).__name__}")
    return CompiledModule(model, backend, dynamic_batch, CompileOptions.from_dict(options))
