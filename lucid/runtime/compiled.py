"""`lucid.compile(model)`: trace per input signature, optimize, build, then call compiled code.

A signature is the input dtypes and shapes (the batch dim excluded with dynamic_batch), the
model's train/eval mode and the grad mode. A call that was seen before goes through a small
Python function generated for its signature (`_fastpath.py`); anything unusual takes the slow
path, which validates completely, then calls the same executable.

Grad mode: a call needs gradients when `lucid.grad_enabled()` and an input Tensor requires
grad, or the model is in train mode and a parameter requires grad. Such a call runs the
augmented forward of `lucid.ir.autodiff.grad` (compiled, fused) and returns Tensors on the
eager tape whose backward runs the compiled backward graph (`_training.py`); any other call
runs the forward-only build, a separate cached entry. An eval-mode call with grad enabled and
parameters requiring grad is differentiable, as in eager, but inference is the common case
there and should not pay for saved values: it runs the forward-only build and returns outputs
whose backward, if one ever runs, recomputes the call through the grad entry (`_late_backward`).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from lucid._logging import log as _log
from lucid.errors import (
    FallbackWarning,
    InputError,
    LucidError,
    RecompileError,
    RecompileWarning,
    TraceError,
)
from lucid.ir.autodiff import grad as differentiate
from lucid.ir.core import Graph
from lucid.ir.trace import BATCH, Guard
from lucid.nn.module import STRUCTURE_VERSION, cached_walks, structure_version
from lucid.runtime import _memo
from lucid.runtime._entry import (
    Entry,
    call_arrays,
    dump,
    label,
    optimize,
    slug,
    spy,
    type_of,
    wrap,
)
from lucid.runtime._fastpath import make_fast
from lucid.runtime._freevals import FreeValues, forwards
from lucid.runtime._gradplan import GradJoin
from lucid.runtime.backends import BackendOptions, BuildInfo, Executable, get_backend
from lucid.runtime.cache import cache_root
from lucid.runtime.options import CompileOptions, Signature
from lucid.tensor import Tensor

if TYPE_CHECKING:
    from lucid.nn import Module
    from lucid.runtime.profile import Counters, Profile
    from lucid.runtime.step import CompiledStep


def _programs(entry: Entry) -> list[tuple[str, Executable]]:
    """("forward", its executable), then ("backward", ...) for a grad entry."""
    programs = [("forward", entry.forward)]
    if entry.grad is not None:
        programs.append(("backward", entry.grad.executable))
    return programs


# the module, not `lucid.tensor` the factory function that shadows it as an attribute
_tensor = sys.modules["lucid.tensor"]

__all__ = ["CompileOptions", "CompiledModule", "Signature", "compile"]


def _key(
    arrays: tuple[np.ndarray, ...], dynamic: bool, training: bool, grad: tuple[bool, ...] | None
) -> tuple[Any, ...]:
    """The dict key of a signature: cheap to compute from arrays, equal iff signatures are."""
    if dynamic:
        return (tuple((a.dtype, a.ndim, a.shape[1:]) for a in arrays), training, grad)
    return (tuple((a.dtype, a.shape) for a in arrays), training, grad)


def _change(old: tuple[Any, ...], new: tuple[Any, ...]) -> str:
    """What differs between two signature keys (see _key), in words."""
    (old_in, old_training, old_grad), (new_in, new_training, new_grad) = old, new
    if len(old_in) != len(new_in):
        return f"the number of inputs changed {len(old_in)} -> {len(new_in)}"
    for i, (a, b) in enumerate(zip(old_in, new_in)):
        if a[0] != b[0]:
            return f"input {i} dtype changed {a[0]} -> {b[0]}"
        if a[1:] != b[1:]:
            return f"input {i} shape changed {_shape_text(a)} -> {_shape_text(b)}"
    if old_training != new_training:
        return "train/eval mode changed " + " -> ".join(
            "train" if t else "eval" for t in (old_training, new_training)
        )
    return f"grad mode changed {_grad_text(old_grad)} -> {_grad_text(new_grad)}"


def _structure_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first difference between two `Module.structure` snapshots, in words; None if none."""
    for name in [*old, *(n for n in new if n not in old)]:
        a, b = old.get(name, _ABSENT), new.get(name, _ABSENT)
        if a == b:
            continue
        where = "self" if name == "." else f"self.{name}"
        if a is _ABSENT or b is _ABSENT:
            return f"{where} was {'added' if a is _ABSENT else 'removed'}"
        if _by_identity(a) or _by_identity(b):
            return f"{where} was replaced by another object"
        return f"{where} changed {_shown(a)} -> {_shown(b)}"
    return None


