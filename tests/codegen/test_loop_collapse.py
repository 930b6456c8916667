"""Elementwise loop nests with broadcast operands: adjacent axes that every operand reads the
same way run as one longer loop (lucid/codegen/_lower_loops.py `collapse_axes`), with the same
elements in the same order, so the same bits as NumPy's float32 arithmetic, on any thread
count."""

from __future__ import annotations

import re

import numpy as np
import pytest

from lucid.codegen._lower_loops import collapse_axes
from lucid.ir import Builder, DType, TensorType
from tests.codegen.test_c_harness import compile_graph


@pytest.mark.parametrize(
    ("out", "ins", "want_out", "want_ins"),
    [
        # BN's scale and shift on NCHW: H and W merge; N and C do not (the shift is per channel)
        (
            (32, 120, 14, 14),
            [(32, 120, 14, 14), (32, 120, 1, 1), (120, 1, 1)],
            (32, 120, 196),
            [(32, 120, 196), (32, 120, 1), (1, 120, 1)],
        ),
        # a symbolic batch stays its own axis
        (("N", 8, 3, 3), [("N", 8, 3, 3), (8, 1, 1)], ("N", 8, 9), [("N", 8, 9), (1, 8, 1)]),
        # size-1 output axes are dropped; a per-channel scale of one image is one row
        ((1, 576, 7, 7), [(1, 576, 7, 7), (1, 576, 1, 1)], (576, 49), [(576, 49), (576, 1)]),
        # an outer product: nothing merges
        ((4, 1, 5), [(4, 1, 1), (1, 1, 5)], (4, 5), [(4, 1), (1, 5)]),
        # every operand full along the last three axes
        ((2, 3, 4, 5), [(2, 1, 1, 1), (3, 4, 5)], (2, 60), [(2, 1), (1, 60)]),
    ],
)
def test_collapse_axes(out, ins, want_out, want_ins) -> None:  # type: ignore[no-untyped-def]
    got_out, got_ins = collapse_axes(out, ins)
    assert got_out == want_out and got_ins == want_ins


@pytest.mark.needs_cc
@pytest.mark.parametrize("batch", [3, "N"])
def test_broadcast_elementwise_runs_merged_loops_with_numpys_bits(batch: object) -> None:
    """y = hardswish(x * scale + shift) * gate: the scale per (image, channel), the shift per
    channel, the gate per image; H x W = 7 x 7 runs as one loop of 49."""
    b = Builder("forward")
    x = b.input(TensorType(DType.F32, (batch, 6, 7, 7)), "x")
    scale = b.input(TensorType(DType.F32, (batch, 6, 1, 1)), "scale")
    shift = b.input(TensorType(DType.F32, (6, 1, 1)), "shift")
    gate = b.input(TensorType(DType.F32, (batch, 1, 1, 1)), "gate")
    y = b.op("add", [b.op("mul", [x, scale]), shift])
    b.output(b.op("mul", [b.op("hardswish", [y]), gate]))
    mod = compile_graph(b.build(), threads_min_work=1)
    assert re.search(r"for \(int64_t i\d = 0; i\d < 49; \+\+i\d\)", mod.program.source)
    assert not re.search(r"i\d < 7;", mod.program.source)
    rng = np.random.default_rng(4)
    for n in (3,) if batch == 3 else (5, 1):
        arrays = [
            rng.standard_normal(shape).astype(np.float32)
            for shape in ((n, 6, 7, 7), (n, 6, 1, 1), (6, 1, 1), (n, 1, 1, 1))
        ]
        xs, sc, sh, g = arrays
        v = xs * sc + sh
        want = v * np.clip(v + np.float32(3), 0, 6) / np.float32(6) * g
        one = mod.run(arrays, nthreads=1)[0]
        for threads in (2, 3):
            np.testing.assert_array_equal(mod.run(arrays, nthreads=threads)[0], one)
        np.testing.assert_allclose(one, want, rtol=1e-6, atol=1e-6)
