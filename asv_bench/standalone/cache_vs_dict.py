"""zspool.Cache next to dict and cachetools.LRUCache: memory per entry and throughput.

Memory (one child process per structure, so one structure's freed heap cannot hide another's
growth; every child builds the same seeded data): N values with memcached ETC sizes
(32..4096 bytes, random bytes), 11-byte keys b"k%010d". RSS and pool growth per entry beyond
the payload (key + value bytes), then the RSS after deleting 70 % at random and each
structure's reclaim lever (zspool: ``compact()``; dict and cachetools: ``gc.collect()`` +
``malloc_trim(0)``). cachetools counts its budget in entries (no ``getsizeof``).

Throughput (one process, the same data for all three): single set / get / delete per item,
and batches spelled the same way for each structure (zspool's get_many / set_many, a dict's
list comprehension of get() and update()), all keys at once and in calls of 1,000. Best of 3.

    python asv_bench/standalone/cache_vs_dict.py [--n 1000000] [--ops 200000] [--repeat 4]
    python asv_bench/standalone/cache_vs_dict.py --quick    # small N, one run (make test)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import cachetools

import zspool
from zspool.workload import PayloadSource, etc_sizes, reclaim_python_heap, rss_bytes

BIG = 1 << 40


def data(n: int, seed: int = 0) -> tuple[list[bytes], list[int]]:
    return [b"k%010d" % i for i in range(n)], etc_sizes(n, seed=seed)


def make(kind: str) -> Any:
    if kind == "zspool":
        return zspool.Cache(BIG)
    if kind == "cachetools":
        # Counted in entries (the default getsizeof): a byte budget (getsizeof=len) would make
        # cachetools keep a second dict of sizes, a cost its users choose, not the structure's.
        return cachetools.LRUCache(maxsize=BIG)
    return {}


def memory_child(kind: str, n: int) -> dict[str, Any]:
    # Keys are made inside the measured region and kept only by the structure: a dict or
    # cachetools holds its key objects (and pays for them), zspool copies the key bytes into
    # its pool. Building the keys up front would hide the dict's key objects from its RSS.
    sizes = etc_sizes(n, seed=0)
    victims = random.Random(1).sample(range(n), int(n * 0.7))  # made before the baseline too
    source = PayloadSource(seed=0)
    gc.collect()
    base = rss_bytes()
    m = make(kind)
    payload = 0
    for i, size in enumerate(sizes):
        key = b"k%010d" % i
        m[key] = bytes(source.take(size))
        payload += len(key) + size
    del key
    gc.collect()
    full = rss_bytes() - base
    out: dict[str, Any] = {"n": n, "payload": payload, "rss_per_entry": full / n, "rss_overhead": (full - payload) / n}
    if kind == "zspool":
        s = m.stats()
        out["pool_overhead"] = (s.pool.mem_used_bytes + s.index_bytes + s.pool.metadata_bytes - payload) / n
        out["index_per_entry"] = s.index_bytes / n
        out["pool_metadata_per_entry"] = s.pool.metadata_bytes / n
        out["breakdown"] = breakdown(m, n, full)
    kept_payload = payload - sum(11 + sizes[i] for i in victims)
    for i in victims:
        del m[b"k%010d" % i]
    # Each structure's reclaim lever: zspool compacts; the Python heap's is gc + malloc_trim.
    if kind == "zspool":
        gc.collect()
        m.compact()
    else:
        reclaim_python_heap()
    after = rss_bytes() - base
    out["rss_after_delete_per_live_byte"] = after / kept_payload
    out["full_rss_per_payload_byte"] = full / payload
    return out


def breakdown(cache: Any, n: int, rss: int) -> dict[str, float]:
    """Where a zspool.Cache entry's bytes beyond its key and value go, per entry.

    The index and the pool metadata are counted by capacity (allocated bytes); the unused end
    of an array that grew by doubling is never touched, so it is not resident, and the
    remainder against the measured RSS can come out negative by that much.
    """
    s = cache.stats()
    classes = cache.pool.class_stats()
    page = zspool.PAGE_SIZE
    class_payload = sum(c.payload_bytes for c in classes)
    parts = {
        "entry header (flags, key length)": s.stored_bytes - s.payload_bytes,
        "size-class rounding (16-byte steps)": sum(c.size * c.obj_used - c.payload_bytes for c in classes),
        "zspage tails and free object slots": sum(c.pages_used * page - c.size * c.obj_used for c in classes),
        "large objects: rounding to whole pages": s.pool.large_object_pages * page - (s.pool.payload_bytes - class_payload),
        "cache index (slots + table)": s.index_bytes,
        "pool metadata (handle tables, zspages)": s.pool.metadata_bytes,
    }
    parts["the rest (heap, allocator, process)"] = rss - s.payload_bytes - sum(parts.values())
    return {k: v / n for k, v in parts.items()}


def best(fn: Callable[[], None], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def each(call: Callable[[Any], Any], batches: list[Any]) -> None:
    """Call on every batch, dropping each result before the next call (as a service would)."""
    for batch in batches:
        call(batch)


def throughput(ops: int) -> dict[str, dict[str, float]]:
    keys, sizes = data(ops, seed=2)
    source = PayloadSource(seed=2)
    values = [bytes(source.take(s)) for s in sizes]
    items = list(zip(keys, values, strict=True))
    out: dict[str, dict[str, float]] = {}
    for kind in ("dict", "cachetools", "zspool"):
        m = make(kind)

        def fill(m: Any = m) -> None:
            for k, v in items:
                m[k] = v

        def read(m: Any = m) -> None:
            for k in keys:
                m[k]

        def delete(m: Any = m) -> None:
            for k in keys:
                del m[k]

        r = {"set": best(fill), "get": best(read)}
        times = []
        for _ in range(3):
            fill()
            times.append(best(delete, 1))
        r["delete"] = min(times)
        fill()
        # Batches, spelled the same way for every structure so that only the lookups differ:
        # a list of values for all keys at once (every result kept alive), and multiget-sized
        # batches of 1,000 keys whose result list is dropped before the next (memory reused).
        chunks = [keys[j : j + 1000] for j in range(0, ops, 1000)]
        item_chunks = [items[j : j + 1000] for j in range(0, ops, 1000)]
        def get_list(ks: list[bytes], m: Any = m) -> list[Any]:
            return [m.get(k) for k in ks]

        get_batch: Callable[[list[bytes]], Any] = m.get_many if kind == "zspool" else get_list
        put_batch: Callable[[list[tuple[bytes, bytes]]], Any] = m.set_many if kind == "zspool" else m.update
        r["get_all"] = best(lambda: each(get_batch, [keys]))
        r["get_1k"] = best(lambda: each(get_batch, chunks))
        r["set_all"] = best(lambda: each(put_batch, [items]))
        r["set_1k"] = best(lambda: each(put_batch, item_chunks))
        if kind == "zspool":
            # The cache's own one-key-at-a-time spelling of the all-keys list, for scale.
            r["get_all_single"] = best(lambda: each(get_list, [keys]))
            m.close()
        out[kind] = {k: v / ops * 1e9 for k, v in r.items()}  # ns per item
    return out


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """A figure over several runs: the median, and min-max when there is more than one run."""
    values = sorted(values)
    median = fmt.format(statistics.median(values))
    return median if len(values) == 1 else f"{median} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="entries in the memory runs")
    parser.add_argument("--ops", type=int, default=200_000, help="entries in the throughput runs")
    parser.add_argument("--repeat", type=int, default=4, help="throughput runs (each best of 3) to aggregate")
    parser.add_argument("--quick", action="store_true", help="--n 20000 --ops 5000 --repeat 1 (make test)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.ops, args.repeat = 20_000, 5_000, 1
    if args.child:
        print(json.dumps(memory_child(args.child, args.n)))
        return
    mem = {}
    for kind in ("zspool", "dict", "cachetools"):
        argv = [sys.executable, __file__, "--child", kind, "--n", str(args.n)]
        mem[kind] = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
    z = mem["zspool"]
    print(f"## Memory: {args.n:,} ETC values, {z['payload'] / 2**20:.0f} MiB of key + value payload\n")
    print("| | zspool.Cache | dict | cachetools.LRUCache |")
    print("|---|---:|---:|---:|")

    def row(label: str, f: Callable[[dict[str, Any]], str]) -> None:
        print(f"| {label} | " + " | ".join(f(mem[k]) for k in ("zspool", "dict", "cachetools")) + " |")

    row("RSS per entry beyond the payload, bytes", lambda r: f"{r['rss_overhead']:.1f}")
    print(f"| pool pages + index + pool metadata beyond the payload, bytes | {z['pool_overhead']:.1f} | - | - |")
    print(f"| of which the cache's index, bytes | {z['index_per_entry']:.1f} | - | - |")
    print(f"| of which the pool's metadata (handle tables, zspages), bytes | {z['pool_metadata_per_entry']:.1f} | - | - |")
    row("RSS per payload byte, full", lambda r: f"{r['full_rss_per_payload_byte']:.3f}")
    row(
        "RSS per live payload byte after deleting 70 % and reclaiming (zspool: compact; "
        "dict, cachetools: gc.collect + malloc_trim)",
        lambda r: f"{r['rss_after_delete_per_live_byte']:.3f}",
    )
    print("\nWhere zspool.Cache's RSS beyond the payload goes, bytes per entry:\n")
    print("| part | bytes |\n|---|---:|")
    for part, b in z["breakdown"].items():
        print(f"| {part} | {b:.1f} |")

    runs = [throughput(args.ops) for _ in range(args.repeat)]
    runs_note = "one run" if args.repeat == 1 else f"median of {args.repeat} runs, (min-max) over them"
    print(f"\n## Throughput: {args.ops:,} ETC values, ns per item (each run best of 3; {runs_note})\n")
    print("Ratios are times (zspool's ns / the baseline's ns, each pair from the same run): < 1 is faster.\n")
    print("| operation | dict | cachetools.LRUCache | zspool.Cache | zspool / cachetools | zspool / dict |")
    print("|---|---:|---:|---:|---:|---:|")

    def ns(kind: str, op: str) -> str:
        return spread([r[kind][op] for r in runs], "{:.0f}")

    def ratio(op: str, base: str) -> str:
        return spread([r["zspool"][op] / r[base][op] for r in runs])

    for op in ("set", "get", "delete"):
        print(f"| {op} | {ns('dict', op)} | {ns('cachetools', op)} | {ns('zspool', op)} "
              f"| {ratio(op, 'cachetools')} | {ratio(op, 'dict')} |")
    print("\nBatches: zspool's get_many / set_many next to the same batch spelled for a dict")
    print("(`[d.get(k) for k in keys]`, `d.update(items)`) and for cachetools, ns per item:\n")
    print("| batch | dict | cachetools.LRUCache | zspool.Cache | zspool / dict |")
    print("|---|---:|---:|---:|---:|")
    for op, label in (
        ("get_1k", "get, calls of 1,000 keys, each result list dropped (a multiget)"),
        ("get_all", f"get, all {args.ops:,} keys in one call, results kept"),
        ("set_1k", "set, calls of 1,000 items"),
        ("set_all", "set, all items in one call"),
    ):
        print(f"| {label} | {ns('dict', op)} | {ns('cachetools', op)} | {ns('zspool', op)} | {ratio(op, 'dict')} |")
    per_key = spread([r["zspool"]["get_1k"] / r["zspool"]["get"] for r in runs])
    print(f"\nzspool get_many in calls of 1,000 / one get per key (time per key): {per_key}")
    print(f"zspool, all keys one `get` call each, results kept: {ns('zspool', 'get_all_single')} ns per item")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (1 min) on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