def _shown(entry: Any) -> str:
    """A structure entry as the warning shows it (a parameter is kept as its type)."""
    if isinstance(entry, tuple) and len(entry) == 3 and entry[0] == "parameter":
        return f"a {entry[2]} Parameter of shape {entry[1]}"
    return repr(entry)


def _grad_payload(hit: Any) -> bool:
    """Whether a pass-memo payload is what a grad entry stores: (GradJoin, forward, backward)."""
    return (
        isinstance(hit, tuple)
        and len(hit) == 3
        and isinstance(hit[0], GradJoin)
        and all(isinstance(g, Graph) for g in hit[1:])
    )


def _by_identity(entry: Any) -> bool:
    """Whether a structure entry is (type, id): an object compared by identity."""
    return isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], type)


_ABSENT = object()


def _shape_text(part: tuple[Any, ...]) -> str:
    """A key's shape part: (dtype, shape), or (dtype, ndim, shape[1:]) under a dynamic batch."""
    if len(part) == 2:
        return str(tuple(part[1]))
    return str(("N", *part[2]))


def _grad_text(grad: tuple[bool, ...] | None) -> str:
    if grad is None:
        return "no gradients"
    wanted = [i for i, w in enumerate(grad) if w]
    return f"gradients for inputs {wanted} and the parameters" if wanted else "parameter gradients"


def _batch(arrays: tuple[np.ndarray, ...]) -> int:
    """The batch size of a call: the first dim of its first input that has one."""
    return next((a.shape[0] for a in arrays if a.ndim), 1)


def _admitting(entries: Sequence[Entry], arrays: tuple[np.ndarray, ...]) -> Entry | None:
    """The first of `entries` (one signature's) whose guards hold for this call, or None."""
    if len(entries) == 1 and not entries[0].guards:
        return entries[0]
    n = _batch(arrays)
    return next((e for e in entries if e.admits(n)), None)


def _failed_guard(entry: Entry, arrays: tuple[np.ndarray, ...]) -> str:
    """Why `entry` does not serve this call, in words: its first guard that fails."""
    n = _batch(arrays)
    failed = next((g for g in entry.guards if not g.holds({BATCH: n})), None)
    if failed is None:  # another thread's entry admits it by now
        return f"a new trace for N={n}"
    where = f" (decided at {failed.loc})" if failed.loc else ""
    return f"the trace assumed {failed.condition()}{where}, which fails for N={n}"


def _as_returned(entry: Entry, tensors: tuple[Tensor, ...]) -> Any:
    """A forward-only call's outputs in the shape forward returned them (one, tuple, list)."""
    if entry.out_kind is None:
        return tensors[0]
    return tensors if entry.out_kind is tuple else entry.out_kind(tensors)


def _without_state(entry: Entry, result: Any) -> Any:
    """A grad call's result without the written buffers' outputs (the last ones)."""
    if not entry.state_slots or entry.out_kind is None:
        return result  # one output: attach returned forward's own
    kept = tuple(result)[: entry.n_user]
    return kept if entry.out_kind is tuple else entry.out_kind(kept)


def _grad_mode(module: Any, args: tuple[Any, ...], training: bool) -> tuple[bool, ...] | None:
    """None if the call needs no gradients, else which inputs require grad (see the module doc)."""
    if not _tensor._grad_enabled:
        return None
    wrt = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
    if any(wrt) or (training and any(p.requires_grad for p in module.parameters())):
        return wrt
    return None


