"""ONNX's backend node tests through lucid.onnx.load: every in-scope case must pass, eagerly
and compiled to C (the scope and the table of the rest: lucid/onnx/_conformance.py).

Speed: the cases are generated once per session (about 5 s); each compiled case builds one
small C library with `-O0` (the numerics flags stay: `-ffp-contract=off -fno-math-errno`),
which about halves the build time of `-O3` on these tiny graphs. A build also shares the cached
GEMM machinery object of the session's cache.
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


@pytest.mark.needs_cc
@pytest.mark.parametrize("name", sorted(_IN_SCOPE))
def test_compiled(name: str) -> None:
    import lucid
    import lucid.onnx

    case = _IN_SCOPE[name]
    module = lucid.onnx.load(case.model, constants=conformance.bound_inputs(case))
    _check(case, lucid.compile(module, options={"cflags": FAST_FLAGS}))
