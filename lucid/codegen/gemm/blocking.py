"""GEMM blocking: this machine's isa and caches, the register tiles, and the cache-block cost model.

Everything here is a pure function of (dtype, isa, cache sizes, static N, CPU kind); the
generator (`emit.py`) receives the result in its spec, so generated C is deterministic. A CPU
kind listed in cpus.TABLE gets that entry's blocking; any other gets the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from lucid.codegen.gemm.cpus import CpuId, table_blocks

DTypeName = Literal["float", "double"]
Isa = Literal["avx512", "avx2", "scalar"]

# ------------------------------------------------------------------------------- blocking


@dataclass(frozen=True)
class CacheSizes:
    """Per-core data cache sizes in bytes (L3 is the whole shared cache)."""

    l1d: int = 32 * 1024
    l2: int = 1024 * 1024
    l3: int = 8 * 1024 * 1024


# par_min_work for threads created per call (AOT export, threads "spawn"): creating and joining
# one costs ~50 us on the 2-core KVM guest measured (up to ms when the other vCPU sleeps), about
# 8M multiply-adds of single-core work.
SPAWN_MIN_WORK = 1 << 23


@dataclass(frozen=True)
class Blocking:
    """Register tile (mr x nr) and cache blocks; invariants: mc % mr == 0, nc % nr == 0."""

    mr: int
    nr: int
    mc: int
    kc: int
    nc: int
    # M*N*K per thread before a thread pays for itself, with lucid.compile's persistent pool
    # (a spinning worker takes a task within a few us): 512K multiply-adds, ~5-10 us of one
    # core. MobileNetV3-Small at batch 1 (1x1 convolutions of 0.1-5M multiply-adds), AMD EPYC
    # Zen 4, 2 threads: 2.68 -> 2.15 ms (best of 3) against 1 << 23; 1 << 17 to 1 << 20 were
    # within the noise of each other. Threads created per call (AOT, "spawn") use
    # SPAWN_MIN_WORK (LowerCtx.gemm_blocking).
    par_min_work: int = 1 << 19
    # Jobs per thread, claimed dynamically: on a shared machine one core is often busy, and a
    # static half each then runs at the slower core's pace. Each extra job re-packs its A (or
    # B) block, ~1% of a 1024^3 GEMM.
    jobs_per_thread: int = 3
    # With several threads, op(B) is packed once per call into one shared buffer (each claim
    # unit by whichever thread gets to it first) instead of once per job: per-job packing made
    # 2 threads pack B 3x over (1024^3: +12% CPU; Linear 256x1024x1024: +20%). Above this many
    # packed bytes, each job packs its own panels as before (memory stays bounded).
    shared_b_bytes: int = 16 << 20
    # The small path (no packing, no allocation, no threads) replaces the blocked one entirely
    # when a static product N*K or M*N is at most small_elems (B, or the C block kept in
    # registers, is tiny whatever the runtime dim), and at run time when M*N*K is at most
    # small_work multiply-adds: below that, packing and malloc cost more than the arithmetic.
    small_elems: int = 256
    small_work: int = 4096


@dataclass(frozen=True)
class Vec:
    """The intrinsic vocabulary of one isa and dtype."""

    type: str
    lanes: int
    zero: str
    load: str
    store: str
    bcast: str
    fma: str
    loadu: str
    storeu: str
    add: str


def vec_of(isa: str, dtype: str) -> Vec | None:
    """The intrinsics of `isa` for `dtype`; None for the scalar path (plain C loops)."""
    if isa not in ("avx512", "avx2"):
        return None
    width = 512 if isa == "avx512" else 256
    sfx, lanes = ("ps", width // 32) if dtype == "float" else ("pd", width // 64)
    p = f"_mm{width}_"
    vtype = f"__m{width}" + ("" if dtype == "float" else "d")
    ops = ("load", "store", "set1", "fmadd", "loadu", "storeu", "add")
    load, store, set1, fmadd, loadu, storeu, add = (f"{p}{op}_{sfx}" for op in ops)
    return Vec(vtype, lanes, f"{p}setzero_{sfx}()", load, store, set1, fmadd, loadu, storeu, add)


ISA_MACRO = {"avx512": "__AVX512F__", "avx2": "__AVX2__"}


# (mr, nr) of the micro-kernel per (isa, dtype): accumulators use mr * nr / lanes registers.
TILES: dict[tuple[str, str], tuple[int, int]] = {
    ("avx512", "float"): (14, 32),
    ("avx512", "double"): (14, 16),
    ("avx2", "float"): (6, 16),
    ("avx2", "double"): (6, 8),
    ("scalar", "float"): (4, 16),
    ("scalar", "double"): (4, 8),
}


def _parse_size(text: str) -> int:
    """Parse a sysfs cache size such as '48K' or '2048K' or '1M'."""
    text = text.strip().upper()
    scale = {"K": 1024, "M": 1024 * 1024, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def detect_caches(root: str = "/sys/devices/system/cpu/cpu0/cache") -> CacheSizes:
    """Read cpu0's cache sizes from sysfs; fall back to CacheSizes() defaults per level."""
    found: dict[str, int] = {}
    for index in sorted(Path(root).glob("index*")) if Path(root).is_dir() else []:
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified"):
            found[{"1": "l1d", "2": "l2", "3": "l3"}.get(level, "")] = size
    found.pop("", None)
    return replace(CacheSizes(), **found)


