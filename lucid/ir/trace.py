"""Module -> Graph: run the module eagerly once and record every primitive op it performs.

Python control flow runs at trace time, so the graph is static. Anything that would make the
graph depend on data (``bool(t)``, ``t.item()``, indexing, ...) or an op with no IR definition
is collected; the trace then fails with one `TraceError` that lists every such place with its
module path and source line.

A random op's seed (Dropout in training, through `_hooks.rng_seed`) becomes a run-time input
hinted `rng_seed`, never a constant: the graph's inputs are the example inputs, then one i64[]
seed per draw in the order forward made them, and whoever runs the graph passes fresh seeds
(lucid.compile draws them from lucid.random at every call, as eager would).
"""

from __future__ import annotations

import inspect
import os
import sys
import warnings
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

import lucid
from lucid import _hooks
from lucid import _symbolic as _sym
from lucid._symbolic import SymInt
from lucid.errors import LucidError, SourceLoc, TraceError, format_diagnostic
from lucid.ir.core import Builder, Graph, Value
from lucid.ir.ops import OPS
from lucid.ir.types import SYMBOL_RE, Dim, DType, TensorType, dim_parts, symbolic_dim

if TYPE_CHECKING:
    from lucid.nn import Module
    from lucid.tensor import Tensor

_LUCID_DIR = os.path.dirname(os.path.abspath(lucid.__file__)) + os.sep
BATCH = "N"
SEED_HINT = "rng_seed"


# per-process memos of user_location, asked for every traced op (bounded: exec'd code may name
# a new file each time)
_MEMO_LIMIT = 4096
_FILE_IN_LUCID: dict[str, bool] = {}
_LOCATIONS: dict[tuple[str, int, str], SourceLoc] = {}


def user_location() -> SourceLoc | None:
    """The first stack frame outside the lucid package: the user's line that caused an op.

    A traced op's stack passes through a dozen of lucid's frames (all of them for
    lucid.models): each file's answer is a dict lookup here, and each line's SourceLoc is made
    once (they are immutable; the ops of one user line share it)."""
    known = _FILE_IN_LUCID
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        inside = known.get(filename)
        if inside is None:
            inside = in_lucid(filename)
        if not inside:
            key = (filename, frame.f_lineno, code.co_name)
            loc = _LOCATIONS.get(key)
            if loc is None:
                if len(_LOCATIONS) >= _MEMO_LIMIT:
                    _LOCATIONS.clear()
                loc = _LOCATIONS[key] = SourceLoc(*key)
            return loc
        frame = frame.f_back  # type: ignore[assignment]
    return None


def in_lucid(filename: str) -> bool:
    """Whether code of `filename` is lucid's own (asked for every frame of every traced op)."""
    inside = _FILE_IN_LUCID.get(filename)
    if inside is None:
        if len(_FILE_IN_LUCID) >= _MEMO_LIMIT:
            _FILE_IN_LUCID.clear()
        inside = _FILE_IN_LUCID[filename] = os.path.abspath(filename).startswith(_LUCID_DIR)
    return inside


@dataclass(frozen=True)
class TraceProblem:
    """One operation that cannot be traced: what it was, in which module, at which line."""

    what: str
    module_path: str
    loc: SourceLoc | None

    def __str__(self) -> str:
        where = str(self.loc) if self.loc else "<unknown>"
        return f"  {where}: in {self.module_path}: {self.what}"

    def diagnostic(self) -> str:
        """`file:line: error: in MODULE: what` (`error: ...` when the line is unknown)."""
        return format_diagnostic(f"in {self.module_path}: {self.what}", self.loc)


def _as_dim(expr: Any) -> Dim | None:
    """A size expression as an IR dim: an int, a symbol, or a symbol times a positive int
    (`N * 8`, `4 * (N * 2)`: N*8 and N*8); None for any other arithmetic."""
    factor = 1
    while isinstance(expr, tuple) and expr[0] == "*":
        a, b = expr[1], expr[2]
        if type(b) is int:
            factor, expr = factor * b, a
        elif type(a) is int:
            factor, expr = factor * a, b
        else:
            return None
    if isinstance(expr, str) and factor >= 1:
        return symbolic_dim(expr, factor)
    if type(expr) is int:
        return expr * factor
    return None


