"""`lucid.compile(step)`: a whole training step (forward, loss, backward, update) as one program.

```python
def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss

step_c = lucid.compile(step)
loss = step_c(x, y)    # parameters, buffers and optimizer state updated in place
```

The first call of each input signature traces `step` (lucid/ir/trace_step.py), builds the step
graph (lucid/ir/step.py: forward, `autodiff.grad` of the loss, SGD/Adam/AdamW updates), runs the
usual pass pipeline and builds it with the backend. Every call then passes the inputs, fresh
Dropout seeds and the run-time hyperparameters (each group's `lr`, Adam's bias corrections),
and writes back, in place, the new parameters (bumping their `_version`), the buffers forward
wrote (BatchNorm's running statistics) and the optimizer state (SGD's momentum buffer, created
at the first step as eager does; Adam's moments and step count), so `opt.state_dict()` and
eager steps after compiled ones go on exactly as after eager steps.

Guards (checked every call; a change recompiles with a RecompileWarning naming it): the input
dtypes and shapes; each model's train/eval modes and structure; each stepped optimizer's
hyperparameters other than lr (momentum, betas, ...), its parameters, which of them require
grad, and whether SGD momentum buffers exist yet. A scheduler changing lr recompiles nothing.

Differences from eager, by design: gradients are never stored, so after a compiled step the
`.grad` of every parameter an optimizer stepped is None (eager leaves the last gradients there
unless zero_grad() runs after step()); reading `.grad` inside the step is a TraceError. A step
whose optimizer is not zeroed before backward() runs only while those gradients are None
(eager would add the old ones in).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid._logging import log as _log
from lucid.errors import FallbackWarning, LucidError, RecompileWarning, TraceError
from lucid.ir.step import ParamUpdate, StepGraph, build_step
from lucid.ir.trace_step import StepTrace, trace_step
from lucid.nn.module import STRUCTURE_VERSION
from lucid.runtime import threads as _threads
from lucid.runtime._entry import call_arrays, new_seed, optimize, wrap
from lucid.runtime._faststep import MISS, first_buffer, make_step_fast
from lucid.runtime._freevals import FreeValues, forwards
from lucid.runtime.backends import BackendOptions, Executable, get_backend
from lucid.runtime.options import CompileOptions
from lucid.tensor import Tensor

if TYPE_CHECKING:
    from lucid.runtime.profile import Counters, Profile


def _inputs_key(arrays: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
    return tuple((a.dtype, a.shape) for a in arrays)


def _snapshot(trace: StepTrace) -> dict[str, Any]:
    """What the trace assumed about the models and optimizers, by name (the guards)."""
    seen: dict[str, Any] = {}
    for k, m in enumerate(trace.modules):
        name = f"{type(m).__name__} (model {k})"
        seen[f"the train/eval modes of {name}"] = tuple(x.training for x in m.modules())
    for s in trace.steps:
        opt = s.optimizer
        name = type(opt).__name__
        seen[f"the parameters of {name}"] = tuple(map(id, opt.params))
        seen[f"which parameters of {name} require grad"] = tuple(
            p.requires_grad for p in opt.params
        )
        for g, group in enumerate(opt.param_groups):
            for h, value in group.items():
                if h not in ("params", "lr"):
                    seen[f"{name}.param_groups[{g}][{h!r}]"] = value
        velocity = getattr(opt, "_velocity", None)
        if velocity is not None:  # see first_buffer
            seen[f"which momentum buffers of {name} exist"] = tuple(
                v is not None or first_buffer(opt.group(i)) for i, v in enumerate(velocity)
            )
    return seen


_FIRST_STEP = "which momentum buffers"


def _guard_values(modules: list[Any], steps: tuple[Any, ...]) -> tuple[Any, ...]:
    """What `_snapshot` names, as one cheap tuple (compared at every call; `_snapshot` only
    says what changed). `modules` is every module of the traced models, flattened."""
    values: list[Any] = [tuple([m.training for m in modules])]
    for s in steps:
        opt = s.optimizer
        values.append(tuple(map(id, opt.params)))
        values.append(tuple([p.requires_grad for p in opt.params]))
        for group in opt.param_groups:
            values.append(tuple([v for h, v in group.items() if h not in ("params", "lr")]))
        velocity = getattr(opt, "_velocity", None)
        if velocity is not None:
            values.append(
                tuple([v is not None or first_buffer(opt.group(i)) for i, v in enumerate(velocity)])
            )
    return tuple(values)


def _change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The first guard that differs, in words."""
    for name in new:
        if old.get(name) != new[name]:
            if name.startswith(("the parameters of", "which")):
                return f"{name} changed"
            return f"{name} changed {old.get(name)!r} -> {new[name]!r}"
    return "a new trace"


