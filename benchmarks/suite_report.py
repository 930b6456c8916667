"""Printing, target checks, JSON and the bar chart of run_all.py's results."""

from __future__ import annotations

import json
from pathlib import Path

from _common import fmt_time

LUCID = "lucid compiled"
STEP = "lucid step"  # the whole training step compiled (lucid.compile of a step function)
Rows = dict[str, dict[str, object]]


# Two timings whose core round trips (core_latency.py) differ by this factor ran in different
# vCPU placements (cores sharing an L3, or on different dies): their ratio is not the systems'.
PLACEMENT_RATIO = 2.0


def roundtrip_ns(row: dict[str, object] | None) -> float | None:
    """The slower of the round trips measured around a row's timing, None when not measured."""
    found = (row or {}).get("core_roundtrip_ns")
    return max(found) if isinstance(found, list) and found else None  # type: ignore[arg-type]


def placement_note(rows: Rows, ours: str, theirs: str) -> str:
    """'' when two systems' timings of a row ran in the same core placement (or it was not
    measured), else a note with both round trips: a ratio to read with care."""
    a, b = roundtrip_ns(rows.get(ours)), roundtrip_ns(rows.get(theirs))
    if a is None or b is None or max(a, b) < PLACEMENT_RATIO * min(a, b):
        return ""
    return f" [cores apart differently: round trip {ours} {a:.0f} ns, {theirs} {b:.0f} ns]"


def _ok(row: dict[str, object] | None) -> bool:
    """A row with a time (a mismatch still has one, flagged)."""
    return bool(row) and "median" in row


def print_results(w, mode: str, rows: Rows, peak: float | None) -> None:
    """One table: median [p10, p90], GFLOP/s, % of peak, lucid's time / this system's, check."""
    flops = w.forward_flops() if mode == "forward" else w.train_flops()
    per_call = f"  ({flops / 1e9:.3g} GFLOP per call)" if flops else ""
    print(f"\n== {w.name} {mode}: {w.title}{per_call}")
    print(
        f"  {'system':<15} {'median':>9} {'p10':>9} {'p90':>9} {'GFLOP/s':>8} {'%peak':>6} "
        f"{'lucid/this':>10} {'c2c ns':>9}  check vs lucid eager"
    )
    base = rows.get(LUCID, {}).get("median") if _ok(rows.get(LUCID)) else None
    for name, r in rows.items():
        if not _ok(r):
            print(f"  {name:<15} {r['status']}")
            continue
        gflops = f"{r['gflops']:8.1f}" if "gflops" in r else f"{'-':>8}"
        pct = "     -"
        if peak and w.name != "seed" and "gflops" in r:
            pct = f"{100 * r['gflops'] / peak:5.0f}%"
        ratio = f"{base / r['median']:9.2f}x" if base else "         -"
        c = r["check"]
        check = f"max|diff| {c['max_abs_diff']:.2g}"
        if "rel_to_update" in c:
            check += f" ({c['rel_to_update']:.1g} of the update)"
        flag = "" if r["status"] == "ok" else "  <-- MISMATCH: output differs"
        trips = r.get("core_roundtrip_ns")
        c2c = "/".join(f"{t:.0f}" for t in trips) if isinstance(trips, list) else "-"
        print(
            f"  {name:<15} {fmt_time(r['median']):>9} {fmt_time(r['p10']):>9} "
            f"{fmt_time(r['p90']):>9} {gflops} {pct} {ratio} {c2c:>9}  {check}{flag}"
        )


def _median(results: dict[str, Rows], key: str, system: str) -> float | None:
    """The median seconds of a timed row, else None."""
    row = results.get(key, {}).get(system)
    return row["median"] if _ok(row) else None  # type: ignore[index,return-value]


