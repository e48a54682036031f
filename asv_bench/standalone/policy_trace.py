"""One bursty trace replayed against each shipped shrinker policy.

The trace (same seeds for every policy, each on a fresh pool in this process):

    fill N ETC-sized values
    busy 1   an eviction burst (40 % of values, at random), then paced churn: stores, each
             with a random delete, ~50k ops/s (measures store latency)
    idle 1   nothing
    busy 2   the same again
    idle 2   nothing, and a memory-pressure spike       (PSI some avg10 jumps to 6 %)

A reclaimer ticks every 50 ms with the policy registered. The pressure signal is real-format
PSI text in a temporary file, read by the production parser (``zspool.pressure``). For each
policy we report what it reclaimed by the end of the trace (pages compacted, and pool pages
left), how much compaction work it did while the pool was busy (objects migrated during
busy phases), and the p99 / max store latency during busy phases.

Goal: ``idle-only`` and ``pressure-gated`` reclaim at least 90 % of what ``always`` does
(``pressure-gated`` less its reserve) with at most 10 % of the compaction work ``always``
does while the pool is busy.

Run: ``python asv_bench/standalone/policy_trace.py`` (about 20 s; ``--quick`` for a smoke).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from zspool import Pool, Reclaimer
from zspool.pressure import PressureMonitor, PsiSource
from zspool.workload import PayloadSource, etc_sizes, fragment

POLICIES = ("none", "always", "idle-only", "pressure-gated")
RESERVE_PAGES = 256
#: PSI ``some avg10`` during the spike, percent: level 0.6 on the monitor's 10 % full scale,
#: between pressure-gated's thresholds (0.5, 0.8), so it compacts but keeps its reserve.
SPIKE_AVG10 = 6.0
OPS_PER_S = 50_000


@dataclass
class Result:
    policy: str
    pages_compacted: int
    pages_left: int
    freeable_left: int
    busy_migrated: int
    total_migrated: int
    store_p99_us: float
    store_max_us: float
    writer_ops: int


def write_psi(path: Path, avg10: float) -> None:
    # Written aside and renamed over: the reclaimer thread reads the file meanwhile, and a
    # write in place can show it an empty file (a parse error, not the pressure we mean).
    staged = path.with_suffix(".new")
    staged.write_text(
        f"some avg10={avg10:.2f} avg60={avg10 / 2:.2f} avg300={avg10 / 4:.2f} total={int(avg10 * 1e6)}\n"
        f"full avg10={avg10 / 3:.2f} avg60=0.00 avg300=0.00 total=0\n"
    )
    staged.replace(path)


def busy(pool: Pool, seconds: float, rng: random.Random, source: PayloadSource, live: list[int], lat: list[int]) -> int:
    """An eviction burst (40 % of the live values, at random), then ``seconds`` of paced
    churn at about 50,000 operations a second: each store matched by a random delete."""
    for _ in range(int(len(live) * 0.4)):
        pool.free(live.pop(rng.randrange(len(live))))
    sizes = etc_sizes(4096, seed=rng.randrange(1 << 30))
    ops = 0
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        if ops > elapsed * OPS_PER_S:
            time.sleep(0.001)
            continue
        for size in rng.sample(sizes, 64):
            t0 = time.perf_counter_ns()
            h = pool.store(source.take(size))
            lat.append(time.perf_counter_ns() - t0)
            live.append(h)
            pool.free(live.pop(rng.randrange(len(live))))
            ops += 2
    return ops


def replay(policy: str, objects: int, busy_s: float, idle_s: float, psi_file: Path) -> Result:
    rng = random.Random(1234)
    source = PayloadSource(seed=99)
    write_psi(psi_file, 0.0)
    monitor = PressureMonitor(psi=PsiSource(psi_file), cgroup=None, meminfo=None)
    options = {"reserve_pages": RESERVE_PAGES, "monitor": monitor} if policy == "pressure-gated" else {}
    if policy == "idle-only":
        options = {"idle_s": 0.3}
    with Pool(name=policy) as pool:
        survivors = fragment(pool, objects, free_fraction=0.0, seed=7)
        live = list(survivors)
        if policy != "none":
            pool.register_shrinker(policy, **options)
        lat: list[int] = []
        busy_migrated = 0
        ops = 0
        with Reclaimer(pool, interval_s=0.05, monitor=monitor, psi_trigger=None):
            for phase in ("busy", "idle", "busy", "idle+spike"):
                before = pool.stats().objects_migrated
                if phase == "busy":
                    ops += busy(pool, busy_s, rng, source, live, lat)
                    busy_migrated += pool.stats().objects_migrated - before
                else:
                    if phase == "idle+spike":
                        time.sleep(idle_s / 3)
                        write_psi(psi_file, SPIKE_AVG10)
                    time.sleep(idle_s)
                    write_psi(psi_file, 0.0)
        stats = pool.stats()
        lat.sort()
        return Result(
            policy=policy,
            pages_compacted=stats.pages_compacted,
            pages_left=stats.pages_used,
            freeable_left=stats.freeable_pages,
            busy_migrated=busy_migrated,
            total_migrated=stats.objects_migrated,
            store_p99_us=lat[int(len(lat) * 0.99)] / 1000,
            store_max_us=lat[-1] / 1000,
            writer_ops=ops,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10,000 values, short phases (make test)")
    args = parser.parse_args()
    objects, busy_s, idle_s = (10_000, 0.2, 0.4) if args.quick else (200_000, 2.0, 1.5)
    with tempfile.TemporaryDirectory() as tmp:
        results = [replay(p, objects, busy_s, idle_s, Path(tmp) / "memory.pressure") for p in POLICIES]
    none, always = results[0], results[1]

    def reclaimed(r: Result) -> int:
        return none.pages_left - r.pages_left

    print(f"## Shrinker policies on one bursty trace ({objects:,} values, busy {busy_s} s / idle {idle_s} s x2, PSI spike)\n")
    print(
        "| policy | pool pages at end | reclaimed vs no policy | vs always | objects migrated while busy "
        "| vs always | store p99 (us) | store max (us) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        reclaim_ratio = reclaimed(r) / max(reclaimed(always), 1)
        busy_ratio = r.busy_migrated / max(always.busy_migrated, 1)
        print(
            f"| {r.policy} | {r.pages_left:,} | {reclaimed(r):,} | {reclaim_ratio:.0%} | {r.busy_migrated:,} "
            f"| {busy_ratio:.1%} | {r.store_p99_us:.1f} | {r.store_max_us:.0f} |"
        )
    gated = results[3]
    target = reclaimed(always) - RESERVE_PAGES
    print(
        f"\npressure-gated keeps a reserve of {RESERVE_PAGES} freeable pages below its high threshold: "
        f"it reclaimed {reclaimed(gated) / max(target, 1):.0%} of always's reclaim less that reserve."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
