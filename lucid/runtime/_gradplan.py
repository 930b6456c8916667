"""The plan of a compiled grad call's backward: which arrays go in, where the gradients go.

Computed once per grad entry from its GradJoin and the backward's executable, and read
by the generic glue to the tape (`_training.GradProgram`) and by the generated single-output
functions (`_fastgrad`), which fix its indices in their text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from lucid.ir.autodiff import GradResult, Saved
from lucid.ir.core import Graph, Value
from lucid.ir.ops import NOT_DIFFERENTIABLE, OPS
from lucid.ir.types import Dim, dim_parts
from lucid.runtime.backends import Executable

__all__ = ["BackwardPlan", "GradJoin", "dependencies", "plan_backward"]


def dependencies(graph: Graph, wrt: Sequence[bool]) -> tuple[frozenset[int], ...]:
    """Per output, the sources it depends on differentiably: index i < sum(wrt) is the i-th
    input requiring grad, then one index per param (the rule of lucid.ir.autodiff)."""
    empty: frozenset[int] = frozenset()
    deps: dict[Value, frozenset[int]] = {}
    selected = [v for v, w in zip(graph.inputs, wrt) if w]
    for i, v in enumerate([*selected, *graph.params]):
        deps[v] = frozenset((i,))
    for node in graph.nodes:
        opdef = OPS.get(node.op)
        if opdef is not None and opdef.vjp is NOT_DIFFERENTIABLE:
            continue
        reached = empty.union(*(deps.get(v, empty) for v in node.inputs))
        if reached:
            deps.update((r, reached) for r in node.results if r.type.dtype.is_float)
    return tuple(deps.get(v, empty) for v in graph.outputs)


class GradJoin(NamedTuple):
    """What a compiled grad entry needs of its autodiff result once both graphs are optimized:
    the conventions that join them (lucid.ir.autodiff.GradResult's, without its two graphs)
    and `deps`, the sources each original output reaches in the *unoptimized* augmented
    forward (eager marks an output as requiring grad by the ops it went through, and a pass
    may fold a dependence away). The pass memo keeps this instead of the two autodiff graphs,
    which were 62% of MobileNetV3-Small's training memo (2836 of its 4553 nodes)."""

    num_outputs: int
    saved: tuple[Saved, ...]
    grad_inputs: tuple[int, ...]
    deps: tuple[frozenset[int], ...]

    @classmethod
    def of(cls, result: GradResult, wrt: Sequence[bool]) -> GradJoin:
        """The join of `result`, whose forward's inputs `wrt` get gradients."""
        deps = dependencies(result.forward, wrt)[: result.num_outputs]
        return cls(result.num_outputs, tuple(result.saved), tuple(result.grad_inputs), deps)


class BackwardPlan(NamedTuple):
    """Where the arrays of one backward call come from and where its results go.

    Invariants: the backward graph's runtime inputs are `len(saved_at)` saved values (each
    from the call's inputs or the augmented forward's outputs, `saved_at`) then `num_outputs`
    cotangents (`out_dtypes`), and its params are the forward params `bw_params`; its outputs
    are the grads of the sources (forward inputs `grad_inputs`, then every forward param, in
    forward order). `deps[k]` are the sources output k reaches (indices of backward outputs);
    `input_grads` and `param_grads` split their union at `first_param`; `input_args` are the
    call arguments whose grads `input_grads` are. `outs` is each backward output's (dtype,
    shape with None for the batch; `out_shape` makes it concrete), `batch_from` the (input,
    axis, factor) whose size is factor times the batch.
    """

    num_outputs: int
    grad_inputs: tuple[int, ...]
    saved_at: tuple[tuple[bool, int], ...]
    bw_params: tuple[int, ...]
    out_dtypes: tuple[Any, ...]
    deps: tuple[frozenset[int], ...]
    hooked: tuple[int, ...]  # outputs on the tape (reaching a source)
    first_param: int
    input_grads: tuple[int, ...]
    input_args: tuple[int, ...]
    param_grads: tuple[int, ...]
    # (dtype, shape) of each backward output: None for the batch itself, else an IR dim (an
    # int, or a dim of the batch symbol such as N*8: see out_shape)
    outs: tuple[tuple[Any, tuple[Dim | None, ...]], ...]
    static: bool  # no backward output has the batch
    batch_from: tuple[int, int, int] | None  # None also when the executable has no object-address C
    out_kind: type | None


def plan_backward(
    join: GradJoin,
    executable: Executable,
    forward_params: Sequence[str | None],
    out_kind: type | None,
) -> BackwardPlan:
    """The plan of the backward `executable` of `join` (`forward_params`: the hints of the
    forward graph's params)."""
    graph = executable.graph
    # Map by hint: a pass may drop a param the optimised backward no longer reads.
    where = {hint: i for i, hint in enumerate(forward_params)}
    n_saved = len(join.saved)
    n_in = n_saved + join.num_outputs
    if len(graph.inputs) != n_in:
        raise AssertionError(f"backward has {len(graph.inputs)} inputs, want {n_in}")
    deps = join.deps
    reached = sorted(frozenset().union(*deps))  # sources any output reaches
    first = len(join.grad_inputs)  # backward output of param 0
    input_grads = tuple(i for i in reached if i < first)
    symbol = getattr(executable, "batch_symbol", None)
    has_call = getattr(executable, "call_objects", None) is not None
    return BackwardPlan(
        num_outputs=join.num_outputs,
        grad_inputs=join.grad_inputs,
        saved_at=tuple((s.source == "input", s.index) for s in join.saved),
        bw_params=tuple(where[p.hint] for p in graph.params),
        out_dtypes=tuple(t.dtype.np for t in graph.input_types[n_saved:]),
        deps=deps,
        hooked=tuple(k for k, d in enumerate(deps) if d),
        first_param=first,
        input_grads=input_grads,
        input_args=tuple(join.grad_inputs[i] for i in input_grads),
        param_grads=tuple(i for i in reached if i >= first),
        outs=tuple(
            (t.dtype.np, tuple(None if d == symbol else d for d in t.shape))
            for t in graph.output_types
        ),
        static=all(t.is_static for t in graph.output_types),
        batch_from=getattr(executable, "batch_from", None) if has_call else None,
        out_kind=out_kind,
    )


def out_shape(shape: tuple[Any, ...], batch: int) -> tuple[int, ...]:
    """An output shape of a plan (None for the batch, else an IR dim of the one symbol, such
    as 5 or N*8) at `batch`."""
    out = []
    for d in shape:
        symbol, factor = (None, batch) if d is None else dim_parts(d)
        out.append(factor if symbol is None else factor * batch)
    return tuple(out)