@dataclass
class _Slot:
    """Where one update's parameter and state live: the optimizer, its index there."""

    update: ParamUpdate
    tensor: Tensor
    optimizer: Any
    index: int


class StepEntry:
    """One compiled step: the trace it came from, its graph and executable, and the guards.

    Invariants: `executable` runs `step.graph`; `slots[k]` is where `step`'s update k belongs;
    `scalar_sets[s]` is (optimizer, group index) of scalar set s; `guards` is `_snapshot` of
    the trace's models and optimizers at trace time, which every call compares.
    """

    def __init__(
        self,
        trace: StepTrace,
        step: StepGraph,
        stages: dict[str, Any],
        executable: Executable,
        slots: list[_Slot],
        scalar_sets: list[tuple[Any, int]],
    ) -> None:
        self.trace = trace
        self.step = step
        self.stages = stages
        self.executable = executable
        self.slots = slots
        self.scalar_sets = scalar_sets
        self.guards = _snapshot(trace)
        self.modules = [m for root in trace.modules for m in root.modules()]
        self.guard_values = _guard_values(self.modules, trace.steps)
        # the C's direct entry (id()s of inputs, params, outputs; batch; threads) and the
        # static shapes of the outputs it fills
        self._call = getattr(executable, "call_objects", None)
        self._outs = tuple(
            (tuple(int(d) for d in t.shape), t.dtype.np) for t in executable.graph.output_types
        )
        # the SGD updates whose momentum buffer eager has not made yet (see state_arrays)
        self._buffered = [slot for slot in slots if slot.update.state_read == ("momentum_buffer",)]
        self.structures = [m.structure() for m in trace.modules]
        self.tensors_held = _model_tensors(trace.modules)  # the graph read these very tensors
        self.unzeroed = [s.optimizer for s in trace.steps if id(s.optimizer) not in trace.zeroed]
        self.adams = [s.optimizer for s in trace.steps if hasattr(s.optimizer, "_m")]
        # for the fast path (_faststep.py): the parameter and written-buffer arrays last
        # validated (None: not usable as they are), and the plan of the C's copies into them
        self.arrays: list[np.ndarray | None] = [None] * len(trace.tensors)
        self.buffers: list[np.ndarray | None] = [None] * len(trace.written)
        self.plan = np.zeros(1 + 3 * (len(trace.written) + len(slots)), np.int64)
        self.fast: Callable[[tuple[Any, ...]], Any] | None = None

    def scalars(self) -> tuple[np.ndarray, ...]:
        """The run-time hyperparameters of this call, in the graph's input order."""
        n_traced = len(self.trace.graph.inputs)
        out = []
        for value, (s, name) in zip(self.step.graph.inputs[n_traced:], self.step.scalars):
            opt, g = self.scalar_sets[s]
            group = opt.param_groups[g]
            lr = group["lr"]
            if name == "lr":
                x = lr
            elif name == "shrink":
                x = 1 - lr * group["weight_decay"]
            else:  # Adam's bias corrections for the step about to run
                beta = group["betas"][0 if name == "bias1" else 1]
                x = 1 - beta ** (opt.t + 1)
            out.append(np.asarray(x, value.type.dtype.np))
        return tuple(out)

    def state_arrays(self) -> tuple[np.ndarray, ...]:
        """The optimizer state the graph reads, in its param order after the traced params
        (a momentum buffer the graph reads but eager has not made yet starts at zeros)."""
        for slot in self._buffered:
            opt, i = slot.optimizer, slot.index
            if opt._velocity[i] is None:
                opt._velocity[i] = np.zeros_like(slot.tensor.data)
        return tuple(_state(self.slots[k], name) for k, name in self.step.state)

    def admits(self) -> bool:
        """Whether every guard of the trace still holds."""
        return _guard_values(self.modules, self.trace.steps) == self.guard_values

    def run(self, arrays: tuple[np.ndarray, ...]) -> Any:
        """One compiled step on the call's arrays: run, then write everything back."""
        for opt in self.unzeroed:
            held = [i for i, p in enumerate(opt.params) if p.grad is not None]
            if held:
                raise LucidError(
                    f"{type(opt).__name__}'s parameter(s) {held} hold gradients from before this "
                    "step, which eager backward() would add to; the step function does not call "
                    "zero_grad() before backward(): call it there, or zero the gradients first"
                )
        trace = self.trace
        seeds = tuple(new_seed() for _ in range(trace.n_seeds))
        params = tuple([t.data for t in trace.tensors])
        given = (*arrays, *seeds, *self.scalars(), *params, *self.state_arrays())
        call = self._call
        if call is not None and all(a.size for a in given):
            given = tuple(  # order="C": np.array alone keeps a Fortran-ordered layout
                [
                    a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C")
                    for a in given
                ]
            )
            outs = tuple([np.empty(shape, dt) for shape, dt in self._outs])
            code = call(*map(id, given), *map(id, outs), 1, _threads.num_threads)
            if code:
                raise self.executable.error(code)  # type: ignore[attr-defined]
        elif any(a.size == 0 for a in given):  # the C asks for sizes >= 1
            from lucid.ir.interpret import interpret

            outs = tuple(np.array(o) for o in interpret(self.executable.graph, *given))
        else:
            outs = self.executable.run(*given)
        n_ret, n_written = trace.n_returns, len(trace.written)
        for target, new in zip(trace.written, outs[n_ret : n_ret + n_written]):
            target.data[...] = new
        at = n_ret + n_written
        for slot, new in zip(self.slots, outs[at : at + len(self.slots)]):
            p = slot.tensor
            p.data[...] = new
            if hasattr(p, "_version"):
                p._version += 1
        for (k, name), new in zip(self.step.new_state, outs[at + len(self.slots) :]):
            _set_state(self.slots[k], name, new)
        for opt in self.adams:
            opt.t += 1
        for s in trace.steps:  # gradients are never stored (see the module docstring)
            for p in s.optimizer.params:
                p.grad = None
        if self.fast is not None:
            self.rebind()
        returned = tuple(wrap(o) for o in outs[:n_ret])
        kind = trace.out_kind
        if kind is type(None):
            return None
        if kind is None:
            return returned[0]
        return returned if kind is tuple else kind(returned)

    def rebind(self) -> None:
        """Take the current arrays of the parameters and written buffers as the fast path's
        (each that has its graph type, C-contiguous and aligned) and aim the plan of the C's
        copies (destination address, argument index, bytes) at them."""
        graph = self.executable.graph
        for j, (t, v) in enumerate(zip(self.trace.tensors, graph.params)):
            self.arrays[j] = t.data if _fits(t.data, v.type) else None
        n_ret = self.trace.n_returns
        for w, t in enumerate(self.trace.written):
            self.buffers[w] = t.data if _fits(t.data, graph.output_types[n_ret + w]) else None
        targets = [*self.buffers, *(self.arrays[s.update.param] for s in self.slots)]
        first = len(graph.inputs) + len(graph.params) + n_ret  # the call's argument index
        address = self.executable.array_data  # type: ignore[attr-defined]
        plan = self.plan
        plan[0] = len(targets)
        for k, a in enumerate(targets):
            plan[1 + 3 * k : 4 + 3 * k] = (
                (address(id(a)), first + k, a.nbytes) if a is not None else (0, 0, 0)
            )