def _dim_expr(d: str) -> Any:
    """A symbolic dim as a size expression (lucid/_symbolic.py): `N`, or `("*", "N", 8)`."""
    symbol, factor = dim_parts(d)
    return symbol if factor == 1 else ("*", symbol, factor)


@dataclass(frozen=True)
class Guard:
    """A Python decision the trace took on a symbolic size: `test` (a comparison, see
    lucid/_symbolic.py) came out `outcome` at `loc`; the trace is valid only where it still does."""

    test: Any
    outcome: bool
    loc: SourceLoc | None

    def holds(self, bindings: dict[str, int]) -> bool:
        """Whether the decision comes out the same for these symbol values (not if it cannot
        be made: a division by zero)."""
        try:
            return bool(_sym.evaluate(self.test, bindings)) == self.outcome
        except ArithmeticError:
            return False

    def condition(self) -> str:
        """What must hold, as people read it: `N > 4`, or `not (N > 4)`."""
        shown = _sym.text(self.test)
        return shown if self.outcome else f"not ({shown})"

    def __str__(self) -> str:
        where = f" (decided at {self.loc})" if self.loc else ""
        return f"{self.condition()}{where}"


class Tracer:
    """Implements lucid._hooks.TraceHook: maps eager tensors to IR values while forward runs.

    Invariant: `values` holds the id of live tensors only: a weak reference drops a tensor's
    entry when it dies, so an id Python reuses for a new tensor is never mistaken for it, and
    the trace does not keep every intermediate alive (a full-batch trace would otherwise hold
    all of forward's activations at once: 800 MiB for MobileNetV3-Small at batch 32).
    """

    def __init__(self, root: Module, builder: Builder, hints: dict[str, int] | None = None) -> None:
        self.builder = builder
        # what each size symbol (N) is in this call: the hint of the SymInts `shape` hands out,
        # which an empty-batch trace cannot read off its (empty) data
        self.hints = dict(hints or {})
        self.values: dict[int, Value] = {}
        self._alive: dict[int, weakref.ref[Tensor]] = {}  # id -> the weak ref that forgets it
        # the constant made for each scalar (dtype, bytes) so far: a Python number in an op
        # (BatchNorm's eps, a 1.0 / x) is a new 0-d Tensor at every use, and one constant node
        # serves them all (MobileNetV3-Small: 66 of the trace's 564 nodes; CSE merged them later)
        self._scalars: dict[tuple[str, bytes], Value] = {}
        self.problems: list[TraceProblem] = []
        self.guards: list[Guard] = []
        # a graph value with each symbol at some axis (read by `dim` when a size becomes a
        # number), and the values made so far, per (expression, dtype)
        self._size_source: dict[str, tuple[Value, int]] = {}
        self._sizes: dict[tuple[Any, DType], Value] = {}
        self._paths = {id(m): (p or type(root).__name__) for p, m in _walk(root)}
        # Tensor attributes of the modules: a graph param when forward reads one (below)
        self._buffers = {id(t): name for name, t in _named_buffers(root)}
        self._scope: list[str] = [type(root).__name__]
        # buffer writes (BatchNorm's running statistics): buffer path -> its new value, in the
        # order of the first write to each; they become graph outputs after forward's own
        self.writes: dict[str, Value] = {}

    def bind(self, tensor: Tensor, value: Value) -> None:
        """Declare that `tensor` stands for `value` in the graph."""
        key = id(tensor)
        self.values[key] = value
        if key not in self._alive:
            self._alive[key] = weakref.ref(tensor, partial(self._forget, key))
        for axis, d in enumerate(value.type.shape):
            if isinstance(d, str) and SYMBOL_RE.match(d):  # N itself, not N*8
                self._size_source.setdefault(d, (value, axis))

    def _forget(self, key: int, _ref: object) -> None:
        """A bound tensor died: its id may now be reused by a tensor the graph has not seen."""
        self.values.pop(key, None)
        self._alive.pop(key, None)

    def value_of(self, tensor: Tensor) -> Value:
        """The IR value of `tensor`; a tensor never seen before becomes a constant node."""
        known = self.values.get(id(tensor))
        if known is not None:
            return known
        data = tensor.data
        buffer = self._buffers.get(id(tensor))
        if buffer is not None:  # read at every call, so that in-place changes are seen
            value = self.builder.param(TensorType(DType.from_numpy(data.dtype), data.shape), buffer)
            self.bind(tensor, value)
            return value
        if data.ndim == 0:
            value = self._scalar(data)
        else:
            value = self.builder.constant(  # the array itself: the op freezes it once
                data, DType.from_numpy(data.dtype), loc=user_location()
            )
        self.bind(tensor, value)
        return value

    def _scalar(self, data: np.ndarray) -> Value:
        """The constant of a 0-d array: one per (dtype, bytes), -0.0 and 0.0 apart."""
        key = (data.dtype.str, data.tobytes())
        known = self._scalars.get(key)
        if known is None:
            known = self.builder.constant(
                float(data), DType.from_numpy(data.dtype), loc=user_location()
            )
            self._scalars[key] = known
        return known

    def scope_path(self) -> str:
        """The module path of the innermost module running now."""
        return self._scope[-1]

    def _problem(self, what: str) -> None:
        self.problems.append(TraceProblem(what, self._scope[-1], user_location()))

    # -- TraceHook -------------------------------------------------------------------------
    def record(
        self, op: str, inputs: Sequence[Tensor], attrs: dict[str, Any], output: Tensor
    ) -> None:
        if op not in OPS:
            self._problem(f"op '{op}' has no IR definition")
            return
        shape = attrs.get("shape")
        if isinstance(shape, tuple) and any(isinstance(d, SymInt) for d in shape):
            dims = self._dims(shape, f"{op} to {shape}")
            if dims is None:
                return
            attrs = {**attrs, "shape": dims}
        args = [self.value_of(t) for t in inputs]
        try:
            ir_attrs = _ir_attrs(attrs)
            value = self.builder.op(op, args, ir_attrs, loc=user_location())
        except LucidError as exc:
            self._problem(f"{op}: {exc}")
            return
        self.bind(output, value)

    def shape(self, tensor: Tensor) -> tuple[Any, ...]:
        """`tensor.shape` in the trace: its graph type's dims, the symbolic ones as SymInts.
        The type's, not the data's: on an empty-batch trace (`trace`) the data has no rows,
        while the type has the call's real sizes, which code such as BatchNorm's n / (n - 1)
        must read (for a full batch the two agree)."""
        value = self.values.get(id(tensor))
        if value is None:
            return tensor.data.shape
        return tuple(
            self._symint(d, n) if isinstance(d, str) else d
            for d, n in zip(value.type.shape, tensor.data.shape)
        )

    def _symint(self, dim: str, fallback: int) -> SymInt:
        """The SymInt of a symbolic dim, its hint from the call's symbols (else the data's)."""
        expr = _dim_expr(dim)
        try:
            return SymInt(expr, _sym.evaluate(expr, self.hints))
        except KeyError:  # a symbol this trace was given no value of
            return SymInt(expr, fallback)

    def guard(self, test: Any, outcome: bool) -> None:
        self.guards.append(Guard(test, outcome, user_location()))

    def bind_size(self, tensor: Tensor, size: SymInt) -> None:
        """`tensor` (0-d) holds the run-time value of `size`: compute it in the graph."""
        value = self._size_value(size.expr, DType.from_numpy(tensor.data.dtype))
        if value is not None:
            self.bind(tensor, value)

    def _size_value(self, expr: Any, dtype: DType) -> Value | None:
        """The graph value of a size expression in `dtype`: `dim` reads, then arithmetic."""
        known = self._sizes.get((expr, dtype))
        if known is not None:
            return known
        loc = user_location()
        b = self.builder
        if isinstance(expr, str):
            source, axis = self._size_source[expr]
            value = b.op("dim", [source], {"axis": axis, "dtype": dtype}, loc=loc)
        elif not isinstance(expr, tuple):
            value = b.constant(float(expr) if dtype.is_float else int(expr), dtype, loc=loc)
        elif expr[0] in _SIZE_OPS and (dtype.is_float or expr[0] != "/"):
            args = [self._size_value(e, dtype) for e in expr[1:]]
            operands = [a for a in args if a is not None]
            if len(operands) != len(args):
                return None
            value = b.op(_SIZE_OPS[expr[0]], operands, {}, loc=loc)
        else:
            self._problem(
                f"the size {_sym.text(expr)} is used as a number; lucid computes sizes in the "
                "graph with + - * / only (not // or %); compile with a static batch "
                "(dynamic_batch=False) for this model"
            )
            return None
        self._sizes[(expr, dtype)] = value
        return value

    def bind_fill(self, tensor: Tensor, shape: tuple[Any, ...], fill: float) -> None:
        """`tensor` is `fill` everywhere in a shape that holds sizes of the batch."""
        dims = self._dims(shape, "a tensor created in forward")
        if dims is None:
            return
        dtype = DType.from_numpy(tensor.data.dtype)
        scalar = self.builder.constant(fill, dtype, loc=user_location())
        self.bind(
            tensor, self.builder.op("broadcast", [scalar], {"shape": dims}, loc=user_location())
        )

    def _dims(self, shape: tuple[Any, ...], what: str) -> tuple[Any, ...] | None:
        """A shape with SymInts as IR dims (ints, symbols, a symbol times a positive int such
        as `N*8`), or None after noting a problem: other arithmetic (`N + 1`, `N // 2`) cannot
        be a dim of a shape."""
        dims = []
        for d in shape:
            dim = _as_dim(d.expr) if isinstance(d, SymInt) else d
            if dim is None:
                self._problem(
                    f"{what} has the size {_sym.text(d.expr)} computed from the batch; a "
                    "shape may hold the batch size or the batch times a positive constant "
                    "(N * 8) but no other arithmetic on it; compile with a static batch "
                    "(dynamic_batch=False) for this model"
                )
                return None
            dims.append(dim)
        return tuple(dims)

    def random(self, what: str) -> None:
        self._problem(
            f"{what} draws random numbers, which a trace would freeze into the graph "
            "(create random tensors outside forward and pass them in)"
        )

    def unsupported(self, what: str, inputs: Sequence[Tensor]) -> None:
        # Only values that depend on the graph's inputs or parameters make the graph dynamic;
        # reading a constant (a hyper-parameter tensor, say) at trace time is harmless.
        if any(id(t) in self.values for t in inputs):
            self._problem(f"{what} cannot be traced into a static graph")

    def write_buffer(self, target: Tensor, value: Tensor) -> None:
        # nothing is written now: the compiled call writes the graph's output back
        name = self._buffers.get(id(target))
        if name is None:
            self._problem(
                "forward writes in place into a tensor that is not a buffer of the model "
                f"(shape {tuple(target.data.shape)}); only module buffers can be written back"
            )
            return
        self.value_of(target)  # a buffer written before it is read is still a param
        new = self.builder.op("stop_gradient", [self.value_of(value)], loc=user_location())
        self.writes[name] = new
        self.values[id(target)] = new  # later reads in this forward see the new value

    def backward(self, tensor: Tensor, grad: Any) -> None:
        self._problem(
            "backward() inside a traced forward; to compile the backward and the optimizer "
            "update, compile a training-step function with lucid.compile(step)"
        )

    def optimizer_step(self, optimizer: Any) -> None:
        self._problem(
            f"{type(optimizer).__name__}.step() inside a traced forward; compile a "
            "training-step function with lucid.compile(step) instead"
        )

    def zero_grad(self, optimizer: Any) -> None:
        self._problem(f"{type(optimizer).__name__}.zero_grad() inside a traced forward")

    def rng_seed(self) -> Tensor:
        # a seed is a run-time input (after the example inputs), never a constant: whoever runs
        # the graph passes a fresh one per call, as eager draws one per call
        from lucid.tensor import Tensor

        seed = Tensor._make(np.zeros((), np.int64))  # its value never reaches the graph
        self.bind(seed, self.builder.input(TensorType(DType.I64, ()), SEED_HINT))
        return seed

    def enter_module(self, module: Module) -> None:
        self._scope.append(self._paths.get(id(module), type(module).__name__))

    def exit_module(self) -> None:
        self._scope.pop()


