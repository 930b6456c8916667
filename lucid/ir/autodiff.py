"""Reverse-mode autodiff over the IR: a forward Graph -> (augmented forward, backward Graph).

`grad(graph, wrt_inputs=None)` returns a `GradResult`:

- `forward`: `graph` with extra outputs: the original outputs first (`num_outputs` of them),
  then the saved intermediates the backward reads, in program order. Its nodes are `graph`'s
  own (a Graph is immutable, so sharing them edits nothing).
- `backward`: an ordinary graph (it prints, parses, verifies, interprets, optimises and
  compiles like any other) with
  - runtime inputs: the saved values (`saved[i]` says where the caller finds each one), then
    one cotangent per forward output, of that output's type (hinted `d_out0`, `d_out1`, ...);
  - params: the forward params the backward reads, in forward order, with the same hints
    (`param_indices`). Params are never saved: the backward reads them live;
  - outputs: one gradient per runtime input that requires grad (`grad_inputs`, in input
    order), then one per parameter, in param order, each of its input's or param's type. A
    value that gets no gradient (unused, or cut by stop_gradient) gets zeros: a broadcast zero
    constant, so every slot is a tensor and the runtime never special-cases None.

Saved-values policy (what crosses from the forward to the backward): the rules decide what
they read, and only values some surviving backward node reads are saved.
- Rules recompute derivatives from the pre-activation (hardswish_grad(Z, g), clip_grad,
  hardsigmoid_grad), or read the output where the derivative is a function of it (relu,
  relu6, sigmoid, tanh, exp, sqrt), so one buffer per layer is saved rather than two.
- A saved forward runtime input (X for dW1) is not copied through the forward: `saved[i]` is
  `Saved("input", k)`, and the caller passes its own array again. A saved value that already
  is a forward output is not duplicated either (`Saved("output", j)` with j < num_outputs).
- Params are never saved; `constant` nodes are re-emitted in the backward, never saved.
- The backward is dead-code eliminated before it is built: work for values that need no
  gradient, and saved values no surviving node reads, are dropped.

Non-scalar forward outputs get ones-seeded cotangents from the runtime (lucid semantics); the
backward itself always takes explicit cotangents.

The VJP rule of each op sits in its OpDef (`lucid/ir/ops/`), and eager backward runs the very
same rule; lucid/ir/ops/grad.py describes the contract. Here the rule's builder records nodes:
its `xs`/`ys` are the backward-graph values standing for the node's forward inputs and results
(reading one is what saves it; unread ones are eliminated). NOT_DIFFERENTIABLE marks ops whose
results are constants for autodiff (stop_gradient, sign, comparisons). An op reached with no
rule is an AutodiffError naming the op and the user's source line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lucid.errors import AutodiffError, IRError
from lucid.ir.core import Builder, Graph, Node, Value
from lucid.ir.ops import NOT_DIFFERENTIABLE, OPS
from lucid.ir.printer import diagnose
from lucid.ir.types import Dim, DType, TensorType
from lucid.ir.verify import verify


@dataclass(frozen=True)
class Saved:
    """Where the caller finds one saved value: forward runtime input or forward output `index`."""

    source: Literal["input", "output"]
    index: int


@dataclass(frozen=True)
class GradResult:
    """An augmented forward graph and its backward graph, with the conventions that join them.

    Invariants: `forward.outputs[:num_outputs]` are the original outputs; `backward.inputs` are
    `len(saved)` saved values then `num_outputs` cotangents; `backward.params` are
    `forward.params[i] for i in param_indices`; `backward.outputs` are the gradients of
    `forward.inputs[i] for i in grad_inputs`, then of every forward param.
    """

    forward: Graph
    backward: Graph
    num_outputs: int
    saved: tuple[Saved, ...]
    param_indices: tuple[int, ...]
    grad_inputs: tuple[int, ...]

    def backward_args(
        self,
        inputs: Sequence[Any],
        params: Sequence[Any],
        forward_outputs: Sequence[Any],
        cotangents: Sequence[Any],
    ) -> list[Any]:
        """The backward's runtime inputs then params, from one forward call and its cotangents."""
        if len(cotangents) != self.num_outputs:
            raise AutodiffError(f"expected {self.num_outputs} cotangents, got {len(cotangents)}")
        saved = [
            inputs[s.index] if s.source == "input" else forward_outputs[s.index] for s in self.saved
        ]
        return [*saved, *cotangents, *(params[i] for i in self.param_indices)]


