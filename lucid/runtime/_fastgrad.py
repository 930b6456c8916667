"""The generated backward of a single-output compiled grad call (`GradProgram._fast_one`).

At batch 1 the C of a small model's backward takes about a microsecond, so the Python around
it is the cost of a training step. For each `GradProgram` whose backward is C and whose
augmented forward has one original output, `make_backward_one` generates one Python function
with every index of its `BackwardPlan` fixed: it unpacks the saved values and parameter arrays, makes the cotangent a
C-contiguous ndarray of the declared dtype (the tape may hand in a broadcast view, another
dtype, or a NumPy scalar for a 0-d output), allocates the gradients, calls the C with object
addresses (as the forward fast path does), accumulates the parameters' gradients with the
tape's rule and returns the input parents' gradients.

It computes exactly what `GradProgram._backward_one` computes; the caller (`attach`) uses it
only when every saved value and parameter array is a C-contiguous aligned ndarray (true for
everything the forward fast path passes), and it hands an empty batch to the slow path.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid.runtime import threads as _threads
from lucid.runtime._memo import compiled_code
from lucid.runtime.cache import cache_root
from lucid.tensor import Tensor

if TYPE_CHECKING:
    from lucid.runtime._gradplan import BackwardPlan
    from lucid.runtime.backends import Executable


def _tuple(items: list[str]) -> str:
    """`(a, b)`, `(a,)` or `()`: a tuple display of the given names."""
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


def backward_one_source(plan: BackwardPlan) -> str:
    """Python source of `backward(saved, arrays, params, g)`; only indices, integer dims and
    fixed names go into the text."""
    n_saved, n_arrays = len(plan.saved_at), len(plan.bw_params)
    # The backward graph's inputs, in calling order: saved values, the cotangent, params.
    names = [*(f"s{i}" for i in range(n_saved)), "g", *(f"a{j}" for j in range(n_arrays))]
    lines = [
        "def backward(saved, arrays, params, g):",
        "    if type(g) is not ndarray or g.dtype is not gdt:",
        "        g = array(g, gdt)  # another dtype, or a NumPy scalar cotangent of a 0-d output",
        "    if not (g.flags.c_contiguous and g.flags.aligned):",
        "        g = array(g, gdt, order='C')  # a broadcast view (the cotangent of .sum())",
    ]
    if n_saved:
        lines.append(f"    {_tuple([f's{i}' for i in range(n_saved)])} = saved")
    if n_arrays:
        lines.append(f"    {_tuple([f'a{j}' for j in range(n_arrays)])} = arrays")
    where = plan.batch_from
    if where is not None:
        lines += [
            f"    n = {names[where[0]]}.shape[{int(where[1])}]"
            + (f" // {int(where[2])}" if where[2] != 1 else ""),
            "    if n < 1:  # the C asks for batch >= 1",
            "        return slow(saved, arrays, params, g)",
        ]
    else:
        lines.append("    n = 1")
    for k, (_, shape) in enumerate(plan.outs):
        dims = ["n" if d is None else str(int(d)) for d in shape]
        lines.append(f"    o{k} = empty({_tuple(dims)}, odt{k})")
    ids = [*(f"id({name})" for name in names), *(f"id(o{k})" for k in range(len(plan.outs)))]
    lines += [
        f"    code = call({', '.join(ids)}, n, threads.num_threads)",
        "    if code:",
        "        raise error(code)",
    ]
    first = plan.first_param
    for i in plan.param_grads:  # the tape's rule; fresh arrays, so stored without a copy
        lines += [
            f"    p = params[{i - first}]",
            "    if p.requires_grad:",
            "        old = p.grad",
            f"        p.grad = o{i} if old is None else old + o{i}",
        ]
    lines.append(f"    return {_tuple([f'o{i}' for i in plan.input_grads])}")
    return "\n".join(lines) + "\n"


def make_backward_one(plan: BackwardPlan, executable: Executable, slow: Any) -> Any:
    """Compile `backward_one_source(plan)` for the backward `executable`, with its constants
    bound (`slow`: the generic backward, for an empty batch); None when it does not apply (no
    C entry, several outputs, or a zero-size dim the C cannot take)."""
    call = getattr(executable, "call_objects", None)
    graph = executable.graph
    if call is None or plan.num_outputs != 1:
        return None
    if any(d == 0 for t in (*graph.input_types, *graph.output_types) for d in t.shape):
        return None
    if any(not isinstance(d, int) for _, shape in plan.outs for d in shape if d is not None):
        return None  # a symbol other than the batch: leave it to the generic path
    ns: dict[str, Any] = {
        "ndarray": np.ndarray,
        "array": np.array,
        "empty": np.empty,
        "gdt": np.empty(0, plan.out_dtypes[0]).dtype,  # the instance arrays carry, for `is`
        "call": call,
        "error": executable.error,  # type: ignore[attr-defined]
        "threads": _threads,
        "slow": slow,
    }
    for k, (dt, _) in enumerate(plan.outs):
        ns[f"odt{k}"] = dt
    source = backward_one_source(plan)
    code = compiled_code(cache_root(), source, f"<lucid fast backward @{graph.name}>")
    exec(code, ns)  # noqa: S102  (text from backward_one_source: indices and fixed names only)
    return ns["backward"]


def attach_one_source(plan: BackwardPlan) -> str:
    """Python source of `attach(args, xs, params, ys)` for a single hooked output whose arrays
    all went to the forward's C as they are: `GradProgram.attach` with every index fixed."""
    saved = [f"xs[{i}]" if from_input else f"ys[{i}]" for from_input, i in plan.saved_at]
    arrays = [f"params[{i}].data" for i in plan.bw_params]
    parents = [f"args[{i}]" for i in plan.input_args]
    lines = [
        "def attach(args, xs, params, ys):",
        f"    t = make(ys[0], True, {_tuple(parents)},",
        f"             partial(backward, {_tuple(saved)}, {_tuple(arrays)}, params))",
    ]
    if plan.out_kind is None:
        lines.append("    return t")
    elif plan.out_kind is tuple:
        lines.append("    return (t,)")
    else:
        lines.append("    return out_kind((t,))")
    return "\n".join(lines) + "\n"


def make_attach_one(plan: BackwardPlan, backward: Any, name: str) -> Any:
    """Compile `attach_one_source(plan)` around the generated `backward` (`name`: the graph's,
    for tracebacks); None when the output reaches no source (it is then off the tape: the
    generic attach serves)."""
    if backward is None or not plan.hooked:
        return None
    ns: dict[str, Any] = {
        "make": Tensor._make,
        "partial": partial,
        "backward": backward,
        "out_kind": plan.out_kind,
    }
    source = attach_one_source(plan)
    code = compiled_code(cache_root(), source, f"<lucid fast attach @{name}>")
    exec(code, ns)  # noqa: S102  (text from attach_one_source: indices and fixed names only)
    return ns["attach"]
