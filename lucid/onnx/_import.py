"""`lucid.onnx.load`: an ONNX model as a lucid `nn.Module`.

The module (`_module.OnnxModule`) has the float initializers as Parameters; its forward walks
the graph's nodes in order and calls each op type's converter (`_import_ops.OPS_TABLE`), which
uses lucid's eager ops, so the module runs eagerly, and `lucid.compile` / `lucid.export` trace
it like any lucid model.

Import runs in three steps, and fails as a whole (one OnnxImportError listing every problem)
rather than returning a partial module:
1. read and check the file: protobuf, opset, graph order (no cycles), ONNX shape inference;
2. the static support check: every node's op type, attributes and dtypes, and that the inputs
   lucid needs as compile-time values (a Reshape's shape, ...) are known at import;
3. probe runs: the graph runs eagerly on zero inputs of the declared shapes; every node whose
   inputs are all known (constants, static shapes) is evaluated then and folded. With a dynamic
   batch (a first input dim without a fixed size) it runs at two batch sizes: a folded integer
   that follows the batch becomes the marker `BATCH`, which shape consumers (Reshape, Expand)
   read back as the run's batch, so PyTorch's Shape -> Gather -> Unsqueeze -> Concat ->
   Reshape flatten works for any batch and traces to a reshape on the batch symbol.
Nothing from the file is ever unpickled or executed: tensors are read with onnx.numpy_helper.
"""

from __future__ import annotations

import heapq
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lucid.errors import OnnxImportError
from lucid.onnx._import_ops import (
    BATCH,
    DTYPES,
    FOLDED_ALWAYS,
    OPS_TABLE,
    NodeInfo,
)
from lucid.onnx._module import InputSpec, OnnxModule, Step
from lucid.onnx._package import require_onnx
from lucid.tensor import Tensor

MIN_OPSET, MAX_OPSET = 7, 28  # the standard-domain opsets the converters follow (and are tested at)
_PROBE_BATCHES = (2, 3)  # two batch sizes tell batch-dependent shape values from constants


# ---------------------------------------------------------------- reading and checking


def read_model(source: Any) -> Any:
    """A ModelProto from a path, bytes or a ModelProto, or an OnnxImportError saying why not."""
    onnx = require_onnx("lucid.onnx")
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, where = bytes(source), "the bytes given"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise OnnxImportError(f"cannot read {path}: {e.strerror or e}") from None
        where = str(path)
    else:
        raise TypeError(
            f"lucid.onnx.load: expected a path, bytes or an onnx.ModelProto, got {type(source).__name__}"
        )
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001  (protobuf's DecodeError and friends: one message)
        raise OnnxImportError(
            f"{where} is not an ONNX model (the protobuf does not parse: {type(e).__name__}: {e})"
        ) from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{where} holds no ONNX graph (not an ONNX model, or truncated)")
    return model


def _opset(model: Any) -> int:
    """The standard-domain opset, checked against what lucid supports."""
    version = None
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            version = int(entry.version)
        else:
            raise OnnxImportError(
                f"the model imports the operator set {entry.domain!r} (version {entry.version}); "
                "lucid imports only the standard ONNX domain"
            )
    if version is None:
        raise OnnxImportError("the model declares no standard ONNX opset")
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise OnnxImportError(
            f"opset {version} is not supported: lucid imports opsets {MIN_OPSET} to {MAX_OPSET}"
        )
    return version


def _order(graph: Any, known: set[str]) -> list[Any]:
    """The nodes in an order where each input is defined first, or an error naming the nodes
    caught in a cycle or reading undefined values (a worklist, not recursion)."""
    producers: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out and (out in producers or out in known):
                raise OnnxImportError(f"value {out!r} is defined twice (node {_label(node)})")
            if out:
                producers[out] = i
    waiting = [0] * len(graph.node)
    readers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.node):
        deps = {producers[n] for n in node.input if n and n not in known and n in producers}
        missing = [n for n in node.input if n and n not in known and n not in producers]
        if missing:
            raise OnnxImportError(f"node {_label(node)} reads undefined values {missing}")
        waiting[i] = len(deps)
        for d in deps:
            readers.setdefault(d, []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)  # the file's order wherever it is a valid one
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for r in readers.get(i, ()):
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, r)
    if len(order) != len(graph.node):
        stuck = [_label(graph.node[i]) for i, w in enumerate(waiting) if w > 0]
        raise OnnxImportError(f"the graph has a cycle through the nodes {', '.join(stuck[:8])}")
    return [graph.node[i] for i in order]


