"""Shrinker policies under a real memory limit, with a co-tenant that needs the memory.

Each repetition is one :func:`zspool.memcg_trial.run_trial` (read its docstring for the
phases): a v1 memory cgroup limited to 512 MiB with no swap, a tenant holding a fragmented
pool (300 MiB resident, 30 % live) with a reclaimer and the policy, busy for a second while
nobody needs memory, then a co-tenant in the same cgroup that touches memory in 8 MiB steps
every 20 ms until it holds what was free plus 80 % of what the fragmentation holds.

Per policy, over the repetitions: runs in which someone was OOM-killed; the time from the
first kernel notification the reclaimer saw to the first pages returned and to the end of
that reclaim round (p50 / p99); the peak cgroup usage; the objects migrated while the tenant
was busy and nobody needed memory (and, for ``idle-only-busy``, while busy under pressure).
It prints the README's table and draws cgroup usage over time per policy (``--chart``,
matplotlib: ``pip install 'zspool[plot]'``).

Run as root on a host with the cgroup v1 memory controller mounted writable:
``python asv_bench/standalone/cgroup_pressure.py`` (10 repetitions per policy, about 3
minutes on an idle 2-core machine, ~30 s a trial at a load average of 15); ``--quick`` runs
the test suite's small configuration once per policy (what ``make test`` runs). Where there
is no writable v1 memory cgroup it says so and exits 0, or 1 when ``ZSPOOL_REQUIRE_LIVE=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import replace

from zspool.memcg import writable_memory_cgroup_parent
from zspool.memcg_trial import POLICIES, QUICK, TrialConfig, TrialResult, run_trial
from zspool.pressure import Unavailable

MIB = 1 << 20


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by the nearest-rank method; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(results: dict[str, list[TrialResult]]) -> str:
    rows = [
        (
            "| policy | runs with an OOM kill | first notification (source, level) "
            "| to first pages returned p50 / p99 (ms) | to round done p50 / p99 (ms) "
            "| peak usage (MiB of limit) | objects migrated while busy, no pressure (median) "
            "| while busy under pressure |"
        ),
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for policy, runs in results.items():
        kills = sum(r.killed for r in runs)
        first = [r.latency_first_s for r in runs if r.latency_first_s is not None]
        done = [r.latency_s for r in runs if r.latency_s is not None]
        wakeups = sorted({f"{w['source']} {w['level']}" for r in runs if (w := r.first_wakeup)})
        busy = [r.busy_migrated for r in runs if r.busy_migrated is not None]
        pressured = [r.busy_migrated_pressure for r in runs if r.busy_migrated_pressure is not None]
        rows.append(
            f"| {policy} | {kills} / {len(runs)} | {', '.join(wakeups) or '-'} "
            f"| {ms(percentile(first, 0.5))} / {ms(percentile(first, 0.99))} "
            f"| {ms(percentile(done, 0.5))} / {ms(percentile(done, 0.99))} "
            f"| {max(r.peak_bytes for r in runs) / MIB:.0f} of {runs[0].limit_bytes / MIB:.0f} "
            f"| {count(statistics.median(busy) if busy else None)} "
            f"| {count(max(pressured) if policy.endswith('-busy') and pressured else None)} |"
        )
    return "\n".join(rows)


def chart(results: dict[str, list[TrialResult]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    limit = next(iter(results.values()))[0].limit_bytes / MIB
    for policy, runs in results.items():
        run = runs[0]
        # Up to the co-tenant's end: after it, the processes exit and the cgroup empties.
        shown = [(t, usage) for t, usage in run.samples if t <= run.cotenant_ended_at]
        xs = [t - run.cotenant_started_at for t, _ in shown]
        ys = [usage / MIB for _, usage in shown]
        label = policy + (" (OOM kill)" if run.killed else "")
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.axhline(limit, color="black", linestyle="--", linewidth=0.8, label="memory.limit_in_bytes")
    ax.axvline(0, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("seconds since the co-tenant started (negative: the tenant's busy phase), until it ended")
    ax.set_ylabel("cgroup memory.usage_in_bytes (MiB)")
    ax.set_title("A fragmented zspool pool and a co-tenant in one memory cgroup, per policy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, help="repetitions per policy (default 10, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="the test suite's small configuration")
    parser.add_argument("--policies", nargs="*", default=list(POLICIES))
    parser.add_argument("--chart", help="write a PNG of cgroup usage over time per policy")
    parser.add_argument("--json", help="write every result (without samples) as JSON")
    args = parser.parse_args(argv)
    parent = writable_memory_cgroup_parent()
    if isinstance(parent, Unavailable):
        required = os.environ.get("ZSPOOL_REQUIRE_LIVE") == "1"
        print(f"{'error' if required else 'skipped'}: no writable cgroup v1 memory controller: {parent}")
        return 1 if required else 0
    config = QUICK if args.quick else TrialConfig()
    reps = args.reps or (1 if args.quick else 10)
    results: dict[str, list[TrialResult]] = {}
    for policy in args.policies:
        results[policy] = []
        for rep in range(reps):
            result = run_trial(policy, replace(config, seed=rep))
            results[policy].append(result)
            print(
                f"{policy:15} rep {rep}: killed={result.killed} exits={result.tenant_exit},{result.cotenant_exit} "
                f"first={ms(result.latency_first_s)} ms done={ms(result.latency_s)} ms "
                f"peak={result.peak_bytes / MIB:.0f} MiB busy_migrated={result.busy_migrated}",
                file=sys.stderr,
                flush=True,
            )
    print(table(results))
    if args.chart:
        chart(results, args.chart)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    p: [{k: v for k, v in r.as_dict().items() if k != "samples"} for r in runs]
                    for p, runs in results.items()
                },
                f,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