def grad(graph: Graph, *, wrt_inputs: Sequence[bool] | None = None) -> GradResult:
    """Differentiate `graph` in reverse mode (see the module docstring for the conventions)."""
    wrt = _wrt(graph, wrt_inputs)
    # A non-float param (an int64 buffer such as BatchNorm's num_batches_tracked) carries no
    # gradient: it gets zeros of its own type below, which the runtime never stores (buffers
    # do not require grad).
    requires = _requires_grad(graph, wrt)
    draft = _Draft(graph)
    cotangents = [draft.b.input(v.type, f"d_out{i}") for i, v in enumerate(graph.outputs)]
    for v, ct in zip(graph.outputs, cotangents):
        if v in requires:
            draft.accumulate(v, ct)
    for node in reversed(graph.nodes):  # nodes are topologically ordered: a reverse sweep
        gs = tuple(draft.ct.pop(r, None) for r in node.results)  # popping frees the map early
        if all(g is None for g in gs):
            continue
        draft.differentiate(node, gs, tuple(v in requires for v in node.inputs))
    targets = [v for v, w in zip(graph.inputs, wrt) if w] + list(graph.params)
    grads = []
    for v in targets:
        total = draft.ct.get(v)
        grads.append(total if total is not None else _zeros(draft.b, v.type))
    draft.b.output(*grads)
    return _finish(graph, draft, cotangents, wrt)


def autodiff(graph: Graph, *, wrt_inputs: Sequence[bool] | None = None) -> GradResult:
    """An alias of `grad`."""
    return grad(graph, wrt_inputs=wrt_inputs)


def _wrt(graph: Graph, wrt_inputs: Sequence[bool] | None) -> tuple[bool, ...]:
    """Which runtime inputs get gradients: all float inputs by default."""
    if wrt_inputs is None:
        return tuple(v.type.dtype.is_float for v in graph.inputs)
    wrt = tuple(bool(w) for w in wrt_inputs)
    if len(wrt) != len(graph.inputs):
        raise AutodiffError(
            f"wrt_inputs has {len(wrt)} entries for the {len(graph.inputs)} inputs of @{graph.name}"
        )
    for i, (v, w) in enumerate(zip(graph.inputs, wrt)):
        if w and not v.type.dtype.is_float:
            raise AutodiffError(f"input {i} ({v.hint}) is {v.type}: only floats have gradients")
    return wrt


def _requires_grad(graph: Graph, wrt: tuple[bool, ...]) -> set[Value]:
    """The values that depend differentiably on a selected input or a param (forward sweep)."""
    requires = {v for v, w in zip(graph.inputs, wrt) if w}
    requires |= {p for p in graph.params if p.type.dtype.is_float}
    for node in graph.nodes:
        opdef = OPS.get(node.op)
        if opdef is not None and opdef.vjp is NOT_DIFFERENTIABLE:
            continue
        if any(v in requires for v in node.inputs):
            requires.update(r for r in node.results if r.type.dtype.is_float)
    return requires


def _zeros(b: Builder, t: TensorType) -> Value:
    """Zeros of type `t`: a broadcast scalar, which fusion and codegen turn into a fill."""
    zero = b.constant(0, t.dtype)
    return zero if t.shape == () else b.op("broadcast", [zero], {"shape": t.shape})


