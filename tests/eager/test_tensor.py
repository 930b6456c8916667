"""Tensor construction, dtype rules, printing, autograd engine behaviour and error messages."""

from __future__ import annotations

import numpy as np
import pytest

import lucid
import lucid.nn.functional as F
from lucid import Tensor


def test_python_numbers_become_float32_and_arrays_keep_dtype() -> None:
    assert Tensor([1, 2, 3]).dtype == np.float32
    assert Tensor([[1.5, 2.0]]).dtype == np.float32
    assert Tensor(2.0).shape == ()
    assert Tensor([True, False]).dtype == np.bool_
    assert Tensor(np.zeros(3)).dtype == np.float64
    assert Tensor(np.array([1, 2], dtype=np.int32)).dtype == np.int64
    assert Tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert Tensor(Tensor([1.0])).dtype == np.float32


def test_constructor_copies_its_input() -> None:
    a = np.ones(3)
    t = Tensor(a)
    a[0] = 5.0
    assert t.data[0] == 1.0


def test_attributes() -> None:
    t = Tensor(np.arange(6.0).reshape(2, 3))
    assert (t.shape, t.ndim, t.size, len(t)) == ((2, 3), 2, 6, 2)
    assert t.T.shape == (3, 2)
    assert t.numpy() is t.data
    assert t.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert Tensor([3.5]).item() == 3.5 and float(Tensor(2.0)) == 2.0
    assert int(Tensor(np.array(4))) == 4 and [10, 20, 30][Tensor(np.array(1))] == 20


def test_repr_is_tensor_of_numpy_str_and_grad() -> None:
    x = Tensor([[-1.0, 2.0, -0.5, 3.0]], requires_grad=True)
    y = F.hardswish(x)
    assert repr(y) == "Tensor([[-0.3333333   1.6666667  -0.20833333  3.        ]], grad=None)"
    assert str(y) == "[[-0.3333333   1.6666667  -0.20833333  3.        ]]"
    y.backward()
    assert repr(x) == (
        "Tensor([[-1.   2.  -0.5  3. ]], grad=[[0.16666666 1.1666667  0.3333333  1.5       ]])"
    )


def test_requires_grad_on_integer_tensor_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="requires_grad=True needs a floating dtype, got int64"):
        Tensor(np.array([1, 2]), requires_grad=True)


def test_backward_without_grad_is_a_runtime_error() -> None:
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0]) * 2.0).backward()


def test_backward_seeds_any_shape_with_ones_and_accepts_a_seed() -> None:
    x = Tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    (x * 3.0).backward()
    np.testing.assert_array_equal(x.grad, np.full((2, 2), 3.0))
    x.zero_grad()
    (x * 3.0).backward(np.array([[1.0, 0.0], [2.0, 0.0]]))
    np.testing.assert_array_equal(x.grad, [[3.0, 0.0], [6.0, 0.0]])
    with pytest.raises(ValueError, match=r"grad has shape \(3,\), expected .* \(2, 2\)"):
        (x * 3.0).backward(np.ones(3))


def test_gradients_accumulate_into_leaves() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward()
    (x * x).backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_shared_subexpression_gets_summed_cotangents() -> None:
    x = Tensor([3.0], requires_grad=True)
    y = x * 2.0
    (y * y + y).backward()  # d/dx (4x^2 + 2x) = 8x + 2
    np.testing.assert_allclose(x.grad, [26.0])


def test_intermediate_grads_are_freed_unless_keep_grad() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    z = x * 3.0
    z.keep_grad = True
    (y + z).sum().backward()
    assert y.grad is None
    np.testing.assert_array_equal(z.grad, [1.0, 1.0])
    assert Tensor([1.0], requires_grad=True, keep_grad=True).keep_grad


def test_leaf_grad_does_not_alias_other_arrays() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    seed = np.ones(2, dtype=np.float32)
    (x + 0.0).backward(seed)
    x.grad += 1.0  # must not write through into the seed
    np.testing.assert_array_equal(seed, [1.0, 1.0])


def test_ten_thousand_op_chain_backward_does_not_recurse() -> None:
    x = Tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, 1.0001**10_000, rtol=1e-9)


def test_no_grad_records_no_history_and_restores() -> None:
    x = Tensor([1.0], requires_grad=True)
    assert lucid.grad_enabled()
    with lucid.no_grad():
        assert not lucid.grad_enabled()
        y = x * 2.0
    assert lucid.grad_enabled()
    assert not y.requires_grad
    with pytest.raises(RuntimeError):
        y.backward()


def test_no_grad_restores_after_an_exception() -> None:
    with pytest.raises(KeyError), lucid.no_grad():
        raise KeyError("boom")
    assert lucid.grad_enabled()


def test_detach_shares_data_and_cuts_the_graph() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    d = x.detach()
    assert d.data is x.data and not d.requires_grad


def test_comparisons_are_bool_without_grad() -> None:
    x = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    for r, expected in [
        (x < 2.0, [True, False, False]),
        (x <= 2.0, [True, True, False]),
        (x > 2.0, [False, False, True]),
        (x >= 2.0, [False, True, True]),
        (x == 2.0, [False, True, False]),
        (x != 2.0, [True, False, True]),
    ]:
        assert r.dtype == np.bool_ and not r.requires_grad
        np.testing.assert_array_equal(r.data, expected)