def fuse_erf_gelu(nodes: Sequence[Any], inits: Mapping[str, np.ndarray]) -> list[Any]:
    """PyTorch's exact GELU as exported before opset 20, `(x * (1 + erf(x / sqrt 2))) * 0.5`
    (Div, Erf, Add, Mul, Mul), as one Gelu node: lucid has GELU, not erf. The formula is
    lucid's gelu term for term (the 0.5 is exact in either order), so nothing is rounded
    differently. The pattern's intermediate values must have no other readers."""
    onnx = require_onnx("lucid.onnx")
    consts: dict[str, np.ndarray] = dict(inits)
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            consts[n.output[0]] = onnx.numpy_helper.to_array(n.attribute[0].t)
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def scalar(name: str, value: float) -> bool:
        v = consts.get(name)
        return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-6

    def only(name: str, op: str) -> Any:
        rs = readers.get(name, [])
        return rs[0] if len(rs) == 1 and rs[0].op_type == op else None

    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    for erf in nodes:
        if erf.op_type != "Erf":
            continue
        div = next((n for n in nodes if erf.input[0] in n.output), None)
        if div is None or div.op_type != "Div" or not scalar(div.input[1], math.sqrt(2.0)):
            continue
        if len(readers.get(div.output[0], [])) != 1:
            continue
        x = div.input[0]
        add = only(erf.output[0], "Add")
        if add is None or not scalar(next(i for i in add.input if i != erf.output[0]), 1.0):
            continue
        mul = only(add.output[0], "Mul")
        if mul is None or set(mul.input) != {x, add.output[0]}:
            continue
        half = only(mul.output[0], "Mul")
        if half is None or not scalar(next(i for i in half.input if i != mul.output[0]), 0.5):
            continue
        gelu = onnx.helper.make_node("Gelu", [x], [half.output[0]], name=f"{erf.name}_gelu")
        replaced[id(half)] = gelu
        dropped.update(id(n) for n in (div, erf, add, mul))
    return [replaced.get(id(n), n) for n in nodes if id(n) not in dropped]


def _label(node: Any) -> str:
    return f"{node.name or '(unnamed)'} ({node.op_type})"


def _infer(model: Any) -> Any:
    onnx = require_onnx("lucid.onnx")
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001  (InferenceError, ValidationError: one message)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise OnnxImportError(f"the model's types and shapes do not check: {first}") from None


def value_types(graph: Any) -> dict[str, tuple[int | None, tuple[Any, ...] | None]]:
    """name -> (element type, shape with ints / dim_param strings / None), as inference left them."""
    out: dict[str, tuple[int | None, tuple[Any, ...] | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        t = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
        if t is None:
            out[vi.name] = (None, None)
            continue
        shape = None
        if t.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in t.shape.dim
            )
        out[vi.name] = (t.elem_type or None, shape)
    return out


# ---------------------------------------------------------------- load


def _attrs(node: Any) -> dict[str, Any]:
    onnx = require_onnx("lucid.onnx")
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode("utf-8", "replace") for s in v]
        out[a.name] = v
    return out


def _support_problems(
    nodes: Sequence[Any],
    types: Mapping[str, tuple[int | None, tuple[Any, ...] | None]],
    known: set[str],
    opset: int,
) -> list[str]:
    """The static support check: one line per node lucid cannot import, and why."""
    problems = []
    known = set(known)
    for node in nodes:
        why = node_problem(node, types, known, opset)
        if why is not None:
            problems.append(f"node {_label(node)}: {why}")
        ins = [n for n in node.input if n]
        if node.op_type in FOLDED_ALWAYS or all(n in known for n in ins):
            known.update(o for o in node.output if o)
    return problems


