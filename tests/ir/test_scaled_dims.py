"""Dims that are the batch symbol times a constant (`N*8`): types, the reshape rule both ways,
text round trip, the tracer, the interpreter and the reverse pass (lucid/ir/types.py)."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import nn
from lucid.errors import InputError, IRError, IRTypeError, ParseError
from lucid.ir import Builder, interpret
from lucid.ir.autodiff import grad
from lucid.ir.parser import parse
from lucid.ir.printer import format
from lucid.ir.trace import trace
from lucid.ir.types import (
    DType,
    TensorType,
    bind_dim,
    concrete_shape,
    dim_parts,
    dim_value,
    shape_factors,
)


def f32(*shape: int | str) -> TensorType:
    return TensorType(DType.F32, shape)


LOSS = """\
graph @loss(%logits: f32[N,8,11], %targets: i64[N,8]) -> (f32[]) {
  %0 = reshape %logits {shape=[-1, 11]} : f32[N*8,11]
  %1 = reshape %targets {shape=[-1]} : i64[N*8]
  %2 = cross_entropy %0, %1 {reduction="mean"} : f32[]
  return %2
}
"""


def test_a_scaled_dim_is_canonical_and_parts_are_read_in_one_place() -> None:
    assert f32("N*8", 11).shape == ("N*8", 11)
    assert f32("N*1", 3).shape == ("N", 3)  # factor 1 is the symbol itself
    assert str(f32("N*8", 11)) == "f32[N*8,11]"
    assert f32("N*8", "N").symbols == ("N",)
    assert not f32("N*8").is_static
    assert (
        dim_parts("N*12") == ("N", 12) and dim_parts("N") == ("N", 1) and dim_parts(5) == (None, 5)
    )
    assert shape_factors(("N*4", 3, "N")) == (12, ("N", "N"))
    assert dim_value("N*8", {"N": 3}) == 24
    assert concrete_shape(("N*8", 11), {"N": 2}) == (16, 11)
    for bad in ("N*0", "8*N", "N*-2", "N * 8", "N*M"):
        with pytest.raises(IRError, match="bad dim"):
            f32(bad)


def test_bind_dim_binds_the_symbol_and_says_why_a_size_does_not_fit() -> None:
    bound: dict[str, int] = {}
    assert bind_dim("N*8", 24, bound) is None and bound == {"N": 3}
    assert bind_dim("N", 3, bound) is None
    assert bind_dim("N*8", 20, {}) == "dim N*8 is 20, which is not a multiple of 8"
    assert bind_dim("N*8", 32, bound) == "dim N*8 is 32 here but 24 (N=3) in an earlier input"
    assert bind_dim("N", 4, bound) == "dim N is 4 here but 3 in an earlier input"


@pytest.mark.parametrize(
    ("src", "shape", "want"),
    [
        (("N", 8, 11), (-1, 11), ("N*8", 11)),  # the training idiom logits.reshape(-1, V)
        (("N", 8), (-1,), ("N*8",)),  # targets.reshape(-1)
        (("N*8", 11), (-1, 8, 11), ("N", 8, 11)),  # and back
        (("N*8", 11), ("N", 8, 11), ("N", 8, 11)),
        (("N*8", 11), ("N*8", 11), ("N*8", 11)),
        (("N", 4, 6, 5), (-1, 30), ("N*4", 30)),  # [N, C, H, W] -> [N*C, H*W]
        (("N", 6, 5), ("N", 2, -1), ("N", 2, 15)),  # GroupNorm-style [N, G, C/G*H*W]
        (("N*4", 30), (-1, 4, 6, 5), ("N", 4, 6, 5)),
        (("N*4", 6), (2, -1), (2, "N*12")),
    ],
)
def test_reshape_type_rule_with_scaled_dims(
    src: tuple[int | str, ...], shape: tuple[int | str, ...], want: tuple[int | str, ...]
) -> None:
    b = Builder("f")
    y = b.op("reshape", [b.input(f32(*src))], {"shape": shape})
    assert y.type == f32(*want)


@pytest.mark.parametrize(
    ("src", "shape", "message"),
    [
        (("N", 8, 11), (-1, 3), r"the -1 would be N\*88 / 3, not a whole dim"),
        (("N", 8, 11), ("N*4", 11), r"\(N\*88 elements\) to \[N\*4,11\] \(N\*44 elements\)"),
        (("N", 8, 11), ("M", -1), "the symbols of both sides do not match"),
        (("N", "N"), (-1,), "the symbols of both sides do not match"),  # N*N: no dim
        (("N", 0), (-1,), "not a whole dim"),
    ],
)
def test_reshape_type_rule_errors_name_the_shapes(
    src: tuple[int | str, ...], shape: tuple[int | str, ...], message: str
) -> None:
    b = Builder("f")
    x = b.input(f32(*src))
    with pytest.raises(IRTypeError, match=message):
        b.op("reshape", [x], {"shape": shape})


def test_text_round_trip_and_parse_errors() -> None:
    assert format(parse(LOSS)) == LOSS
    with pytest.raises(ParseError, match=r"expected an int >= 1 after '\*'"):
        parse(LOSS.replace("f32[N*8,11]", "f32[N*x,11]"))
    with pytest.raises(ParseError, match=r"expected an int >= 1 after '\*'"):
        parse(LOSS.replace("f32[N*8,11]", "f32[N*0,11]"))


def test_interpreter_binds_the_batch_through_a_scaled_dim() -> None:
    graph = parse(
        "graph @f(%x: f32[N*4,3]) -> (f32[N,12]) {\n"
        '  %0 = reshape %x {shape=["N", 12]} : f32[N,12]\n'
        "  return %0\n}\n"
    )
    x = np.arange(24, dtype=np.float32).reshape(8, 3)
    (y,) = interpret(graph, x)
    np.testing.assert_array_equal(y, x.reshape(2, 12))
    with pytest.raises(InputError, match=r"dim N\*4 is 6, which is not a multiple of 4"):
        interpret(graph, np.zeros((6, 3), np.float32))


def test_reverse_pass_reshapes_the_cotangent_back() -> None:
    graph = parse(LOSS)
    result = grad(graph)
    text = format(result.backward)
    assert "cross_entropy_grad" in text and ": f32[N,8,11]" in text
    reshapes = [n for n in result.backward.nodes if n.op == "reshape"]
    assert [str(n.result.type) for n in reshapes] == ["f32[N,8,11]"]
    # run both graphs at two batch sizes against eager lucid's gradient
    rng = np.random.default_rng(0)
    for n in (2, 5):
        logits = rng.standard_normal((n, 8, 11)).astype(np.float32)
        targets = rng.integers(0, 11, (n, 8))
        fwd = interpret(result.forward, logits, targets)
        saved = fwd[1:]
        (g,) = interpret(result.backward, *saved, np.float32(1.0))
        x = lucid.Tensor(logits, requires_grad=True)
        F.cross_entropy(x.reshape(-1, 11), lucid.Tensor(targets).reshape(-1)).backward()
        assert x.grad is not None
        np.testing.assert_allclose(g, x.grad, rtol=1e-6, atol=1e-7)


class _Flatten(nn.Module):
    """[N, C, H, W] -> [N*C, H*W] written three ways the tracer must all accept."""

    def forward(self, x: lucid.Tensor) -> tuple[lucid.Tensor, ...]:
        n, c, h, w = x.shape
        a = x.reshape(-1, h * w)
        b = x.reshape(n * c, h * w)
        back = a.reshape(n, c, h, w)
        return a, b, back


def test_trace_records_scaled_dims_and_the_interpreter_runs_them() -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    graph = trace(_Flatten(), lucid.Tensor(x), dynamic_batch=True)
    assert [str(t) for t in graph.output_types] == ["f32[N*3,20]", "f32[N*3,20]", "f32[N,3,4,5]"]
    for n in (1, 4):
        xs = np.random.default_rng(n).standard_normal((n, 3, 4, 5)).astype(np.float32)
        a, b, back = interpret(graph, xs)
        np.testing.assert_array_equal(a, xs.reshape(-1, 20))
        np.testing.assert_array_equal(b, xs.reshape(-1, 20))
        np.testing.assert_array_equal(back, xs)


def test_generated_c_computes_scaled_sizes_from_the_batch_argument() -> None:
    from lucid.codegen.emit_c import CodegenOptions, emit_c

    program = emit_c(parse(LOSS), CodegenOptions(isa="scalar"))
    assert program.batch_symbol == "N"
    assert "a dim such as N*8 is computed from it: (batch * 8)" in program.source
    assert "const int64_t rows = (batch * 8);" in program.source  # cross-entropy's rows
    assert "f32[N*8,11]" in program.source  # the IR in the kernel's comment