def targets(
    results: dict[str, Rows], compile_s: dict, peak: float | None, models: set[str] = frozenset()
) -> list[dict]:
    """Issue 17's targets: each {"target", "status" PASS/MISS/n/a, "value", "detail"}.

    `models` are the keys ("mnv3-b32/train", ...) of the model rows, whose cold compile may
    take 2 s instead of 1. The warm-start target is on what a warm start adds to the first
    call (first call - a later call): a call that computes for 60 ms cannot finish in 20."""
    out: list[dict] = []

    def add(
        target: str,
        key: str,
        value: float | None,
        passed: bool | None,
        detail: str,
        system: str = LUCID,
    ) -> None:
        lucid_row = results.get(key, {}).get(system, {})
        if passed is not None and lucid_row.get("status") == "MISMATCH":
            passed, detail = False, detail + f"; {system}'s output MISMATCHES"
        status = "n/a" if passed is None else ("PASS" if passed else "MISS")
        out.append({"target": target, "status": status, "value": value, "detail": detail})

    def vs(key: str, peers: list[str], target: str, limit: float, speedup: bool = False) -> None:
        """lucid's time / the fastest peer's <= limit (shown as peer/lucid when `speedup`).
        A training row is lucid's faster way to train: the compiled module (eager optimizer)
        or the whole compiled step ("lucid step", the issue's whole-step compilation)."""
        if key not in results:
            return
        ours = [LUCID, STEP] if key.endswith("/train") else [LUCID]
        mine_by = {s: _median(results, key, s) for s in ours}
        mine_by = {s: t for s, t in mine_by.items() if t is not None}
        theirs = {p: _median(results, key, p) for p in peers}
        theirs = {p: t for p, t in theirs.items() if t is not None}
        if not mine_by or not theirs:
            add(target, key, None, None, "not measured (peer or lucid unavailable)")
            return
        system = min(mine_by, key=mine_by.get)  # type: ignore[arg-type]
        best = min(theirs, key=theirs.get)  # type: ignore[arg-type]
        ratio = mine_by[system] / theirs[best]
        if speedup:
            detail = f"{best}/{system} = {1 / ratio:.2f}x (need >= {1 / limit:.3g})"
        else:
            detail = f"{system}/{best} = {ratio:.2f}x (need <= {limit:.3g})"
        detail += placement_note(results[key], system, best)
        add(target, key, ratio, ratio <= limit, detail, system)

    peers = ["pytorch eager", "torch.compile", "onnxruntime", "jax jit"]
    vs("seed/forward", peers, "seed forward b1 <= 0.5x the fastest peer", 0.5)
    vs("seed/train", ["jax jit"], "seed train step <= 0.5x JAX", 0.5)
    for wl in ("wide", "deep"):
        vs(f"{wl}/forward", peers, f"{wl} forward faster than every peer", 1.0)
        vs(
            f"{wl}/train",
            ["pytorch eager"],
            f"{wl} train step >= 1.3x faster than PyTorch eager",
            1 / 1.3,
            speedup=True,
        )
        vs(f"{wl}/train", ["jax jit"], f"{wl} train step faster than JAX", 1.0)
    if "gemm/forward" in results:
        gemm(results["gemm/forward"], peak, add)
    vs("mnv3-b1/forward", ["onnxruntime"], "mnv3-b1 forward faster than ONNX Runtime", 1.0)
    vs("mnv3-b32/forward", ["onnxruntime"], "mnv3-b32 forward faster than ONNX Runtime", 1.0)
    vs(
        "mnv3-b32/train",
        ["pytorch eager"],
        "mnv3-b32 train step >= 1.15x faster than PyTorch eager",
        1 / 1.15,
        speedup=True,
    )
    vs("gpt/forward", peers, "gpt forward faster than every peer", 1.0)
    vs("gpt/train", peers, "gpt train step faster than every peer", 1.0)
    for key, t in compile_s.items():
        if "error" in t:
            add(f"{key} compile", key, None, False, f"failed: {t['error']}")
            continue
        limit = 2.0 if key in models else 1.0
        add(
            f"{key} cold compile + first call < {limit:g} s",
            key,
            t["cold"],
            t["cold"] < limit,
            f"{fmt_time(t['cold'])}",
        )
        add(
            f"{key} warm start adds < 20 ms to the first call",
            key,
            t["warm_overhead"],
            t["warm_overhead"] < 0.02,
            f"first call {fmt_time(t['warm'])} - a later call {fmt_time(t['call'])} = "
            f"{fmt_time(t['warm_overhead'])}",
        )
    return out


