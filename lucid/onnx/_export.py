"""`lucid.onnx.export`: a model as an ONNX file that ONNX Runtime runs with eager lucid's results.

Pipeline: trace (as `lucid.export` does, lucid/runtime/aot.py) -> the cleanup passes only (no
fusion: ONNX wants the plain ops, and runtimes fuse on their own) -> one translation per node
from the table in lucid/onnx/_export_ops.py -> `onnx.checker.check_model(full_check=True)` ->
the file, written atomically. Parameters and buffers become initializers named after the
model's state_dict keys; a symbolic batch becomes the dim_param "N".

`onnx` is an optional dependency (`pip install 'lucid[onnx]'`), imported only when exporting.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from lucid.errors import LucidError, format_diagnostic
from lucid.ir.core import Graph, Node, Value
from lucid.ir.types import Dim, DType, dim_parts
from lucid.onnx._export_norms import recognise_norms
from lucid.onnx._export_ops import TRANSLATIONS
from lucid.onnx._package import require_onnx

__all__ = ["OnnxExportError", "export"]

MIN_OPSET = 17  # LayerNormalization, and Reduce* taking axes as an attribute up to 17
PROTOBUF_LIMIT = 2**31 - 2**24  # bytes of parameters; the message adds the graph around them


class OnnxExportError(LucidError):
    """The model cannot be written as ONNX (an op with no ONNX form, a bad argument)."""


def export(
    model: Any,
    example_inputs: Any,
    path: str | os.PathLike[str],
    *,
    dynamic_batch: bool = True,
    opset: int = 17,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> Any:
    """Write `model` traced on `example_inputs` to the ONNX file `path`; return the ModelProto.

    The model is exported in its current mode (call `model.eval()` first for inference), as
    PyTorch does; BatchNorm in training mode is refused (its running-statistic writes have no
    ONNX form). With `dynamic_batch`, inputs and outputs declare the batch as dim_param "N",
    and Python decisions on the batch size in forward are refused (the file cannot check them).
    """
    onnx = require_onnx("lucid.onnx.export")
    latest = int(onnx.defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise OnnxExportError(
            f"opset must be an int from {MIN_OPSET} to {latest} (this onnx's newest), not {opset!r}"
        )
    inputs = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    graph = _graph(model, inputs, dynamic_batch)
    _refuse_unmapped(model, graph)
    n_in = len(inputs)  # past them, the graph takes one random seed per training-mode Dropout
    in_names = _names(input_names, "input", n_in, "input_names")
    out_names = _names(output_names, "output", len(graph.outputs), "output_names")
    clash = (set(in_names) | set(out_names)) & {p.hint for p in graph.params}
    if clash or len(set(in_names) | set(out_names)) != n_in + len(out_names):
        raise OnnxExportError(
            "input and output names must be distinct from each other and from the parameter "
            f"names; got inputs {in_names}, outputs {out_names}"
        )
    from lucid.runtime.aot import param_arrays

    arrays = param_arrays(model, graph, OnnxExportError)
    size = sum(a.nbytes for a in arrays)
    if size >= PROTOBUF_LIMIT:
        raise OnnxExportError(
            f"the model's parameters take {size / 2**30:.2f} GiB, and an ONNX file holding them "
            "is a protobuf message, which cannot reach 2 GiB; weights in external data files "
            "are not supported yet"
        )
    emitter = Emitter(onnx, opset)
    proto = emitter.model(graph, arrays, in_names, out_names, n_in)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # a bug here, never a file for the user
        raise OnnxExportError(
            f"lucid built an ONNX graph that onnx.checker rejects (a lucid bug): {exc}"
        ) from exc
    _atomic_write(path, proto.SerializeToString())
    return proto


def _graph(model: Any, inputs: Sequence[Any], dynamic_batch: bool) -> Graph:
    """Trace `model` as lucid.export does and run the cleanup passes (no fusion)."""
    from lucid.ir.passes import CLEANUP_PASSES, PassManager
    from lucid.ir.trace import Guard, decision_error, trace

    guards: list[Guard] = []
    writes: list[str] = []  # buffers forward writes: BatchNorm's running statistics in training
    graph = trace(model, *inputs, dynamic_batch=dynamic_batch, guards=guards, state=writes)
    if writes:
        name = type(getattr(model, "__wrapped__", model)).__name__
        listed = ", ".join(repr(w) for w in writes)
        raise OnnxExportError(
            f"cannot export {name} to ONNX: forward writes the buffer(s) {listed} (running "
            "statistics of a BatchNorm in training mode), which an ONNX graph cannot write "
            "back; call model.eval() before exporting"
        )
    if guards:
        raise decision_error(
            model,
            guards,
            "an ONNX file cannot check them when it is run: export with dynamic_batch=False",
        )
    return PassManager(list(CLEANUP_PASSES)).run(graph)[0]


def _refuse_unmapped(model: Any, graph: Graph) -> None:
    """One error listing every node whose op has no ONNX translation, with its source line."""
    flat = all(node.body is None for node in graph.nodes)
    # the printer's node lines, one per node in order (a fused body would add its own lines)
    lines = str(graph).splitlines()[1:-1] if flat else []
    index = {node: i for i, node in enumerate(graph.nodes)}
    problems = []
    for _owner, node in graph.walk():
        if node.op in TRANSLATIONS or node.body is not None:
            continue
        message = f"op {node.op!r} has no ONNX translation"
        problems.append(format_diagnostic(message, node.loc, lines, index.get(node), 0))
    if problems:
        name = type(getattr(model, "__wrapped__", model)).__name__
        listed = "\n".join("  " + p.replace("\n", "\n  ") for p in problems)
        raise OnnxExportError(
            f"cannot export {name} to ONNX: {len(problems)} node(s) with no ONNX form:\n{listed}"
        )


def _names(given: Sequence[str] | None, prefix: str, count: int, what: str) -> list[str]:
    if given is None:
        return [f"{prefix}_{i}" for i in range(count)]
    names = list(given)
    if (
        isinstance(given, str)
        or len(names) != count
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise OnnxExportError(f"{what} must be {count} non-empty strings, got {given!r}")
    return names


def _atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` through a temporary file in its directory and os.replace: a
    reader sees the old file or the whole new one, and a failure leaves nothing behind."""
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lucid-onnx-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OnnxExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        # mkstemp's file is private (0600); the model file gets the mode of the one it replaces,
        # or the usual 0644, so that a server running as another user can read it
        mode = os.stat(target).st_mode & 0o7777 if os.path.isfile(target) else 0o644
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OnnxExportError(f"cannot write {target}: {exc.strerror or exc}") from exc
        raise