_SIZE_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "neg": "neg"}


def _walk(root: Any) -> Iterable[tuple[str, Module]]:
    """`root.named_modules()`, through lucid.nn.module.module_walk's cache when root is a
    Module or the compile spy of one (a stand-in that forwards to the model it wraps)."""
    from lucid.nn import Module
    from lucid.nn.module import module_walk

    module = getattr(root, "__wrapped__", root)
    return module_walk(module) if isinstance(module, Module) else root.named_modules()


def _named_buffers(root: Any) -> Iterator[tuple[str, Tensor]]:
    """The model's buffers (lucid.nn.Module.named_buffers); none for a stand-in that is not a
    Module (the compile spy forwards the call to the model it wraps)."""
    from lucid.nn import Module

    module = getattr(root, "__wrapped__", root)
    return module.named_buffers() if isinstance(module, Module) else iter(())


def _ir_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Eager attrs in IR form: NumPy dtypes become DType, None clip bounds become infinities."""
    out: dict[str, Any] = {}
    for key, val in attrs.items():
        if key == "dtype" and not isinstance(val, DType):
            val = DType.from_numpy(np.dtype(val))
        elif key == "min" and val is None:
            val = float("-inf")
        elif key == "max" and val is None:
            val = float("inf")
        elif isinstance(val, list):
            val = tuple(val)
        out[key] = val
    return out


def _input_names(module: Module, count: int) -> list[str]:
    """Hints for runtime inputs: forward's parameter names when they line up, else x0, x1..."""
    try:
        params = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return ["x"] if count == 1 else [f"x{i}" for i in range(count)]


