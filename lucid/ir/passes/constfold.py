"""Constant folding: a node whose inputs are all constants becomes constants of its results."""

from __future__ import annotations

from typing import Any

import numpy as np

from lucid.ir.core import Graph, Node
from lucid.ir.ops import OPS
from lucid.ir.passes._rewrite import Rewriter

# Larger results stay as computations: a folded constant is an attribute printed in the IR
# and compiled into the C text, so a broadcast of one number must not become a huge literal.
FOLD_LIMIT = 1024


def _foldable(node: Node) -> bool:
    """True for ops with a NumPy reference and statically shaped results within the limit."""
    opdef = OPS.get(node.op)
    if node.op == "constant" or node.body is not None or opdef is None:
        return False
    if opdef.reference is None or not node.inputs:
        return False
    return all(r.type.is_static and r.type.numel() <= FOLD_LIMIT for r in node.results)


def fold_constants(graph: Graph) -> Graph:
    """Evaluate nodes whose inputs are all `constant`s through the op table's reference.

    The reference is the op's definition (docs/DESIGN.md), so a folded value is exactly what
    the interpreter would compute; the constant keeps the result's dtype. Constants that
    lose their last user are left for dce.
    """
    rw = Rewriter(graph)
    arrays: dict[object, Any] = {}  # new constant value -> its array, so chains fold in one pass
    for node in graph.nodes:
        inputs = [rw.get(v) for v in node.inputs]
        if node.op == "constant":
            (new,) = rw.copy(node)
            arrays[new] = OPS["constant"].reference([], node.attrs)[0]
            continue
        if not _foldable(node) or not all(v in arrays for v in inputs):
            rw.copy(node)
            continue
        reference = OPS[node.op].reference
        assert reference is not None
        with np.errstate(all="ignore"):  # 0/0 folds to NaN exactly as it would run
            outs = reference([arrays[v] for v in inputs], node.attrs)
        for old, out in zip(node.results, outs):
            out = np.asarray(out, dtype=old.type.dtype.np)
            new = rw.emit(
                "constant", (), {"value": out.tolist(), "dtype": old.type.dtype}, loc=node.loc
            )
            rw.alias(old, new)
            arrays[new] = out
    return rw.finish()
