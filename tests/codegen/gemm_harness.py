"""Test helper: compile generated GEMM C with cffi + gcc (no lucid.runtime) and call it on arrays."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import subprocess
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import cffi
import numpy as np

from lucid.codegen.gemm import (
    Blocking,
    DTypeName,
    Epilogue,
    EpilogueStep,
    GemmSpec,
    Isa,
    bias_add,
    choose_blocking,
    detect_isa,
    emit_gemm,
    gemm_params,
    gemm_prototype,
)
from lucid.ir.ops import OPS

FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno")

# Epilogue steps of the tests, in C on the element `v` of type `T`. They are test data: the
# generator spells no op's math (lucid's fused epilogues take each op's one scalar C expression),
# and these use the selects of the op table (lucid/ir/ops/activations.py) so results compare bit for bit with it.
RELU = EpilogueStep("v = v < (T)0 ? (T)0 : v;")
HARDSWISH = EpilogueStep(
    "{ const T t = v / (T)6 + (T)0.5; v = v * (t < (T)0 ? (T)0 : (t > (T)1 ? (T)1 : t)); }"
)


@dataclass
class Built:
    """A compiled extension holding one or more generated GEMMs."""

    ffi: cffi.FFI
    lib: object
    path: Path


def build(
    specs: Sequence[GemmSpec], workdir: Path, extra_c: str = "", extra_cdef: str = ""
) -> Built:
    """Compile the GEMMs of `specs` (plus extra C) into one extension module under workdir."""
    source = "\n".join(emit_gemm(s) for s in specs) + "\n" + extra_c
    cdef = "\n".join(gemm_prototype(s) for s in specs) + "\n" + extra_cdef
    key = hashlib.sha256((source + cdef + " ".join(FLAGS)).encode()).hexdigest()[:16]
    name = f"_lucid_gemm_{key}"
    workdir.mkdir(parents=True, exist_ok=True)
    so = workdir / f"{name}.so"
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    if not so.exists():
        ffi.set_source(name, source)
        c_path = workdir / f"{name}.c"
        ffi.emit_c_code(str(c_path))
        inc = sysconfig.get_paths()["include"]
        tmp = so.with_suffix(".so.tmp")
        cmd = [
            "gcc",
            *FLAGS,
            "-shared",
            "-fPIC",
            "-pthread",
            f"-I{inc}",
            str(c_path),
            "-o",
            str(tmp),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"gcc failed:\n{proc.stderr}")
        tmp.rename(so)
    loader = importlib.machinery.ExtensionFileLoader(name, str(so))
    spec = importlib.util.spec_from_file_location(name, so, loader=loader)
    assert spec is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return Built(module.ffi, module.lib, so)  # type: ignore[attr-defined]


def run(
    built: Built,
    spec: GemmSpec,
    a: np.ndarray,
    b: np.ndarray,
    operands: dict[str, np.ndarray] | None = None,
    nthreads: int = 1,
    out: np.ndarray | None = None,
    bp: np.ndarray | None = None,
) -> tuple[int, np.ndarray, np.ndarray | None]:
    """Call spec's function on a, b (with `bp` as its prepacked op(B), if it takes one: None
    passes NULL); returns (status, C, colsum or None)."""
    dt = np.float32 if spec.dtype == "float" else np.float64
    a = np.ascontiguousarray(a, dtype=dt)
    b = np.ascontiguousarray(b, dtype=dt)
    m, k = (a.shape[1], a.shape[0]) if spec.trans_a else a.shape
    n = b.shape[0] if spec.trans_b else b.shape[1]
    c = out if out is not None else np.full((m, n), np.nan, dtype=dt)
    operands = {key: np.ascontiguousarray(v, dtype=dt) for key, v in (operands or {}).items()}
    colsum = np.full(n, np.nan, dtype=dt) if spec.epilogue and spec.epilogue.colsum else None
    ffi, tp = built.ffi, spec.dtype + " *"

    def ptr(x: np.ndarray) -> object:
        return ffi.cast(tp, ffi.from_buffer(x)) if x.size else ffi.NULL

    args: list[object] = []
    for _, pname in gemm_params(spec):
        if pname in ("A", "B", "C"):
            args.append(ptr({"A": a, "B": b, "C": c}[pname]))
        elif pname in ("M", "N", "K"):
            args.append({"M": m, "N": n, "K": k}[pname])
        elif pname == "colsum":
            assert colsum is not None
            args.append(ptr(colsum))
        elif pname == "nthreads":
            args.append(nthreads)
        elif pname == "Bp":
            args.append(ffi.NULL if bp is None else ptr(bp))
        else:
            args.append(ptr(operands[pname.removeprefix("e_")]))
    status = getattr(built.lib, spec.name)(*args)
    return status, c, colsum


# ------------------------------------------------------------------------------ test catalogue

_BUILT: dict[str, dict[str, Built]] = {}


def available_isas() -> list[Isa]:
    """The isas this machine can run, best first."""
    order: list[Isa] = ["avx512", "avx2", "scalar"]
    return order[order.index(detect_isa()) :]


def small_blocking(dtype: DTypeName, isa: Isa) -> Blocking:
    """Tiny cache blocks and no thread threshold, so small shapes cross every block edge."""
    base = choose_blocking(dtype, isa)
    return Blocking(base.mr, base.nr, mc=2 * base.mr, kc=48, nc=3 * base.nr, par_min_work=1)


PLAIN_TRANS = [(False, False), (False, True)]  # default-blocking kernels (slow to compile)
EPILOGUE_TRANS = [(False, True), (True, False)]  # bias + hardswish + colsum kernels


def catalogue(isa: Isa) -> list[GemmSpec]:
    """The GEMMs the tests use for one isa: plain ones per dtype/transposition, and epilogues."""
    specs = []
    dtypes: tuple[DTypeName, ...] = ("float", "double")
    for dtype in dtypes:
        small = small_blocking(dtype, isa)
        for ta in (False, True):
            for tb in (False, True):
                tag = f"{isa}_{dtype}_{int(ta)}{int(tb)}"
                specs.append(
                    GemmSpec(f"small_{tag}", dtype, ta, tb, None, None, None, None, isa, small)
                )
                if (ta, tb) in PLAIN_TRANS:
                    specs.append(
                        GemmSpec(f"plain_{tag}", dtype, ta, tb, None, None, None, None, isa)
                    )
                if (ta, tb) in EPILOGUE_TRANS:
                    # bias + hardswish + column sums: the fused Linear forward/backward shape
                    ep = Epilogue((bias_add("bias"), HARDSWISH), colsum=True)
                    specs.append(
                        GemmSpec(f"hsw_{tag}", dtype, ta, tb, None, None, None, ep, isa, small)
                    )
        ep2 = Epilogue(
            (
                RELU,
                EpilogueStep("v = v + x;", "res", "full"),
                EpilogueStep("v = v * x;", "rowscale", "row"),
                EpilogueStep("v = v - x;", "shift", "scalar"),
                EpilogueStep("v = (v > x || v != v) ? v : x;", "floor", "col"),  # np.maximum
            ),
            colsum=True,
        )
        specs.append(
            GemmSpec(f"mix_{isa}_{dtype}", dtype, False, True, None, None, None, ep2, isa, small)
        )
        specs.append(GemmSpec(f"static_{isa}_{dtype}", dtype, False, True, None, 19, 23, None, isa))
        # a static N narrower than the register tile: nr shrinks to whole vectors
        ep3 = Epilogue((bias_add("bias"), RELU))
        specs.append(GemmSpec(f"narrow_{isa}_{dtype}", dtype, False, True, None, 5, None, ep3, isa))
    return specs


def build_all(workdir: Path, chunk: int = 4) -> dict[str, Built]:
    """Compile every available isa's catalogue, in chunks of a few GEMMs on all cores (gcc runs
    outside the GIL); returns spec name -> the module that holds it. Cached per workdir."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    key = str(workdir)
    if key not in _BUILT:
        specs = [s for isa in available_isas() for s in catalogue(isa)]
        groups = [specs[i : i + chunk] for i in range(0, len(specs), chunk)]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            mods = list(pool.map(lambda g: build(g, workdir), groups))
        _BUILT[key] = {s.name: m for g, m in zip(groups, mods) for s in g}
    return _BUILT[key]