def as_tensor(x: Any) -> Tensor:
    """`x` itself if it is a Tensor, else a Tensor of it (an example input of a trace)."""
    from lucid.tensor import Tensor

    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def input_type(t: Tensor, dynamic_batch: bool) -> TensorType:
    """The IR type of an example input; with dynamic_batch its first dim (if any) is N."""
    shape: list[int | str] = list(t.shape)
    if dynamic_batch and shape:  # a scalar input (a temperature, say) has no batch to vary
        shape[0] = BATCH
    return TensorType(DType.from_numpy(t.data.dtype), tuple(shape))


def trace(
    module: Module,
    *example_inputs: Any,
    dynamic_batch: bool = False,
    name: str = "forward",
    guards: list[Guard] | None = None,
    state: list[str] | None = None,
) -> Graph:
    """Trace `module` called on `example_inputs` into a Graph (inputs, then parameters).

    Buffer writes in forward (`lucid._hooks.write_buffer`: BatchNorm's running statistics in
    training mode) become graph outputs after forward's own, and their buffer paths are
    appended to `state`, in the same order; whoever runs the graph writes them back. Without
    that list, a trace that writes a buffer fails with a TraceError naming each (a bare graph
    has no way to write it back, and dropping the update would be silently wrong).

    Under a dynamic batch, `x.shape[0]` reads a SymInt (lucid/_symbolic.py), and the Python
    decisions taken on it are `Guard`s, appended to `guards`; without that list, a trace that
    took any decision fails with a TraceError naming each one's source line (a bare graph has
    nowhere to keep them).

    The graph's input types always come from the full examples. When `empty_batch_suffices`,
    the eager model runs on an empty batch (zero rows): every op sees its real shapes but does
    no arithmetic, so the trace costs the same at any batch size. Should that run fail in any
    way, the full-batch trace runs and reports what it always reported.
    """
    inputs = [as_tensor(x) for x in example_inputs]
    types = [input_type(t, dynamic_batch) for t in inputs]
    batched = [t for t in inputs if t.data.ndim] if dynamic_batch else []
    hints = {BATCH: int(batched[0].data.shape[0])} if batched else {}
    if empty_batch_suffices(module, inputs):
        try:
            # an empty batch computes nothing, but NumPy warns about what it did not compute
            # (the mean of no rows): nobody reads those values
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                empty = [_no_rows(t) for t in inputs]
                return _record(module, empty, types, name, guards, state, hints)
        except Exception:  # noqa: BLE001, S110  # the full-batch trace below fails as before
            pass
    return _record(module, inputs, types, name, guards, state, hints)


