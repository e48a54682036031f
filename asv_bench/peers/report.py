"""Derived metrics (the same for every system), the Markdown table and the RSS chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MB = 1e6
PHASES = ["P0 start", "P1 fill", "P2 delete", "P2' delete+decay", "P3 reclaim", "P4 refill"]


def derive(r: dict[str, Any]) -> dict[str, Any]:
    ph = r["phases"]
    r0, r1, r2d, r3, r4 = ph["P0 start"], ph["P1 fill"], ph["P2' delete+decay"], ph["P3 reclaim"], ph["P4 refill"]
    live = r["live_payload"]
    fill_overhead = (r1 - r0) / r["fill_payload"]
    stranded = r2d - (r0 + live * fill_overhead)
    recovered = r2d - r3
    d: dict[str, Any] = {
        "fill_overhead": fill_overhead,
        "per_live_after_delete": (r2d - r0) / live,
        "stranded_mb": stranded / MB,
        "recovered_pct": 100 * recovered / stranded if stranded > 0 else float("nan"),
        "per_live_after_reclaim": (r3 - r0) / live,
        "reclaim_s": r["reclaim_s"],
        "timed_out": r["reclaim_timed_out"],
        "cpu_per_mb": r["reclaim_cpu_s"] / (recovered / MB) if recovered > MB else float("nan"),
        "p99_idle_us": r["latency_idle"].get("p99_us", float("nan")),
        "p99_reclaim_us": r["latency_reclaim"].get("p99_us", float("nan")),
        "max_reclaim_us": r["latency_reclaim"].get("max_us", float("nan")),
        "probe_samples": r["latency_reclaim"].get("samples", 0),
        "shift_growth_mb": (r4 - r3) / MB,
        "shift_growth_per_new_byte": (r4 - r3) / r["refill_payload"],
        "verified_pct": 100 * r["verified"] / r["verify_total"],
    }
    # A p99 needs samples: a lever that finishes in a few ms (MEMORY PURGE) gets no ratio.
    d["inflation"] = d["p99_reclaim_us"] / d["p99_idle_us"] if d["probe_samples"] >= 100 else float("nan")
    pool = r["extras"]["P3 reclaim"].get("pool_bytes")
    if pool is not None:
        d["pool_per_live_after_reclaim"] = pool / live
        d["metadata_mb"] = r["extras"]["P3 reclaim"]["metadata_bytes"] / MB
        d["index_mb"] = r["extras"]["P3 reclaim"]["index_bytes"] / MB
        d["compact_s"] = r["lever_result"].get("duration_s", float("nan"))
    return d


def _f(x: float, fmt: str = "{:.2f}") -> str:
    return "n/a" if x != x else fmt.format(x)


def targets(r: dict[str, Any], d: dict[str, Any]) -> list[str]:
    """zspool's targets from the issue, each met or missed and by how much."""

    def line(ok: bool, text: str) -> str:
        return f"- {'**met**' if ok else '**missed**'}: {text}"

    out = [
        line(d["per_live_after_reclaim"] <= 1.15,
             f"RSS per live payload byte after reclaim {d['per_live_after_reclaim']:.3f} (target <= 1.15"
             + ("" if d["per_live_after_reclaim"] <= 1.15 else f", over by {d['per_live_after_reclaim'] / 1.15 - 1:.0%}")
             + ")" + (f"; pool pages alone {d['pool_per_live_after_reclaim']:.3f}, the rest is zspool's handle-table "
                      f"metadata ({d['metadata_mb']:.0f} MB, not shrunk after deletes), the harness index "
                      f"({d['index_mb']:.0f} MB) and the interpreter heap" if "pool_per_live_after_reclaim" in d else "")),
    ]
    lever = r["lever_result"].get("lever_wall_s", d["reclaim_s"])
    out.append(line(lever < 1.0, f"reclaim of the whole pool ({r['n']:,} objects) took {lever:.3f} s (target < 1 s)"))
    out.append(line(d["inflation"] <= 2.0 if d["inflation"] == d["inflation"] else False,
                    f"p99 read latency during reclaim {d['p99_reclaim_us']:.0f} us vs idle {d['p99_idle_us']:.0f} us = "
                    f"{_f(d['inflation'], '{:.2f}x')} (target <= 2x; {d['probe_samples']} probe reads during reclaim)"))
    g = d["shift_growth_per_new_byte"]
    out.append(line(g <= 1.0, f"size-shifted refill grew RSS by {d['shift_growth_mb']:.0f} MB for "
                              f"{r['refill_payload'] / MB:.0f} MB of new payload = {g:.2f} bytes per new byte (target <= 1.0"
                              + ("" if g <= 1.0 else f", over by {g - 1:.0%}") + ")"))
    out.append(line(d["verified_pct"] == 100.0, f"verified {r['verified']:,} of {r['verify_total']:,} values"))
    return out


