"""zspool.Cache next to dict and cachetools.LRUCache: memory per entry and throughput.

Memory (one child process per structure, so one structure's freed heap cannot hide another's
growth; every child builds the same seeded data): N values with memcached ETC sizes
(32..4096 bytes, random bytes), 11-byte keys b"k%010d". RSS and pool growth per entry beyond
the payload (key + value bytes), then the RSS after deleting 70 % at random (zspool: and
compacting).

Throughput (one process, the same data for all three): single set / get / delete per item,
and zspool's get_many / set_many per item, next to a dict. Best of 3, as ratios.

    python asv_bench/standalone/cache_vs_dict.py [--n 1000000] [--ops 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import cachetools

import zspool
from zspool.workload import PayloadSource, etc_sizes, rss_bytes

BIG = 1 << 40


def data(n: int, seed: int = 0) -> tuple[list[bytes], list[int]]:
    return [b"k%010d" % i for i in range(n)], etc_sizes(n, seed=seed)


def make(kind: str) -> Any:
    if kind == "zspool":
        return zspool.Cache(BIG)
    if kind == "cachetools":
        return cachetools.LRUCache(maxsize=BIG, getsizeof=len)
    return {}


def memory_child(kind: str, n: int) -> dict[str, float]:
    keys, sizes = data(n)
    source = PayloadSource(seed=0)
    gc.collect()
    base = rss_bytes()
    m = make(kind)
    payload = 0
    for key, size in zip(keys, sizes, strict=True):
        m[key] = bytes(source.take(size))
        payload += len(key) + size
    gc.collect()
    full = rss_bytes() - base
    out: dict[str, float] = {"n": n, "payload": payload, "rss_per_entry": full / n, "rss_overhead": (full - payload) / n}
    if kind == "zspool":
        s = m.stats()
        out["pool_overhead"] = (s.pool.mem_used_bytes + s.index_bytes + s.pool.metadata_bytes - payload) / n
        out["index_per_entry"] = s.index_bytes / n
    victims = random.Random(1).sample(keys, int(n * 0.7))
    kept_payload = payload - sum(len(k) + sizes[int(k[1:])] for k in victims)
    for key in victims:
        del m[key]
    gc.collect()
    if kind == "zspool":
        m.compact()
    after = rss_bytes() - base
    out["rss_after_delete_per_live_byte"] = after / kept_payload
    out["full_rss_per_payload_byte"] = full / payload
    return out


def best(fn: Callable[[], None], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


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
        if kind == "zspool":
            r["set_many"] = best(lambda m=m: m.set_many(items))
            r["get_many"] = best(lambda m=m: m.get_many(keys))
            # The same keys in calls of 1,000 (a multiget-sized batch): the one-call figure
            # also pays for 200,000 new bytes objects alive at once (fresh pages each call).
            r["set_many_1k"] = best(lambda m=m: [m.set_many(items[j : j + 1000]) for j in range(0, ops, 1000)])
            r["get_many_1k"] = best(lambda m=m: [m.get_many(keys[j : j + 1000]) for j in range(0, ops, 1000)])
            m.close()
        out[kind] = {k: v / ops * 1e9 for k, v in r.items()}  # ns per item
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--child", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(args.child, args.n)))
        return
    mem = {}
    for kind in ("zspool", "dict", "cachetools"):
        proc = subprocess.run([sys.executable, __file__, "--child", kind, "--n", str(args.n)], capture_output=True, text=True, check=True)
        mem[kind] = json.loads(proc.stdout)
    z = mem["zspool"]
    print(f"## Memory: {args.n:,} ETC values, {z['payload'] / 2**20:.0f} MiB of key + value payload\n")
    print("| | zspool.Cache | dict | cachetools.LRUCache |")
    print("|---|---:|---:|---:|")
    row = lambda label, f: print(f"| {label} | " + " | ".join(f(mem[k]) for k in ("zspool", "dict", "cachetools")) + " |")  # noqa: E731
    row("RSS per entry beyond the payload, bytes", lambda r: f"{r['rss_overhead']:.1f}")
    print(f"| pool pages + index + pool metadata beyond the payload, bytes | {z['pool_overhead']:.1f} | - | - |")
    print(f"| of which the Rust index, bytes | {z['index_per_entry']:.1f} | - | - |")
    row("RSS per payload byte, full", lambda r: f"{r['full_rss_per_payload_byte']:.3f}")
    row("RSS per live payload byte after deleting 70 % (zspool: + compact)", lambda r: f"{r['rss_after_delete_per_live_byte']:.3f}")
    tp = throughput(args.ops)
    print(f"\n## Throughput: {args.ops:,} ETC values, ns per item (best of 3) and ratio to cachetools / dict\n")
    print("| operation | dict | cachetools.LRUCache | zspool.Cache | zspool / cachetools | zspool / dict |")
    print("|---|---:|---:|---:|---:|---:|")
    for op in ("set", "get", "delete"):
        d, c, zs = tp["dict"][op], tp["cachetools"][op], tp["zspool"][op]
        print(f"| {op} | {d:.0f} | {c:.0f} | {zs:.0f} | {zs / c:.2f} | {zs / d:.2f} |")
    for op, base, label in (
        ("set_many", "set", "set_many (one call)"),
        ("get_many", "get", "get_many (one call)"),
        ("set_many_1k", "set", "set_many (calls of 1,000)"),
        ("get_many_1k", "get", "get_many (calls of 1,000)"),
    ):
        zs, d = tp["zspool"][op], tp["dict"][base]
        print(f"| {label} | {d:.0f} (loop) | - | {zs:.0f} | - | {zs / d:.2f} |")


if __name__ == "__main__":
    main()