ROW_AGNOSTIC = "__lucid_row_agnostic__"


def row_agnostic(forward: Any) -> Any:
    """Mark a model's `forward` as one that records the same graph on an empty batch as on a
    full one (see `_row_agnostic_forwards`), so lucid.compile traces it without arithmetic;
    for lucid's own models (lucid.models), whose forwards the tracer cannot import."""
    setattr(forward, ROW_AGNOSTIC, True)
    return forward


# The forwards that record the same ops and attributes for an empty batch as for a full one: each
# reads no batch size and no data (Python control flow on neither), and creates no constant
# shaped like its input; Flatten reshapes to (-1, prod(shape[1:])). LayerNorm reduces over
# trailing axes only, Embedding gathers rows for any index shape. Dropout qualifies
# in training too: it records `dropout(x, seed)` with the seed a graph input, drawing nothing.
# BatchNorm2d qualifies in eval mode; in training it refuses an empty batch (no statistics),
# and the trace falls back to the full batch.
def _row_agnostic_forwards() -> frozenset[Any]:
    from lucid import nn

    classes = (
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.AdaptiveAvgPool2d,
        nn.Sequential,
        nn.Linear,
        nn.HardSwish,
        nn.HardSigmoid,
        nn.ReLU,
        nn.ReLU6,
        nn.Sigmoid,
        nn.Tanh,
        nn.Identity,
        nn.Flatten,
        nn.Dropout,
        nn.LayerNorm,
        nn.Embedding,
        nn.GELU,
    )
    return frozenset(cls.forward for cls in classes)