def gemm(rows: Rows, peak: float | None, add) -> None:
    """GEMM 1024^3: >= 80% of the measured peak, and at least the best peer's fraction."""
    gf = rows.get(LUCID, {}).get("gflops")
    frac = gf / peak if gf and peak else None
    add(
        "GEMM 1024^3 >= 80% of measured peak",
        "gemm/forward",
        frac,
        None if frac is None else frac >= 0.8,
        f"{gf:.1f} of {peak:.1f} GFLOP/s = {100 * frac:.0f}%" if frac else "no peak/no row",
    )
    theirs = {
        name: r["gflops"]
        for name, r in rows.items()
        if name not in (LUCID, "lucid eager") and _ok(r) and r.get("gflops")
    }
    if not gf or not theirs:
        add("GEMM 1024^3 >= the best peer's GFLOP/s", "gemm/forward", None, None, "no peer row")
        return
    best = max(theirs, key=theirs.get)  # type: ignore[arg-type]
    add(
        "GEMM 1024^3 >= the best peer's GFLOP/s",
        "gemm/forward",
        gf / theirs[best],
        gf >= theirs[best],
        f"lucid {gf:.1f} / {best} {theirs[best]:.1f} GFLOP/s = {gf / theirs[best]:.2f}"
        + placement_note(rows, LUCID, best),
    )


def print_first_calls(results: dict[str, Rows], compile_s: dict) -> None:
    """Compile + first call: lucid cold/warm (fresh processes), torch.compile cold (in process)."""
    print(
        "\nFirst call (compile + run): lucid cold / warm cache (what the warm start adds to a "
        "call), torch.compile cold"
    )
    for key, rows in results.items():
        lucid = compile_s.get(key, {})
        tc = rows.get("torch.compile", {}).get("first_call_s")
        cold = fmt_time(lucid["cold"]) if "cold" in lucid else "-"
        warm = fmt_time(lucid["warm"]) if "warm" in lucid else "-"
        adds = f"({fmt_time(lucid['warm_overhead'])})" if "warm_overhead" in lucid else ""
        print(
            f"  {key:<14} lucid {cold:>9} / {warm:>9} {adds:>11}   torch.compile "
            f"{fmt_time(tc) if tc else '-':>9}"
        )


def print_targets(checks: list[dict], compile_s: dict) -> None:
    """PASS/MISS per target with the measured value."""
    print("\nTargets (ratios are lucid compiled's time over the peer's; < 1 = lucid faster)")
    for c in checks:
        print(f"  {c['status']:<4}  {c['target']:<64} {c['detail']}")
    if not compile_s:
        print("  (compile times not measured: --no-compile-times)")


