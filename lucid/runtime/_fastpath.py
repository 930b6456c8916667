"""The generated per-signature fast path of a compiled module's `__call__`.

For a signature seen before, `CompiledModule.__call__` calls a small Python function generated
for it (`fast_source`): it checks every input against the graph types, checks each parameter's
array identity against the last validated one, allocates the outputs and calls the C with the
arrays passed as object addresses. It returns None whenever anything is unusual (a new
signature, a non-contiguous input, a replaced parameter array, an empty batch, a change of grad
mode), and the caller then takes the slow path, which validates completely.

Grad mode is part of the entry (`entry.signature.grad`): a forward-only entry's fast path
returns None when the call needs gradients (grad enabled and an input requiring grad, or train
mode with a parameter requiring grad), and a grad entry's returns None when it does not or
when the pattern of inputs requiring grad differs; a grad entry hands its outputs (the
original ones then the saved values) to `entry.grad.attach`, which hooks them into the tape.
A forward-only entry in eval mode, with grad on and a parameter requiring grad, returns
outputs that require grad (see CompiledModule._differentiable_later).

An entry traced under a dynamic batch may carry guards (Python decisions on the batch size,
`Entry.guards`): they are checked as one generated condition on `n`, and a call for which
one fails returns None, so the slow path finds (or traces) the entry whose guards hold.
"""

from __future__ import annotations

import operator
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid.ir.types import TensorType, dim_parts
from lucid.runtime import threads as _threads
from lucid.runtime._entry import new_seed
from lucid.runtime._memo import compiled_code
from lucid.runtime.backends import SHIM_CHANGED
from lucid.tensor import Tensor

# the module, not `lucid.tensor` the factory function that shadows it as an attribute
_tensor = sys.modules["lucid.tensor"]

if TYPE_CHECKING:
    from lucid.runtime._entry import Entry

BATCH = "N"


def fast_source(entry: Entry) -> str:
    """Python source of `fast(args)` for a C entry: the result, or None to take the slow path.

    Only indices and fixed names go into the text (never hints or other user strings); the
    values it needs are bound in its namespace by `make_fast`.
    """
    g = entry.graph
    wrt = entry.signature.grad  # None: forward only; else which inputs get gradients
    training = entry.signature.training
    dynamic = any(not t.is_static for t in g.input_types)
    n_in, n_par, n_out = len(g.inputs) - entry.n_seeds, len(g.params), len(g.outputs)
    lines = [
        "def fast(args):",
        f"    if len(args) != {n_in} or module.training is not training:",
        "        return None",
        "    grad_on = T._grad_enabled",
    ]
    if wrt is not None:
        lines += ["    if not grad_on:", "        return None"]
    for i in range(n_in):
        lines += [f"    x{i} = args[{i}]"]
        if wrt is not None and wrt[i]:  # must be a Tensor that requires grad (a tape parent)
            lines += [
                f"    if type(x{i}) is not Tensor or not x{i}.requires_grad:",
                "        return None",
                f"    x{i} = x{i}.data",
            ]
        else:
            lines += [
                f"    if type(x{i}) is Tensor:",
                f"        if x{i}.requires_grad and grad_on:",
                "            return None",
                f"        x{i} = x{i}.data",
            ]
        lines += [
            f"    if type(x{i}) is not ndarray or x{i}.dtype is not dt{i} or x{i}.strides != st{i}:",
            "        return None",
        ]
        if dynamic and i == 0:
            lines += [
                "    s0 = x0.shape",
                "    n = s0[0]",
                "    if n < 1 or s0[1:] != shape0:",
                "        return None",
            ]
        elif dynamic:
            lines += [
                f"    s{i} = x{i}.shape",
                f"    if s{i}[0] != n or s{i}[1:] != shape{i}:",
                "        return None",
            ]
        else:
            lines += [f"    if x{i}.shape != shape{i}:", "        return None"]
    if not dynamic:
        lines.append("    n = 1")
    guards = entry.guard_source()
    if guards is not None:  # the trace's decisions on the batch size must come out the same
        lines += [  # (one that divides by zero for this n fails: the slow path retraces)
            "    try:",
            f"        if not ({guards}):",
            "            return None",
            "    except ArithmeticError:",
            "        return None",
        ]
    lines.append("    cached = entry.pcache")
    if n_par:
        # Each parameter's array must be the one validated into the cache: one identity
        # comparison of all of them, iterated in C (map). Their shapes and layout are checked
        # by the C shim, which returns CHANGED before running if one was changed in place.
        lines += [
            "    if cached is None:",
            "        return None",
            "    PS = tuple(map(getitem, slots, leaves))",
            "    if tuple(map(id, map(data_of, PS))) != cached[1]:",
            "        return None",
            "    ids = cached[1]",
        ]
    packed = entry.packed is not None and wrt is None
    if packed:  # a weight changed since it was packed: the slow path repacks it
        for s, (j, _) in enumerate(entry.packed.slots):  # type: ignore[union-attr]
            lines += [
                f"    if getattr(PS[{j}], '_version', None) != pkv[{s}]:",
                "        return None",
            ]
    if training and n_par:
        any_param = " or ".join(f"PS[{j}].requires_grad" for j in range(n_par))
        if wrt is None:  # train mode + a param requiring grad: the grad entry serves the call
            lines += [f"    if grad_on and ({any_param}):", "        return None"]
        elif not any(wrt):  # only the params make this a grad call
            lines += [f"    if not ({any_param}):", "        return None"]
    for k, t in enumerate(g.output_types):
        lead = _lead_factor(t)
        shape = f"oshape{k}" if lead is None else f"(n * {lead},) + oshape{k}"
        shape = shape.replace("(n * 1,)", "(n,)")
        lines.append(f"    y{k} = empty({shape}, odt{k})")
    # the seeds of the graph's random ops: drawn after the last `return None`, so a call the
    # slow path serves draws once, as eager does
    lines += [f"    r{k} = seed()" for k in range(entry.n_seeds)]
    seeds = [f"r{k}" for k in range(entry.n_seeds)]
    args = [
        *(f"id(x{i})" for i in range(n_in)),
        *(f"id({r})" for r in seeds),
        *(["*ids"] if n_par else []),
        *(f"id(y{k})" for k in range(n_out)),
        *(["id(pktable)"] if packed else []),
        "n",
        "threads.num_threads",
    ]
    lines += [
        f"    code = {'call_packed' if packed else 'call'}({', '.join(args)})",
        "    if code:",
        "        if code == CHANGED:  # a parameter array reshaped in place: nothing ran",
        "            return None",
        "        raise forward.error(code)",
    ]
    if wrt is not None:
        xs = "".join([*(f"x{i}, " for i in range(n_in)), *(f"{r}, " for r in seeds)])
        ps = "PS" if n_par else "()"
        ys = "".join(f"y{k}, " for k in range(n_out))
        lines.append(f"    return attach(args, ({xs}), {ps}, ({ys}))")
        return "\n".join(lines) + "\n"
    for k in range(n_out):
        lines.append(f"    t{k} = make(y{k})")
    outs = ", ".join(f"t{k}" for k in range(n_out))
    if not training and entry.late:  # eval mode: differentiable, as in eager, if grad is on
        any_param = " or ".join(f"PS[{j}].requires_grad" for j in range(n_par))
        lines.append(f"    if grad_on and ({any_param}):")
        # the backward reruns the call with this call's seeds: the same Dropout masks
        again = f", seeds=({''.join(f'{r}, ' for r in seeds)})" if seeds else ""
        if n_out == 1 and entry.out_kind is None:  # inline: this runs at every such call
            lines.append(
                f"        return make(y0, True, (), partial(late_backward, args, 0{again}))"
            )
        else:
            lines.append(f"        return late(entry, args, ({outs},){again})")
    if entry.out_kind is None:
        lines.append(f"    return {outs}")
    elif entry.out_kind is tuple:
        lines.append(f"    return ({outs},)")
    else:
        lines.append(f"    return out_kind(({outs},))")
    return "\n".join(lines) + "\n"