def spec_named(isa: Isa, name: str) -> GemmSpec:
    """The catalogue spec called name."""
    return next(s for s in catalogue(isa) if s.name == name)


# ------------------------------------------------------------ the unpacked paths (rows, stream)

# an epilogue of every operand broadcast, without column sums (the row and stream paths' kind)
MIXED_EPILOGUE = Epilogue(
    (
        RELU,
        EpilogueStep("v = v + x;", "res", "full"),
        EpilogueStep("v = v * x;", "rowscale", "row"),
        EpilogueStep("v = v - x;", "shift", "scalar"),
        EpilogueStep("v = v + x;", "bias", "col"),
    )
)


def spec_pair(
    name: str,
    dtype: DTypeName,
    trans_a: bool,
    trans_b: bool,
    m: int | None,
    n: int | None,
    k: int | None,
    isa: Isa | None = None,
) -> list[GemmSpec]:
    """A plain GEMM (of the best isa here unless given) and the same GEMM with MIXED_EPILOGUE,
    both splitting over threads from a few multiply-adds on (so small test shapes do split)."""
    isa = isa or detect_isa()
    blk = replace(choose_blocking(dtype, isa, n=n), par_min_work=4)
    return [
        GemmSpec(f"{name}_{dtype}_{isa}", dtype, trans_a, trans_b, m, n, k, None, isa, blk),
        GemmSpec(
            f"{name}_ep_{dtype}_{isa}", dtype, trans_a, trans_b, m, n, k, MIXED_EPILOGUE, isa, blk
        ),
    ]


