"""GEMM blocking per CPU kind: which CPU this is (`CpuId`) and a TABLE of measured choices.

`choose_blocking` (blocking.py) asks `table_blocks` first: a CPU kind listed in TABLE, keyed by
(vendor, family, model) as /proc/cpuinfo names them, gets the register tile and cache blocks
of its entry for the GEMM's (isa, dtype); anything else (an unknown CPU, an isa or dtype the
entry does not list, per-core caches other than the ones the entry was measured with) gets
the cost model on the cache sizes, as before the table existed. Tune an unknown CPU with
`lucid.compile(model, options={"autotune": True})`, which times blockings around whichever
of the two answered (lucid/runtime/autotune.py); add it to TABLE with the entry that
`python benchmarks/tune_cpu_table.py` prints after measuring on an idle machine.

Every entry carries `evidence`: the command that measured it, the CPU, the threads, and the
GFLOP/s of the chosen blocking and of the alternatives timed. An entry not measured yet says
so and has `measured=False`.

The tables are plain data and this module imports nothing from blocking.py (which imports
it); every function but `detect_cpu` (which reads /proc/cpuinfo) is pure, so a test hands
`parse_cpuinfo` another machine's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["TABLE", "Blocks", "CpuEntry", "CpuId", "detect_cpu", "parse_cpuinfo", "table_blocks"]


@dataclass(frozen=True)
class CpuId:
    """One CPU kind as /proc/cpuinfo names it. On x86 `vendor` is vendor_id and family/model
    are "cpu family"/"model"; on ARM they are "CPU implementer" (e.g. "0x41"), "CPU
    architecture" and "CPU part". A field the text lacks is "" or None; `key` is then None."""

    vendor: str
    family: int | None
    model: int | None
    model_name: str = ""
    flags: frozenset[str] = frozenset()
    # True: 512-bit FMAs run on full-width units; False: split in two 256-bit halves (Zen 4);
    # None: no AVX-512, or a CPU this module cannot tell about.
    avx512_full_width: bool | None = None

    @property
    def key(self) -> tuple[str, int, int] | None:
        """(vendor, family, model): what TABLE is indexed by; None when a part is unknown."""
        if not self.vendor or self.family is None or self.model is None:
            return None
        return (self.vendor, self.family, self.model)


# 512-bit FMA width by (vendor, family, model), only where it does not vary by part: Intel
# lists two AVX-512 FMA units for the Xeon Scalable parts of these server generations; AMD
# Zen 4 (family 25 with avx512f) executes a 512-bit op as two 256-bit halves. Anything else
# (older or client Intel, Zen 5 whose datapath width depends on the part) is None.
_FULL_WIDTH: dict[tuple[str, int, int], bool] = {
    ("GenuineIntel", 6, 143): True,  # Sapphire Rapids
    ("GenuineIntel", 6, 207): True,  # Emerald Rapids
    ("GenuineIntel", 6, 173): True,  # Granite Rapids
}