def _model_tensors(models: tuple[Any, ...]) -> list[Tensor]:
    """Every parameter and buffer of `models`, in order. A Parameter assigned in place of
    another of the same type leaves Module.structure() as it was (a compiled module looks its
    parameters up at each call), but a step graph is bound to the tensors it traced."""
    return [t for m in models for _, t in (*m.named_parameters(), *m.named_buffers())]


def _fits(a: Any, t: Any) -> bool:
    """Whether the C can read or write `a` as an array of TensorType `t`."""
    return (
        type(a) is np.ndarray
        and a.dtype == t.dtype.np
        and a.shape == t.shape
        and a.flags.c_contiguous
        and a.flags.aligned
    )


def _state(slot: _Slot, name: str) -> np.ndarray:
    opt, i = slot.optimizer, slot.index
    if name == "momentum_buffer":
        a = opt._velocity[i]
    else:
        a = (opt._m if name == "exp_avg" else opt._v)[i]
    return np.ascontiguousarray(a)


def _set_state(slot: _Slot, name: str, new: np.ndarray) -> None:
    """Install the new optimizer state array `new` (a fresh output of this call). It takes the
    old array's place rather than being copied into it: a parameter must keep its array (a
    compiled model reads it), but only the optimizer holds its state, and a copy per step
    would cost as much memory traffic as the update itself."""
    opt, i = slot.optimizer, slot.index
    if name == "momentum_buffer":
        opt._velocity[i] = new  # at the first step too, where eager makes its copy of d
    else:
        (opt._m if name == "exp_avg" else opt._v)[i] = new