def node_problem(
    node: Any,
    types: Mapping[str, tuple[int | None, tuple[Any, ...] | None]],
    known: set[str],
    opset: int,
) -> str | None:
    """Why lucid cannot import this node (None: it can), from its op type, attributes and
    input dtypes, and whether the inputs it needs at import are known there."""
    if node.domain not in ("", "ai.onnx"):
        return f"op domain {node.domain!r} is not supported"
    spec = OPS_TABLE.get(node.op_type)
    if spec is None:
        return "op type not supported"
    attrs = _attrs(node)
    extra = sorted(set(attrs) - spec.attrs)
    if extra:
        return f"attribute{'s' if len(extra) > 1 else ''} {', '.join(extra)} not supported"
    outs = [o for o in node.output]
    if len(outs) > spec.outputs:
        return f"{len(outs)} outputs (lucid gives {spec.outputs})"
    in_types = [types.get(n, (None, None))[0] if n else None for n in node.input]
    for n, t in zip(node.input, in_types):
        if n and t is not None and t not in DTYPES:
            return f"input {n!r} has dtype {_type_name(t)}"
    for o in node.output:
        t = types.get(o, (None, None))[0]
        if o and t is not None and t not in DTYPES:
            return f"output {o!r} has dtype {_type_name(t)}"
    if in_types and in_types[0] is not None and in_types[0] not in spec.dtypes:
        return f"input dtype {_type_name(in_types[0])}"
    for i in spec.const_inputs:
        if i < len(node.input) and node.input[i] and node.input[i] not in known:
            if node.op_type in ("Squeeze", "Unsqueeze", "Split") and opset < 13:
                continue
            return f"input {i} ({node.input[i]!r}) must be known at import, it is a runtime value"
    info = NodeInfo(
        node.op_type,
        attrs,
        in_types,
        [types.get(o, (None, None))[0] for o in node.output],
        [types.get(n, (None, None))[1] if n else None for n in node.input],
        [not n or n in known for n in node.input],
        len(node.output),
        opset,
    )
    return spec.check(info) if spec.check is not None else None


def _type_name(t: int) -> str:
    onnx = require_onnx("lucid.onnx")
    try:
        return str(onnx.TensorProto.DataType.Name(t)).lower()
    except ValueError:
        return str(t)


def load(source: Any, *, constants: Mapping[str, Any] | None = None) -> OnnxModule:
    """An ONNX model (path, bytes or ModelProto) as a lucid Module; `constants` binds graph
    inputs to fixed values (they become constants and leave the forward's signature)."""
    onnx = require_onnx("lucid.onnx")
    model = read_model(source)
    opset = _opset(model)
    if model.graph.initializer and any(
        t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer
    ):
        raise OnnxImportError("initializers with external data are not supported")
    inferred = _infer(model)
    graph = inferred.graph
    types = value_types(graph)
    numpy_helper = onnx.numpy_helper

    inits: dict[str, np.ndarray] = {}
    for t in graph.initializer:
        if t.data_type not in DTYPES:
            raise OnnxImportError(f"initializer {t.name!r} has dtype {_type_name(t.data_type)}")
        inits[t.name] = numpy_helper.to_array(t).astype(DTYPES[t.data_type])
        types.setdefault(t.name, (t.data_type, tuple(t.dims)))
    bound = dict(constants or {})
    input_names = [i.name for i in graph.input if i.name not in inits]
    unknown = sorted(set(bound) - set(input_names))
    if unknown:
        raise OnnxImportError(f"constants {unknown} name no graph input (inputs: {input_names})")
    specs: list[InputSpec] = []
    consts: dict[str, np.ndarray] = {k: v for k, v in inits.items() if v.dtype.kind != "f"}
    params = {k: v for k, v in inits.items() if v.dtype.kind == "f"}
    for vi in graph.input:
        if vi.name in inits:
            continue
        elem, shape = types.get(vi.name, (None, None))
        if elem is None or elem not in DTYPES:
            raise OnnxImportError(
                f"graph input {vi.name!r} has dtype {_type_name(elem) if elem else 'unknown'} "
                "(lucid takes float32, float64, int64 and bool)"
            )
        if vi.name in bound:
            value = np.asarray(bound[vi.name])
            consts[vi.name] = value.astype(DTYPES[elem])
            continue
        if shape is None:
            raise OnnxImportError(f"graph input {vi.name!r} has no declared shape")
        dims: list[int | None] = []
        for k, d in enumerate(shape):
            if isinstance(d, int):
                dims.append(d)
            elif k == 0:
                dims.append(None)
            else:
                raise OnnxImportError(
                    f"graph input {vi.name!r}: dim {k} has no fixed size ({d!r}); lucid "
                    "compiles static shapes with at most a dynamic first (batch) dim"
                )
        specs.append(InputSpec(vi.name, DTYPES[elem], tuple(dims)))

    known = set(inits) - set(params) | set(bound)
    nodes = _order(graph, set(inits) | {i.name for i in graph.input})
    nodes = fuse_erf_gelu(nodes, inits)
    problems = _support_problems(nodes, types, known | set(params) & _const_read(nodes), opset)
    if problems:
        raise OnnxImportError(
            f"{len(problems)} node{'s' if len(problems) > 1 else ''} cannot be imported:\n  "
            + "\n  ".join(problems),
            problems,
        )
    steps = [
        Step(
            n.name or f"{n.op_type}_{i}",
            n.op_type,
            tuple(n.input),
            tuple(n.output),
            _attrs(n),
        )
        for i, n in enumerate(nodes)
    ]
    outputs = [o.name for o in graph.output]
    module = OnnxModule(graph.name, specs, outputs, steps, params, consts, opset)
    module.folded = _fold(module, types)
    return module


