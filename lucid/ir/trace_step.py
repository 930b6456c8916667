"""A training-step function -> Graph: forward and loss as ops, `backward()` and `step()` as marks.

`trace_step(fn, *inputs)` runs `fn` once with the tracer of lucid/ir/trace.py installed, in
step mode: the ops of every model it calls are recorded as for `lucid.compile(model)`; a model's
parameters and buffers become graph params the first time the model (or a parameter, used
outside a model) is seen; `loss.backward()` on a traced scalar marks the differentiation root
instead of running the tape; `optimizer.step()` records which optimizer updates its parameters;
`optimizer.zero_grad()` is accepted. Nothing is updated and no `.grad` is stored while tracing:
the compiled step (lucid/runtime/step.py) does both.

What the mode cannot honour is a TraceProblem naming the user's line, never a silent
difference from eager: `backward()` twice or with an explicit gradient, a non-scalar loss,
`step()` without a `backward()` before it or twice, `zero_grad()` between `backward()` and
`step()` (eager would step with no gradient), an optimizer other than SGD, Adam and AdamW, and
reading a parameter's `.grad` after `backward()` (the compiled step never materializes it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lucid
from lucid import _hooks
from lucid.errors import SourceLoc, TraceError, format_diagnostic
from lucid.ir.core import Builder, Graph, Value
from lucid.ir.trace import TraceProblem, Tracer, as_tensor, input_type, note_stop
from lucid.ir.trace import user_location as _user_location
from lucid.ir.types import DType, TensorType
from lucid.nn.module import Module, Parameter
from lucid.tensor import Tensor

# the optimizers whose update the step graph knows (lucid/ir/step.py); a subclass may change
# the arithmetic, so the type must be one of these exactly
SUPPORTED_OPTIMIZERS = ("SGD", "Adam", "AdamW")


@dataclass(frozen=True)
class StepCall:
    """One `optimizer.step()` in the traced function, and the line that made it."""

    optimizer: Any
    loc: SourceLoc | None


@dataclass(frozen=True)
class StepTrace:
    """What tracing a step function found.

    Invariants: `graph.inputs` are fn's arguments then one i64[] seed per random draw;
    `graph.params[i]` stands for the live tensor `tensors[i]` (a parameter or a buffer);
    `graph.outputs` are fn's `n_returns` returned tensors, then the new values of the buffers
    `written` (in that order), then the loss that `backward()` was called on.
    """

    graph: Graph
    tensors: tuple[Tensor, ...]
    written: tuple[Tensor, ...]
    n_returns: int
    out_kind: type | None  # None: one Tensor; tuple or list; type(None): fn returned None
    steps: tuple[StepCall, ...]
    zeroed: frozenset[int]  # ids of the optimizers zeroed before backward()
    modules: tuple[Module, ...]  # the models fn called, outermost first

    @property
    def n_seeds(self) -> int:
        """The number of seed inputs after fn's own arguments."""
        return sum(1 for v in self.graph.inputs if v.hint == "rng_seed")


class _StepRoot(Module):
    """The tracer's root while no model is known yet: it has nothing of its own."""

    def forward(self) -> None:  # pragma: no cover  (never called)
        return None


