"""Pieces of `lucid.compile` shared by the forward and the grad entries: one signature's
compiled state (`Entry`), tracing with the return-kind spy, running the passes, debug dumps.

The internal API of lucid/runtime (compiled.py, _fastpath.py): not for use outside it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid._symbolic import python
from lucid.errors import InputError, LucidError
from lucid.ir.core import Graph
from lucid.ir.types import DType, bind_dim
from lucid.nn.module import Parameter, module_walk
from lucid.random import draw_seed
from lucid.runtime._gradplan import dependencies
from lucid.runtime._prepack import PackedWeights
from lucid.runtime.backends import Executable
from lucid.tensor import Tensor

if TYPE_CHECKING:
    from lucid.ir.trace import Guard
    from lucid.runtime._training import GradProgram
    from lucid.runtime.options import Signature

_BATCH = "N"


def type_of(a: np.ndarray) -> str:
    """`f64[2,3]` for an array (its numpy dtype when lucid has no name for it)."""
    try:
        name = str(DType.from_numpy(a.dtype))
    except (LucidError, KeyError, TypeError, ValueError):
        name = str(a.dtype)
    return f"{name}[{','.join(map(str, a.shape))}]"


def call_arrays(args: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The arrays a compiled call passes on: a Tensor's data, an array as it is, and a Python
    number as a 0-d array of the dtype of the first float Tensor or array among the arguments
    (float32 if none), the dtype that eager lucid's constants adopt when they meet it. A number
    is a run-time input, never a constant baked into the graph."""
    like: np.dtype[Any] | None = None
    for a in args:
        dtype = a.data.dtype if isinstance(a, Tensor) else getattr(a, "dtype", None)
        if dtype is not None and dtype.kind == "f":
            like = dtype
            break
    return tuple(
        a.data
        if isinstance(a, Tensor)
        else np.asarray(a, like or np.float32)
        if isinstance(a, (int, float)) and not isinstance(a, bool)
        else np.asarray(a)
        for a in args
    )


def new_seed() -> np.ndarray:
    """One seed input's array: a fresh i64[] draw from lucid.random (see Entry.draw_seeds)."""
    return np.array(draw_seed(), np.int64)


def wrap(a: np.ndarray) -> Tensor:
    """A Tensor around `a` without the copy Tensor() makes; it never requires grad."""
    return Tensor._make(a)


def label(role: str, i: int, hint: str | None) -> str:
    return f"{role} {i} ({hint})" if hint else f"{role} {i}"


