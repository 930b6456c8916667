"""Training through `lucid.compile`: a compiled backward graph hooked into the eager tape.

A compiled call that needs gradients runs the augmented forward (`lucid.ir.autodiff.grad`:
the original outputs, then the saved values) and returns ordinary Tensors whose tape entry
runs the compiled backward graph, so `loss.backward()` works whether the loss is computed by
the model itself or eagerly on its outputs, and gradients accumulate exactly as for eager ops
(None -> a new array, else grad + g, keep_grad on outputs, frozen params skipped).

Sources are the inputs that require grad, then every parameter of the graph. A forward sweep
over the traced graph (`_gradplan.dependencies`) finds which sources each output depends on
differentiably, so that, as in eager, a parameter an output does not reach gets no gradient
(`.grad` stays None rather than zeros: optimizers skip None, but momentum and weight decay
would move a parameter whose grad is zeros), and an output reaching no source needs no grad.

How the outputs join the tape:
- One output: its `_parents` are the inputs requiring grad that it reaches; its `_backward`
  runs the backward graph once on the output's cotangent, accumulates into the `.grad` of the
  parameters it reaches (leaves, always: the tape's rule is applied there directly, without
  the tape's copy-on-first-store, since these gradients are fresh arrays; it saves a copy
  and a tape step per parameter, which is most of a small model's backward), and returns
  the input parents' gradients to the tape, which carries them on (inputs may be non-leaves).
- Several outputs: the backward graph takes all cotangents at once and must run once, so the
  outputs share one hidden join Tensor (shape (), the only parent of each output that reaches
  a source) that holds the input parents and the `_backward` above. Each output's `_backward`
  wraps its cotangent in a `_Cotangents` value with one slot per output; the tape sums the
  values reaching the join (slot-wise) and, because it visits nodes in reverse topological
  order, calls the join's `_backward` once, after every output's cotangent has arrived. Slots
  no cotangent reached are zeros, and sources that no arrived output reaches get nothing.
  Nothing is stashed between tape steps, so an aborted backward leaves no state behind.

Saved values are the forward's extra outputs and, for `Saved("input", k)`, the caller's own
input arrays (not copies: eager's closures keep references to input arrays too, so an input
mutated in place before backward is seen the same way). Parameters are read by the backward
from the arrays the forward read: optimizers update them in place, so, as in eager, a step
between forward and backward is seen and nothing is recompiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np

from lucid.ir.core import Graph
from lucid.runtime import _fastgrad
from lucid.runtime import threads as _threads
from lucid.runtime._gradplan import GradJoin, out_shape, plan_backward
from lucid.runtime.backends import Executable
from lucid.tensor import Tensor

Array = np.ndarray


class _Cotangents:
    """Cotangents of the outputs of one compiled call on their way to its join node.

    Invariants: `shape == ()` (the join Tensor's shape, which the tape checks);
    `parts[k]` is the summed cotangent of output k, or None if none arrived yet.
    """

    __slots__ = ("parts",)
    shape: tuple[int, ...] = ()

    def __init__(self, parts: tuple[Array | None, ...]) -> None:
        self.parts = parts

    def __add__(self, other: _Cotangents) -> _Cotangents:
        return _Cotangents(
            tuple(
                b if a is None else a if b is None else a + b
                for a, b in zip(self.parts, other.parts)
            )
        )


def _slot(k: int, n: int, g: Array) -> tuple[_Cotangents]:
    """Output k's `_backward` in a multi-output call: its cotangent, in slot k."""
    return (_Cotangents(tuple(g if i == k else None for i in range(n))),)


def _behaved(*groups: tuple[Array, ...]) -> bool:
    """Whether every array can go to the C as it is (C-contiguous, aligned)."""
    return all(a.flags.c_contiguous and a.flags.aligned for arrays in groups for a in arrays)


def _plain(data: Array) -> Tensor:
    """A Tensor off the tape around `data` (an output that reaches no source)."""
    return Tensor._make(data)


def _tensor(data: Array, parents: tuple[Tensor, ...], backward: Any) -> Tensor:
    """A non-leaf Tensor on the tape, built without Tensor()'s copy."""
    return Tensor._make(data, True, parents, backward)


class GradProgram:
    """The backward half of a compiled grad entry, and the glue to the tape.

    Invariants: `executable` runs `stages['optimized']`; `plan` says which arrays it takes
    and where its gradients go (see `_gradplan.BackwardPlan`). `_fast_one` is the generated
    backward of a single-output call (None: `_backward_one` serves), `attach_behaved` what the
    forward fast path calls with arrays it handed to its own C call.
    """

    def __init__(
        self,
        join: GradJoin,
        stages: dict[str, Graph],
        executable: Executable,
        forward_params: Sequence[str | None],
        out_kind: type | None,
        wrt: Sequence[bool],
    ) -> None:
        self.stages = stages
        self.wrt = tuple(wrt)  # the traced graph's inputs that get gradients (for _restage)
        self.executable = executable
        self.graph = executable.graph
        self.plan = plan = plan_backward(join, executable, forward_params, out_kind)
        # The lean C call of `run` (a per-step cost at small sizes): the object-address entry.
        self._call = getattr(executable, "call_objects", None)
        self._fast_one = _fastgrad.make_backward_one(plan, executable, self._backward_one)
        fast_attach = _fastgrad.make_attach_one(plan, self._fast_one, self.graph.name)
        self.attach_behaved = fast_attach or partial(self.attach, behaved=True)

    def attach(
        self,
        args: Sequence[Any],
        xs: Sequence[Array],
        params: Sequence[Tensor],
        ys: Sequence[Array],
        behaved: bool = False,
    ) -> Any:
        """The call's result: Tensors for the first `num_outputs` of `ys`, hooked into the tape.

        `args` are the call's arguments (a Tensor at each index of `grad_inputs`), `xs` their
        arrays as passed to the forward, `params` the Parameter objects of the forward graph's
        params, `ys` every output of the augmented forward. `behaved` says every array of `xs`
        and of the params is C-contiguous and aligned (the forward fast path checked them).
        """
        plan = self.plan
        n = plan.num_outputs
        saved = tuple([xs[i] if from_input else ys[i] for from_input, i in plan.saved_at])
        arrays = tuple([params[i].data for i in plan.bw_params])
        inputs = tuple([args[i] for i in plan.input_args])
        if n == 1:
            if not plan.hooked:
                out = _plain(ys[0])
            else:
                back = self._fast_one
                if back is None or not (behaved or _behaved(saved, arrays)):
                    back = self._backward_one  # contiguity cannot change before the backward
                out = _tensor(ys[0], inputs, partial(back, saved, arrays, params))
            outs = [out]
        else:
            outs = [_plain(y) for y in ys[:n]]
            if plan.hooked:
                shapes = tuple(y.shape for y in ys[:n])
                back = partial(self._backward_all, saved, arrays, params, shapes)
                join = _tensor(np.empty(()), inputs, back)
                for k in plan.hooked:
                    outs[k] = _tensor(ys[k], (join,), partial(_slot, k, n))
        if plan.out_kind is None:
            return outs[0]
        return tuple(outs) if plan.out_kind is tuple else plan.out_kind(outs)

    def _backward_one(
        self, saved: tuple[Array, ...], arrays: tuple[Array, ...], params: Any, g: Array
    ) -> tuple[Array, ...]:
        """The single output's `_backward`: its cotangent in; the params' grads accumulated,
        one gradient per input parent returned."""
        plan = self.plan
        dt = plan.out_dtypes[0]
        grads = self.run(saved, (g if g.dtype == dt else g.astype(dt),), arrays)
        self._accumulate(grads, params, plan.param_grads)
        return tuple([grads[i] for i in plan.input_grads])

    def _backward_all(
        self,
        saved: tuple[Array, ...],
        arrays: tuple[Array, ...],
        params: Any,
        shapes: tuple[tuple[int, ...], ...],
        token: _Cotangents,
    ) -> tuple[Array | None, ...]:
        """The join node's `_backward`: every output's cotangent (zeros where none came) in;
        sources no arrived cotangent reaches get nothing (None), as in eager."""
        plan = self.plan
        cts = tuple(
            np.zeros(shape, dt) if g is None else g if g.dtype == dt else g.astype(dt)
            for g, shape, dt in zip(token.parts, shapes, plan.out_dtypes)
        )
        grads = self.run(saved, cts, arrays)
        live = frozenset().union(*(d for d, g in zip(plan.deps, token.parts) if g is not None))
        self._accumulate(grads, params, tuple(i for i in plan.param_grads if i in live))
        return tuple(grads[i] if i in live else None for i in plan.input_grads)

    def _accumulate(self, grads: Sequence[Array], params: Any, which: Sequence[int]) -> None:
        """`.grad` of each param at backward-output index in `which`, by the tape's own rule
        (None -> the gradient, else grad + gradient; skipped when it does not require grad).
        The tape copies on first store because an eager cotangent may alias other arrays;
        these gradients are fresh arrays of this call, so they are stored as they are."""
        first = self.plan.first_param
        for i in which:
            p = params[i - first]
            if p.requires_grad:
                p.grad = grads[i] if p.grad is None else p.grad + grads[i]

    def run(
        self, saved: Sequence[Array], cotangents: Sequence[Array], params: Sequence[Array]
    ) -> tuple[Array, ...]:
        """Run the backward graph: the grads of the selected inputs, then of every param."""
        # A cotangent may be a NumPy scalar (0-d arithmetic returns one) or a broadcast view:
        # only C-contiguous aligned ndarrays may go to the C by address.
        arrays = tuple(
            a
            if type(a) is np.ndarray and a.flags.c_contiguous and a.flags.aligned
            else np.array(a, order="C")
            for a in (*saved, *cotangents, *params)
        )
        call = self._call
        if call is not None:
            plan = self.plan
            where = plan.batch_from
            batch = arrays[where[0]].shape[where[1]] // where[2] if where is not None else 1
            if batch > 0:
                outs = tuple(np.empty(out_shape(shape, batch), dt) for dt, shape in plan.outs)
                code = call(*map(id, arrays), *map(id, outs), batch, _threads.num_threads)
                if code:
                    raise self.executable.error(code)  # type: ignore[attr-defined]
                return outs
        if any(a.size == 0 for a in arrays):  # the C asks for batch >= 1
            from lucid.ir.interpret import interpret

            outs = tuple(np.array(o) for o in interpret(self.graph, *arrays))
        else:
            outs = self.executable.run(*arrays)
        # Gradients are stored without a copy (`_accumulate`): no two may share a buffer (an
        # interpreter may return one array for two outputs that CSE made one value).
        seen: set[int] = set()
        fresh = []
        for o in outs:
            fresh.append(o.copy() if id(o) in seen else o)
            seen.add(id(o))
        return tuple(fresh)

    @property
    def source(self) -> str | None:
        """The generated C of the backward graph (None for the interpreter)."""
        return self.executable.source
