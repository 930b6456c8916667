"""DType and TensorType: names, NumPy/C mapping, symbols, broadcasting."""

from __future__ import annotations

import numpy as np
import pytest

from lucid.errors import IRError, IRTypeError
from lucid.ir import DType, TensorType, broadcast_shapes


def test_dtype_mappings() -> None:
    assert [d.value for d in DType] == ["f32", "f64", "i64", "bool"]
    assert DType.F32.np == np.float32 and DType.F32.c == "float" and DType.F32.itemsize == 4
    assert DType.BOOL.c == "uint8_t" and DType.I64.c == "int64_t" and DType.F64.c == "double"
    assert DType.from_numpy(np.dtype("int64")) is DType.I64
    assert DType.from_numpy(np.float64) is DType.F64
    assert DType.parse("bool") is DType.BOOL
    assert DType.F64.is_float and not DType.I64.is_float
    with pytest.raises(IRTypeError, match="unsupported dtype int32"):
        DType.from_numpy(np.int32)
    with pytest.raises(IRError, match="unknown dtype 'f16'"):
        DType.parse("f16")


def test_tensor_type_str_and_equality() -> None:
    t = TensorType(DType.F32, ("N", 5))
    assert str(t) == "f32[N,5]" and str(TensorType(DType.I64, ())) == "i64[]"
    assert t == TensorType(DType.F32, ["N", np.int64(5)])  # type: ignore[list-item]
    assert hash(t) == hash(TensorType(DType.F32, ("N", 5)))
    assert t != TensorType(DType.F64, ("N", 5))
    assert t.rank == 2 and not t.is_static and t.symbols == ("N",)
    assert TensorType(DType.F32, ("N", "M", "N")).symbols == ("N", "M")
    with pytest.raises(AttributeError):
        t.dtype = DType.F64  # type: ignore[misc]


def test_numel_and_concrete() -> None:
    t = TensorType(DType.F32, ("N", 4, 5))
    assert t.numel({"N": 3}) == 60 and TensorType(DType.F32, ()).numel() == 1
    assert t.concrete({"N": 2}) == TensorType(DType.F32, (2, 4, 5))
    with pytest.raises(IRError, match="symbolic dim N of shape \\[N,4,5\\] is not bound"):
        t.numel()


@pytest.mark.parametrize("bad", [-1, 2.0, "3x", True, None])
def test_bad_dims_rejected(bad: object) -> None:
    with pytest.raises(IRError, match="bad dim"):
        TensorType(DType.F32, (bad,))  # type: ignore[arg-type]


def test_broadcast_with_symbols() -> None:
    assert broadcast_shapes(("N", 1), (1, 5)) == ("N", 5)
    assert broadcast_shapes(("N", 5), (5,)) == ("N", 5)
    assert broadcast_shapes(("N",), ("N",)) == ("N",)
    assert broadcast_shapes((), (3,)) == (3,)
    assert broadcast_shapes() == ()
    with pytest.raises(IRTypeError, match="axis 0 .* dims 4, N"):
        broadcast_shapes(("N", 3), (4, 3))
    with pytest.raises(IRTypeError, match="dims M, N"):
        broadcast_shapes(("N",), ("M",))
    with pytest.raises(IRTypeError, match="dims 2, 3"):
        broadcast_shapes((2,), (3,))