def _const_read(nodes: Sequence[Any]) -> set[str]:
    """Values read where a converter needs them known at import (float initializers there are
    read as values, not as parameters)."""
    out: set[str] = set()
    for node in nodes:
        spec = OPS_TABLE.get(node.op_type)
        if spec is None:
            continue
        for i in (*spec.const_inputs, *((1, 2) if node.op_type == "Clip" else ())):
            if i < len(node.input) and node.input[i]:
                out.add(node.input[i])
    return out


def _probe_inputs(module: OnnxModule, batch: int) -> list[Tensor]:
    return [
        Tensor(np.zeros(tuple(batch if d is None else d for d in s.shape), s.dtype))
        for s in module.input_specs
    ]


def _fold(module: OnnxModule, types: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Run the probes; the values they could evaluate, merged across batch sizes."""
    batches = _PROBE_BATCHES if module.dynamic_batch else (_PROBE_BATCHES[0],)
    runs: list[dict[str, np.ndarray]] = []
    for b in batches:
        record: dict[str, np.ndarray] = {}
        problems: list[str] = []
        env = module.run_steps(_probe_inputs(module, b), {}, record, problems)
        if problems:
            raise OnnxImportError(
                f"{len(problems)} node{'s' if len(problems) > 1 else ''} failed on inputs of "
                "the declared shapes:\n  " + "\n  ".join(problems),
                problems,
            )
        _check_types(module, env, types, b)
        runs.append(record)
    folded = runs[0] if len(runs) == 1 else _merge(runs[0], runs[1], batches)
    # the module as it will run: folded values skipped, the rest traced through
    for b in batches[:1]:
        module.run_steps(_probe_inputs(module, b), folded, None)
    return folded


def _merge(
    a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], batches: Sequence[int]
) -> dict[str, np.ndarray]:
    """Values of two probes at different batch sizes: equal ones are constants; an int64 one
    that differs only where it equals the batch holds the BATCH marker there."""
    merged: dict[str, np.ndarray] = {}
    for name, x in a.items():
        y = b.get(name)
        if y is None:
            continue
        if x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            merged[name] = x
            continue
        if x.shape == y.shape and x.dtype == np.int64:
            follows = (x == batches[0]) & (y == batches[1])
            if ((x == y) | follows).all():
                merged[name] = np.where(follows, BATCH, x)
                continue
        raise OnnxImportError(
            f"value {name!r} is computed at import but depends on the batch size in a way "
            "lucid cannot express (only a shape entry equal to the batch may vary with it)"
        )
    return merged


def _check_types(
    module: OnnxModule, env: Mapping[str, Any], types: Mapping[str, Any], batch: int
) -> None:
    """Each value's dtype and static dims as ONNX inference declared them (a converter bug
    or an inconsistent file shows here, at import, not as a wrong answer)."""
    for step in module.steps:
        for name in step.outputs:
            if not name or name not in env:
                continue
            elem, shape = types.get(name, (None, None))
            value = env[name]
            data = value.data if isinstance(value, Tensor) else value
            if elem in DTYPES and data.dtype != DTYPES[elem]:
                raise OnnxImportError(
                    f"node {step.name} ({step.op_type}): output {name!r} has dtype {data.dtype}, "
                    f"the model declares {DTYPES[elem]}"
                )
            if (
                shape is not None
                and not module.dynamic_batch
                and (
                    len(shape) != data.ndim
                    or any(isinstance(d, int) and d != g for d, g in zip(shape, data.shape))
                )
            ):
                raise OnnxImportError(
                    f"node {step.name} ({step.op_type}): output {name!r} has shape "
                    f"{list(data.shape)}, the model declares {list(shape)}"
                )


__all__ = ["MAX_OPSET", "MIN_OPSET", "OnnxModule", "load", "node_problem", "read_model"]
