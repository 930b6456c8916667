"""The generated fast path of a compiled training step's call (`CompiledStep.__call__`).

`StepEntry.run` is the general call: it collects the guards as tuples, converts every array
and copies each new parameter into its parameter's array with NumPy, about 12 us of Python on
the seed model, where the C step itself takes under 1 us. For the entry that served the last
call, `make_step_fast` compiles a small Python function (`step_fast_source`) that does the same
work unrolled for that entry: it checks the call's arrays against the entry's static types, the
guards of `_snapshot` one by one (module modes, each optimizer's parameter list and requires
grad, its hyperparameters but lr, which momentum buffers exist, un-zeroed gradients), that each
parameter and written buffer is still the array validated last (`StepEntry.rebind`), and the
optimizer state's types. It returns MISS whenever anything differs, before it changes anything
(no seed drawn, nothing written), and the caller then takes the general path, which validates
completely, recompiles or raises.

The new parameters and buffers are written by the C itself after the step
(`PREFIX_call_objects_back`, shim.c.j2): the step's outputs for them go to scratch arrays owned
by the entry and the plan (`StepEntry.plan`: destination address, argument index, bytes) says
where each is copied; a concurrent call of the same entry allocates its own scratch.

Only indices, fixed attribute names and literals go into the text; every user value (module
objects, group keys and values, shapes) is bound in the function's namespace.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from lucid.nn.module import STRUCTURE_VERSION
from lucid.runtime import threads as _threads
from lucid.runtime._entry import new_seed
from lucid.runtime._memo import compiled_code
from lucid.runtime.cache import cache_root
from lucid.tensor import Tensor

if TYPE_CHECKING:
    from collections.abc import Callable

    from lucid.ir.types import TensorType
    from lucid.runtime.step import CompiledStep, StepEntry

MISS = object()  # what the fast path returns when the general path must serve the call

# where each kind of optimizer state lives on the optimizer (lucid/optim)
STATE_ATTR = {"momentum_buffer": "_velocity", "exp_avg": "_m", "exp_avg_sq": "_v"}


def first_buffer(group: Mapping[str, Any]) -> bool:
    """Whether SGD's first step may start from a zero momentum buffer: with dampening 0,
    `momentum * 0 + 1 * d` is d exactly, the copy of d that eager's first step makes, so one
    graph serves the first step and the later ones."""
    return bool(group["momentum"]) and group["dampening"] == 0


def _guard_lines(entry: StepEntry, ns: dict[str, Any]) -> list[str]:
    """The checks of `_snapshot`, unrolled (inside the function's try block)."""
    lines = []
    for k, m in enumerate(entry.modules):
        ns[f"m{k}"] = m
        lines.append(f"    if m{k}.training is not {m.training!r}:")
        lines.append("        return MISS")
    for s, call in enumerate(entry.trace.steps):
        opt = call.optimizer
        ns[f"o{s}"], ns[f"R{s}"] = opt, tuple(opt.params)  # R: keeps the ids below unique
        ns[f"ids{s}"] = tuple(map(id, opt.params))
        ns[f"rg{s}"] = tuple(p.requires_grad for p in opt.params)
        lines += [
            f"    L = o{s}.params",
            f"    if tuple(map(id, L)) != ids{s} or tuple(map(RG, L)) != rg{s}:",
            "        return MISS",
            f"    G = o{s}.param_groups",
            f"    if len(G) != {len(opt.param_groups)}:",
            "        return MISS",
        ]
        for g, group in enumerate(opt.param_groups):
            held = [(h, v) for h, v in group.items() if h not in ("params", "lr")]
            lines += [f"    H = G[{g}]", f"    if len(H) != {len(group)}:", "        return MISS"]
            for h, (key, value) in enumerate(held):
                ns[f"k{s}_{g}_{h}"], ns[f"c{s}_{g}_{h}"] = key, value
                lines += [f"    if H[k{s}_{g}_{h}] != c{s}_{g}_{h}:", "        return MISS"]
        velocity = getattr(opt, "_velocity", None)
        for i, v in enumerate(velocity or ()):  # the momentum buffers that must (not) exist
            if not first_buffer(opt.group(i)):
                lines += [
                    f"    if (o{s}._velocity[{i}] is None) is not {v is None!r}:",
                    "        return MISS",
                ]
        if opt in entry.unzeroed:  # eager would add these gradients: the general path refuses
            lines += [
                "    for p in L:",
                "        if p.grad is not None:",
                "            return MISS",
            ]
    return lines


def _opt(entry: StepEntry, optimizer: Any) -> int:
    """The index of `optimizer` among the trace's stepped ones (its name `o<index>`)."""
    return next(k for k, call in enumerate(entry.trace.steps) if call.optimizer is optimizer)


def _scalar_expr(entry: StepEntry, s: int, name: str) -> str:
    """The Python expression of run-time scalar `name` of scalar set `s` (StepEntry.scalars)."""
    opt, g = entry.scalar_sets[s]
    o = _opt(entry, opt)
    group = f"o{o}.param_groups[{g}]"
    if name == "lr":
        return f'{group}["lr"]'
    if name == "shrink":
        return f'1 - {group}["lr"] * {group}["weight_decay"]'
    beta = 0 if name == "bias1" else 1
    return f'1 - {group}["betas"][{beta}] ** (o{o}.t + 1)'


def _static(t: TensorType) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def _array_check(name: str, t: TensorType, ns: dict[str, Any]) -> list[str]:
    """Lines returning MISS unless variable `name` is a C-contiguous ndarray of type `t`."""
    ns[f"dt_{name}"] = np.empty(0, t.dtype.np).dtype  # the instance arrays carry, for `is`
    ns[f"st_{name}"] = np.empty(_static(t), t.dtype.np).strides
    ns[f"shape_{name}"] = _static(t)
    return [
        (
            f"    if type({name}) is not ndarray or {name}.dtype is not dt_{name}"
            f" or {name}.strides != st_{name} or {name}.shape != shape_{name}:"
        ),
        "        return MISS",
    ]


def step_fast_source(entry: StepEntry, ns: dict[str, Any]) -> str:
    """Python source of `fast(args)` for `entry`, binding the values it reads in `ns`."""
    trace, step = entry.trace, entry.step
    graph = entry.executable.graph
    types = [v.type for v in (*graph.inputs, *graph.params)]
    n_args = len(trace.graph.inputs) - trace.n_seeds
    n_scalars, n_params = len(step.scalars), len(trace.tensors)
    n_ret, n_written, n_slots = trace.n_returns, len(trace.written), len(entry.slots)
    lines = [
        "def fast(args):",
        f"    if len(args) != {n_args} or SV[0] != owner._seen_version:",
        "        return MISS",
        "    free = owner._free",
        "    if free is not None and free.items and free.changed() is not None:",
        "        return MISS",
        "    try:",
    ]
    given: list[str] = []
    body = []
    for i in range(n_args):
        body += [
            f"    x{i} = args[{i}]",
            f"    if type(x{i}) is Tensor:",
            f"        x{i} = x{i}.data",
            *_array_check(f"x{i}", types[i], ns),
        ]
        given.append(f"x{i}")
    body += _guard_lines(entry, ns)
    for j, t in enumerate(trace.tensors):  # the arrays `rebind` validated, unchanged
        ns[f"P{j}"], ns[f"ps{j}"] = t, t.data.shape
        body += [
            f"    a{j} = P{j}.data",
            f"    if a{j} is not A[{j}] or a{j}.shape != ps{j}:",
            "        return MISS",
        ]
    for w, t in enumerate(trace.written):
        ns[f"W{w}"] = t
        body += [f"    if W{w}.data is not B[{w}]:", "        return MISS"]
    at = n_args + trace.n_seeds + n_scalars + n_params
    for n, (k, name) in enumerate(step.state):
        slot = entry.slots[k]
        body += [
            f"    z{n} = o{_opt(entry, slot.optimizer)}.{STATE_ATTR[name]}[{slot.index}]",
            *_array_check(f"z{n}", types[at + n], ns),
        ]
    # every check is above: from here on the call runs
    lines += ["    " + line if line else line for line in body]
    lines += [
        "    except Exception:  # an odd value (a hyperparameter array, ...): the general path",
        "        return MISS",
    ]
    lines += [f"    r{k} = seed()" for k in range(trace.n_seeds)]
    given += [f"r{k}" for k in range(trace.n_seeds)]
    for q, (s, name) in enumerate(step.scalars):
        ns[f"qdt{q}"] = types[n_args + trace.n_seeds + q].dtype.np
        lines.append(f"    q{q} = asarray({_scalar_expr(entry, s, name)}, qdt{q})")
        given.append(f"q{q}")
    given += [f"a{j}" for j in range(n_params)] + [f"z{n}" for n in range(len(step.state))]
    outs = []
    scratch = range(n_ret, n_ret + n_written + n_slots)  # copied back by the C (the plan)
    for k, out in enumerate(graph.output_types):
        ns[f"odt{k}"], ns[f"oshape{k}"] = out.dtype.np, _static(out)
        if k not in scratch:
            lines.append(f"    y{k} = empty(oshape{k}, odt{k})")
        outs.append(f"y{k}")
    held = ", ".join(f"y{k}" for k in scratch)
    call = (
        f"back({', '.join(f'id({a})' for a in (*given, *outs))}, id(plan), 1, threads.num_threads)"
    )
    lines += [
        "    mine = lock.acquire(False)",
        "    try:",
        f"        {held}, = S if mine else fresh()" if scratch else "        pass",
        f"        code = {call}",
        "    finally:",
        "        if mine:",
        "            lock.release()",
        "    if code:",
        "        raise executable.error(code)",
    ]
    for slot in entry.slots:
        if hasattr(slot.tensor, "_version"):
            j = slot.update.param
            lines.append(f"    P{j}._version += 1")
    for n, (k, name) in enumerate(step.new_state):
        slot = entry.slots[k]
        y = n_ret + n_written + n_slots + n
        lines.append(f"    o{_opt(entry, slot.optimizer)}.{STATE_ATTR[name]}[{slot.index}] = y{y}")
    for o, call_ in enumerate(trace.steps):
        if call_.optimizer in entry.adams:
            lines.append(f"    o{o}.t += 1")
        lines += [f"    for p in R{o}:", "        p.grad = None"]  # never stored (step.py)
    returned = ", ".join(f"make(y{k})" for k in range(n_ret))
    kind = trace.out_kind
    if kind is type(None):
        lines.append("    return None")
    elif kind is None:
        lines.append(f"    return {returned}")
    elif kind is tuple:
        lines.append(f"    return ({returned},)")
    else:
        ns["out_kind"] = kind
        lines.append(f"    return out_kind(({returned},))")
    return "\n".join(lines) + "\n"


def make_step_fast(entry: StepEntry, owner: CompiledStep) -> Callable[..., Any] | None:
    """Compile `step_fast_source(entry)`; None when the entry has no direct C entry point or
    an empty array (the general path runs those through the interpreter)."""
    executable = entry.executable
    back = getattr(executable, "call_objects_back", None)
    graph = executable.graph
    shapes = [v.type.shape for v in (*graph.inputs, *graph.params)]
    shapes += [t.shape for t in graph.output_types]
    if back is None or any(not all(isinstance(d, int) and d > 0 for d in s) for s in shapes):
        return None
    trace = entry.trace
    first = trace.n_returns
    scratch = graph.output_types[first : first + len(trace.written) + len(entry.slots)]

    def fresh() -> list[np.ndarray]:
        return [np.empty(_static(t), t.dtype.np) for t in scratch]

    ns: dict[str, Any] = {
        "MISS": MISS,
        "SV": STRUCTURE_VERSION,
        "owner": owner,
        "Tensor": Tensor,
        "ndarray": np.ndarray,
        "empty": np.empty,
        "asarray": np.asarray,
        "make": Tensor._make,
        "seed": new_seed,
        "threads": _threads,
        "RG": attrgetter("requires_grad"),
        "A": entry.arrays,
        "B": entry.buffers,
        "executable": executable,
        "back": back,
        "lock": threading.Lock(),
        "S": fresh(),
        "fresh": fresh,
    }
    source = step_fast_source(entry, ns)
    ns["plan"] = entry.plan
    code = compiled_code(cache_root(), source, f"<lucid step fast path @{graph.name}>")
    exec(code, ns)  # noqa: S102  (text from step_fast_source: indices and fixed names only)
    fast: Callable[..., Any] = ns["fast"]
    return fast
