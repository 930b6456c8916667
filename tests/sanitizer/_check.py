"""Checks the sanitized child runs (tests/sanitizer/cases.py): compile or export with the
sanitizer flags, run, and compare every result with eager lucid, so a run that finds no memory
error also shows the instrumented kernels compute the right thing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import lucid
from lucid.runtime.aot import ExportResult
from tests.sanitizer._san import FLAGS, SANITIZE, gcc

Arrays = list[np.ndarray]
# float32: the compiled GEMMs and reductions may sum in another order than NumPy
TOL = {np.dtype(np.float32): (2e-4, 2e-5), np.dtype(np.float64): (1e-9, 1e-11)}
BATCHES = {False: (3,), True: (2, 5)}  # static: one batch size; dynamic: two, one graph


def options() -> dict[str, Any]:
    """lucid.compile options that build every kernel with the sanitizers."""
    return {"cflags": list(FLAGS), "cc": gcc()}


def compiled(model: Any, dynamic: bool) -> Any:
    """`model` compiled with the sanitizer flags."""
    return lucid.compile(model, dynamic_batch=dynamic, options=options())


def assert_sanitized(c: Any) -> None:
    """The most recent build of compiled module `c` did use the sanitizers."""
    info = c.build_info
    assert info is not None and SANITIZE in info.command, info


def _magnitude(arrays: Any) -> float:
    return max([1.0] + [float(np.abs(a).max()) for a in arrays if a is not None and a.size])


def close(got: Any, want: Any, dtype: Any, what: str, scale: float | None = None) -> None:
    """got == want within the tolerance of `dtype`, atol scaled by `scale`, else by want's
    magnitude."""
    if want is None:
        assert got is None, f"{what}: expected no gradient"
        return
    rtol, atol = TOL[np.dtype(dtype)]
    want = np.asarray(want)
    scale = _magnitude([want]) if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * scale, err_msg=what)


def _outputs(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _cotangent(shape: tuple[int, ...], dtype: Any) -> lucid.Tensor:
    """Fixed weights for a scalar loss sum(out * w): every output element gets its own."""
    w = np.random.default_rng(sum(shape) + len(shape)).standard_normal(shape)
    return lucid.Tensor(w.astype(dtype))


def _run(model: Any, fn: Callable[..., Any], arrays: Arrays, seed: int | None) -> tuple[Any, Any]:
    """Outputs, then the gradients of the float inputs and of every parameter."""
    model.zero_grad()
    ts = [lucid.Tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    if seed is not None:
        lucid.random.seed(seed)  # dropout: compiled code draws eager's masks after this
    outs = [o for o in _outputs(fn(*ts)) if o.dtype.kind == "f"]
    loss = outs[0].sum() * 0.0
    for o in outs:
        loss = loss + (o * _cotangent(o.shape, o.dtype)).sum()
    loss.backward()
    grads = [t.grad for t in ts if t.requires_grad] + [p.grad for p in model.parameters()]
    return [o.numpy().copy() for o in outs], [None if g is None else g.copy() for g in grads]


def check_module(
    model: Any,
    inputs: Callable[[int], Arrays],
    *,
    grad: bool = True,
    seed: int | None = None,
    dynamic: Sequence[bool] = (False, True),
) -> int:
    """`model` compiled with sanitizers against eager, at a static batch and at two sizes of
    a dynamic one: forward and backward (outputs, input and parameter gradients) in both, and
    the inference program (forward without grad) in the dynamic one, or in both if not `grad`.
    `inputs(n)` gives the arrays of batch n; returns the number of calls checked.

    Builds, not runs, take the time (an instrumented MobileNetV3 training program: ~25 s);
    the static inference program is the one left out, as its kernels are the dynamic one's
    with constant sizes."""
    calls = 0
    for dyn in dynamic:
        c = compiled(model, dyn)
        for n in BATCHES[dyn]:
            arrays = inputs(n)
            dtype = next((a.dtype for a in arrays if a.dtype.kind == "f"), None)
            dtype = dtype or next(p.dtype for p in model.parameters())
            if dyn or not grad:
                with lucid.no_grad():
                    if seed is not None:
                        lucid.random.seed(seed)
                    want = _outputs(model(*(lucid.Tensor(a) for a in arrays)))
                    if seed is not None:
                        lucid.random.seed(seed)
                    got = _outputs(c(*(lucid.Tensor(a) for a in arrays)))
                for i, (g, w) in enumerate(zip(got, want, strict=True)):
                    close(g.numpy(), w.numpy(), dtype, f"forward output {i}, batch {n}")
                assert_sanitized(c)
                calls += 1
            if not grad:
                continue
            w_out, w_grads = _run(model, model, arrays, seed)
            g_out, g_grads = _run(model, c, arrays, seed)
            for i, (g, w) in enumerate(zip(g_out, w_out, strict=True)):
                close(g, w, dtype, f"training output {i}, batch {n}")
            # atol from the largest gradient: a parameter whose exact gradient is zero (a bias
            # before a BatchNorm) gets the rounding noise of the whole backward pass
            big = _magnitude(w_grads)
            for i, (g, w) in enumerate(zip(g_grads, w_grads, strict=True)):
                close(g, w, dtype, f"gradient {i}, batch {n}", big)
            assert_sanitized(c)
            calls += 1
    return calls


def both_dtypes(make: Callable[[Any], Any], inputs: Callable[[int, Any], Arrays], **kw: Any) -> int:
    """check_module on `make(dtype)` for float32 and float64; calls checked."""
    calls = 0
    for dtype in (np.float32, np.float64):
        calls += check_module(make(dtype), lambda n, d=dtype: inputs(n, d), **kw)
    return calls


def export(model: Any, example: Sequence[np.ndarray], path: Path) -> ExportResult:
    """lucid.export with the sanitizer flags (a dynamic batch)."""
    return lucid.export(model, tuple(example), path, flags=FLAGS, march="native", cc=gcc())


def random(shape: tuple[int, ...], dtype: Any = np.float32, seed: int = 0) -> np.ndarray:
    """Standard normal values of `shape` and `dtype`."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)