def _int(text: str | None) -> int | None:
    """A decimal or 0x-hex field, None when absent or not a number."""
    if text is None:
        return None
    try:
        return int(text, 0) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def parse_cpuinfo(text: str) -> CpuId:
    """The CpuId of the first processor described by /proc/cpuinfo `text` (x86 or ARM)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            fields.setdefault(name.strip(), value.strip())  # every core repeats its lines
    if "vendor_id" in fields:
        vendor = fields["vendor_id"]
        family, model = _int(fields.get("cpu family")), _int(fields.get("model"))
        flags = frozenset(fields.get("flags", "").split())
    else:  # ARM: the implementer code names the vendor, the part number the core
        vendor = fields.get("CPU implementer", "")
        family, model = _int(fields.get("CPU architecture")), _int(fields.get("CPU part"))
        flags = frozenset(fields.get("Features", "").split())
    cpu = CpuId(vendor, family, model, fields.get("model name", ""), flags)
    if "avx512f" not in flags or cpu.key is None:
        return cpu
    full = False if (vendor, family) == ("AuthenticAMD", 25) else _FULL_WIDTH.get(cpu.key)
    return replace(cpu, avx512_full_width=full)


def detect_cpu(cpuinfo: str = "/proc/cpuinfo") -> CpuId | None:
    """This machine's CpuId; None when /proc/cpuinfo cannot be read."""
    try:
        return parse_cpuinfo(Path(cpuinfo).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


# ------------------------------------------------------------------------------------ TABLE


@dataclass(frozen=True)
class Blocks:
    """A register tile (mr x nr) and cache blocks: the `Blocking` fields a table entry sets."""

    mr: int
    nr: int
    mc: int
    kc: int
    nc: int


@dataclass(frozen=True)
class CpuEntry:
    """TABLE's answer for one CPU kind: `blocks` per (isa, dtype); `l1d`/`l2` are the per-core
    cache bytes they were measured with (the entry applies only where both match: a VM hiding
    them, or another part of the same model, gets the cost model); `evidence` says how."""

    name: str
    l1d: int
    l2: int
    blocks: Mapping[tuple[str, str], Blocks]
    evidence: str
    measured: bool  # False: a placeholder (the cost model's own choice), not a measurement


TABLE: dict[tuple[str, int, int], CpuEntry] = {
    # Intel Xeon, family 6 model 207 (Emerald Rapids; under KVM model name reads only
    # "Intel(R) Xeon(R) Processor"): 48 KiB L1d, 2 MiB L2 per core.
    ("GenuineIntel", 6, 207): CpuEntry(
        name="Intel(R) Xeon(R) Processor (GenuineIntel family 6 model 207)",
        l1d=48 * 1024,
        l2=2048 * 1024,
        blocks={("avx512", "float"): Blocks(mr=14, nr=32, mc=504, kc=256, nc=4096)},
        evidence=(
            "`python benchmarks/tune_cpu_table.py` on 2026-12-06: Intel(R) Xeon(R) Processor "
            "(GenuineIntel family 6 model 207), avx512, L1d 48K L2 2048K L3 307200K, 2 cpus, load"
            " average 0.22 .. 0.41, 7 rounds. f32 GFLOP/s (median) at 1024x1024x1024 1t, "
            "1024x1024x1024 2t, 256x1024x1024t 1t, 256x1024x1024t 2t, 512x2048x784t 1t, "
            "512x2048x784t 2t, 512x2048x2048t 1t, 512x2048x2048t 2t, and the geometric-mean "
            "speedup over the cost model: mc=504 kc=256 nc=4096 (chosen, cost model, table "
            "before): 189.3 354.3 175.2 331.5 186.7 356.7 177.8 351.6 (x1.000); mc=1008 kc=128 "
            "nc=4096: 179.9 358.8 174.1 320.3 173.6 355.4 170.3 350.0 (x0.975); mc=336 kc=384 "
            "nc=4096: 190.2 369.2 166.1 332.2 183.9 349.0 182.8 347.3 (x0.997); mc=252 kc=512 "
            "nc=4096: 192.5 379.7 171.1 338.1 179.8 367.5 180.9 358.5 (x1.014); mc=672 kc=192 "
            "nc=4096: 184.7 366.8 168.8 327.4 174.1 350.4 171.3 336.0 (x0.974); mc=252 kc=256 "
            "nc=4096: 189.7 374.4 174.6 329.8 182.0 369.0 176.4 349.5 (x1.005); mc=1008 kc=256 "
            "nc=4096: 186.6 368.3 175.2 331.5 179.1 358.4 173.9 354.1 (x0.997); mc=504 kc=128 "
            "nc=4096: 183.2 356.2 174.1 320.3 174.6 361.7 168.3 352.5 (x0.979); mc=168 kc=384 "
            "nc=4096: 192.0 369.9 171.9 328.7 181.4 361.5 181.0 351.4 (x1.004); mc=126 kc=512 "
            "nc=4096: 185.9 378.7 174.2 333.9 177.0 370.7 178.0 365.1 (x1.009); mc=336 kc=192 "
            "nc=4096: 186.6 365.9 168.8 327.4 177.6 364.5 174.7 352.2 (x0.991); mc=504 kc=256 "
            "nc=1024: 189.3 354.3 175.2 331.5 177.5 359.5 182.0 357.0 (x0.999)."
        ),
        measured=True,
    ),
    # AMD EPYC, family 25 model 17 (Zen 4, Genoa; under KVM model name reads only "AMD EPYC"):
    # 32 KiB L1d, 1 MiB L2 per core; 512-bit FMAs in two 256-bit halves. The cost model keeps
    # the B micro-panel in 2/3 of L1 (kc=160); kc=512 (the B micro-panel from L2) is 7% faster
    # here, and kc=768 or 1024 no faster again (an ad-hoc probe of the same GEMMs: x1.08-1.09).
    ("AuthenticAMD", 25, 17): CpuEntry(
        name="AMD EPYC (AuthenticAMD family 25 model 17)",
        l1d=32 * 1024,
        l2=1024 * 1024,
        blocks={("avx512", "float"): Blocks(mr=14, nr=32, mc=56, kc=512, nc=4096)},
        evidence=(
            "`python benchmarks/tune_cpu_table.py` on 2026-12-06: AMD EPYC (AuthenticAMD family "
            "25 model 17), avx512, L1d 32K L2 1024K L3 32768K, 2 cpus, load average 0.27 .. 0.69,"
            " 7 rounds. f32 GFLOP/s (median) at 1024x1024x1024 1t, 1024x1024x1024 2t, "
            "256x1024x1024t 1t, 256x1024x1024t 2t, 512x2048x784t 1t, 512x2048x784t 2t, "
            "512x2048x2048t 1t, 512x2048x2048t 2t, and the geometric-mean speedup over the cost "
            "model: mc=406 kc=160 nc=4096 (cost model): 94.0 196.7 95.1 181.1 94.7 172.6 96.2 "
            "185.3 (x1.000); mc=252 kc=256 nc=4096: 101.0 195.4 99.6 189.9 97.9 179.6 97.3 191.5 "
            "(x1.035); mc=504 kc=128 nc=4096: 91.3 187.9 95.0 185.6 91.2 164.1 95.6 178.8 "
            "(x0.977); mc=168 kc=384 nc=4096: 103.3 198.5 97.3 194.9 99.0 179.7 99.4 193.0 "
            "(x1.046); mc=126 kc=512 nc=4096: 102.0 197.6 97.6 196.0 101.9 183.0 103.1 194.2 "
            "(x1.056); mc=336 kc=192 nc=4096: 96.3 190.3 92.3 184.2 95.1 166.8 96.7 186.5 "
            "(x0.995); mc=196 kc=160 nc=4096: 95.5 189.6 95.9 181.8 95.5 166.6 95.8 182.1 "
            "(x0.993); mc=812 kc=160 nc=4096: 95.4 192.1 95.1 181.1 94.3 162.2 97.1 181.6 "
            "(x0.989); mc=126 kc=256 nc=4096: 101.0 197.7 99.9 190.0 97.0 169.9 99.2 184.1 "
            "(x1.026); mc=252 kc=128 nc=4096: 92.5 187.9 94.5 180.7 90.5 169.5 93.9 177.7 "
            "(x0.975); mc=84 kc=384 nc=4096: 100.7 203.0 100.7 193.1 100.3 177.9 99.2 193.6 "
            "(x1.049); mc=56 kc=512 nc=4096 (chosen): 104.2 206.7 101.2 197.9 102.1 187.5 102.4 "
            "192.2 (x1.073). Rematch (14 rounds) of the best against the cost model: x1.074; "
            "kept."
        ),
        measured=True,
    ),
}


def table_blocks(
    cpu: CpuId | None,
    isa: str,
    dtype: str,
    l1d: int,
    l2: int,
    table: Mapping[tuple[str, int, int], CpuEntry] = TABLE,
) -> Blocks | None:
    """The blocks TABLE gives `cpu` for (isa, dtype) with these per-core caches, else None."""
    key = cpu.key if cpu is not None else None
    entry = table.get(key) if key is not None else None
    if entry is None or (entry.l1d, entry.l2) != (l1d, l2):
        return None
    return entry.blocks.get((isa, dtype))
