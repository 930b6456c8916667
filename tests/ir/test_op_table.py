"""The op table's meta-test: every op is complete, and its parts agree with one another.

For each OpDef it checks the one definition end to end on the op's own `sample`: the type rule
against the NumPy kernel's results, eager lucid against the IR interpreter, the VJP rule
against central differences (float64, eager tape) and the IR reverse pass against the eager
tape (the same rule, run by both builders), and the C (scalar spelling or lowering) against
the kernel (a composite op's C: its expansion's). An op added without kernel, type rule, VJP (or NOT_DIFFERENTIABLE), C or a sample
fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from lucid.codegen.lowerings import INLINE, LOWERINGS
from lucid.ir import Builder, DType, TensorType, grad, interpret
from lucid.ir.ops import NOT_DIFFERENTIABLE, OPS, OpDef
from lucid.tensor import Tensor, apply

COMPUTED = sorted(name for name, op in OPS.items() if not op.region)


def _sample(op: OpDef) -> tuple[list[np.ndarray], dict]:
    assert op.sample is not None
    arrays, attrs = op.sample(np.random.default_rng(len(op.name)))
    return [np.asarray(a) for a in arrays], dict(attrs)


def _graph(op: OpDef, arrays: list[np.ndarray], attrs: dict, *, as_params: bool = False):
    b = Builder("forward")
    types = [TensorType(DType.from_numpy(a.dtype), a.shape) for a in arrays]
    ins = [b.param(t, f"p{i}") if as_params else b.input(t, f"x{i}") for i, t in enumerate(types)]
    b.output(*b.op_multi(op.name, ins, attrs))
    return b.build()


def _outputs(op: OpDef, arrays: list[np.ndarray], attrs: dict) -> tuple[np.ndarray, ...]:
    out = op.numpy(*arrays, **attrs)
    return tuple(np.asarray(o) for o in (out if op.results > 1 else (out,)))


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_is_complete(name: str) -> None:
    op = OPS[name]
    assert op.name == name and op.doc, "an op needs a name and a doc line"
    if op.region:  # a fused op: its body graph is its semantics, made after autodiff
        assert op.numpy is None and op.lowering in LOWERINGS
        return
    assert op.numpy is not None, "no NumPy kernel"
    assert op.sample is not None, "no test case (sample)"
    assert op.vjp is not None or name.endswith("_grad"), (
        "no VJP rule: give one, or NOT_DIFFERENTIABLE (only gradient-only companions, which "
        "lucid never differentiates again, may have none)"
    )
    if op.expand is not None:  # a composite: its C is its expansion's (checked below)
        assert op.c is None and op.lowering is None and not op.elementwise
        return
    assert op.c is not None or op.lowering in LOWERINGS or op.lowering in INLINE, "no C"
    assert not op.elementwise or op.c is not None, "an elementwise op needs its scalar C"
    if op.inputs and isinstance(op.arity, int):
        assert len(op.inputs) == op.arity, "inputs must name every input"


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        OPS["silly"] = OPS["add"]  # type: ignore[index]


@pytest.mark.parametrize("name", COMPUTED)
def test_type_rule_kernel_and_interpreter_agree(name: str) -> None:
    op = OPS[name]
    arrays, attrs = _sample(op)
    graph = _graph(op, arrays, attrs)
    want = _outputs(op, arrays, dict(graph.nodes[0].attrs))
    for value, got in zip(graph.outputs, want):
        assert value.type == TensorType(DType.from_numpy(got.dtype), got.shape)
    for a, b in zip(interpret(graph, *arrays), want):
        np.testing.assert_array_equal(a, b)
    if op.arity != 0 and all(a.dtype.kind in "fb" or a.dtype == np.int64 for a in arrays):
        eager = apply(op, tuple(Tensor._make(a) for a in arrays), dict(graph.nodes[0].attrs))
        if op.results == 1:
            np.testing.assert_array_equal(eager.data, want[0])


def _differentiable_cases() -> list[str]:
    return [n for n in COMPUTED if OPS[n].differentiable and OPS[n].arity != 0]


@pytest.mark.parametrize("name", _differentiable_cases())
def test_vjp_matches_central_differences_and_ir(name: str) -> None:
    op = OPS[name]
    arrays, attrs = _sample(op)
    attrs = dict(_graph(op, arrays, attrs).nodes[0].attrs)  # normalised, as the IR holds them
    floats = [i for i, a in enumerate(arrays) if a.dtype == np.float64]
    rng = np.random.default_rng(1)
    (y,) = _outputs(op, arrays, attrs)
    w = rng.standard_normal(y.shape).astype(y.dtype)

    def loss(xs: list[np.ndarray]) -> float:
        return float((_outputs(op, xs, attrs)[0] * w).sum())

    tensors = tuple(Tensor(a, requires_grad=i in floats) for i, a in enumerate(arrays))
    apply(op, tensors, attrs).backward(w)
    # central differences need a float64 result (a cast to float32 rounds them away); the
    # comparison with the IR below still holds the rule of such an op to the tape's
    for i in floats if y.dtype == np.float64 else ():
        numeric = np.zeros_like(arrays[i])
        for k in np.ndindex(arrays[i].shape):
            hi, lo = [a.copy() for a in arrays], [a.copy() for a in arrays]
            hi[i][k] += 1e-6
            lo[i][k] -= 1e-6
            numeric[k] = (loss(hi) - loss(lo)) / 2e-6
        np.testing.assert_allclose(tensors[i].grad, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    # the IR reverse pass runs the same rule: its backward graph gives the eager gradients
    r = grad(_graph(op, arrays, attrs), wrt_inputs=[i in floats for i in range(len(arrays))])
    got = interpret(r.backward, *r.backward_args(arrays, [], interpret(r.forward, *arrays), [w]))
    for g, i in zip(got, floats):
        np.testing.assert_allclose(g, tensors[i].grad, rtol=1e-13, atol=1e-15, err_msg=name)


def test_not_differentiable_ops_record_no_tape() -> None:
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    for name in ("sign", "less", "stop_gradient"):
        op = OPS[name]
        assert op.vjp is NOT_DIFFERENTIABLE and not op.differentiable
        out = apply(op, (x,) * op.arity)  # type: ignore[operator]
        assert not out.requires_grad and out._backward is None


@pytest.mark.needs_cc
def test_c_of_every_op_matches_its_kernel() -> None:
    """One program holding one node per op (float64 samples), compiled once."""
    from lucid.runtime.backends import BackendOptions, get_backend

    b = Builder("forward")
    feeds: list[np.ndarray] = []
    wants: list[np.ndarray] = []
    for name in COMPUTED:
        op = OPS[name]
        arrays, attrs = _sample(op)
        ins = []
        for a in arrays:
            ins.append(b.input(TensorType(DType.from_numpy(a.dtype), a.shape), f"{name}_in"))
            feeds.append(a)
        results = b.op_multi(name, ins, attrs)
        b.output(*results)
        wants += _outputs(op, arrays, dict(b.nodes[-1].attrs))
    executable = get_backend("c").prepare(b.build(), BackendOptions())
    for got, want, value in zip(executable.run(*feeds), wants, executable.graph.outputs):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-300, err_msg=str(value))