def make_fast(
    entry: Entry, module: Any, late: Any, late_backward: Any, code_root: Path | None = None
) -> Any:
    """Compile `fast_source(entry)` with its constants bound; None if the entry has no C.
    `late(entry, args, outputs)` makes an eval-mode call's outputs differentiable, and
    `late_backward(args, k, g)` is the backward of such an output k (inlined for one output).
    The compiled code is kept in the cache `code_root` (None: compiled in every process)."""
    g, forward = entry.graph, entry.forward
    call = getattr(forward, "call_objects", None)
    if entry.state_slots:  # buffer write-back (BatchNorm training) lives in the slow path only
        return None
    if call is None or any(0 in t.shape for t in (*g.input_types, *g.output_types)):
        return None
    ns: dict[str, Any] = {
        "module": module,
        "training": entry.signature.training,
        "T": _tensor,  # grad mode is the module global `_grad_enabled`, read at every call
        "Tensor": Tensor,
        "ndarray": np.ndarray,
        "empty": np.empty,
        "make": Tensor._make,
        "entry": entry,
        "call": call,
        "call_packed": getattr(forward, "call_objects_packed", None),
        "pkv": entry.packed.versions if entry.packed is not None else None,
        "pktable": entry.packed.table if entry.packed is not None else None,
        "forward": forward,
        "threads": _threads,
        "out_kind": entry.out_kind,
        "attach": entry.grad.attach_behaved if entry.grad is not None else None,
        "late": late,
        "late_backward": late_backward,
        "partial": partial,
        "seed": new_seed,  # one fresh seed per seed input (fast_source: r0 = seed() ...)
        "getitem": operator.getitem,
        "data_of": operator.attrgetter("data"),
        "CHANGED": SHIM_CHANGED,
    }
    for i, t in enumerate(g.input_types):
        dt = t.dtype.np
        static = tuple(1 if isinstance(d, str) else d for d in t.shape)
        ns[f"dt{i}"] = np.empty(0, dt).dtype  # the dtype instance arrays carry, for `is`
        ns[f"st{i}"] = np.empty(static, dt).strides
        ns[f"shape{i}"] = t.shape[1:] if not t.is_static else t.shape
    ns["slots"] = tuple(slots for slots, _, _ in entry.param_slots)
    ns["leaves"] = tuple(leaf for _, leaf, _ in entry.param_slots)
    for k, t in enumerate(g.output_types):
        ns[f"odt{k}"] = t.dtype.np
        ns[f"oshape{k}"] = t.shape[1:] if _lead_factor(t) is not None else t.shape
        if any(isinstance(d, str) for d in ns[f"oshape{k}"]):
            return None  # a symbol past axis 0: leave it to the generic path
    code = compiled_code(code_root, fast_source(entry), f"<lucid fast path @{g.name}>")
    exec(code, ns)  # noqa: S102  (text from fast_source: indices and fixed names only)
    return ns["fast"]


def _lead_factor(t: TensorType) -> int | None:
    """k when t's axis 0 is k times the batch (`N`: 1, `N*8`: 8), else None."""
    symbol, factor = dim_parts(t.shape[0]) if t.shape else (None, 0)
    return factor if symbol == BATCH else None
