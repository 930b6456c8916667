"""A traced training step -> one Graph: forward and loss, their gradients, the optimizer updates.

`build_step(traced, n_kept, updates)` takes the graph of `lucid.ir.trace_step` (its last output
is the loss) and returns a `StepGraph` whose graph computes, in one program:

- the forward and the loss (the traced nodes, copied);
- the parameters' gradients: `lucid.ir.autodiff.grad` of the loss, its backward spliced in with
  the saved values read straight from the forward and the loss's cotangent the constant 1;
- each parameter's optimizer update (`ParamUpdate`), written in table ops (mul, add, sub, div,
  sqrt) in exactly the order and association of lucid/optim's NumPy arithmetic, so float64 is
  eager's to the rounding of the GEMMs' sums; the fusion passes fold each update into one loop.

Hyperparameters that change between steps are run-time inputs, never constants: `lr` of every
group, Adam's bias corrections `1 - beta**t` (t counts steps) and AdamW's `1 - lr * weight_decay`,
each a 0-d input in the parameter's dtype (NumPy rounds a Python float to the array's dtype
the same way). The others (momentum, dampening, betas, eps, weight_decay, nesterov) are
constants: whoever runs the graph must guard them (lucid/runtime/step.py recompiles when one
changes).

Graph layout: inputs are the traced inputs, then the run-time scalars (`scalars`, in order);
params are the traced params, then the optimizer state the updates read (`state`, in order);
outputs are the traced outputs but the loss (`n_kept` of them), then each updated parameter's
new value (in `updates` order), then each update's new state (in `new_state` order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lucid.errors import IRError, SourceLoc
from lucid.ir.autodiff import grad
from lucid.ir.core import Builder, Graph, Value
from lucid.ir.types import DType, TensorType

# each rule's baked hyperparameters, its run-time scalars, and its state tensors
RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # SGD: momentum_buffer is read when it exists already (`has_buffer`), always written with
    # momentum (the first step creates it as a copy of d, as PyTorch's does)
    "sgd": (("momentum", "dampening", "weight_decay", "nesterov", "has_buffer"), ("lr",)),
    "adam": (("beta1", "beta2", "eps", "weight_decay"), ("lr", "bias1", "bias2")),
    "adamw": (("beta1", "beta2", "eps", "weight_decay"), ("lr", "bias1", "bias2", "shrink")),
}


@dataclass(frozen=True)
class ParamUpdate:
    """One parameter's optimizer update, as plain data.

    `param` is the index of the parameter in the traced graph's params; `rule` a key of RULES;
    `hyper` the rule's baked hyperparameters by name; `scalars` names the set of run-time
    scalars it reads (one set per optimizer parameter group: `lr` and its companions).
    """

    param: int
    rule: str
    hyper: tuple[tuple[str, float | bool], ...]
    scalars: int
    loc: SourceLoc | None = None

    def get(self, name: str) -> float:
        """The baked hyperparameter `name` as a float (a bool as 0.0 or 1.0)."""
        return float(dict(self.hyper)[name])

    @property
    def state_read(self) -> tuple[str, ...]:
        """The state tensors this update reads (params of the step graph)."""
        if self.rule == "sgd":
            return ("momentum_buffer",) if self.get("momentum") and self.get("has_buffer") else ()
        return ("exp_avg", "exp_avg_sq")

    @property
    def state_written(self) -> tuple[str, ...]:
        """The state tensors this update writes (outputs of the step graph)."""
        if self.rule == "sgd":
            return ("momentum_buffer",) if self.get("momentum") else ()
        return ("exp_avg", "exp_avg_sq")

    def scalar_names(self) -> tuple[str, ...]:
        """The run-time scalars this update reads."""
        names = RULES[self.rule][1]
        if self.rule == "adamw" and not self.get("weight_decay"):
            return names[:-1]
        return names


@dataclass(frozen=True)
class StepGraph:
    """The step graph and where its extra inputs, params and outputs belong (module doc)."""

    graph: Graph
    scalars: tuple[tuple[int, str], ...]  # (scalar set, name) of each input after the traced
    state: tuple[tuple[int, str], ...]  # (update index, state name) of each param after them
    new_state: tuple[tuple[int, str], ...]  # (update index, state name) of the last outputs


def build_step(
    traced: Graph, n_kept: int, updates: Sequence[ParamUpdate], name: str = "step"
) -> StepGraph:
    """The one graph of a training step (see the module docstring)."""
    if not traced.outputs or traced.outputs[-1].type.shape != ():
        raise IRError("build_step: the traced graph's last output must be the scalar loss")
    loss = traced.outputs[-1]
    only_loss = Graph(traced.name, traced.inputs, traced.params, traced.nodes, (loss,))
    result = grad(only_loss, wrt_inputs=[False] * len(traced.inputs))

    b = Builder(name)
    env: dict[Value, Value] = {}
    for v in traced.inputs:
        env[v] = b.input(v.type, v.hint)
    for v in traced.params:
        env[v] = b.param(v.type, v.hint)
    _copy(b, traced, env)

    # the backward, reading its saved values from the forward, seeded with d loss = 1
    backward = result.backward
    benv: dict[Value, Value] = {}
    for v, saved in zip(backward.inputs, result.saved):
        source = traced.inputs if saved.source == "input" else result.forward.outputs
        benv[v] = env[source[saved.index]]
    benv[backward.inputs[len(result.saved)]] = b.constant(1.0, loss.type.dtype)
    for v, i in zip(backward.params, result.param_indices):
        benv[v] = env[traced.params[i]]
    _copy(b, backward, benv)
    grads = [benv[v] for v in backward.outputs]  # one per traced param (no input requires grad)

    scalars: dict[tuple[int, str, DType], Value] = {}
    scalar_order: list[tuple[int, str]] = []
    state: list[tuple[int, str]] = []
    new_params: list[Value] = []
    new_state: list[tuple[tuple[int, str], Value]] = []
    for k, u in enumerate(updates):
        p = env[traced.params[u.param]]
        ptype = p.type
        run_time: dict[str, Value] = {}
        for s in u.scalar_names():
            key = (u.scalars, s, ptype.dtype)
            if key not in scalars:
                scalars[key] = b.input(TensorType(ptype.dtype, ()), f"{s}{u.scalars}")
                scalar_order.append((u.scalars, s))
            run_time[s] = scalars[key]
        read: dict[str, Value] = {}
        for s in u.state_read:
            read[s] = b.param(ptype, f"{p.hint or 'p'}.{s}")
            state.append((k, s))
        new_p, written = _update(b, u, p, grads[u.param], read, run_time)
        new_params.append(new_p)
        new_state += [((k, s), written[s]) for s in u.state_written]

    kept = [env[v] for v in traced.outputs[:n_kept]]
    b.output(*kept, *new_params, *(v for _, v in new_state))
    return StepGraph(b.build(), tuple(scalar_order), tuple(state), tuple(w for w, _ in new_state))


def _copy(b: Builder, graph: Graph, env: dict[Value, Value]) -> None:
    """Clone every node of `graph` into `b`, mapping values through `env` (which grows)."""
    for node in graph.nodes:
        results = b.clone(node, [env[v] for v in node.inputs])
        env.update(zip(node.results, results))


def _update(
    b: Builder,
    u: ParamUpdate,
    p: Value,
    g: Value,
    state: dict[str, Value],
    scalars: dict[str, Value],
) -> tuple[Value, dict[str, Value]]:
    """The new parameter and new state of one update, lucid/optim's arithmetic op for op."""
    dt, loc = p.type.dtype, u.loc

    def op(name: str, *xs: Value) -> Value:
        return b.op(name, xs, loc=loc)

    def const(x: float) -> Value:
        return b.constant(x, dt, loc=loc)

    new: dict[str, Value] = {}
    if u.rule == "sgd":  # lucid.optim.SGD._update
        decay, momentum = u.get("weight_decay"), u.get("momentum")
        d = op("add", g, op("mul", const(decay), p)) if decay else g
        if momentum:
            if "momentum_buffer" in state:
                buf = state["momentum_buffer"]
                v = op(
                    "add",
                    op("mul", const(momentum), buf),
                    op("mul", const(1 - u.get("dampening")), d),
                )
            else:
                v = d  # the first step: the buffer is a copy of d
            new["momentum_buffer"] = v
            d = op("add", d, op("mul", const(momentum), v)) if u.get("nesterov") else v
        return op("sub", p, op("mul", scalars["lr"], d)), new
    # lucid.optim.Adam._update / AdamW._update, with Adam._moments
    b1, b2, eps, decay = (u.get(h) for h in ("beta1", "beta2", "eps", "weight_decay"))
    if u.rule == "adamw":
        if decay:
            p = op("mul", p, scalars["shrink"])  # p *= 1 - lr * weight_decay
    elif decay:
        g = op("add", g, op("mul", const(decay), p))
    m = op("add", op("mul", state["exp_avg"], const(b1)), op("mul", const(1 - b1), g))
    v = op(
        "add", op("mul", state["exp_avg_sq"], const(b2)), op("mul", op("mul", const(1 - b2), g), g)
    )
    new["exp_avg"], new["exp_avg_sq"] = m, v
    m_hat, v_hat = op("div", m, scalars["bias1"]), op("div", v, scalars["bias2"])
    step = op("div", op("mul", scalars["lr"], m_hat), op("add", op("sqrt", v_hat), const(eps)))
    return op("sub", p, step), new