def detect_isa(cpuinfo: str = "/proc/cpuinfo") -> Isa:
    """The best GEMM isa this machine runs (for a -march=native build target)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "scalar"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    if {"avx512f", "fma"} <= flags:
        return "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2"
    return "scalar"


def _round_down(x: int, unit: int) -> int:
    """x rounded down to a multiple of unit, at least unit."""
    return max(unit, x // unit * unit)


def choose_blocking(
    dtype: DTypeName,
    isa: Isa,
    caches: CacheSizes | None = None,
    n: int | None = None,
    cpu: CpuId | None = None,
) -> Blocking:
    """The blocking of a GEMM: `cpu`'s entry in cpus.TABLE when it has one for (isa, dtype)
    and these caches, else a small cost model: the B micro-panel (kc x nr) stays in L1 while
    the A micro-panels stream past it, the A block (mc x kc) in L2, a B panel in part of L3.
    A static N narrower than the tile shrinks nr to whole vectors, so less of each tile is pad
    (always the cost model: a table entry is measured at its full tile)."""
    caches = caches or CacheSizes()
    mr, nr = TILES[(isa, dtype)]
    elem = 4 if dtype == "float" else 8
    vec = vec_of(isa, dtype)
    if vec is not None and n is not None and 0 < n < nr:
        nr = -(-n // vec.lanes) * vec.lanes
    else:
        found = table_blocks(cpu, isa, dtype, caches.l1d, caches.l2)
        if found is not None:
            return Blocking(mr=found.mr, nr=found.nr, mc=found.mc, kc=found.kc, nc=found.nc)
    # ~2/3 of L1 for the reused B micro-panel; the rest for the streaming A micro-panel and C.
    kc = min(512, _round_down(caches.l1d * 2 // 3 // (nr * elem), 16))
    # A quarter of L2 for the A block: measured best for both dtypes on a 2 MB L2 (B panel
    # lines and C tiles stream through the rest).
    mc = min(1024, _round_down(caches.l2 // 4 // (kc * elem), mr))
    # A B panel is reused across ic blocks; a quarter of L3, capped (the L3 is shared).
    nc = min(4096, _round_down(caches.l3 // 4 // (kc * elem), nr))
    return Blocking(mr=mr, nr=nr, mc=mc, kc=kc, nc=nc)


# ------------------------------------------------------------------------------- autotuning


@dataclass(frozen=True)
class GemmProblem:
    """One GEMM of a graph whose blocking codegen asks for (`CodegenOptions.blocking_for`).

    `m_dims` multiply to the rows of C, a str being the batch symbol; `n` and `k` are None when
    they are runtime dims. `caches` are what the cost model reads, so a tuner can start from
    exactly the blocking that codegen would choose without it; `cpu` is the CPU kind whose
    cpus.TABLE entry (if any) replaces the cost model (None: the cost model)."""

    dtype: DTypeName
    isa: Isa
    trans_a: bool
    trans_b: bool
    m_dims: tuple[int | str, ...]
    n: int | None
    k: int | None
    caches: CacheSizes
    cpu: CpuId | None = None

    def default_blocking(self) -> Blocking:
        """The table's or the cost model's choice: what codegen uses when nothing is tuned."""
        return choose_blocking(self.dtype, self.isa, self.caches, cpu=self.cpu)


def blocking_candidates(base: Blocking, dtype: DTypeName, limit: int = 12) -> list[Blocking]:
    """Cache blocks around the cost model's `base` for a tuner to time, `base` first, nearest
    variations next (so a small `limit` keeps the likeliest): kc from 128 to 512 with the A
    block's bytes kept, then halved or doubled mc, then narrower B panels. The register tile
    and every other field stay those of `base` (they are the micro-kernel, not the cache)."""
    elem = 4 if dtype == "float" else 8
    a_bytes = base.mc * base.kc * elem

    def blk(mc: int, kc: int, nc: int) -> Blocking:
        mc = min(1024, _round_down(mc, base.mr))
        return replace(base, mc=mc, kc=kc, nc=min(4096, _round_down(nc, base.nr)))

    kcs = [kc for kc in (256, 128, 384, 512, 192) if kc != base.kc]
    found = [base]
    found += [blk(a_bytes // (kc * elem), kc, base.nc) for kc in kcs]
    found += [blk(base.mc // 2, base.kc, base.nc), blk(base.mc * 2, base.kc, base.nc)]
    found += [blk(a_bytes // 2 // (kc * elem), kc, base.nc) for kc in kcs]
    found += [blk(base.mc, base.kc, base.nc // 4), blk(base.mc, base.kc, base.nc // 16)]
    return list(dict.fromkeys(found))[: max(1, limit)]