class _UnstoredGrad:
    """Stands in a parameter's `.grad` after a traced `backward()`: any use of it raises,
    because the compiled step never stores the gradient there."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TraceError(
            format_diagnostic(
                f"the step function reads the .grad of {self._name}; a compiled training step "
                "computes gradients inside its program and never stores them in .grad: read "
                "gradients in an eager step (call the function without lucid.compile)",
                _user_location(),
            )
        )

    __getattr__ = _refuse
    __array__ = _refuse
    __repr__ = _refuse
    __str__ = _refuse
    __bool__ = _refuse
    __float__ = _refuse
    __getitem__ = _refuse
    __len__ = _refuse
    __iter__ = _refuse
    __neg__ = _refuse
    __abs__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = _refuse
    __mul__ = __rmul__ = __truediv__ = __rtruediv__ = __pow__ = __matmul__ = _refuse


class _StepTracer(Tracer):
    """The module tracer plus the step mode's marks (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], builder: Builder) -> None:
        super().__init__(_StepRoot(), builder)
        self._scope = [getattr(fn, "__name__", type(fn).__name__)]
        self.tensors: list[Tensor] = []  # the live tensor of each graph param, in order
        self._buffer_tensors: dict[str, Tensor] = {}
        self.modules: list[Module] = []
        self.root: Value | None = None
        self.steps: list[StepCall] = []
        self.zeroed: set[int] = set()
        self._saved_grads: list[tuple[Tensor, Any]] = []

    # -- models and their tensors ------------------------------------------------------
    def _adopt(self, module: Module) -> None:
        """A model called for the first time: its parameters become graph params (hinted by
        their paths, prefixed for every model after the first) and its buffers are known."""
        prefix = "" if not self.modules else f"m{len(self.modules)}."
        self.modules.append(module)
        for path, m in module.named_modules():
            self._paths.setdefault(id(m), prefix + path if path else type(module).__name__)
        for name, t in module.named_buffers():
            self._buffers.setdefault(id(t), prefix + name)
            self._buffer_tensors.setdefault(prefix + name, t)
        for name, p in module.named_parameters():
            if id(p) not in self.values:
                self._bind_param(p, prefix + name)

    def _bind_param(self, tensor: Tensor, hint: str) -> Value:
        data = tensor.data
        value = self.builder.param(TensorType(DType.from_numpy(data.dtype), data.shape), hint)
        self.bind(tensor, value)
        self.tensors.append(tensor)
        return value

    def value_of(self, tensor: Tensor) -> Value:
        known = self.values.get(id(tensor))
        if known is not None:
            return known
        buffer = self._buffers.get(id(tensor))
        if buffer is not None:
            return self._bind_param(tensor, buffer)
        if isinstance(tensor, Parameter):  # used outside any model (a penalty on a weight)
            return self._bind_param(tensor, f"param{len(self.tensors)}")
        return super().value_of(tensor)

    def written(self) -> tuple[Tensor, ...]:
        """The buffer tensors written, in the order of `writes` (the graph's outputs)."""
        return tuple(self._buffer_tensors[name] for name in self.writes)

    def enter_module(self, module: Module) -> None:
        if id(module) not in self._paths:
            self._adopt(module)
        super().enter_module(module)

    # -- the step marks --------------------------------------------------------------------
    def backward(self, tensor: Tensor, grad: Any) -> None:
        if self.root is not None:
            self._problem(
                "backward() is called a second time; a compiled step differentiates one loss "
                "once (sum the losses and call backward() once)"
            )
            return
        if grad is not None:
            self._problem(
                "backward(gradient) with an explicit gradient; a compiled step needs "
                "backward() on a scalar loss"
            )
            return
        value = self.values.get(id(tensor))
        if value is None:
            self._problem(
                "backward() on a tensor that the step did not compute from its inputs and "
                "parameters"
            )
            return
        if value.type.shape != () or not value.type.dtype.is_float:
            self._problem(
                f"backward() on a loss of type {value.type}; a compiled step needs a scalar "
                "float loss (f32[] or f64[]): reduce it with .mean() or .sum()"
            )
            return
        self.root = value
        for p in self.tensors:  # a read of .grad from here on would see no gradient
            if isinstance(p, Parameter) and p.requires_grad:
                self._saved_grads.append((p, p.grad))
                p.grad = _UnstoredGrad(self._hint(p))  # type: ignore[assignment]

    def _hint(self, tensor: Tensor) -> str:
        """The graph hint of a bound tensor (its module path), for messages."""
        value = self.values.get(id(tensor))
        return (value.hint if value is not None else None) or "a parameter"

    def restore_grads(self) -> None:
        """Put back every `.grad` that `backward` replaced with a stand-in."""
        for p, g in reversed(self._saved_grads):
            p.grad = g
        self._saved_grads.clear()

    def optimizer_step(self, optimizer: Any) -> None:
        name = type(optimizer).__name__
        if type(optimizer).__module__.split(".")[:2] != ["lucid", "optim"] or (
            name not in SUPPORTED_OPTIMIZERS
        ):
            self._problem(
                f"{name}.step(): a compiled step knows the updates of "
                f"{', '.join(SUPPORTED_OPTIMIZERS)} (lucid.optim), not {name}'s"
            )
            return
        if self.root is None:
            self._problem(
                f"{name}.step() before any loss.backward(): a compiled step updates with the "
                "gradients of the loss that backward() is called on"
            )
            return
        if any(s.optimizer is optimizer for s in self.steps):
            self._problem(f"{name}.step() is called a second time in one step")
            return
        self.steps.append(StepCall(optimizer, _user_location()))

    def zero_grad(self, optimizer: Any) -> None:
        if self.root is None:
            self.zeroed.add(id(optimizer))
        elif not any(s.optimizer is optimizer for s in self.steps):
            self._problem(
                f"{type(optimizer).__name__}.zero_grad() between loss.backward() and its "
                "step(): eager would step with no gradients; call zero_grad() before "
                "backward() or after step()"
            )