class _Background:
    """A build running on a thread: `done` is set when it ends, `error` if it failed."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None


class CompiledModule:
    """A model compiled per input signature by `lucid.compile`.

    Invariants: `_entries` maps a signature key to its Entries, which differ in the Python
    decisions their traces took on the batch size (`Entry.guards`); it only grows (under `_lock`)
    until a structure change clears it;
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
        self._entries: dict[tuple[Any, ...], list[Entry]] = {}
        self._order: list[Entry] = []
        self._lock = threading.Lock()
        # held only to add an entry: a background build installs under it, not under _lock
        # (which the trace of another signature may hold for as long as it runs)
        self._install_lock = threading.Lock()
        self._building: dict[tuple[Any, ...], _Background] = {}  # options["background"]
        self._generation = 0  # bumped when a structure change drops every entry
        self._fast: Any = None
        self._last_key: tuple[Any, ...] | None = None  # the key of the newest entry
        self._fell_back = False  # warned that new signatures run eagerly
        self._untraceable: set[tuple[Any, ...]] = set()  # keys run eagerly (fallback="eager")
        self._compiles = 0  # entries built, including ones a structure change dropped
        # the module as the entries were traced (see Module.structure), and the structure
        # version at which that was last confirmed
        self._structure = module.structure()
        self._seen_version = structure_version()
        # the plain values forward reads from globals and closures, as the entries were traced
        # with them (None: nothing to guard); compared at every call
        self._free: FreeValues | None = None
        self._counters: Counters | None = None  # options["profile"]: what profile() reads

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by source module and options: the copy compiles at its first call (loading
        from the compile cache when it is warm), so it can be sent to another process."""
        return (CompiledModule, (self.module, self.backend.name, self.dynamic_batch, self.options))

    def __call__(self, *args: Any) -> Any:
        if STRUCTURE_VERSION[0] != self._seen_version:  # some Module attribute was assigned
            self._revalidate()
        free = self._free
        if free is not None and free.changed() is not None:
            self._revalidate_free()
        fast = self._fast
        if fast is not None:
            out = fast(args)
            if out is not None:
                return out
        return self._call_slow(args)

    def _call_slow(self, args: tuple[Any, ...]) -> Any:
        arrays = call_arrays(args)
        training = bool(self.module.training)
        grad = _grad_mode(self.module, args, training)
        key = _key(arrays, self.dynamic_batch, training, grad)
        entry = _admitting(self._entries.get(key, ()), arrays)
        if entry is None:
            if key in self._untraceable:
                return self.module(*args)
            job = self._building.get(key)
            if job is not None:  # options["background"]: built on a thread, eager meanwhile
                if job.error is None:
                    return self.module(*args)
                del self._building[key]
                raise job.error
            if self._compiles >= self.options.max_entries:
                return self._fall_back(args)
            entry = self._compile(key, arrays, training, grad, background=self.options.background)
            if entry is None:  # untraceable with fallback="eager", or building in the background
                return self.module(*args)
        self._fast = entry.fast
        if entry.n_seeds:  # after any trace (which draws none): the draws eager would make
            arrays += entry.draw_seeds()
        outs = entry.run(arrays)  # writes back the buffers forward wrote (entry.state_slots)
        if entry.grad is not None:
            result = entry.grad.attach(args, arrays, entry.param_objects(), outs)
            return _without_state(entry, result)
        tensors = tuple(map(wrap, outs[: entry.n_user]))
        late = entry.late and _tensor._grad_enabled and not training
        if late and any(p.requires_grad for p in entry.param_objects()):
            return self._differentiable_later(entry, args, tensors, arrays[len(args) :])
        return _as_returned(entry, tensors)

    def _differentiable_later(
        self,
        entry: Entry,
        args: tuple[Any, ...],
        tensors: tuple[Tensor, ...],
        seeds: tuple[np.ndarray, ...] = (),
    ) -> Any:
        """The outputs of an eval-mode forward-only call, made differentiable: each output that
        reaches a parameter requires grad, and its backward recomputes the call with gradients
        (`_late_backward`, with the call's `seeds`). Returned in the shape forward returned them."""
        for k in entry.late:
            t = tensors[k]
            t.requires_grad = True
            t._backward = partial(self._late_backward, args, k, seeds=seeds)
        return _as_returned(entry, tensors)

    def _late_backward(
        self, args: tuple[Any, ...], k: int, g: np.ndarray, seeds: tuple[np.ndarray, ...] = ()
    ) -> tuple[()]:
        """Output k's backward for an eval-mode call: run the call again through its grad
        entry (compiled now if need be) and push `g` back from output k, which accumulates
        into the parameters' `.grad`. No input required grad, so it returns no gradients.
        (The arrays are the call's own again: a Tensor's data or an array as passed; the
        call's `seeds` are passed again too, so the rerun draws the forward's Dropout masks.)"""
        arrays = call_arrays(args)
        wrt = (False,) * len(arrays)
        key = _key(arrays, self.dynamic_batch, False, wrt)
        entry = _admitting(self._entries.get(key, ()), arrays)
        if entry is None and self._compiles >= self.options.max_entries:
            self._fall_back(())  # warns once, or raises with fullgraph
            again = self.module(*args)  # (a Dropout in it would draw new masks: eager's rule)
        else:
            if entry is None:
                why = "a backward through an eval-mode call needs a build with gradients"
                entry = self._compile(key, arrays, False, wrt, why)
            if entry is None or entry.grad is None:  # cannot happen: the forward traced
                raise LucidError(f"{self._name()}: no grad build for a backward")
            if entry.n_seeds != len(seeds):  # cannot happen either: one trace, one seed count
                raise LucidError(f"{self._name()}: the grad build draws other random seeds")
            arrays += seeds
            outs = entry.run(arrays)
            again = _without_state(
                entry, entry.grad.attach(args, arrays, entry.param_objects(), outs)
            )
        out = again if isinstance(again, Tensor) else tuple(again)[k]
        if out.requires_grad:
            out.backward(g)
        return ()

    def _name(self) -> str:
        return f"{type(self.module).__name__}.forward"

    def _revalidate(self) -> None:
        """A Module attribute changed somewhere: if this module's structure differs from what
        its entries were traced with, drop them all (the next call traces again, with a
        warning naming the change); else just note the version."""
        with self._lock:
            version = structure_version()
            now = self.module.structure()
            change = _structure_change(self._structure, now)
            self._structure, self._seen_version = now, version
            if change is None or not self._entries:
                return
            self._drop_entries(change)

    def _revalidate_free(self) -> None:
        """A value forward read from a global or closure differs from its trace's: drop the
        entries (under the lock, rechecked: another thread may have done it)."""
        with self._lock:
            free = self._free
            change = free.changed() if free is not None else None
            if change is not None:
                self._drop_entries(change)

    def _drop_entries(self, change: str) -> None:
        """Drop every entry (the next call traces again) and warn, naming the change."""
        with self._install_lock:
            self._entries.clear()
            self._order.clear()
            self._generation += 1  # builds still running in the background are stale
            self._building.clear()
        self._fast = None
        self._free = None  # the next trace snapshots the values it reads
        self._last_key = None
        self._recompiling(change, stacklevel=4)

    def _recompiling(self, reason: str, stacklevel: int = 5) -> None:
        """Warn (RecompileWarning) and log that a call needs a new entry, and why."""
        n, limit = self._compiles + 1, self.options.max_entries
        message = f"recompiling {self._name()}: {reason} (entry {n} of {limit})"
        _log.info(message)
        warnings.warn(message, RecompileWarning, stacklevel=stacklevel)  # the user's call

    def _fall_back(self, args: tuple[Any, ...]) -> Any:
        """A signature past the entry limit: RecompileError with fullgraph, else run eagerly
        (`args` empty: only warn, the caller runs the model)."""
        limit = self.options.max_entries
        message = (
            f"{self._name()} has {limit} compiled entries, the limit (options['max_entries']), "
            "and this call fits none of them"
        )
        if self.options.fullgraph:
            raise RecompileError(
                f"{message}; fullgraph=True forbids running it eagerly: raise the limit, or "
                "pass inputs of fewer shapes (dynamic_batch=True covers every batch size)"
            )
        if not self._fell_back:
            self._fell_back = True
            _log.info("%s: running such calls eagerly from now on", message)
            warnings.warn(
                f"{message}: running such calls eagerly from now on (correct, not compiled)",
                FallbackWarning,
                stacklevel=4,
            )
        return self.module(*args) if args else None

    def _compile(
        self,
        key: tuple[Any, ...],
        arrays: tuple[np.ndarray, ...],
        training: bool,
        grad: tuple[bool, ...] | None,
        why: str | None = None,
        background: bool = False,
    ) -> Entry | None:
        """Trace, optimize and prepare the entry for a new signature (once per key); `why`
        overrides the reason the recompile warning gives. With `background`, only the trace
        runs now: the rest runs on a thread and None is returned (the caller runs eagerly)."""
        from lucid.ir.trace import trace

        # one walk of the module tree serves the trace, the guards and the entry
        with self._lock, cached_walks():
            candidates = self._entries.get(key, [])
            entry = _admitting(candidates, arrays)
            if entry is not None:
                return entry
            if candidates:
                self._recompiling(_failed_guard(candidates[-1], arrays))
            elif self._last_key is not None:
                self._recompiling(why or _change(self._last_key, key))
            self._last_key = key
            self._compiles += 1
            spied = spy(self.module)
            self._free = FreeValues.of(forwards(self.module))  # the values this trace reads
            guards: list[Guard] = []
            state: list[str] = []  # buffers forward writes: the graph's last outputs
            try:
                # The spy is a stand-in, not a Module: it forwards every attribute to the
                # model, and trace names the model through its __wrapped__.
                traced = trace(
                    spied,  # type: ignore[arg-type]
                    *arrays,
                    dynamic_batch=self.dynamic_batch,
                    guards=guards,
                    state=state,
                )
            except TraceError as exc:
                if self.options.fallback != "eager":
                    raise self._mismatch(arrays, exc) from exc
                self._untraceable.add(key)
                message = f"{self._name()} runs eagerly (fallback='eager'): {exc}"
                _log.info(message)
                warnings.warn(message, FallbackWarning, stacklevel=4)
                return None
            except (LucidError, ValueError, TypeError) as exc:
                raise self._mismatch(arrays, exc) from exc
            signature = Signature(traced.input_types[: len(arrays)], training, grad)  # no seeds
            _log.debug(
                "traced %s for %s: %d nodes, %d guards",
                self._name(),
                signature,
                len(traced.nodes),
                len(guards),
            )
            names = self.options.pipeline()
            debug_path = self._debug_path(signature)
            rows = next((a.shape[0] for a in arrays if a.ndim), None)  # the batch, for autotune
            generation = self._generation

            def build() -> Entry:
                """Optimize, generate and build; then install the entry (under the lock)."""
                if grad is None:
                    stages, memo_hit, memo = self._forward_stages(traced, names, debug_path)
                    forward = self._prepare(stages, signature, debug_path, rows, memo)
                    entry = Entry(self.module, signature, stages, forward, spied.kind, debug_path)
                    entry.memo_hit = memo_hit
                else:
                    entry = self._compile_grad(
                        traced, signature, names, spied.kind, debug_path, rows
                    )
                entry.guards = tuple(guards)
                entry.set_state(self.module, state)
                entry.fast = make_fast(
                    entry,
                    self.module,
                    self._differentiable_later,
                    self._late_backward,
                    code_root=cache_root() if self.backend.name == "c" else None,
                )
                if self.options.profile:
                    for _, executable in _programs(entry):
                        self._counting().start(executable)
                with self._install_lock:
                    if self._generation == generation:  # else the module changed meanwhile
                        self._entries.setdefault(key, []).append(entry)
                        self._order.append(entry)
                return entry

            if background:
                self._build_in_background(key, build, signature)
                return None
            return build()

    def _build_in_background(
        self, key: tuple[Any, ...], build: Callable[[], Entry], signature: Signature
    ) -> None:
        """Run `build` on a daemon thread (the trace already ran on the caller's: the tracer
        hooks are process-wide); calls of `key` run eagerly until it installs the entry. A
        build that fails is raised by the next call of `key` (see _call_slow)."""
        job = _Background()
        self._building[key] = job

        def run() -> None:
            start = time.perf_counter()
            try:
                build()
                _log.info(
                    "%s for %s built in the background in %.2f s",
                    self._name(),
                    signature,
                    time.perf_counter() - start,
                )
            except Exception as exc:  # noqa: BLE001  (any failure is the next call's to raise)
                job.error = exc
            finally:
                job.done.set()
                if job.error is None:
                    self._building.pop(key, None)

        _log.info("%s for %s: building in the background; running eagerly", self._name(), signature)
        threading.Thread(target=run, name=f"lucid-build-{self._name()}", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the builds started in the background (options["background"]) are done;
        False if `timeout` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for job in list(self._building.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not job.done.wait(left):
                return False
        return True

    def _compile_grad(
        self,
        traced: Graph,
        signature: Signature,
        names: list[str],
        out_kind: type | None,
        debug_path: Path | None,
        rows: int | None = None,
    ) -> Entry:
        """The entry of a grad signature: augmented forward and backward, optimised by the same
        pipeline and built by the same backend (the two builds run concurrently)."""
        from lucid.runtime._training import GradProgram

        assert signature.grad is not None
        wrt = (*signature.grad, *(False,) * (len(traced.inputs) - len(signature.grad)))  # seeds
        key = self._memo_key(traced, names, wrt, debug_path)
        hit = _memo.load(cache_root(), key, tuple) if key else None
        memo_hit = _grad_payload(hit)
        if memo_hit:  # the stages between are recomputed if `stages()` asks (_restage)
            join, fopt, bopt = hit  # type: ignore[misc]
            fstages = {"traced": traced, "optimized": fopt}
            bstages = {"optimized": bopt}
        else:
            result = differentiate(traced, wrt_inputs=wrt)
            join = GradJoin.of(result, wrt)
            fstages = {"traced": traced, **optimize(result.forward, names, first="autodiff")}
            bstages = optimize(result.backward, names, first="autodiff")
            if key:
                _memo.store(cache_root(), key, (join, fstages["optimized"], bstages["optimized"]))
        bpath = debug_path / "backward" if debug_path is not None else None
        graphs = (
            self._dumped(fstages, signature, debug_path),
            self._dumped(bstages, signature, bpath),
        )
        pair = getattr(self.backend, "prepare_pair", None)
        fkey, bkey = (f"{key} forward", f"{key} backward") if key else (None, None)
        if pair is not None:  # one build of the GEMM machinery serves both (see CBackend)
            opts = (
                self._backend_options(debug_path, rows, graph_key=fkey),
                self._backend_options(bpath, rows, graph_key=bkey),
            )
            forward, backward = pair(graphs, opts)
        else:  # side by side: cc runs outside the GIL; each a single unit (both cores are busy)
            opts = (
                self._backend_options(debug_path, rows, split=False, graph_key=fkey),
                self._backend_options(bpath, rows, split=False, graph_key=bkey),
            )
            from concurrent.futures import ThreadPoolExecutor  # cold builds only

            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(self.backend.prepare, graphs[1], opts[1])
                forward = self.backend.prepare(graphs[0], opts[0])
                backward = pending.result()
        entry = Entry(self.module, signature, fstages, forward, out_kind, debug_path)
        entry.memo_hit = memo_hit
        hints = [p.hint for p in forward.graph.params]
        entry.grad = GradProgram(join, bstages, backward, hints, out_kind, wrt)
        return entry

    def _memo_key(
        self,
        traced: Graph,
        names: list[str],
        wrt: tuple[bool, ...] | None,
        debug_path: Path | None,
    ) -> str | None:
        """The pass memo's key for `traced` (see _memo.py), or None when the passes must run:
        a debug build dumps the IR after every pass, which the memo does not keep, and only
        the C backend keeps a cache directory."""
        if debug_path is not None or self.backend.name != "c":
            return None
        return _memo.memo_key(traced, names, wrt)

    def _forward_stages(
        self, traced: Graph, names: list[str], debug_path: Path | None
    ) -> tuple[dict[str, Graph], bool, str | None]:
        """(`optimize(traced, names)`, False, the memo key), or on a pass-memo hit (only 'traced'
        and 'optimized', True, the key): the stages between are recomputed if `stages()` asks
        for them. The key is None when the memo is not used (see _memo_key)."""
        key = self._memo_key(traced, names, None, debug_path)
        hit = _memo.load(cache_root(), key, Graph) if key else None
        if hit is not None:
            return {"traced": traced, "optimized": hit}, True, key
        stages = optimize(traced, names)
        if key:
            _memo.store(cache_root(), key, stages["optimized"])
        return stages, False, key

    def _prepare(
        self,
        stages: dict[str, Graph],
        signature: Signature,
        debug_path: Path | None,
        rows: int | None = None,
        memo: str | None = None,
    ) -> Executable:
        """Dump the stages if asked, then let the backend prepare the optimized graph (`rows`:
        the batch size this signature was traced with, which autotune times GEMMs at; `memo`:
        the pass memo key the optimized graph is a function of, or None)."""
        return self.backend.prepare(
            self._dumped(stages, signature, debug_path),
            self._backend_options(debug_path, rows, graph_key=memo),
        )

    def _dumped(
        self, stages: dict[str, Graph], signature: Signature, debug_path: Path | None
    ) -> Graph:
        """The optimized graph, after writing every stage to `debug_path` if it is set."""
        if debug_path is not None:
            dump(debug_path, signature, stages)
        return stages["optimized"]

    def _backend_options(
        self,
        debug_path: Path | None,
        rows: int | None,
        *,
        split: bool = True,
        graph_key: str | None = None,
    ) -> BackendOptions:
        """What the backend is told about one graph of this module (see BackendOptions)."""
        return BackendOptions(
            isa=self.options.isa,
            build=self.options.build,
            debug_dir=debug_path,
            autotune=self.options.autotune,
            tune_rows=rows,
            split=split,
            kernel_units=self.options.build_jobs,
            graph_key=graph_key,
            profile=self.options.profile,
        )

    def _mismatch(self, arrays: tuple[np.ndarray, ...], exc: Exception) -> Exception:
        """A failed trace for a new signature: an InputError against the last compiled types."""
        if not self._order:
            return exc
        last = self._order[-1]
        inputs = last.graph.inputs[: len(last.signature.inputs)]  # the caller's, not the seeds
        if len(arrays) != len(inputs):
            return InputError(f"expected {len(inputs)} input(s), got {len(arrays)}: {exc}")
        for i, (a, v) in enumerate(zip(arrays, inputs)):
            want = v.type
            fits = (
                a.dtype == want.dtype.np
                and a.ndim == want.rank
                and all(isinstance(d, str) or d == n for d, n in zip(want.shape, a.shape))
            )
            if not fits:
                return InputError(
                    f"{label('input', i, v.hint)}: expected {want}, got {type_of(a)} "
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
            / f"{slug(type(self.module).__name__)}-{len(self._order)}-{slug(str(signature))}-{stamp}"
        )

    # -- inspection ---------------------------------------------------------------------
    def entry(self, signature: Signature | None = None) -> Entry:
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

    def stages(
        self, signature: Signature | None = None, which: str = "forward"
    ) -> dict[str, Graph]:
        """The IR at each stage: 'traced' (forward), 'autodiff' (a grad signature's graph from
        lucid.ir.autodiff.grad), after each pass, 'optimized'; `which` is forward or backward."""
        entry = self.entry(signature)
        if which not in ("forward", "backward"):
            raise ValueError(f"which must be 'forward' or 'backward', not {which!r}")
        if which == "backward" and entry.grad is None:
            raise LucidError(f"signature {entry.signature} is forward-only: it has no backward")
        self._restage(entry)
        if which == "forward":
            return dict(entry.stages)
        assert entry.grad is not None
        return dict(entry.grad.stages)

    def _restage(self, entry: Entry) -> None:
        """Fill in the stages between first and 'optimized' that a pass-memo hit skipped, by
        running the passes again (deterministic: they end in the graph that runs, which stays
        the 'optimized' stage)."""
        if not entry.memo_hit:
            return
        entry.memo_hit = False
        names = self.options.pipeline()
        grad = entry.grad
        if grad is None:
            entry.stages = {**optimize(entry.stages["traced"], names), "optimized": entry.graph}
            return
        traced = entry.stages["traced"]
        result = differentiate(traced, wrt_inputs=grad.wrt)
        forward = optimize(result.forward, names, first="autodiff")
        entry.stages = {"traced": traced, **forward, "optimized": entry.graph}
        backward = optimize(result.backward, names, first="autodiff")
        grad.stages = {**backward, "optimized": grad.graph}

    def graph(self, signature: Signature | None = None) -> Graph:
        """The optimized graph that runs."""
        return self.entry(signature).graph

    @property
    def c_source(self) -> str | None:
        """The generated C of the most recent signature (None for the interpreter)."""
        return self.entry().forward.source

    @property
    def backward_source(self) -> str | None:
        """The generated C of the backward of the most recent grad signature (None: no C)."""
        for e in reversed(self._order):
            if e.grad is not None:
                return e.grad.source
        raise LucidError("no grad signature compiled yet: call the module in grad mode first")

    @property
    def build_info(self) -> BuildInfo | None:
        """Path, cache hit, seconds and command of the most recent build (None: no C)."""
        return self.entry().forward.build_info

    def profile(self, reset: bool = False) -> Profile:
        """Each kernel call site's count and wall time, summed over every call of every
        compiled signature (forward and backward) since it was compiled or since a `reset`,
        which starts counting again. Needs options={"profile": True}; see
        lucid.runtime.profile."""
        parts = [(str(e.signature), g, x) for e in self._order for g, x in _programs(e)]
        return self._counting().profile(parts, reset, self.options.profile)

    def _counting(self) -> Counters:
        """The kernel counters profile() reads (created at first use)."""
        if self._counters is None:
            from lucid.runtime.profile import Counters

            self._counters = Counters()
        return self._counters

    def describe(self) -> str:
        """One line per compiled signature."""
        lines = []
        for e in self._order:
            lines.append(f"{e.signature}: {e.forward.describe()}")
            if e.grad is not None:
                lines.append(f"  backward: {e.grad.executable.describe()}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        head = (
            f"CompiledModule({type(self.module).__name__}, backend={self.backend.name!r}, "
            f"dynamic_batch={self.dynamic_batch}, {len(self._order)} signature(s))"
        )
        return "\n".join([head, *("  " + line for line in self.describe().splitlines())])

    def _repr_html_(self) -> str:
        """In a notebook: one row per compiled signature (guards, build or cache load time,
        where its C is), under the model's name and options."""
        import html

        rows = []
        for e in self._order:
            guards = "<br>".join(html.escape(str(g)) for g in getattr(e, "guards", ())) or "-"
            for which, executable in _programs(e):
                info = getattr(executable, "build_info", None)
                if info is None:
                    built, where = "-", html.escape(executable.describe())
                else:
                    how = "cache" if info.from_cache else "built"
                    built = f"{how} in {info.seconds * 1e3:.0f} ms"
                    where = f"<code>{html.escape(str(info.path.parent))}</code>"
                rows.append(
                    f"<tr><td>{html.escape(str(e.signature))}</td><td>{which}</td>"
                    f"<td>{guards}</td><td>{built}</td><td>{where}</td></tr>"
                )
        head = (
            f"<b>CompiledModule</b> {html.escape(type(self.module).__name__)}: backend "
            f"{html.escape(self.backend.name)}, dynamic_batch={self.dynamic_batch}, "
            f"{len(self._order)} signature(s)"
        )
        if not rows:
            return f"<div>{head}; nothing compiled yet (the first call compiles)</div>"
        table = (
            "<table><tr><th>signature</th><th>graph</th><th>guards</th><th>C</th>"
            "<th>where</th></tr>" + "".join(rows) + "</table>"
        )
        return f"<div>{head}{table}</div>"

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


@overload
def compile(  # type: ignore[overload-overlap]  # a Module is callable: the first one wins
    model: Module,
    *,
    backend: str = "c",
    dynamic_batch: bool = False,
    options: Mapping[str, Any] | None = None,
    fallback: str = "error",
) -> CompiledModule: ...


@overload
def compile(
    model: Callable[..., Any],
    *,
    backend: str = "c",
    dynamic_batch: bool = False,
    options: Mapping[str, Any] | None = None,
    fallback: str = "error",
) -> CompiledStep: ...


def compile(
    model: Any,
    *,
    backend: str = "c",
    dynamic_batch: bool = False,
    options: Mapping[str, Any] | None = None,
    fallback: str = "error",
) -> CompiledModule | CompiledStep:
    """Compile `model` lazily: each new input signature is traced, optimized and built at its
    first call; calls that need gradients also build the backward (see the module doc).
    A plain function instead of a model is a training step (forward, loss.backward(),
    optimizer.step()), compiled into one program by lucid.runtime.step.

    A model lucid cannot trace (`.item()` in forward, a branch on a tensor's value, an op
    with no IR form) raises a TraceError listing each problem with its source line; with
    `fallback="eager"` such signatures run eagerly instead, after one FallbackWarning."""
    from lucid.nn import Module

    options_ = CompileOptions.from_dict(options).with_fallback(fallback)
    if not isinstance(model, Module) and callable(model) and not isinstance(model, type):
        from lucid.runtime.step import CompiledStep

        if dynamic_batch:
            raise ValueError(
                "lucid.compile: a training step is compiled per static input shape; "
                "dynamic_batch=True is for models"
            )
        return CompiledStep(model, backend, options_)
    if not isinstance(model, Module):
        raise TypeError(
            "lucid.compile: expected a lucid.nn.Module or a training-step function, got "
            f"{type(model).__name__}"
        )
    return CompiledModule(model, backend, dynamic_batch, options_)