def _updates(trace: StepTrace) -> tuple[list[ParamUpdate], list[_Slot], list[tuple[Any, int]]]:
    """Which parameters each stepped optimizer updates, and how: those that require grad and
    that the loss reaches (eager steps exactly the parameters whose .grad backward set)."""
    from lucid.runtime._gradplan import dependencies

    graph = trace.graph
    only_loss = type(graph)(graph.name, graph.inputs, graph.params, graph.nodes, graph.outputs[-1:])
    reached = dependencies(only_loss, (False,) * len(graph.inputs))[0]
    index = {id(t): j for j, t in enumerate(trace.tensors)}
    updates: list[ParamUpdate] = []
    slots: list[_Slot] = []
    sets: dict[tuple[int, int], int] = {}
    for s in trace.steps:
        opt = s.optimizer
        rule = type(opt).__name__.lower()
        for i, p in enumerate(opt.params):
            j = index.get(id(p))
            if j is None or j not in reached or not p.requires_grad:
                continue
            g = opt._group_of[i]
            group = opt.param_groups[g]
            hyper: tuple[tuple[str, float | bool], ...]
            if rule == "sgd":
                hyper = (
                    ("momentum", float(group["momentum"])),
                    ("dampening", float(group["dampening"])),
                    ("weight_decay", float(group["weight_decay"])),
                    ("nesterov", bool(group["nesterov"])),
                    ("has_buffer", opt._velocity[i] is not None or first_buffer(group)),
                )
            else:
                b1, b2 = group["betas"]
                hyper = (
                    ("beta1", float(b1)),
                    ("beta2", float(b2)),
                    ("eps", float(group["eps"])),
                    ("weight_decay", float(group["weight_decay"])),
                )
            key = (id(opt), g)
            if key not in sets:
                sets[key] = len(sets)
            updates.append(ParamUpdate(j, rule, hyper, sets[key], s.loc))
            slots.append(_Slot(updates[-1], p, opt, i))
    by_set: dict[int, tuple[Any, int]] = {}
    for s in trace.steps:
        for g in range(len(s.optimizer.param_groups)):
            key = (id(s.optimizer), g)
            if key in sets:
                by_set[sets[key]] = (s.optimizer, g)
    return updates, slots, [by_set[k] for k in range(len(sets))]