def empty_batch_suffices(module: Any, inputs: Sequence[Tensor]) -> bool:
    """Whether tracing `module` on an empty batch of its one input records the same graph as
    tracing it on the whole batch: the input has a batch axis and a feature axis, and every
    module in the tree runs one of lucid's own row-agnostic forwards (a user's forward may
    read `x.shape[0]`, which the tracer cannot see, so it always runs on the full batch)."""
    from lucid.nn import Module

    # `__wrapped__`: a stand-in that calls the model and only looks at what it returns
    root = getattr(module, "__wrapped__", module)
    if not isinstance(root, Module) or len(inputs) != 1:
        return False
    if inputs[0].data.ndim < 2 or inputs[0].data.shape[0] == 0:
        return False
    agnostic = _row_agnostic_forwards()
    for m in root.modules():
        cls = type(m)
        if cls.__call__ is not Module.__call__ or "forward" in vars(m):
            return False
        if cls.forward is Module.forward:  # a container (ModuleList, ModuleDict): never run
            continue
        if cls.forward not in agnostic and not getattr(cls.forward, ROW_AGNOSTIC, False):
            return False
    return True


def _no_rows(t: Tensor) -> Tensor:
    """A Tensor of `t`'s dtype and shape, but with no rows (and the dtype it was made from)."""
    from lucid.tensor import Tensor

    empty = Tensor(t.data[:0])
    widened = getattr(t, "_widened_from", None)
    if widened is not None:
        empty._widened_from = widened
    return empty