class IRGrad:
    """The VJP builder of the IR reverse pass: each op a rule applies becomes a node."""

    def __init__(self, b: Builder) -> None:
        self.b = b

    @staticmethod
    def shape(v: Value) -> tuple[Dim, ...]:
        """v's shape (ints and symbols)."""
        return v.type.shape

    @staticmethod
    def dtype(v: Value) -> DType:
        """v's element type."""
        return v.type.dtype

    def const(self, value: float, like: Value) -> Value:
        """A scalar constant of like's dtype."""
        return self.b.constant(value, like.type.dtype)

    def count(self, shape: Sequence[Dim], like: Value) -> Value:
        """The number of elements of `shape` as a scalar of like's dtype: a constant when the
        shape is static, else the sum of a broadcast one (the IR has no shape-query op)."""
        if all(isinstance(d, int) for d in shape):
            return self.const(float(math.prod(shape)), like)
        one = self.b.op("broadcast", [self.const(1.0, like)], {"shape": tuple(shape)})
        return self.b.op("sum", [one], {"axes": None})

    def __getattr__(self, name: str) -> Any:
        opdef = OPS.get(name)
        if opdef is None:
            raise AttributeError(f"no op {name!r} in the table (a VJP rule asked for it)")
        b = self.b
        apply: Callable[..., Value | tuple[Value, ...]]
        if opdef.results > 1:
            apply = lambda *xs, **attrs: b.op_multi(name, xs, attrs)
        else:
            apply = lambda *xs, **attrs: b.op(name, xs, attrs)
        setattr(self, name, apply)  # later calls skip __getattr__
        return apply


class _Draft:
    """The backward graph under construction, before its inputs are ordered and DCE'd.

    `ct` maps forward values to their (summed) cotangent in the draft; `primal` maps forward
    values to the draft value standing for them (a placeholder input, a param, a constant).
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.b = Builder("backward")  # its `loc`: the forward node's, on its backward nodes
        self.grad = IRGrad(self.b)
        self.ct: dict[Value, Value] = {}
        self.primal: dict[Value, Value] = {}
        self.placeholders: dict[Value, Value] = {}  # draft input -> forward value it saves
        self.params: dict[Value, Value] = {}  # draft param -> forward param
        self.producers = graph.producers()
        self.param_set = set(graph.params)

    def accumulate(self, v: Value, ct: Value) -> None:
        """Add `ct` to `v`'s cotangent: a value used several times sums its cotangents."""
        old = self.ct.get(v)
        self.ct[v] = ct if old is None else self.b.op("add", [old, ct])

    def get_primal(self, v: Value) -> Value:
        """The draft value standing for forward value `v`; made on first use."""
        known = self.primal.get(v)
        if known is not None:
            return known
        node = self.producers.get(v)
        if v in self.param_set:
            made = self.b.param(v.type, v.hint)
            self.params[made] = v
        elif node is not None and node.op == "constant":
            made = self.b.clone(node, ())[0]  # re-emitting a literal beats saving a buffer
        else:
            made = self.b.input(v.type, v.hint)
            self.placeholders[made] = v
        self.primal[v] = made
        return made

    def differentiate(
        self, node: Node, gs: tuple[Value | None, ...], needs: tuple[bool, ...]
    ) -> None:
        """Run `node`'s VJP rule and accumulate the cotangents of the inputs that need them."""
        opdef = OPS.get(node.op)
        rule = None if opdef is None else opdef.vjp
        if rule is None or not callable(rule):
            raise AutodiffError(
                diagnose(
                    f"no VJP rule for op '{node.op}': cannot differentiate it", self.graph, node
                )
            )
        xs = tuple(self.get_primal(v) for v in node.inputs)
        ys = tuple(self.get_primal(r) for r in node.results)
        self.b.loc = node.loc
        try:
            outs = tuple(rule(self.grad, node.attrs, xs, ys, needs, *gs))
        except (IRError, AutodiffError) as e:
            raise AutodiffError(
                diagnose(f"the VJP rule of '{node.op}' failed: {e}", self.graph, node)
            ) from e
        finally:
            self.b.loc = None
        if len(outs) != len(node.inputs):
            raise AutodiffError(
                diagnose(
                    f"the VJP rule of '{node.op}' returned {len(outs)} cotangents for "
                    f"{len(node.inputs)} inputs",
                    self.graph,
                    node,
                )
            )
        for v, need, d in zip(node.inputs, needs, outs):
            if not need or d is None:
                continue
            if d.type != v.type:
                raise AutodiffError(
                    diagnose(
                        f"the VJP rule of '{node.op}' gave a cotangent of type {d.type} for an "
                        f"input of type {v.type}",
                        self.graph,
                        node,
                    )
                )
            self.accumulate(v, d)