def _arg_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Hints for the step's inputs: fn's parameter names when they line up, else x0, x1..."""
    try:
        names = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        names = []
    return names[:count] if len(names) >= count else [f"x{i}" for i in range(count)]


def trace_step(fn: Callable[..., Any], *example_inputs: Any, name: str = "step") -> StepTrace:
    """Trace the training-step function `fn` called on `example_inputs` (see the module doc)."""
    inputs = [as_tensor(x) for x in example_inputs]
    builder = Builder(name)
    tracer = _StepTracer(fn, builder)
    for hint, tensor in zip(_arg_names(fn, len(inputs)), inputs):
        tracer.bind(tensor, builder.input(input_type(tensor, False), hint))
    fn_name = tracer._scope[0]
    try:
        with _hooks.installed(tracer), lucid.no_grad():
            result = fn(*inputs)
    except TraceError:
        raise
    except Exception as exc:
        if not tracer.problems:
            raise
        note_stop(tracer, exc)
        raise _error(fn_name, tracer.problems) from exc
    finally:
        tracer.restore_grads()

    if result is None:
        returned: list[Any] = []
    else:
        returned = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, out in enumerate(returned):
        if not isinstance(out, Tensor):
            tracer.problems.append(
                TraceProblem(
                    f"the step returned {type(out).__name__} as output {i}; expected Tensors",
                    fn_name,
                    None,
                )
            )
    if tracer.root is None:
        tracer.problems.append(
            TraceProblem(
                "the step never calls loss.backward(); lucid.compile(fn) compiles a training "
                "step (forward, loss.backward(), optimizer.step()); compile a model with "
                "lucid.compile(model)",
                fn_name,
                None,
            )
        )
    elif not tracer.steps:
        tracer.problems.append(
            TraceProblem(
                "the step calls loss.backward() but no optimizer's step(): the compiled step "
                "keeps no gradients, so they would be lost",
                fn_name,
                None,
            )
        )
    if tracer.problems:
        raise _error(fn_name, tracer.problems)
    assert tracer.root is not None
    builder.output(
        *(tracer.value_of(out) for out in returned), *tracer.writes.values(), tracer.root
    )
    kind: type | None
    if result is None:
        kind = type(None)
    else:
        kind = type(result) if isinstance(result, (tuple, list)) else None
    return StepTrace(
        graph=builder.build(),
        tensors=tuple(tracer.tensors),
        written=tracer.written(),
        n_returns=len(returned),
        out_kind=kind,
        steps=tuple(tracer.steps),
        zeroed=frozenset(tracer.zeroed),
        modules=tuple(tracer.modules),
    )


def _error(fn_name: str, problems: list[TraceProblem]) -> TraceError:
    """One error listing every problem, each with its source line."""
    lines = "\n".join(str(p) for p in problems)
    error = TraceError(
        f"cannot compile the training step {fn_name}: {len(problems)} problem(s):\n{lines}"
    )
    error.problems = tuple(problems)  # type: ignore[attr-defined]
    return error


__all__ = ["SUPPORTED_OPTIMIZERS", "StepCall", "StepTrace", "trace_step"]