def _record(
    module: Module,
    inputs: Sequence[Tensor],
    types: Sequence[TensorType],
    name: str,
    guards: list[Guard] | None,
    state: list[str] | None = None,
    hints: dict[str, int] | None = None,
) -> Graph:
    """Run `module` on `inputs` under the tracer; the graph's inputs have the given types and
    their size symbols the values `hints` gives (see Tracer.shape)."""
    from lucid.tensor import Tensor

    builder = Builder(name)
    tracer = Tracer(module, builder, hints)
    for hint, tensor, itype in zip(_input_names(module, len(inputs)), inputs, types):
        tracer.bind(tensor, builder.input(itype, hint))
    for pname, param in module.named_parameters():
        if id(param) not in tracer.values:  # a parameter shared by two modules is one value
            ptype = TensorType(DType.from_numpy(param.data.dtype), tuple(param.shape))
            tracer.bind(param, builder.param(ptype, pname))

    try:
        with _hooks.installed(tracer), lucid.no_grad():
            result = module(*inputs)
    except Exception as exc:
        # An unsupported op lets eager code run on (e.g. `bool(t)` returns the eager answer),
        # but what follows may still fail; then the problems found so far explain why.
        if not tracer.problems:
            raise
        note_stop(tracer, exc)
        raise _trace_error(module, tracer.problems) from exc

    outputs = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            tracer.problems.append(
                TraceProblem(
                    f"forward returned {type(out).__name__} as output {i}; expected Tensors",
                    type(module).__name__,
                    None,
                )
            )
    if tracer.problems:
        raise _trace_error(module, tracer.problems)
    if tracer.writes and state is None:  # first: no batch size would make this graph usable
        raise buffer_write_error(module, list(tracer.writes))
    if tracer.guards and guards is None:
        raise decision_error(module, tracer.guards)
    builder.output(*(tracer.value_of(out) for out in outputs), *tracer.writes.values())
    graph = builder.build()
    if guards is not None:
        guards.extend(tracer.guards)
    if state is not None:
        state.extend(tracer.writes)
    return graph


def buffer_write_error(module: Any, names: Sequence[str]) -> TraceError:
    """The error for a forward that writes buffers, traced where nothing can write them back."""
    name = type(getattr(module, "__wrapped__", module)).__name__
    listed = ", ".join(repr(n) for n in names)
    return TraceError(
        f"cannot trace {name}: forward writes the buffer(s) {listed} (running statistics of a "
        "BatchNorm in training mode), and this graph has no way to write them back: call "
        "model.eval() to trace inference, or train through lucid.compile, which writes them "
        "back after every call"
    )


_REMEDY = (
    "trace with a static batch (dynamic_batch=False), or use lucid.compile, which checks them "
    "on every call and recompiles when one changes"
)


def decision_error(module: Any, guards: Sequence[Guard], remedy: str = _REMEDY) -> TraceError:
    """The error for Python decisions on the batch size in a graph that cannot guard them."""
    lines = "\n".join(f"  {g.loc or '<unknown>'}: the trace needs {g.condition()}" for g in guards)
    name = type(getattr(module, "__wrapped__", module)).__name__
    return TraceError(
        f"cannot trace {name} with a dynamic batch: forward takes Python decisions on the "
        f"batch size N, and a graph for every N cannot keep them:\n{lines}\n{remedy}"
    )


def note_stop(tracer: Tracer, exc: BaseException) -> None:
    """Record the exception that stopped a trace after its first problems (which explain it)."""
    tracer.problems.append(
        TraceProblem(
            f"tracing stopped: {type(exc).__name__}: {exc}",
            tracer.scope_path(),
            exception_location(exc),
        )
    )


def _trace_error(module: Module, problems: list[TraceProblem]) -> TraceError:
    """One error listing every problem, each with its source line and module path."""
    lines = "\n".join(str(p) for p in problems)
    error = TraceError(
        f"cannot trace {type(module).__name__}: {len(problems)} unsupported operation(s):\n{lines}"
    )
    error.problems = tuple(problems)  # type: ignore[attr-defined]  # for tools (lucid-ir)
    return error


def exception_location(exc: BaseException) -> SourceLoc | None:
    """The innermost frame of `exc`'s traceback that lies outside lucid."""
    found: SourceLoc | None = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_LUCID_DIR):
            found = SourceLoc(filename, tb.tb_lineno, tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return found