def write_report(meta: dict[str, Any], results: list[dict[str, Any]], md_path: Path, png_path: Path) -> str:
    ran = [r for r in results if "skipped" not in r]
    derived = {r["system"]: derive(r) for r in ran}
    m = meta["machine"]
    versions: dict[str, str] = {"python": m["python"], "glibc": m["glibc"]}
    for r in ran:
        versions.update(r.get("versions", {}))
    defrag = next((r["lever_result"]["activedefrag"] for r in ran if "activedefrag" in r.get("lever_result", {})), None)
    lines = [
        f"## Peers, N = {meta['n']:,} ETC values ({meta['label']} run, {meta['date']})",
        "",
        f"Machine: {m['cpu']}, {m['ram']} RAM, {m['os']}, kernel {m['kernel']}. "
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "**Redis here has no active defragmentation**: Debian's redis-server links the system jemalloc, "
        "which lacks Redis's defrag hint, so `CONFIG SET activedefrag yes` fails"
        + (f" (this run: `{defrag}`)" if defrag else " (Redis did not run)") + ". Its only lever is `MEMORY PURGE`.",
        "",
        "RSS figures are the process's resident memory growth over its start (R0), per payload byte; "
        "for servers, the server process. zspool's process RSS includes its handle-table metadata and "
        "the harness's key index (`array('Q')`, 8 bytes per key, grown by the fill inside the measured "
        "window as a dict's keys are); pool pages alone are shown too.",
        "",
        "| system | fill: RSS / payload B | after delete: RSS / live B | stranded MB | after reclaim: RSS / live B "
        "| recovered | reclaim time | CPU s / MB recovered | read p99 idle -> reclaim (us) | p99 inflation "
        "| max stall (ms) | size-shift growth MB (per new B) | verified |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['system']} | skipped: {r['skipped']} |" + " |" * 11)
            continue
        d = derived[r["system"]]
        name = r["system"] + (f" (pool pages {d['pool_per_live_after_reclaim']:.3f})" if "pool_per_live_after_reclaim" in d else "")
        reclaim = f"{d['reclaim_s']:.2f} s" + (" (not converged)" if d["timed_out"] else "")
        lines.append(
            f"| {name} | {d['fill_overhead']:.3f} | {d['per_live_after_delete']:.3f} | {d['stranded_mb']:.0f} "
            f"| {d['per_live_after_reclaim']:.3f} | {_f(d['recovered_pct'], '{:.0f} %')} | {reclaim} "
            f"| {_f(d['cpu_per_mb'], '{:.4f}')} | {_f(d['p99_idle_us'], '{:.0f}')} -> {_f(d['p99_reclaim_us'], '{:.0f}')} "
            f"(n={d['probe_samples']}) | {_f(d['inflation'], '{:.2f}x')} | {_f(d['max_reclaim_us'] / 1000, '{:.1f}')} "
            f"| {d['shift_growth_mb']:.0f} ({d['shift_growth_per_new_byte']:.2f}) | {d['verified_pct']:.1f} % |"
        )
    lines += ["", "Levers: " + "; ".join(f"{r['system']}: {r['lever']}" for r in ran) + "."]
    for r in ran:
        if r["system"].startswith("zspool"):
            lines += ["", f"Targets for {r['system']}:", *targets(r, derived[r["system"]])]
    for r in ran:
        if r["system"] == "memcached":
            e = r["extras"]
            lines += ["", f"memcached: lever `{r['lever_result']}`; after reclaim {e['P3 reclaim']}; "
                          f"after refill {e['P4 refill']} (limit restored before the refill)."]
        if r["system"] == "Redis":
            after_delete = r["extras"]["P2' delete+decay"]
            lines += ["", f"Redis `INFO` after delete: {after_delete}; after `MEMORY PURGE`: "
                          f"{r['extras']['P3 reclaim']}."]
    lines += ["", f"Total run time {meta['total_s'] / 60:.1f} min (`python asv_bench/peers/run.py"
                  + {"full": "", "smoke": " --smoke", "quick": " --quick"}.get(meta["label"], "") + "`). "
                  f"Chart: `{png_path.name}`."]
    md = "\n".join(lines) + "\n"
    md_path.write_text(md)
    _chart(meta, ran, png_path)
    return md


def _chart(meta: dict[str, Any], ran: list[dict[str, Any]], png_path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install 'zspool[plot]'): no chart")
        return
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    x = range(len(PHASES))
    for r in ran:
        r0 = r["phases"]["P0 start"]
        ax.plot(x, [(r["phases"][p] - r0) / 2**20 for p in PHASES], marker="o", label=r["system"])
    if ran:
        r = ran[0]
        live = [0, r["fill_payload"], r["live_payload"], r["live_payload"], r["live_payload"],
                r["live_payload"] + r["refill_payload"]]
        ax.plot(x, [v / 2**20 for v in live], "k--", label="live payload")
    ax.set_xticks(list(x), ["start", "fill", "delete 70 %", "+decay wait", "reclaim", "3x refill"])
    ax.set_ylabel("RSS growth over start (MiB)")
    ax.set_title(f"RSS over the phases, N = {meta['n']:,} ETC values ({meta['label']} run)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