def build_on_path(groups: Sequence[tuple[Sequence[GemmSpec], str]], workdir: Path) -> Built:
    """Build the specs of every (specs, note) group into one module, after checking that each
    spec's C takes the path whose header note starts with its group's note (the path under
    test, not another)."""
    for specs, note in groups:
        for spec in specs:
            assert f" * {note}" in emit_gemm(spec), spec.name
    return build([s for specs, _ in groups for s in specs], workdir)


def check_against_wide(
    built: Built, pair: Sequence[GemmSpec], a: np.ndarray, b: np.ndarray, rng: np.random.Generator
) -> None:
    """The plain spec of `pair` on a, b: the same bits on 1, 2 and 3 threads, each element
    within the dot product's error bound of a wider reference (float64, long double for
    float64); the epilogue spec applies MIXED_EPILOGUE exactly to those sums."""
    plain, fused = pair
    runs = [run(built, plain, a, b, nthreads=t) for t in (1, 2, 3)]
    assert all(status == 0 for status, _, _ in runs)
    got = runs[0][1]
    for _, other, _ in runs[1:]:
        np.testing.assert_array_equal(other, got)
    wide = np.float64 if a.dtype == np.float32 else np.longdouble
    opa, opb = (a.T if plain.trans_a else a), (b.T if plain.trans_b else b)
    m, k = opa.shape
    want = opa.astype(wide) @ opb.astype(wide)
    bound = np.abs(opa.astype(wide)) @ np.abs(opb.astype(wide))
    eps = np.finfo(a.dtype).eps
    assert np.all(np.abs(got - want) <= 2 * k * eps * bound + eps), (plain.name, a.shape, b.shape)
    n = got.shape[1]
    ops = {
        "res": rng.standard_normal((m, n)).astype(a.dtype),
        "rowscale": rng.standard_normal(m).astype(a.dtype),
        "shift": np.array([0.25], dtype=a.dtype),
        "bias": rng.standard_normal(n).astype(a.dtype),
    }
    status, c, _ = run(built, fused, a, b, ops, nthreads=2)
    assert status == 0
    expect = (
        (OPS["relu"].numpy(got) + ops["res"]) * ops["rowscale"][:, None]
        - ops["shift"][0]
        + ops["bias"]
    )
    assert np.array_equal(c, expect), (fused.name, a.shape, b.shape)
