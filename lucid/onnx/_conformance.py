"""ONNX backend node tests: which of them lucid's importer takes, and the generated table.

`python -m lucid.onnx._conformance --write docs/onnx-conformance.md` rewrites the table;
`tests/onnx/test_node_conformance.py` runs every in-scope case and checks that the committed
table is the one this module generates.

A case is in scope iff its model's opset is one lucid imports, every graph input and output
has a dtype lucid has (float32, float64, int64, bool), and every node passes the importer's
static support check (`_import.node_problem`: op type, attributes, dtypes, inputs needed at
import). The int64 graph inputs of a case (shapes, axes, indices: what lucid compiles as
static values) are bound as constants to the case's data (`lucid.onnx.load(constants=...)`);
the float and bool inputs stay runtime inputs.
"""

from __future__ import annotations

import argparse
import collections
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lucid.nn import Module
from lucid.onnx._import import MAX_OPSET, MIN_OPSET, node_problem, value_types
from lucid.onnx._import_ops import DTYPES, SUPPORTED_OPS


@dataclass(frozen=True)
class Case:
    """One backend node test: its model, data sets and tolerances."""

    name: str
    model: Any
    data_sets: Sequence[tuple[Sequence[np.ndarray], Sequence[np.ndarray]]]
    rtol: float
    atol: float


def cases() -> list[Case]:
    """The node tests shipped in the onnx package (generated in memory by onnx)."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = load_model_tests(kind="node")
    return [
        Case(
            c.name,
            c.model,
            [([_array(a) for a in i], [_array(a) for a in o]) for i, o in c.data_sets or []],
            c.rtol,
            c.atol,
        )
        for c in loaded
    ]


def _array(value: Any) -> Any:
    """A data set entry as an ndarray (some cases store TensorProtos or NumPy scalars); others
    (sequences, optionals) stay as they are."""
    from onnx import TensorProto, numpy_helper

    if isinstance(value, np.generic):
        return np.asarray(value)
    if isinstance(value, TensorProto):
        try:
            return numpy_helper.to_array(value)
        except Exception:  # noqa: BLE001  (a dtype NumPy lacks: the case is out of scope anyway)
            return value
    return value


def bound_inputs(case: Case) -> dict[str, np.ndarray]:
    """The case's int64 graph inputs, from its first data set: lucid's static values."""
    inits = {t.name for t in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in inits]
    if not case.data_sets:
        return {}
    inputs = case.data_sets[0][0]
    return {
        n: np.asarray(v)
        for n, v in zip(names, inputs)
        if isinstance(v, np.ndarray) and v.dtype == np.int64
    }


def scope(case: Case) -> tuple[str, str] | None:
    """None if lucid runs the case, else (reason kind, detail)."""
    model = case.model
    versions = {o.domain: o.version for o in model.opset_import}
    others = sorted(d for d in versions if d not in ("", "ai.onnx"))
    if others:
        return ("domain not supported", others[0])
    version = versions.get("", versions.get("ai.onnx", 0))
    if not MIN_OPSET <= version <= MAX_OPSET:
        return ("opset not supported", str(version))
    graph = model.graph
    ops = {n.op_type for n in graph.node}
    missing = sorted(ops - SUPPORTED_OPS)
    if missing:
        return ("op not supported", ", ".join(missing))
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for v in values:
            if not v.type.HasField("tensor_type"):
                return ("dtype not supported", f"non-tensor {kind}")
            t = v.type.tensor_type.elem_type
            if t not in DTYPES:
                return ("dtype not supported", _type_name(t))
    for _, arrays in ((0, ds[0]) for ds in case.data_sets):
        for a in arrays:
            if not isinstance(a, np.ndarray) or 0 in a.shape:
                return ("empty or non-tensor data", "")
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception:  # noqa: BLE001
        return ("shape inference fails", "")
    types = value_types(inferred.graph)
    for t in graph.initializer:
        types.setdefault(t.name, (t.data_type, tuple(t.dims)))
    known = {t.name for t in graph.initializer} | set(bound_inputs(case))
    for node in graph.node:
        why = node_problem(node, types, known, version)
        if why is not None:
            return ("attribute or input not supported", f"{node.op_type}: {_generic(why)}")
        shapes_known = node.op_type in ("Constant", "Shape", "Size", "EyeLike")
        if shapes_known or all(n in known for n in node.input if n):
            known.update(o for o in node.output if o)
    return None


def _generic(why: str) -> str:
    """A reason without value names, so the table groups alike cases."""
    import re

    return re.sub(r"\(?'[^']*'\)?\s*", "", why).replace("  ", " ").strip()


def _type_name(t: int) -> str:
    import onnx

    try:
        return str(onnx.TensorProto.DataType.Name(t)).lower()
    except ValueError:
        return str(t)


def runtime_inputs(case: Case, data: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A data set's inputs without those bound as constants."""
    inits = {t.name for t in case.model.graph.initializer}
    names = [i.name for i in case.model.graph.input if i.name not in inits]
    bound = bound_inputs(case)
    return [v for n, v in zip(names, data) if n not in bound]


