"""zspool.Pool next to a Python dict of bytes, in the same process, on the same data.

Two measurements, both reported as ratios so a noisy shared machine still gives a fair
comparison:

1. Throughput of store / load / free for small objects (64 bytes by default), against
   ``d[k] = bytes(v)`` / ``d[k]`` / ``del d[k]``. Both sides copy the payload once on store;
   a dict load returns the stored object without a copy, a pool load copies it out.
   Best of ``--repeat`` runs, alternating pool and dict.
2. RSS per payload byte for ``--objects`` (1,000,000) values with memcached ETC sizes:
   after the fill, after deleting 70 % at random, and after each side's reclaim lever: the
   pool's ``compact()``, the dict's ``gc.collect()`` + ``malloc_trim(0)`` (as in the peers
   harness). Each side runs in a fresh subprocess so neither inherits the other's heap.

Run: ``python asv_bench/standalone/pool_vs_dict.py`` (about a minute), or with ``--quick``.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import random
import subprocess
import sys
import time

from zspool import Pool
from zspool.workload import PayloadSource, etc_sizes, reclaim_python_heap, rss_bytes


def throughput(n: int, size: int, repeat: int) -> dict[str, float]:
    source = PayloadSource(seed=1)
    payloads = [source.take(size) for _ in range(n)]
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = max(best.get(name, 0.0), n / seconds)

    for _ in range(repeat):
        with Pool() as pool:
            t0 = time.perf_counter()
            handles = [pool.store(p) for p in payloads]
            t1 = time.perf_counter()
            for h in handles:
                pool.load(h)
            t2 = time.perf_counter()
            for h in handles:
                pool.free(h)
            t3 = time.perf_counter()
        keep("pool store", t1 - t0)
        keep("pool load", t2 - t1)
        keep("pool free", t3 - t2)

        d: dict[int, bytes] = {}
        t0 = time.perf_counter()
        for i, p in enumerate(payloads):
            d[i] = bytes(p)
        t1 = time.perf_counter()
        for i in range(n):
            d[i]
        t2 = time.perf_counter()
        for i in range(n):
            del d[i]
        t3 = time.perf_counter()
        keep("dict store", t1 - t0)
        keep("dict load", t2 - t1)
        keep("dict free", t3 - t2)
        gc.collect()
    return best


def memory_child(kind: str, n: int, seed: int) -> dict[str, float]:
    """Runs in a subprocess: fill, delete 70 %, (compact), reporting RSS per payload byte."""
    sizes = etc_sizes(n, seed=seed)
    source = PayloadSource(seed=seed)
    payloads = [source.take(s) for s in sizes]
    rng = random.Random(seed)
    victims = rng.sample(range(n), int(n * 0.7))
    live_payload = sum(sizes) - sum(sizes[i] for i in victims)
    gc.collect()
    base = rss_bytes()
    out: dict[str, float] = {"payload_bytes": sum(sizes), "live_payload_bytes": live_payload}
    if kind == "dict":
        d = {i: bytes(p) for i, p in enumerate(payloads)}
        out["fill"] = (rss_bytes() - base) / sum(sizes)
        for i in victims:
            del d[i]
        gc.collect()
        out["after_delete"] = (rss_bytes() - base) / live_payload
        reclaim_python_heap()
        out["after_reclaim"] = (rss_bytes() - base) / live_payload
    else:
        pool = Pool()
        # Handles in an array: 8 bytes each, no Python object per value (a dict pays one
        # key object per value, which is part of what it costs).
        handles = array.array("Q", (pool.store(p) for p in payloads))
        out["fill"] = (rss_bytes() - base) / sum(sizes)
        out["pool_fill"] = pool.stats().mem_used_bytes / sum(sizes)
        out["metadata_per_object_fill"] = pool.stats().metadata_bytes / n
        for i in victims:
            pool.free(handles[i])
        out["after_delete"] = (rss_bytes() - base) / live_payload
        out["pool_after_delete"] = pool.stats().mem_used_bytes / live_payload
        report = pool.compact()
        out["after_reclaim"] = (rss_bytes() - base) / live_payload
        out["pool_after_reclaim"] = pool.stats().mem_used_bytes / live_payload
        out["metadata_per_object_after_reclaim"] = pool.stats().metadata_bytes / (n - len(victims))
        out["compact_s"] = report.duration_s
        out["pages_freed"] = report.pages_freed
        pool.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=64, help="object size for the throughput runs (bytes)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["dict", "pool"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.objects, args.repeat = 20_000, 1
    if args.child:
        print(json.dumps(memory_child(args.child, args.objects, seed=7)))
        return 0

    n = 200_000 if not args.quick else 10_000
    rates = throughput(n, args.small, args.repeat)
    print(f"## Throughput, {n:,} objects of {args.small} bytes (best of {args.repeat}, ns per operation)\n")
    print("The ratio is of times (the pool's ns / the dict's ns, same run): < 1 is faster than a dict.\n")
    print("| operation | zspool.Pool | dict of bytes | pool / dict |")
    print("|---|---:|---:|---:|")
    for op in ("store", "load", "free"):
        pool_ns, dict_ns = 1e9 / rates[f"pool {op}"], 1e9 / rates[f"dict {op}"]
        print(f"| {op} | {pool_ns:.0f} | {dict_ns:.0f} | {pool_ns / dict_ns:.2f} |")

    results = {}
    for kind in ("dict", "pool"):
        child = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--objects", str(args.objects)],
            check=True,
            capture_output=True,
            text=True,
        )
        results[kind] = json.loads(child.stdout)
    pool, d = results["pool"], results["dict"]
    print(f"\n## Memory, {args.objects:,} ETC-sized values ({pool['payload_bytes'] / 2**20:,.0f} MiB payload)\n")
    print("RSS bytes per payload byte (after delete and after reclaim: per *live* payload byte)\n")
    print("| phase | zspool.Pool (RSS) | zspool.Pool (pool pages) | dict of bytes (RSS) |")
    print("|---|---:|---:|---:|")
    print(f"| fill | {pool['fill']:.3f} | {pool['pool_fill']:.3f} | {d['fill']:.3f} |")
    print(f"| delete 70 % at random | {pool['after_delete']:.3f} | {pool['pool_after_delete']:.3f} | {d['after_delete']:.3f} |")
    print(
        f"| reclaim: compact (pool) / gc.collect + malloc_trim(0) (dict) | {pool['after_reclaim']:.3f} | {pool['pool_after_reclaim']:.3f} "
        f"| {d['after_reclaim']:.3f} |"
    )
    print(
        f"\npool metadata (handle tables, zspage bookkeeping; heap, outside the pool pages): "
        f"{pool['metadata_per_object_fill']:.1f} B per object after the fill, "
        f"{pool['metadata_per_object_after_reclaim']:.1f} B per live object after compaction"
    )
    print(f"\ncompaction: {pool['pages_freed']:,} pages freed in {pool['compact_s'] * 1000:.0f} ms")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
