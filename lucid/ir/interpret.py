"""The reference interpreter: runs a Graph node by node with the op table's NumPy references."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucid.errors import InputError, IRError
from lucid.ir.core import Attr, Graph, Node, Value
from lucid.ir.ops import DIMS, OPS, Array, OpDef
from lucid.ir.ops.base import dims
from lucid.ir.types import bind_dim, concrete_shape


def interpret(
    graph: Graph, *arrays: Any, params: Mapping[str, Any] | None = None
) -> tuple[Array, ...]:
    """Run `graph`: `arrays` are its inputs then params, or only inputs when `params` (hint ->
    array) is given. Symbolic dims are bound from the inputs; InputError on a bad input."""
    if params is None:
        values = (*graph.inputs, *graph.params)
        if len(arrays) != len(values):
            raise InputError(
                f"@{graph.name} takes {len(graph.inputs)} inputs and {len(graph.params)} "
                f"params ({len(values)} arrays), got {len(arrays)}"
            )
        given = list(arrays)
    else:
        values = (*graph.inputs, *graph.params)
        if len(arrays) != len(graph.inputs):
            raise InputError(f"@{graph.name} takes {len(graph.inputs)} inputs, got {len(arrays)}")
        given = [*arrays, *_params_by_hint(graph, params)]
    bindings: dict[str, int] = {}
    env: dict[Value, Array] = {}
    for i, (v, a) in enumerate(zip(values, given)):
        role = f"input {i}" if i < len(graph.inputs) else f"param {i - len(graph.inputs)}"
        label = f"{role} ({v.hint})" if v.hint else role
        env[v] = _check_input(label, v, a, bindings)
    return _run(graph, env, bindings)


def _params_by_hint(graph: Graph, params: Mapping[str, Any]) -> list[Any]:
    hints = [p.hint for p in graph.params]
    missing = [h for h in hints if h not in params]
    extra = sorted(set(params) - {h for h in hints if h is not None})
    if missing or extra or None in hints:
        raise InputError(
            f"@{graph.name}: params must be given by hint {hints}; "
            f"missing {missing}, unexpected {extra}"
        )
    return [params[h] for h in hints if h is not None]


def _check_input(label: str, v: Value, a: Any, bindings: dict[str, int]) -> Array:
    """`a` as an array of `v`'s type, binding its symbolic dims; InputError if it does not fit."""
    array = np.asarray(a)
    want = v.type
    if array.dtype != want.dtype.np or array.ndim != want.rank:
        raise InputError(
            f"{label}: expected {want}, got a {array.dtype} array of shape {array.shape}"
        )
    for axis, (dim, n) in enumerate(zip(want.shape, array.shape)):
        if isinstance(dim, int):
            if dim != n:
                raise InputError(
                    f"{label}: expected {want}, got shape {array.shape} (axis {axis} is {n})"
                )
            continue
        why = bind_dim(dim, n, bindings)
        if why is not None:
            raise InputError(f"{label}: {why} (expected {want}, got shape {array.shape})")
    return array


@dataclass
class _Frame:
    """A graph being run: its values so far, the next node, and the fused node it is a body of."""

    graph: Graph
    env: dict[Value, Array]
    owner: Node | None
    index: int = 0


def _run(graph: Graph, env: dict[Value, Array], bindings: Mapping[str, int]) -> tuple[Array, ...]:
    """Run nodes in order; a fused node pushes a frame for its body (explicit stack)."""
    stack = [_Frame(graph, env, None)]
    while True:
        frame = stack[-1]
        if frame.index == len(frame.graph.nodes):
            outs = tuple(_lookup(frame, v) for v in frame.graph.outputs)
            stack.pop()
            if not stack:
                return outs
            owner = frame.owner
            assert owner is not None
            _store(stack[-1], owner, outs, bindings)
            continue
        node = frame.graph.nodes[frame.index]
        args = [_lookup(frame, v) for v in node.inputs]
        if node.body is not None:
            stack.append(_Frame(node.body, dict(zip(node.body.inputs, args)), node))
            continue
        opdef = OPS.get(node.op)
        if opdef is None or opdef.reference is None:
            raise IRError(f"interpret: op {node.op!r} has no NumPy reference")
        outs = opdef.reference(args, _concrete_attrs(opdef, node.attrs, bindings))
        _store(frame, node, outs, bindings)


def _lookup(frame: _Frame, v: Value) -> Array:
    try:
        return frame.env[v]
    except KeyError:
        raise IRError(f"interpret: {v} is used before it is defined (run verify)") from None


def _store(frame: _Frame, node: Node, outs: tuple[Array, ...], bindings: Mapping[str, int]) -> None:
    """Record `node`'s results, checking them against its types (catches reference bugs)."""
    if len(outs) != len(node.results):
        raise IRError(f"interpret: {node.op} gave {len(outs)} results for {len(node.results)}")
    for r, a in zip(node.results, outs):
        a = np.asarray(a)
        shape = concrete_shape(r.type.shape, bindings)
        if a.dtype != r.type.dtype.np or a.shape != shape:
            raise IRError(
                f"interpret: {node.op} produced a {a.dtype} array of shape {a.shape} "
                f"for a result of type {r.type} (= {shape})"
            )
        frame.env[r] = a
    frame.index += 1


def _concrete_attrs(
    opdef: OpDef, attrs: Mapping[str, Attr], bindings: Mapping[str, int]
) -> Mapping[str, Attr]:
    """`attrs` with the symbols in shape-like attrs replaced by their bound sizes."""
    symbolic = [k for k, (kind, _) in opdef.attrs.items() if kind is DIMS]
    if not symbolic:
        return attrs
    out = dict(attrs)
    for k in symbolic:
        out[k] = concrete_shape(dims(attrs, k), bindings)
    return out