def compare(got: Any, want: np.ndarray, rtol: float, atol: float) -> str | None:
    """None if `got` matches `want` as the backend tests judge (np.testing's allclose)."""
    got = np.asarray(got)
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    try:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    except AssertionError as e:
        return str(e).strip().splitlines()[-3] if str(e).strip() else "values differ"
    return None


class Bundle(Module):
    """Several imported cases as one Module, so one compiled library serves them all (a C
    build has a fixed cost far above these graphs' own). Its forward takes every case's
    runtime inputs in order and returns every case's outputs in order; the cases share
    nothing, so each output is what the case's module alone would give."""

    def __init__(self, modules: Sequence[Module], arity: Sequence[int]) -> None:
        super().__init__()
        self.arity = tuple(arity)
        for i, m in enumerate(modules):
            setattr(self, f"case{i}", m)

    def forward(self, *inputs: Any) -> tuple[Any, ...]:
        """The cases' outputs, flattened in case order."""
        outs: list[Any] = []
        at = 0
        for i, n in enumerate(self.arity):
            got = getattr(self, f"case{i}")(*inputs[at : at + n])
            outs.extend(got if isinstance(got, tuple) else (got,))
            at += n
        return tuple(outs)


def table(all_cases: Sequence[Case]) -> str:
    """The Markdown table: counts, then out-of-scope cases grouped by reason."""
    by_reason: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    in_scope = []
    for case in all_cases:
        why = scope(case)
        if why is None:
            in_scope.append(case.name)
        else:
            by_reason[why].append(case.name)
    lines = [
        "# ONNX backend node tests: lucid's scope",
        "",
        "Generated by `python -m lucid.onnx._conformance --write docs/onnx-conformance.md`;",
        "`tests/onnx/test_node_conformance.py` fails when this file is stale. Every in-scope",
        "case runs through `lucid.onnx.load`, lucid eager and `lucid.compile` (C) and must",
        "match the expected outputs at the case's tolerances. int64 graph inputs (shapes, axes,",
        "indices) are bound as constants: lucid compiles them as static values. So a case whose",
        "inputs are all int64 tests the import-time evaluation (constant folding), and integer",
        "Div and Mod, which lucid has no runtime op for, are in scope only on such values.",
        "",
        f"- cases: {len(all_cases)}",
        f"- in scope: {len(in_scope)}",
        f"- out of scope: {len(all_cases) - len(in_scope)}",
        f"- supported op types ({len(SUPPORTED_OPS)}): {', '.join(sorted(SUPPORTED_OPS))}",
        "",
        "## Out of scope, by reason",
        "",
        "| reason | detail | cases | examples |",
        "| --- | --- | --- | --- |",
    ]
    order = sorted(by_reason.items(), key=lambda kv: (kv[0][0], -len(kv[1]), kv[0][1]))
    for (kind, detail), names in order:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        lines.append(f"| {kind} | {detail.replace('|', '/')} | {len(names)} | {shown} |")
    lines += ["", "## In scope", "", ", ".join(sorted(in_scope)), ""]
    return "\n".join(lines)


def iter_in_scope(all_cases: Sequence[Case]) -> Iterator[Case]:
    """The cases lucid must pass."""
    return (c for c in all_cases if scope(c) is None)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the table, or write it with --write PATH."""
    parser = argparse.ArgumentParser(prog="python -m lucid.onnx._conformance")
    parser.add_argument("--write", metavar="PATH", help="write the table here")
    args = parser.parse_args(argv)
    text = table(cases())
    if args.write:
        Path(args.write).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = [
    "Bundle",
    "Case",
    "bound_inputs",
    "cases",
    "compare",
    "iter_in_scope",
    "main",
    "scope",
    "table",
]
