"""The differential check of one generated model: eager lucid is the reference; the IR
interpreter, `lucid.compile` with a static batch and with `dynamic_batch=True` must agree with it,
forward and backward, before and after attribute changes.

Each check ends in one outcome: ok, mismatch (a value, shape, dtype, gradient presence or an
expected recompile warning differs from eager) or crash (the interpreter or the compiled module
raised where eager ran). Eager failing is a bug of the generator and raises at once.

Tolerances. Elementwise C matches NumPy's arithmetic (`-ffp-contract=off`, no fast-math), but
GEMMs and reductions sum in another order and libm's exp/log/tanh may differ from NumPy's by an
ulp or two; those errors grow with the depth of the program (at most ~10 steps here), and through
cancellation (`h - mean(h)`) they are relative to the size of the values, not to each element.
So an element passes when |got - want| <= rtol * (|want| + max|want| + 0.1 * G): for float64
rtol = 1e-10 (a million ulps of room, far below any real bug), for float32 rtol = 1e-4 (about
1700 ulps). G is the largest |value| among the call's outputs (for an output) or among its
gradients and the output cotangents (for a gradient): summing terms of size G leaves noise of
about G * eps even where the true sum is zero, as when `h - h.mean(axis=0)` cancels a
parameter's gradient, and a saturated tanh's derivative 1 - t*t (t within 1e-8 of 1) turns
one ulp of difference between libm's tanh and NumPy's into a relative error of 1e-8. Long
profile runs found both (float32 gradients of 1e-8 off by 100%, float64 gradients of 1e-12
off by 0.2%). NaN and inf must appear at the same places.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import lucid
from lucid.errors import FallbackWarning, RecompileWarning
from lucid.ir import Graph, interpret, trace
from lucid.ir.trace import Guard
from lucid.runtime.compiled import call_arrays
from tests.fuzz.generate import Program, model_class

RTOL = {"float32": 1e-4, "float64": 1e-10}
TINY_SHARE = 0.1  # the share of the group's largest value that bounds noise (see _compare_group)
OUTCOMES = ("ok", "mismatch", "crash")
TALLY: Counter[str] = Counter()  # outcomes of this process, for the session summary
FINDINGS: list[str] = []  # the reports of the mismatches and crashes, in order
SKIPPED: Counter[str] = Counter()  # examples that left checks out, by reason, for the summary


class Finding(Exception):
    """A disagreement with eager (kind 'mismatch') or an exception eager did not raise ('crash')."""

    def __init__(self, kind: str, stage: str, detail: str) -> None:
        super().__init__(f"{kind} in {stage}: {detail}")
        self.kind, self.stage, self.detail = kind, stage, detail


@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    report: str = ""


@dataclass
class Result:
    """What one call gave: output arrays, whether each requires grad, and gradients by name."""

    outputs: list[np.ndarray]
    requires_grad: list[bool]
    grads: dict[str, np.ndarray | None] = field(default_factory=dict)
    seed: float = 0.0  # the largest |cotangent| that backward started from


class Runner:
    """Builds the model of a program and calls it (or a compiled form of it) on fresh inputs.

    Inputs, targets and output cotangents are a function of (seed, batch) alone, so every
    runner sees the same numbers for the same batch size."""

    def __init__(self, program: Program) -> None:
        self.program = program
        lucid.random.seed(program.seed)
        self.model = model_class(program)()

    def args(self, batch: int, grad: bool) -> list[Any]:
        p = self.program
        rng = np.random.default_rng((p.seed, batch))
        x = lucid.Tensor(rng.standard_normal((batch, p.in_features)).astype(p.dtype))
        x.requires_grad = grad and p.grads[0]
        out: list[Any] = [x]
        if p.x1_features:
            x1 = lucid.Tensor(rng.standard_normal((batch, p.x1_features)).astype(p.dtype))
            x1.requires_grad = grad and p.grads[1]
            out.append(x1)
        if p.number is not None:
            out.append(p.number)
        if p.loss == "mse":
            out.append(lucid.Tensor(rng.standard_normal((batch, p.out_features)).astype(p.dtype)))
        elif p.loss == "cross_entropy":
            out.append(lucid.Tensor(rng.integers(0, p.out_features, batch)))
        return out

    def run(self, fn: Callable[..., Any], batch: int, grad: bool) -> Result:
        """Call fn on the inputs of `batch`; with `grad`, also backward with fixed cotangents."""
        args = self.args(batch, grad)
        self.model.zero_grad()
        if not grad:
            with lucid.no_grad():
                outs = _as_list(fn(*args))
            return Result([o.data.copy() for o in outs], [o.requires_grad for o in outs])
        outs = _as_list(fn(*args))
        result = Result([o.data.copy() for o in outs], [o.requires_grad for o in outs])
        if not any(result.requires_grad):
            return result
        rng = np.random.default_rng((self.program.seed, batch, 1))
        seeds = [rng.standard_normal(o.shape).astype(o.dtype) for o in outs]
        result.seed = max(_magnitude(g) for g in seeds)
        if len(outs) == 1:
            outs[0].backward(seeds[0])
        else:
            total = sum((o * g).sum() for o, g in zip(outs, seeds) if o.requires_grad)
            total.backward()  # type: ignore[union-attr]
        names = ["x", "x1"][: 1 + bool(self.program.x1_features)]
        for name, a in zip(names, args):
            result.grads[f"{name}.grad"] = _copy(a.grad)
        for name, param in self.model.named_parameters():
            result.grads[f"{name}.grad"] = _copy(param.grad)
        return result

    def interpret(self, batch: int, dynamic: bool, at: tuple[int, ...]) -> list[Result]:
        """Trace at `batch` and run the graph in the IR interpreter at each batch of `at`; the
        graph's inputs are the call's arrays, then the parameters in named_parameters order.

        Under a dynamic batch the trace records the Python decisions taken on the batch size as
        guards; where one fails at a batch of `at` (a branch on `x.shape[0]` goes the other way),
        the model is traced again at that batch, as `lucid.compile` does. A guard that holds
        must mean the graph is right at that batch: the comparison with eager checks exactly that.
        """
        params = [p.data for _, p in self.model.named_parameters()]
        graph, guards = self._trace(batch, dynamic)
        results = []
        for b in at:
            run = graph
            if not all(g.holds({"N": b}) for g in guards):
                run, _ = self._trace(b, dynamic)
            outs = interpret(run, *call_arrays(tuple(self.args(b, False))), *params)
            results.append(Result([np.asarray(o) for o in outs], [False] * len(outs)))
        return results

    def _trace(self, batch: int, dynamic: bool) -> tuple[Graph, list[Guard]]:
        guards: list[Guard] = []
        with lucid.no_grad():
            graph = trace(
                self.model,
                *call_arrays(tuple(self.args(batch, False))),
                dynamic_batch=dynamic,
                guards=guards,
            )
        return graph, guards


def _as_list(out: Any) -> list[lucid.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _copy(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else np.array(a, copy=True)


# ---------------------------------------------------------------- comparing


def compare(stage: str, want: Result, got: Result, dtype: str, *, grads: bool = True) -> None:
    """Raise a mismatch Finding naming the first array of `got` that differs from `want`."""
    if len(want.outputs) != len(got.outputs):
        raise Finding(
            "mismatch", stage, f"{len(got.outputs)} outputs, eager has {len(want.outputs)}"
        )
    rtol = RTOL[dtype]
    pairs = [(f"output {i}", w, g) for i, (w, g) in enumerate(zip(want.outputs, got.outputs))]
    _compare_group(stage, pairs, rtol)
    if grads:
        for i, (w, g) in enumerate(zip(want.requires_grad, got.requires_grad)):
            if w != g:
                raise Finding("mismatch", stage, f"output {i}.requires_grad is {g}, eager has {w}")
        keys = {**want.grads, **got.grads}
        pairs = [(k, want.grads.get(k), got.grads.get(k)) for k in keys]
        _compare_group(stage, pairs, rtol, want.seed)


def _compare_group(
    stage: str,
    pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]],
    rtol: float,
    floor: float = 0.0,
) -> None:
    """Compare the outputs (or the gradients) of a call, each against the largest of them (and,
    for gradients, the cotangent backward started from): a gradient whose true value is about
    zero (a parameter that a later `h - h.mean(axis=0)` cancels, a saturated tanh's 1 - t*t)
    holds rounding noise the size of those times eps, not of itself."""
    group = max((_magnitude(w) for _, w, _ in pairs), default=0.0)
    group = max(group, floor)
    for name, w, g in pairs:
        problem = _difference(w, g, rtol, group)
        if problem:
            raise Finding("mismatch", stage, f"{name}: {problem}")


def _magnitude(a: np.ndarray | None) -> float:
    """The largest finite |value| of `a` (0 for None or no finite values)."""
    if a is None or a.dtype.kind != "f":
        return 0.0
    finite = a[np.isfinite(a)]
    return float(np.abs(finite).max()) if finite.size else 0.0


def _difference(
    want: np.ndarray | None, got: np.ndarray | None, rtol: float, group: float = 0.0
) -> str:
    """'' if got matches want within the tolerance (see the module doc), else why not."""
    if want is None or got is None:
        return (
            "" if want is None and got is None else f"eager gives {_kind(want)}, got {_kind(got)}"
        )
    if want.shape != got.shape or want.dtype != got.dtype:
        return f"eager gives {_kind(want)}, got {_kind(got)}"
    finite = np.isfinite(want)
    same_special = np.array_equal(want[~finite], got[~finite], equal_nan=True)
    if not same_special or not np.isfinite(got[finite]).all():
        bad = np.argwhere(~(np.isclose(want, got, equal_nan=True) | (want == got)))
        return f"NaN/inf differ (first at {tuple(bad[0]) if len(bad) else '?'})"
    if not finite.any():
        return ""
    w, g = want.astype(np.float64), got.astype(np.float64)
    scale = float(np.abs(w[finite]).max())
    err = np.where(finite, np.abs(g - w), 0.0)
    allowed = rtol * (np.abs(w) + scale) + TINY_SHARE * rtol * group
    if (err <= allowed).all():
        return ""
    i = tuple(int(k) for k in np.unravel_index(np.argmax(err - allowed), err.shape))
    return (
        f"shape {want.shape} {want.dtype}: max error {err.max():.3g} (max |eager| {scale:.3g}, "
        f"largest in the group {group:.3g}, rtol {rtol:g}); at {i} eager {want[i]!r}, "
        f"got {got[i]!r}"
    )


def _kind(a: np.ndarray | None) -> str:
    return "None" if a is None else f"a {a.dtype} array of shape {a.shape}"


# ---------------------------------------------------------------- the check


def check(program: Program) -> Outcome:
    """Run every comparison of one program; the outcome, with a report unless it is ok."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _check(program)
            fell_back = [w for w in caught if issubclass(w.category, FallbackWarning)]
            if fell_back:  # eager ran in its place: the comparison proved nothing
                raise Finding("mismatch", "entries", f"unexpected {fell_back[0].message}")
        except Finding as f:
            return Outcome(f.kind, report(program, f))
    return Outcome("ok")


def report(program: Program, f: Finding) -> str:
    """A readable account of a finding: what, where, and the program to reproduce it."""
    return f"fuzz {f.kind} in {f.stage}: {f.detail}\n--- program ---\n{program.describe()}"


def _stage(name: str, fn: Callable[[], Any]) -> Any:
    """Run one stage; any exception but a Finding is a crash of that stage."""
    try:
        return fn()
    except Finding:
        raise
    except Exception as exc:  # eager ran, so anything raised here is a finding
        tb = "".join(traceback.format_exception(exc, limit=-6))
        raise Finding("crash", name, f"{type(exc).__name__}: {exc}\n{tb}") from exc


def _check(program: Program) -> None:
    r = Runner(program)
    model, dt = r.model, program.dtype
    b1, b2, b3 = program.batches
    eager = {(b, g): r.run(model, b, g) for b in program.batches for g in (False, True)}

    got = _stage("interpreter (static)", lambda: r.interpret(b1, False, (b1,)))
    compare("interpreter (static)", eager[b1, False], got[0], dt, grads=False)
    if program.dynamic_ok:
        got = _stage("interpreter (dynamic)", lambda: r.interpret(b1, True, (b2, b3)))
        for b, res in zip((b2, b3), got):
            compare(f"interpreter (dynamic, batch {b})", eager[b, False], res, dt, grads=False)

    interp = lucid.compile(model, backend="interpreter")
    stage = "compile(backend='interpreter') grad"
    compare(stage, eager[b1, True], _stage(stage, lambda: r.run(interp, b1, True)), dt)

    static = lucid.compile(model)
    for grad in (False, True, False, True):  # twice each: the slow path, then the fast path
        stage = f"compile() {'grad' if grad else 'no_grad'} batch {b1}"
        compare(stage, eager[b1, grad], _stage(stage, lambda g=grad: r.run(static, b1, g)), dt)

    if not program.dynamic_ok:
        SKIPPED["dynamic_batch (the model reads the batch size)"] += 1
    else:
        dynamic = lucid.compile(model, dynamic_batch=True)
        calls = [(b1, True), (b2, True), (b3, False), (b1, False), (b2, False)]
        if program.skips("dynamic grad"):
            SKIPPED["dynamic_batch grad (a known bug)"] += 1
            calls = [(b, g) for b, g in calls if not g]
        for b, grad in calls:
            stage = f"compile(dynamic_batch=True) {'grad' if grad else 'no_grad'} batch {b}"
            compare(
                stage, eager[b, grad], _stage(stage, lambda b=b, g=grad: r.run(dynamic, b, g)), dt
            )

    for change in program.changes:
        old = getattr(model, change.path)
        setattr(model, change.path, eval(change.value, {"nn": lucid.nn}))  # our own text
        new = getattr(model, change.path)
        want = r.run(model, b1, False)
        stage = f"compile() after model.{change.path} = {change.value}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got_after = _stage(stage, lambda: r.run(static, b1, False))
        compare(stage, want, got_after, dt)
        recompiled = [w for w in caught if issubclass(w.category, RecompileWarning)]
        expected = isinstance(new, lucid.nn.Module) or old != new
        if expected and not any(f"self.{change.path}" in str(w.message) for w in recompiled):
            raise Finding("mismatch", stage, f"no RecompileWarning naming self.{change.path}")
