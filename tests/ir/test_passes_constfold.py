"""Constant folding."""

from __future__ import annotations

import math

import numpy as np

from lucid.ir import Builder, DType
from lucid.ir.passes.constfold import FOLD_LIMIT, fold_constants
from lucid.ir.passes.dce import eliminate_dead_code
from tests.ir.graphs import f32
from tests.ir.test_passes import ops, run_both


def test_folds_a_chain_of_constant_ops() -> None:
    b = Builder()
    x = b.input(f32(2), "x")
    c = b.op("mul", [b.constant([1.5, -2.0]), b.constant(2.0)])
    c = b.op("hardswish", [c])
    b.output(b.op("add", [x, c]))
    g = b.build()
    out = eliminate_dead_code(fold_constants(g))
    assert ops(out) == ["constant", "add"]
    # hardswish(3) = 3, hardswish(-4) = -4 * 0 = -0.0 (the sign survives folding)
    assert repr(out.nodes[0].attrs["value"]) == repr((3.0, -0.0))
    run_both(g, out)


def test_folded_value_is_the_reference_value_in_the_result_dtype() -> None:
    b = Builder()
    c = b.op("div", [b.constant(1.0), b.constant(3.0)])
    b.output(b.op("sum", [b.op("broadcast", [c], {"shape": (4,)})], {"axes": 0}))
    out = eliminate_dead_code(fold_constants(b.build()))
    assert ops(out) == ["constant"]
    assert out.nodes[0].attrs["dtype"] is DType.F32
    assert out.nodes[0].attrs["value"] == float(np.float32(1) / np.float32(3) * np.float32(4))


def test_ieee_specials_fold_as_they_would_run() -> None:
    b = Builder()
    zero = b.constant(0.0)
    b.output(b.op("div", [zero, zero]), b.op("log", [zero]), b.op("neg", [zero]))
    out = fold_constants(b.build())
    nan, ninf, negzero = (out.producers()[v].attrs["value"] for v in out.outputs)
    assert math.isnan(nan) and ninf == -math.inf and math.copysign(1, negzero) == -1


def test_does_not_fold_nodes_reading_inputs() -> None:
    b = Builder()
    x = b.input(f32(2), "x")
    b.output(b.op("mul", [x, b.constant(2.0)]))
    assert ops(fold_constants(b.build())) == ["constant", "mul"]


def test_does_not_fold_into_a_huge_literal() -> None:
    b = Builder()
    one = b.constant(1.0)
    big = b.op("broadcast", [one], {"shape": (FOLD_LIMIT + 1,)})
    small = b.op("broadcast", [one], {"shape": (FOLD_LIMIT,)})
    b.output(big, small)
    out = fold_constants(b.build())
    assert ops(out) == ["constant", "broadcast", "constant"]


def test_does_not_fold_symbolic_results() -> None:
    b = Builder()
    x = b.input(f32("N", 2), "x")
    c = b.op("broadcast", [b.constant(1.0)], {"shape": ("N", 2)})
    b.output(b.op("add", [x, c]))
    assert ops(fold_constants(b.build())) == ["constant", "broadcast", "add"]


def test_an_output_that_folds_stays_an_output() -> None:
    b = Builder()
    b.output(b.op("exp", [b.constant(0.0)]))
    out = eliminate_dead_code(fold_constants(b.build()))
    assert ops(out) == ["constant"] and out.outputs == (out.nodes[0].result,)
    assert out.nodes[0].attrs["value"] == 1.0