class Emitter:
    """Builds one ONNX graph from one IR graph. Names are made here, in program order (never
    from a global counter): `v0, v1, ...` for node results, state_dict keys for initializers."""

    def __init__(self, onnx: Any, opset: int) -> None:
        self.onnx = onnx
        self.opset = opset
        self._nodes: list[Any] = []
        self._names: dict[Value, str] = {}
        self._count = 0
        self._taken: set[str] = set()  # names the caller chose, or the state_dict gives
        self._consts: dict[tuple[str, str, tuple[int, ...], bytes], str] = {}
        self._symbols: dict[str, tuple[str, int, int]] = {}  # symbol -> (input, axis, factor)
        self._symbol_sizes: dict[str, str] = {}
        self._pending: list[Node] = []  # fused nodes whose bodies are being inlined

    # ---------------------------------------------------------------- the whole model

    def model(
        self,
        graph: Graph,
        arrays: Sequence[np.ndarray],
        in_names: Sequence[str],
        out_names: Sequence[str],
        n_in: int,
    ) -> Any:
        """The ModelProto of `graph`: inputs, initializers, translated nodes, named outputs."""
        helper = self.onnx.helper
        self._taken = {*in_names, *out_names, *(p.hint or "" for p in graph.params)}
        inputs = []
        for value, name in zip(graph.inputs[:n_in], in_names):
            self._names[value] = name
            inputs.append(self._value_info(name, value))
            for axis, d in enumerate(value.type.shape):
                symbol, factor = dim_parts(d)
                if symbol is not None:
                    self._symbols.setdefault(symbol, (name, axis, factor))
        for value in graph.inputs[n_in:]:  # training-mode Dropout's seeds: ONNX draws its own
            self._names[value] = ""  # an absent optional input, should any op reach for it
        initializers = []
        for value, array in zip(graph.params, arrays):
            assert value.hint is not None
            self._names[value] = value.hint
            initializers.append(self.onnx.numpy_helper.from_array(array, value.hint))
        self._translate(graph)
        outputs = []
        for value, name in zip(graph.outputs, out_names):
            self._nodes.append(helper.make_node("Identity", [self._names[value]], [name]))
            outputs.append(self._value_info(name, value))
        # constants only the recognised norms read (their epsilons, the 1 of 1 / sqrt) are unread
        read = {name for n in self._nodes for name in n.input}
        nodes = [n for n in self._nodes if n.op_type != "Constant" or n.output[0] in read]
        body = helper.make_graph(nodes, "lucid", inputs, outputs, initializer=initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        return helper.make_model(
            body,
            opset_imports=opsets,
            producer_name="lucid",
            ir_version=helper.find_min_ir_version_for(opsets),
        )

    def _translate(self, graph: Graph) -> None:
        """Every node in order; a fused node's body is inlined (explicit worklist, no recursion)."""
        norms = recognise_norms(graph)
        absorbed = {n for norm in norms.values() for n in norm.nodes}
        for _owner, node in graph.walk():
            if node in norms:
                norm = norms[node]
                names = [self._names[v] if v is not None else "" for v in norm.inputs]
                if not names[1]:  # LayerNormalization's scale is not optional: ones
                    names[1] = self.const(np.ones(norm.scale_shape, norm.dtype.np), "ones")
                while not names[-1]:  # an absent optional input is left off, not named ""
                    names.pop()  # (ONNX Runtime 1.32 crashes on LayerNormalization's B = "")
                self._names[node.result] = self.node(norm.op_type, names, **norm.attrs)
                continue
            if node in absorbed:
                continue
            if node.body is not None:
                # the body sees the node's inputs; its outputs are the node's results, bound
                # once the walk has emitted the body's nodes (they follow this one in order)
                for inner, outer in zip(node.body.inputs, node.inputs):
                    self._names[inner] = self._names[outer]
                self._pending.append(node)
                self._bind_finished_bodies()  # a body may return its inputs as they are
                continue
            try:
                results = TRANSLATIONS[node.op](self, node, [self._names[v] for v in node.inputs])
            except LucidError as exc:  # an op ONNX cannot express with these attributes
                raise OnnxExportError(format_diagnostic(str(exc), node.loc)) from exc
            outs = (results,) if isinstance(results, str) else results
            for value, name in zip(node.results, outs):
                self._names[value] = name
            self._bind_finished_bodies()

    def _bind_finished_bodies(self) -> None:
        while self._pending and all(v in self._names for v in self._pending[-1].body.outputs):  # type: ignore[union-attr]
            node = self._pending.pop()
            for value, inner in zip(node.results, node.body.outputs):  # type: ignore[union-attr]
                self._names[value] = self._names[inner]

    def _value_info(self, name: str, value: Value) -> Any:
        dims: list[int | str] = [d if isinstance(d, int) else str(d) for d in value.type.shape]
        return self.onnx.helper.make_tensor_value_info(
            name, self.onnx_dtype(value.type.dtype), dims
        )

    # ---------------------------------------------------------------- what translations call

    def onnx_dtype(self, dtype: DType) -> int:
        """The ONNX TensorProto element type of `dtype`."""
        tp = self.onnx.TensorProto
        return {
            DType.F32: tp.FLOAT,
            DType.F64: tp.DOUBLE,
            DType.I64: tp.INT64,
            DType.BOOL: tp.BOOL,
        }[dtype]

    def fresh(self) -> str:
        """A new value name, never one of the graph's own (inputs, outputs, parameters)."""
        while True:
            self._count += 1
            name = f"v{self._count - 1}"
            if name not in self._taken:
                return name

    def node(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Append an ONNX node with one result; return the result's name."""
        out = self.fresh()
        self._nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def const(self, array: np.ndarray, hint: str = "const") -> str:
        """A Constant node holding `array` (one per distinct value)."""
        array = np.array(array, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        found = self._consts.get(key)
        if found is None:
            found = self.fresh()
            tensor = self.onnx.numpy_helper.from_array(array, found)
            self._nodes.append(self.onnx.helper.make_node("Constant", [], [found], value=tensor))
            self._consts[key] = found
        return found

    def scalar(self, value: Any, dtype: DType) -> str:
        """A 0-d constant of `dtype`."""
        return self.const(np.array(value, dtype=dtype.np))

    def i64(self, values: Sequence[int]) -> str:
        """A 1-d int64 constant (shapes, axes, bounds)."""
        return self.const(np.array(list(values), dtype=np.int64).reshape(len(values)))

    def reduce(self, op_type: str, x: str, axes: Sequence[int] | None, *, keepdims: bool) -> str:
        """A Reduce* node over `axes` (all axes for None), whichever way this opset takes them."""
        keep = int(keepdims)
        if axes is None:
            return self.node(op_type, [x], keepdims=keep)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.i64(axes)], keepdims=keep)
        return self.node(op_type, [x], axes=list(axes), keepdims=keep)

    def symbol_size(self, symbol: str) -> str:
        """The run-time value of `symbol` as a 1-d int64 tensor of one element, read from the
        first input that has it (its dim there is symbol * factor)."""
        found = self._symbol_sizes.get(symbol)
        if found is None:
            if symbol not in self._symbols:
                raise OnnxExportError(f"the size {symbol} appears in no input of the graph")
            source, axis, factor = self._symbols[symbol]
            found = self.node("Shape", [source], start=axis, end=axis + 1)
            if factor != 1:
                found = self.node("Div", [found, self.i64([factor])])
            self._symbol_sizes[symbol] = found
        return found

    def shape_tensor(self, shape: Sequence[Dim]) -> str:
        """`shape` as a 1-d int64 tensor; symbolic dims are computed from the inputs' shapes."""
        if all(isinstance(d, int) for d in shape):
            return self.i64([int(d) for d in shape])
        parts, static = [], []
        for d in shape:
            symbol, factor = dim_parts(d)
            if symbol is None:
                static.append(factor)
                continue
            if static:
                parts.append(self.i64(static))
                static = []
            size = self.symbol_size(symbol)
            parts.append(size if factor == 1 else self.node("Mul", [size, self.i64([factor])]))
        if static:
            parts.append(self.i64(static))
        return self.node("Concat", parts, axis=0)

    def reshape_target(self, shape: Sequence[Dim]) -> str:
        """A Reshape target for `shape` that holds at every batch size: one symbolic dim
        becomes -1 (the others are static, so it is the one left over); several are computed."""
        symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if len(symbolic) == 1 and all(d != 0 for d in shape if isinstance(d, int)):
            return self.i64([-1 if not isinstance(d, int) else d for d in shape])
        return self.shape_tensor(shape)