def test_reflected_ops_with_numpy_arrays_return_tensors() -> None:
    x = Tensor([1.0, 2.0])
    for r in (np.ones(2) + x, np.ones(2) - x, np.ones(2) * x, np.ones(2) / x):
        assert isinstance(r, Tensor) and r.dtype == np.float32


def test_mixed_tensor_dtypes_are_refused() -> None:
    with pytest.raises(TypeError, match="add: operands have different dtypes float32 and float64"):
        Tensor([1.0]) + Tensor(np.array([1.0]))


def test_a_dtype_error_names_the_integer_dtype_the_caller_passed() -> None:
    """Integer arrays are widened to int64 on the way in; a dtype error still says an int32
    array came (not only int64), eagerly and through lucid.compile on a plain array."""
    import lucid
    from lucid import nn

    x = np.ones((2, 3), dtype=np.int32)
    model = nn.Linear(3, 2)
    message = (
        r"linear: operands have different dtypes int64 \(made from a int32 array\) and float32"
    )
    with pytest.raises(TypeError, match=message):
        model(Tensor(x))
    with pytest.raises(TypeError, match=message):
        lucid.compile(model)(x)
    with pytest.raises(TypeError, match=r"dtypes int64 and float32;"):
        model(Tensor(x.astype(np.int64)))  # nothing was widened: nothing more to say


def test_matmul_shape_error_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"cannot multiply shapes \(2, 3\) and \(4, 5\)"):
        Tensor(np.ones((2, 3))) @ Tensor(np.ones((4, 5)))


def test_linear_shape_error_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"input of shape \(2, 4\) does not fit weight .*\(5, 3\)"):
        F.linear(Tensor(np.ones((2, 4))), Tensor(np.ones((5, 3))))


def test_float_only_ops_refuse_integers() -> None:
    with pytest.raises(
        TypeError, match="hardswish: expected a floating-point Tensor, got dtype int64"
    ):
        F.hardswish(lucid.arange(3))


def test_reshape_transpose_sum_errors() -> None:
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(
        ValueError, match=r"cannot reshape a tensor of shape \(2, 3\).* into \(4, -1\)"
    ):
        x.reshape(4, -1)
    with pytest.raises(ValueError, match="at most one -1"):
        x.reshape(-1, -1)
    with pytest.raises(ValueError, match=r"\(0, 0\) is not a permutation"):
        x.transpose(0, 0)
    with pytest.raises(ValueError, match="axis 2 is out of range for a tensor of 2 dimensions"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        x.sum(axis=(1, -1))


def test_setitem_refused_on_grad_tensors_but_allowed_under_no_grad() -> None:
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="in-place assignment"):
        x[0] = 5.0
    with lucid.no_grad():
        x[0] = 5.0
    assert x.data[0] == 5.0


def test_pow_needs_a_python_number() -> None:
    with pytest.raises(TypeError, match="exponent must be a Python int or float, got Tensor"):
        Tensor([1.0]) ** Tensor([2.0])


def test_factories() -> None:
    assert lucid.zeros(2, 3).shape == (2, 3) and lucid.zeros((2, 3)).dtype == np.float32
    assert lucid.ones(4, dtype=np.float64).dtype == np.float64
    assert lucid.zeros_like(lucid.ones(2, dtype=np.float64)).dtype == np.float64
    assert lucid.ones_like(lucid.zeros(3)).data.sum() == 3.0
    assert lucid.arange(5).dtype == np.int64 and lucid.arange(0.0, 1.0, 0.25).shape == (4,)
    assert lucid.tensor([1.0], requires_grad=True).requires_grad
    lucid.random.seed(7)
    a = lucid.randn(3, 2)
    lucid.random.seed(7)
    b = lucid.randn(3, 2)
    np.testing.assert_array_equal(a.data, b.data)
    r = lucid.rand(1000)
    assert r.dtype == np.float32 and 0.0 <= r.data.min() and r.data.max() < 1.0


def test_sum_mean_values_and_dtype() -> None:
    x = Tensor(np.arange(6.0, dtype=np.float32).reshape(2, 3))
    assert x.sum().data == 15.0 and x.sum().dtype == np.float32
    np.testing.assert_array_equal(x.mean(axis=0).data, [1.5, 2.5, 3.5])
    assert x.sum(axis=1, keepdims=True).shape == (2, 1)
    assert lucid.sum(x).data == 15.0 and lucid.mean(x).data == 2.5


def test_grads_of_a_0d_leaf_stay_ndarrays_when_they_accumulate() -> None:
    # NumPy turns 0-d + 0-d into a scalar; .grad is documented as an ndarray.
    x = Tensor(2.0, requires_grad=True)
    (x * 3.0).backward()
    (x * 4.0).backward()
    assert type(x.grad) is np.ndarray and x.grad.shape == () and x.grad == 7.0
    y = Tensor(np.float64(1.5), requires_grad=True)
    z = y * y + y  # a general (non-chain) tape: y is read twice
    z.backward()
    z2 = y * y + y
    z2.backward()
    assert type(y.grad) is np.ndarray and y.grad.dtype == np.float64 and y.grad == 8.0