def _bind_symbols(
    graph: Graph,
    draft: _Draft,
    kept: list[Node],
    outputs: Sequence[Value],
    cotangents: list[Value],
    live: set[Value],
) -> None:
    """Make every symbolic size of the backward graph readable from one of its inputs.

    A run binds a symbol (the batch `N`) from the shapes of the graph's inputs. When no saved
    value or cotangent carries it (`(x * 2).mean()`: the gradient is a broadcast of the scalar
    cotangent to x's shape), the forward input that has it is saved too, and marked live: the
    caller passes its own array again, so this costs no copy.
    """
    carried = {s for p in draft.placeholders if p in live for s in p.type.symbols}
    carried |= {s for v in cotangents for s in v.type.symbols}
    carried |= {s for p in draft.params if p in live for s in p.type.symbols}
    needed = {s for node in kept for r in node.results for s in r.type.symbols}
    needed |= {s for v in outputs for s in v.type.symbols}
    for symbol in sorted(needed - carried):
        source = next((v for v in graph.inputs if symbol in v.type.symbols), None)
        if source is not None:  # (a symbol no input has cannot be bound: verify reports it)
            live.add(draft.get_primal(source))


def _finish(
    graph: Graph, draft: _Draft, cotangents: list[Value], wrt: tuple[bool, ...]
) -> GradResult:
    """Order the saved inputs, drop dead draft nodes, and build both graphs."""
    rough = draft.b.build()
    live = set(rough.outputs)
    kept: list[Node] = []
    for node in reversed(rough.nodes):
        if any(r in live for r in node.results):
            kept.append(node)
            live.update(node.inputs)
    kept.reverse()

    _bind_symbols(graph, draft, kept, rough.outputs, cotangents, live)
    position = {v: i for i, v in enumerate(graph.all_values())}
    saved_draft = sorted(
        (p for p in draft.placeholders if p in live), key=lambda p: position[draft.placeholders[p]]
    )
    forward_outputs = list(graph.outputs)
    out_index: dict[Value, int] = {}
    for j, v in enumerate(forward_outputs):
        out_index.setdefault(v, j)
    input_index = {v: i for i, v in enumerate(graph.inputs)}
    saved: list[Saved] = []
    for p in saved_draft:
        v = draft.placeholders[p]
        if v in input_index:
            saved.append(Saved("input", input_index[v]))
        else:
            if v not in out_index:
                out_index[v] = len(forward_outputs)
                forward_outputs.append(v)
            saved.append(Saved("output", out_index[v]))

    param_order = {v: i for i, v in enumerate(graph.params)}
    used_params = sorted(
        (p for p in draft.params if p in live), key=lambda p: param_order[draft.params[p]]
    )
    name = "backward" if graph.name == "forward" else f"{graph.name}_backward"
    b = Builder(name)
    env: dict[Value, Value] = {}
    for p in saved_draft:
        env[p] = b.input(p.type, p.hint)
    for ct in cotangents:
        env[ct] = b.input(ct.type, ct.hint)
    for p in used_params:
        env[p] = b.param(p.type, p.hint)
    for node in kept:
        for old, new in zip(node.results, b.clone(node, [env[v] for v in node.inputs])):
            env[old] = new
    b.output(*(env[v] for v in rough.outputs))
    backward = b.build()
    forward = Graph(graph.name, graph.inputs, graph.params, graph.nodes, tuple(forward_outputs))
    verify(forward)
    verify(backward)
    return GradResult(
        forward=forward,
        backward=backward,
        num_outputs=len(graph.outputs),
        saved=tuple(saved),
        param_indices=tuple(param_order[draft.params[p]] for p in used_params),
        grad_inputs=tuple(i for i, w in enumerate(wrt) if w),
    )