class CompiledStep:
    """A training-step function compiled by `lucid.compile` (see the module docstring).

    Invariants: `_entries` maps an input signature to its entries (they differ in the guards
    of `_snapshot`); it only grows, up to `options.max_entries` builds in all.
    """

    def __init__(self, fn: Callable[..., Any], backend: str, options: CompileOptions) -> None:
        self.fn = fn
        self.backend = get_backend(backend)
        self.options = options
        self._entries: dict[tuple[Any, ...], list[StepEntry]] = {}
        self._order: list[StepEntry] = []
        self._counters: Counters | None = None  # options["profile"]: what profile() reads
        self._compiles = 0
        self._seen_version = STRUCTURE_VERSION[0]
        self._eager: set[tuple[Any, ...]] = set()  # signatures run eagerly (fallback="eager")
        self._dropped: str | None = None  # why _revalidate dropped entries, until a rebuild
        # the plain values the step and its models' forwards read from globals and closures,
        # as the entries were traced with them (None: nothing to guard)
        self._free: FreeValues | None = None
        self._fast: Callable[[tuple[Any, ...]], Any] | None = None  # see _faststep.py

    @property
    def _name(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *args: Any) -> Any:
        fast = self._fast
        if fast is not None:
            out = fast(args)
            if out is not MISS:
                return out
        arrays = call_arrays(args)
        key = _inputs_key(arrays)
        if key in self._eager:
            return self.fn(*args)
        if STRUCTURE_VERSION[0] != self._seen_version:
            self._revalidate()
        free = self._free
        if free is not None and (change := free.changed()) is not None:
            self._entries.clear()  # traced with the old value: the next call traces again
            self._order.clear()
            self._fast = None
            self._free, self._dropped = None, change
        entry = None
        reason = "a new input signature"
        for candidate in self._entries.get(key, ()):
            if candidate.admits():
                entry = candidate
                break
            reason = _change(candidate.guards, _snapshot(candidate.trace))
        if entry is None:
            if self._dropped is not None:  # entries dropped for a structure change
                reason, self._dropped = self._dropped, None
                self._recompiling(reason)
            elif self._order:
                self._recompiling(reason, warn=not reason.startswith(_FIRST_STEP))
            entry = self._compile(key, arrays, args)
            if entry is None:
                return self.fn(*args)
        self._fast = entry.fast  # the next call tries this entry's fast path first
        return entry.run(arrays)

    def _revalidate(self) -> None:
        """Some Module attribute was assigned: drop the entries of models whose structure
        changed since they were traced (the next call traces again)."""
        self._seen_version = STRUCTURE_VERSION[0]
        self._fast = None  # its entry may be dropped: the general path picks the next one
        for key, entries in list(self._entries.items()):
            kept = []
            for e in entries:
                changed = [
                    m for m, was in zip(e.trace.modules, e.structures) if m.structure() != was
                ]
                now = _model_tensors(e.trace.modules)
                if changed:
                    self._dropped = f"the structure of {type(changed[0]).__name__} changed"
                elif len(now) != len(e.tensors_held) or any(
                    a is not b for a, b in zip(now, e.tensors_held)
                ):
                    name = type(e.trace.modules[0]).__name__
                    self._dropped = f"a parameter or buffer of {name} was replaced"
                else:
                    kept.append(e)
            if len(kept) != len(entries):
                self._entries[key] = kept
                self._order = [e for e in self._order if e in kept or e not in entries]

    def _recompiling(self, reason: str, warn: bool = True) -> None:
        """Log why a call needs a new entry; warn (RecompileWarning) unless it is expected:
        SGD with dampening builds its first step apart (it has no momentum buffer yet)."""
        message = (
            f"recompiling the training step {self._name}: {reason} "
            f"(entry {self._compiles + 1} of {self.options.max_entries})"
        )
        _log.info(message)
        if warn:
            warnings.warn(message, RecompileWarning, stacklevel=4)

    def _compile(
        self, key: tuple[Any, ...], arrays: tuple[np.ndarray, ...], args: tuple[Any, ...]
    ) -> StepEntry | None:
        """Trace, build the step graph, optimize and prepare; None to run eagerly instead."""
        if self._compiles >= self.options.max_entries:
            raise LucidError(
                f"the training step {self._name} has {self.options.max_entries} compiled "
                "entries, the limit (options['max_entries']), and this call fits none of them"
            )
        try:
            trace = trace_step(self.fn, *arrays)
        except TraceError as exc:
            if self.options.fallback != "eager":
                raise
            self._eager.add(key)
            message = f"the training step {self._name} runs eagerly (fallback='eager'): {exc}"
            _log.info(message)
            warnings.warn(message, FallbackWarning, stacklevel=4)
            return None
        self._compiles += 1
        self._free = FreeValues.of([self.fn, *(f for m in trace.modules for f in forwards(m))])
        updates, slots, scalar_sets = _updates(trace)
        n_kept = trace.n_returns + len(trace.written)
        step = build_step(trace.graph, n_kept, updates)
        stages = {"traced": trace.graph, **optimize(step.graph, self.options.pipeline(), "step")}
        executable = self.backend.prepare(
            stages["optimized"],
            BackendOptions(
                isa=self.options.isa,
                build=self.options.build,
                debug_dir=self.options.debug_dir,
                autotune=self.options.autotune,
                tune_rows=next((a.shape[0] for a in arrays if a.ndim), None),
                kernel_units=self.options.build_jobs,
                profile=self.options.profile,
            ),
        )
        entry = StepEntry(trace, step, stages, executable, slots, scalar_sets)
        entry.fast = make_step_fast(entry, self)
        self._entries.setdefault(key, []).append(entry)
        self._order.append(entry)
        if self.options.profile:
            self._counting().start(executable)
        return entry

    # -- inspection ---------------------------------------------------------------------
    def entry(self) -> StepEntry:
        """The most recently compiled entry."""
        if not self._order:
            raise LucidError("nothing compiled yet: call the compiled step once first")
        return self._order[-1]

    @property
    def compiles(self) -> int:
        """How many entries were built (recompiles included)."""
        return self._compiles

    def stages(self) -> dict[str, Any]:
        """The IR of the newest entry at each stage: 'traced', 'step' (the whole-step graph),
        after each pass, 'optimized'."""
        return dict(self.entry().stages)

    def graph(self) -> Any:
        """The optimized graph of the newest entry."""
        return self.entry().executable.graph

    @property
    def c_source(self) -> str | None:
        """The generated C of the newest entry (None for the interpreter)."""
        return self.entry().executable.source

    def profile(self, reset: bool = False) -> Profile:
        """Each kernel call site's count and wall time over every call of every entry since
        it was compiled or since a `reset`, which starts counting again. Needs
        options={"profile": True}; see lucid.runtime.profile."""
        parts = [(f"entry {i}", "step", e.executable) for i, e in enumerate(self._order)]
        return self._counting().profile(parts, reset, self.options.profile)

    def _counting(self) -> Counters:
        """The kernel counters profile() reads (created at first use)."""
        if self._counters is None:
            from lucid.runtime.profile import Counters

            self._counters = Counters()
        return self._counters

    def __repr__(self) -> str:
        return (
            f"CompiledStep({self._name}, backend={self.backend.name!r}, "
            f"{len(self._order)} entr{'y' if len(self._order) == 1 else 'ies'})"
        )
