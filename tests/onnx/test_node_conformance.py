"""ONNX's backend node tests through lucid.onnx.load: every in-scope case must pass, eagerly
and compiled to C (the scope and the table of the rest: lucid/onnx/_conformance.py).

Speed: the cases are generated once per session (about 5 s). A C build costs far more than
these tiny graphs, so compiled cases run in bundles: `BUNDLE` consecutive cases become one
Module (`conformance.Bundle`), traced and built once, whose outputs are each case's own (the
cases share nothing). Each case is still its own test, judged on its own outputs; a bundle
that fails to compile is retried case by case, so a failure names its case. Builds use `-O0`
(the numerics flags stay: `-ffp-contract=off -fno-math-errno`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")

from lucid.onnx import _conformance as conformance

DOC = Path(__file__).resolve().parents[2] / "docs" / "onnx-conformance.md"
FAST_FLAGS = ["-O0", "-march=native", "-ffp-contract=off", "-fno-math-errno"]
BUNDLE = 120

_CASES = conformance.cases()
_IN_SCOPE = {c.name: c for c in conformance.iter_in_scope(_CASES)}


def _outputs(result: Any) -> list[np.ndarray]:
    items = result if isinstance(result, tuple) else (result,)
    return [np.asarray(t.data) for t in items]


def _check(case: conformance.Case, run: Any) -> None:
    for k, (inputs, expected) in enumerate(case.data_sets):
        got = _outputs(run(*conformance.runtime_inputs(case, inputs)))
        assert len(got) == len(expected), (
            f"data set {k}: {len(got)} outputs, expected {len(expected)}"
        )
        for i, (g, want) in enumerate(zip(got, expected)):
            why = conformance.compare(g, want, case.rtol, case.atol)
            assert why is None, f"data set {k}, output {i}: {why}"


def test_the_committed_table_is_generated_from_the_code() -> None:
    assert DOC.read_text() == conformance.table(_CASES), (
        "docs/onnx-conformance.md is stale: python -m lucid.onnx._conformance --write "
        "docs/onnx-conformance.md"
    )


def test_the_scope_covers_the_core_op_set() -> None:
    assert len(_CASES) > 1000 and len(_IN_SCOPE) >= 500
    ops = {n.op_type for c in _IN_SCOPE.values() for n in c.model.graph.node}
    for op in ("Conv", "Gemm", "MatMul", "Reshape", "Softmax", "BatchNormalization", "MaxPool"):
        assert op in ops


@pytest.mark.parametrize("name", sorted(_IN_SCOPE))
def test_eager(name: str) -> None:
    import lucid.onnx

    case = _IN_SCOPE[name]
    module = lucid.onnx.load(case.model, constants=conformance.bound_inputs(case))
    _check(case, module)


_NAMES = sorted(_IN_SCOPE)
_COMPILED: dict[str, Any] = {}  # case name -> its outputs (list of arrays) or the exception


def _compile_bundle(names: list[str]) -> None:
    """Run the cases `names` compiled as one bundle; on a failure of the whole, one by one."""
    import lucid
    import lucid.onnx

    cases = [_IN_SCOPE[n] for n in names]
    modules = [lucid.onnx.load(c.model, constants=conformance.bound_inputs(c)) for c in cases]
    inputs = [conformance.runtime_inputs(c, c.data_sets[0][0]) for c in cases]
    try:
        bundle = conformance.Bundle(modules, [len(x) for x in inputs])
        outs = _outputs(
            lucid.compile(bundle, options={"cflags": FAST_FLAGS})(*[x for xs in inputs for x in xs])
        )
    except Exception as e:  # noqa: BLE001  (found again below, case by case)
        if len(names) == 1:
            _COMPILED[names[0]] = e
            return
        for n in names:
            _compile_bundle([n])
        return
    at = 0
    for c in cases:
        k = len(c.data_sets[0][1])
        _COMPILED[c.name] = outs[at : at + k]
        at += k


@pytest.mark.needs_cc
@pytest.mark.parametrize("name", _NAMES)
def test_compiled(name: str) -> None:
    case = _IN_SCOPE[name]
    assert len(case.data_sets) == 1, "a bundle runs one data set per case"
    if name not in _COMPILED:
        start = _NAMES.index(name) // BUNDLE * BUNDLE
        _compile_bundle(_NAMES[start : start + BUNDLE])
    got = _COMPILED.pop(name)
    if isinstance(got, Exception):
        raise got
    expected = case.data_sets[0][1]
    assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
    for i, (g, want) in enumerate(zip(got, expected)):
        why = conformance.compare(g, want, case.rtol, case.atol)
        assert why is None, f"output {i}: {why}"