def write_json(
    path: Path,
    meta: dict,
    peak: float | None,
    results: dict,
    compile_s: dict,
    checks: list[dict],
    memory: dict | None = None,
) -> None:
    """Everything measured, for tools and for comparing runs (`memory_mb` with --memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": meta,
        "peak_gflops": peak,
        "results": results,
        "compile_first_call_s": compile_s,
        "targets": checks,
    }
    if memory is not None:
        doc["memory_mb"] = memory
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\nwrote {path}")


# One colour per system, the same in every chart; lucid's own stands out.
COLOURS = {
    LUCID: "#d62728",
    "lucid step": "#8c564b",
    "lucid eager": "#ff9896",
    "numpy by hand": "#7f7f7f",
    "pytorch eager": "#1f77b4",
    "torch.compile": "#aec7e8",
    "onnxruntime": "#2ca02c",
    "jax jit": "#9467bd",
}


def chart_series(
    results: dict[str, Rows],
) -> list[tuple[str, list[int], list[float], list[float], list[float]]]:
    """(system, group indices, medians, p10s, p90s) of every system that ran at least one row
    (a peer skipped everywhere gets no bar and no legend entry)."""
    groups = list(results)
    systems = list(dict.fromkeys(s for rows in results.values() for s in rows))
    series = []
    for s in systems:
        at, med, lo, hi = [], [], [], []
        for g, key in enumerate(groups):
            row = results[key].get(s)
            if _ok(row):
                assert row is not None
                at.append(g)
                med.append(float(row["median"]))  # type: ignore[arg-type]
                lo.append(float(row.get("p10", row["median"])))  # type: ignore[arg-type]
                hi.append(float(row.get("p90", row["median"])))  # type: ignore[arg-type]
        if at:
            series.append((s, at, med, lo, hi))
    return series


def write_png(path: Path, results: dict[str, Rows]) -> None:
    """Grouped bars, one group per workload/mode: median time per call with p10-p90 error
    bars, only for systems that ran, in fixed colours, times in readable units on a log axis
    when the rows span more than a factor of 30 (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: write the file only
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    series = chart_series(results)
    if not series:
        print("no timed rows: no chart")
        return
    groups = list(results)
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4.5))
    spare = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    for i, (s, at, med, lo, hi) in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in at]
        errors = [[m - low for m, low in zip(med, lo)], [high - m for m, high in zip(med, hi)]]
        colour = COLOURS.get(s) or next(spare)
        ax.bar(xs, med, width, label=s, color=colour, yerr=errors, capsize=2, ecolor="#333333")
    every = [t for _, _, med, lo, hi in series for t in (*med, *lo, *hi) if t > 0]
    if max(every) / min(every) > 30:
        ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_time(v) if v > 0 else "0"))
    ax.set_ylabel("median time per call (bars: p10-p90)")
    ax.set_xticks(range(len(groups)), groups, rotation=20)
    ax.legend(fontsize=8)
    ax.set_title("lucid benchmark suite (lower is better)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def _peak(row: dict | None) -> float | None:
    """The peak MiB of a measured memory record, else None."""
    return row["peak_mb"] if row and "peak_mb" in row else None


def best_memory_peer(rows: Rows) -> tuple[str, float] | None:
    """(system, peak MiB) of the peer (any system but lucid's two) that needed least, if any."""
    peaks = {s: _peak(r) for s, r in rows.items() if not s.startswith("lucid")}
    measured = {s: p for s, p in peaks.items() if p is not None}
    if not measured:
        return None
    best = min(measured, key=measured.__getitem__)
    return best, measured[best]


def print_memory(memory: dict[str, Rows], cpu: str, threads: int) -> None:
    """The working-memory table: one column per system that measured a row, each cell
    `peak (steady)` MiB, and lucid compiled's peak over the best peer's."""
    systems = [
        s
        for s in dict.fromkeys(s for rows in memory.values() for s in rows)
        if any(_peak(rows.get(s)) is not None for rows in memory.values())
    ]
    print(
        f"\nPeak working memory, MiB above the baseline of a fresh process: peak over compile + "
        f"first call and {threads} threads ({cpu}); in brackets the steady peak of later calls"
    )
    width = max([len(k) for k in memory] + [4])
    print(f"  {'row':<{width}} " + " ".join(f"{s:>15}" for s in systems) + "  lucid/best peer")
    for key, rows in memory.items():
        cells = []
        for s in systems:
            r = rows.get(s)
            peak = _peak(r)
            cells.append(f"{peak:7.0f} ({r['steady_mb']:4.0f})" if r and peak is not None else "-")
        best, mine = best_memory_peer(rows), _peak(rows.get(LUCID))
        ratio = f"{mine / best[1]:.2f} ({best[0]})" if best and mine is not None else "-"
        print(f"  {key:<{width}} " + " ".join(f"{c:>15}" for c in cells) + f"  {ratio}")
    for key, rows in memory.items():
        for s, r in rows.items():
            if _peak(r) is None and not r["status"].startswith("not available"):
                print(f"  {key} {s}: {r['status']}")


def memory_targets(memory: dict[str, Rows]) -> list[dict]:
    """Issue 17's memory target on each inference (forward) row: lucid compiled's peak working
    memory at or below the best peer's (n/a when either was not measured)."""
    out = []
    for key, rows in memory.items():
        if not key.endswith("/forward"):
            continue
        best, mine = best_memory_peer(rows), _peak(rows.get(LUCID))
        target = f"{key} peak memory <= the best peer's"
        if best is None or mine is None:
            out.append({"target": target, "status": "n/a", "value": None, "detail": "not measured"})
            continue
        ratio = mine / best[1]
        detail = f"lucid {mine:.0f} MiB / {best[0]} {best[1]:.0f} MiB = {ratio:.2f} (need <= 1)"
        status = "PASS" if ratio <= 1.0 else "MISS"
        out.append({"target": target, "status": status, "value": ratio, "detail": detail})
    return out