class Entry:
    """Everything compiled for one signature.

    Invariants: `forward` runs `stages['optimized']`; `param_slots[i]` finds the live Parameter
    of graph param i; `pcache` is None or (arrays, ids) where every array was validated against
    its graph param type and is C-contiguous (so its id may go to the C). `grad` is None for a
    forward-only entry (`signature.grad is None`); otherwise `forward` runs the augmented
    forward (original outputs, then saved values) and `grad` holds the compiled backward.
    The graph's inputs are the caller's (`signature.inputs`), then `n_seeds` i64[] seeds
    (lucid/ir/trace.py): every call draws them afresh with `draw_seeds`.
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
        # the pass memo gave the optimized graph(s): stages holds only the first and the last
        # (CompiledModule._restage fills in the rest on demand)
        self.memo_hit = False
        self.forward = forward
        self.grad: GradProgram | None = None
        self.out_kind = out_kind
        self.debug_path = debug_path
        graph = forward.graph
        self.graph = graph
        self.n_seeds = len(graph.inputs) - len(signature.inputs)
        owners = dict(module_walk(module))
        self.param_slots: list[tuple[dict[str, Any], str, str]] = []
        for p in graph.params:
            hint = p.hint or ""
            owner_path, _, leaf = hint.rpartition(".")
            owner = owners.get(owner_path)
            if owner is None:
                raise LucidError(f"compiled graph param {hint!r} is not a parameter of the model")
            # a Parameter, or a buffer (a plain Tensor attribute, Module.named_buffers)
            slots = owner._parameters if leaf in owner._parameters else vars(owner)
            if not isinstance(slots.get(leaf), Tensor):
                raise LucidError(f"compiled graph param {hint!r} is not a parameter of the model")
            self.param_slots.append((slots, leaf, hint))
        self.pcache: tuple[tuple[np.ndarray, ...], tuple[int, ...]] | None = None
        # buffers forward writes (BatchNorm's running statistics in training): the graph's
        # last outputs, written back into them after every call (set by the compiler)
        self.state_slots: tuple[tuple[dict[str, Any], str, str], ...] = ()
        self.fast: Any = None
        # the Python decisions the trace took on the batch size: this entry serves only the
        # calls for which each comes out the same (set by the compiler after tracing)
        self.guards: tuple[Guard, ...] = ()
        # a forward-only entry keeps its GEMM weights packed between calls (grad entries run
        # after every optimizer step, so they pack in the call, on all threads)
        self.packed: PackedWeights | None = None
        if signature.grad is None and getattr(forward, "pack_slots", None):
            self.packed = PackedWeights(forward)
        # the outputs that reach a parameter differentiably: in an eval-mode call with grad
        # enabled they require grad, as in eager (see CompiledModule._differentiable_later)
        self.late: tuple[int, ...] = ()
        trained = {
            j
            for j, (slots, leaf, _) in enumerate(self.param_slots)
            if leaf in slots and isinstance(slots[leaf], Parameter)
        }
        if signature.grad is None and graph.params:
            deps = dependencies(graph, (False,) * len(graph.inputs))
            self.late = tuple(k for k, d in enumerate(deps) if d & trained)

    def set_state(self, module: Any, names: list[str]) -> None:
        """Bind the buffer paths the trace wrote (lucid.ir.trace: the last outputs) to the
        module's buffers."""
        owners = dict(module_walk(module))
        slots = []
        for hint in names:
            owner_path, _, leaf = hint.rpartition(".")
            owner = owners.get(owner_path)
            if owner is None or type(vars(owner).get(leaf)) is not Tensor:
                raise LucidError(f"compiled graph writes {hint!r}, which is not a model buffer")
            slots.append((vars(owner), leaf, hint))
        self.state_slots = tuple(slots)

    @property
    def n_user(self) -> int:
        """The number of forward's own outputs (before the written buffers)."""
        # a grad entry's forward also returns the saved values, after the original outputs
        outputs = len(self.graph.outputs) if self.grad is None else self.grad.plan.num_outputs
        return outputs - len(self.state_slots)

    def write_back(self, outs: tuple[np.ndarray, ...]) -> None:
        """Copy the new buffer values (the outputs after forward's own) into the buffers, in
        place, as eager's `write_buffer` does."""
        first = self.n_user
        for k, (slots, leaf, hint) in enumerate(self.state_slots):
            target = slots.get(leaf)
            new = outs[first + k]
            if type(target) is not Tensor or target.data.shape != new.shape:
                raise LucidError(f"cannot write back buffer {hint!r}: the model changed it")
            target.data[...] = new

    def admits(self, batch: int) -> bool:
        """Whether every guard of this entry holds for a call of this batch size."""
        return all(g.holds({_BATCH: batch}) for g in self.guards)

    def guard_source(self) -> str | None:
        """The guards as one Python condition on `n` (the batch) for the fast path; None if
        there are none. Only numbers and operators: see lucid._symbolic.python."""
        if not self.guards:
            return None
        names = {_BATCH: "n"}
        return " and ".join(f"({python(g.test, names)} is {bool(g.outcome)})" for g in self.guards)

    @property
    def backward(self) -> Executable | None:
        """The compiled backward graph (None for a forward-only entry)."""
        return self.grad.executable if self.grad is not None else None

    def param_objects(self) -> tuple[Any, ...]:
        """The live Parameter object of each graph param (the tape parents of a grad call)."""
        return tuple(slots[leaf] for slots, leaf, _ in self.param_slots)

    def draw_seeds(self) -> tuple[np.ndarray, ...]:
        """A fresh seed from lucid.random for each seed input, in the order eager draws them
        (one per training-mode Dropout call), so seeding lucid.random gives eager's masks."""
        return tuple([new_seed() for _ in range(self.n_seeds)])

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
                    f"{label('param', i, hint)}: expected {want}, but the model "
                    f"no longer has an array there (got {type(p).__name__})"
                )
            if a.dtype != want.dtype.np or a.shape != want.shape:
                raise InputError(
                    f"{label('param', i, hint)}: expected {want}, got {type_of(a)}; the "
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
                    f"{label('input', i, value.hint)}: expected {want}, got {type_of(a)}"
                )
            for dim, n in zip(want.shape, a.shape):
                if isinstance(dim, int) and dim != n:
                    raise InputError(
                        f"{label('input', i, value.hint)}: expected {want}, got {type_of(a)}"
                    )
                why = None if isinstance(dim, int) else bind_dim(dim, n, bound)
                if why is not None:
                    raise InputError(
                        f"{label('input', i, value.hint)}: expected {want}, got {type_of(a)}: {why}"
                    )
        return bound.get(_BATCH, 1)

    def run(self, arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """The checked slow path: validate everything, then run the executable."""
        batch = self.check_inputs(arrays)
        arrays = tuple(
            # a copy (np.array, not ascontiguousarray, which keeps a misaligned C-order array)
            a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C")
            for a in arrays
        )
        params = self.params()
        if batch == 0 or any(a.size == 0 for a in arrays):
            from lucid.ir.interpret import interpret  # the C asks for batch >= 1

            outs = tuple(np.array(o) for o in interpret(self.graph, *arrays, *params))
        elif self.packed is not None:
            table = self.packed.refresh(self.param_objects(), params)
            outs = self.forward.run(*arrays, *params, packed=table)  # type: ignore[call-arg]
        else:
            outs = self.forward.run(*arrays, *params)
        if self.state_slots:
            self.write_back(outs)
        return outs


class _ReturnSpy:
    """Stands in for the model while it is traced, to see whether forward returned a tuple or
    list (the graph only has a list of outputs). Subclassed per model class so that trace
    errors name the model's own class. `__wrapped__` is the model: the tracer reads it to
    know which forward runs (`lucid.ir.trace.empty_batch_suffices`)."""

    def __init__(self, module: Any) -> None:
        self._module = module
        self.__wrapped__ = module
        self.kind: type | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def __call__(self, *args: Any) -> Any:
        out = self._module(*args)
        self.kind = type(out) if isinstance(out, (tuple, list)) else None
        return out


_SPIES: dict[str, type[_ReturnSpy]] = {}


def spy(module: Any) -> _ReturnSpy:
    name = type(module).__name__
    cls = _SPIES.setdefault(name, type(name, (_ReturnSpy,), {}))
    return cls(module)


def optimize(graph: Graph, names: list[str], first: str = "traced") -> dict[str, Graph]:
    """`first` (the graph given), the graph after each pass (one verified PassManager per pass,
    so each stage is kept), and 'optimized'."""
    stages = {first: graph}
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


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "graph"


def dump(directory: Path, signature: Signature, stages: dict[str, Graph]) -> None:
    """Write the signature and the IR after each stage, numbered in order."""
    from lucid.ir.printer import format as format_graph

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "signature.txt").write_text(str(signature) + "\n", encoding="utf-8")
    for i, (name, graph) in enumerate(stages.items()):
        path = directory / f"{i:02d}-{slug(name)}.lir"
        path.write_text(format_graph(graph, locs=True) + "\n", encoding="utf-8")
