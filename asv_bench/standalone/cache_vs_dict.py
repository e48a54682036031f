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

Random keys (`--random`: only this table): every peer (dict, cachetools, cachebox, lru-dict,
moka-py, theine, zspool.Cache, and zspool.Pool.load next to dict.get) at N entries, each in
its own process, operations on random live keys; medians of `--rounds` interleaved runs.

    python asv_bench/standalone/cache_vs_dict.py [--n 1000000] [--ops 200000] [--repeat 4]
    python asv_bench/standalone/cache_vs_dict.py --random [--rounds 3]
    python asv_bench/standalone/cache_vs_dict.py --quick    # every table at small N, one run (make test)
"""

from __future__ import annotations

import argparse
import functools
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
from zspool.workload import PayloadSource, best_time, etc_sizes, reclaim_python_heap, rss_bytes, spread

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

        r = {"set": best_time(fill), "get": best_time(read)}
        times = []
        for _ in range(3):
            fill()
            times.append(best_time(delete, 1))
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
        r["get_all"] = best_time(lambda: each(get_batch, [keys]))
        r["get_1k"] = best_time(lambda: each(get_batch, chunks))
        r["set_all"] = best_time(lambda: each(put_batch, [items]))
        r["set_1k"] = best_time(lambda: each(put_batch, item_chunks))
        if kind == "zspool":
            # The cache's own one-key-at-a-time spelling of the all-keys list, for scale.
            r["get_all_single"] = best_time(lambda: each(get_list, [keys]))
            m.close()
        out[kind] = {k: v / ops * 1e9 for k, v in r.items()}  # ns per item
    return out


# Random keys at 1M entries: every peer, each in its own process --------------------------
#
# The issue-13 workload: N entries with ETC values and 11-character str keys "k%010d", then
# `--ops` operations on live keys picked at random (so each one misses the CPU caches the way
# a real service's lookups do), per operation: get(), [] (getitem), `in`, set (an overwrite
# with a value of the same size) and delete. Each structure is built and timed in a child
# process of its own (no structure inherits another's heap); the parent runs the children
# `--rounds` times, interleaved, and reports the median of each figure and of each ratio.
# Times are the timing thread's CPU time, so that other processes on a shared machine do not
# count (the cache misses that these numbers are about do).

RANDOM_KINDS = (
    "dict",
    "cachetools",
    "cachebox",
    "lru-dict",
    "moka-py",
    "theine",
    "zspool",
    "zspool.Pool",
)
RANDOM_OPS = ("get", "getitem", "contains", "set", "delete")


def make_peer(kind: str, n: int) -> Any:
    """An empty structure of `kind` with room for `n` entries and no eviction."""
    if kind == "dict":
        return {}
    if kind == "cachetools":
        return cachetools.LRUCache(maxsize=2 * n)
    if kind == "cachebox":
        import cachebox

        return cachebox.LRUCache(maxsize=2 * n)
    if kind == "lru-dict":
        import lru

        return lru.LRU(2 * n)
    if kind == "moka-py":
        import moka_py

        return moka_py.Moka(2 * n)
    if kind == "theine":
        import theine

        return theine.Cache(2 * n)
    if kind == "zspool":
        return zspool.Cache(BIG)
    raise ValueError(kind)


def peer_ops(kind: str, m: Any) -> dict[str, Callable[[list[str], list[bytes]], None] | None]:
    """Each operation as a loop over keys (and values), spelled the way a user of `kind`
    writes it: the mapping protocol where the structure has it, its own methods where not."""

    def get(ks: list[str], vs: list[bytes]) -> None:
        g = m.get
        for k in ks:
            g(k)

    def getitem(ks: list[str], vs: list[bytes]) -> None:
        for k in ks:
            m[k]

    def contains(ks: list[str], vs: list[bytes]) -> None:
        for k in ks:
            k in m

    def setitem(ks: list[str], vs: list[bytes]) -> None:
        for k, v in zip(ks, vs, strict=True):
            m[k] = v

    def delitem(ks: list[str], vs: list[bytes]) -> None:
        for k in ks:
            del m[k]

    def set_method(ks: list[str], vs: list[bytes]) -> None:
        s = m.set
        for k, v in zip(ks, vs, strict=True):
            s(k, v)

    def remove_method(ks: list[str], vs: list[bytes]) -> None:
        r = m.remove if kind == "moka-py" else m.delete
        for k in ks:
            r(k)

    if kind in ("moka-py", "theine"):
        # Neither is a mapping: no [] and no `in`; set and remove are methods.
        return {
            "get": get,
            "getitem": None,
            "contains": None,
            "set": set_method,
            "delete": remove_method,
        }
    return {"get": get, "getitem": getitem, "contains": contains, "set": setitem, "delete": delitem}


def best_cpu(fn: Callable[[], None], repeat: int = 3) -> float:
    """The least thread CPU time of `repeat` calls, in seconds: on a machine shared with other
    work, time spent descheduled does not count (cache misses, the subject here, do)."""
    times = []
    for _ in range(repeat):
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return min(times)


def random_child(kind: str, n: int, ops: int) -> dict[str, float]:
    """ns per operation of `kind` on `ops` random live keys of `n` entries (best of 3)."""
    sizes = etc_sizes(n, seed=0)
    source = PayloadSource(seed=0)
    rng = random.Random(3)
    picks = [rng.randrange(n) for _ in range(ops)]
    if kind == "zspool.Pool":
        return pool_load_child(n, sizes, source, picks)
    keys = [f"k{i:010d}" for i in range(n)]
    m = make_peer(kind, n)
    fill = peer_ops(kind, m)["set"]
    assert fill is not None
    fill(keys, [bytes(source.take(size)) for size in sizes])
    ks = [keys[i] for i in picks]
    vs = [bytes(source.take(sizes[i])) for i in picks]
    out: dict[str, float] = {}
    for op, loop in peer_ops(kind, m).items():
        if loop is None:
            continue
        if op == "delete":
            # Distinct keys (a key is deleted once per round), put back untimed after each.
            gone = list(dict.fromkeys(ks))
            times = []
            for _ in range(3):
                times.append(best_cpu(functools.partial(loop, gone, vs), 1) / len(gone))
                fill(gone, vs[: len(gone)])
            out[op] = min(times) * 1e9
        else:
            out[op] = best_cpu(functools.partial(loop, ks, vs)) / ops * 1e9
    if kind in ("zspool", "theine"):
        m.close()  # theine: its maintenance thread
    return out


def pool_load_child(
    n: int, sizes: list[int], source: PayloadSource, picks: list[int]
) -> dict[str, float]:
    """`Pool.load` of random handles next to `dict.get` of random keys, same data, one process:
    the issue's `load` target is a ratio to the dict read in the same run."""
    keys = [f"k{i:010d}" for i in range(n)]
    pool = zspool.Pool()
    d: dict[str, bytes] = {}
    handles = []
    for key, size in zip(keys, sizes, strict=True):
        value = source.take(size)
        handles.append(pool.store(value))
        d[key] = bytes(value)
    hs = [handles[i] for i in picks]
    ks = [keys[i] for i in picks]

    def load() -> None:
        f = pool.load
        for h in hs:
            f(h)

    def get() -> None:
        g = d.get
        for k in ks:
            g(k)

    out = {"load": best_cpu(load) / len(hs) * 1e9, "dict.get": best_cpu(get) / len(ks) * 1e9}
    pool.close()
    return out


def random_peers(n: int, ops: int, rounds: int) -> dict[str, dict[str, float]]:
    """Every kind's ns per operation (median over `rounds` interleaved child runs), plus
    zspool's ratio to each peer computed within each round and then taken the median of."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in RANDOM_KINDS}
    for _ in range(rounds):
        for kind in RANDOM_KINDS:
            args = ["--random-child", kind, "--n", str(n), "--ops", str(ops)]
            proc = subprocess.run(
                [sys.executable, __file__, *args], capture_output=True, text=True, check=True
            )
            runs[kind].append(json.loads(proc.stdout))
    med: dict[str, dict[str, float]] = {}
    for kind, rs in runs.items():
        med[kind] = {op: statistics.median(r[op] for r in rs) for op in rs[0]}
    for peer in ("dict", "cachebox"):
        med[f"zspool / {peer}"] = {
            op: statistics.median(
                z[op] / p[op] for z, p in zip(runs["zspool"], runs[peer], strict=True)
            )
            for op in RANDOM_OPS
            if op in runs[peer][0]
        }
    med["load / dict.get"] = {
        "load": statistics.median(r["load"] / r["dict.get"] for r in runs["zspool.Pool"])
    }
    return med


def print_random(n: int, ops: int, rounds: int, med: dict[str, dict[str, float]]) -> None:
    print(
        f"## Random keys: {n:,} entries (ETC values, 11-character str keys), {ops:,} random live keys"
    )
    print(
        f"ns per operation (thread CPU time), median of {rounds} rounds (each structure in its own process, best of 3 in it)\n"
    )
    print("| structure | " + " | ".join(RANDOM_OPS) + " |")
    print("|---|" + "---:|" * len(RANDOM_OPS))
    for kind in RANDOM_KINDS[:-1]:
        cells = [f"{med[kind][op]:.0f}" if op in med[kind] else "-" for op in RANDOM_OPS]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    for ratio in ("zspool / dict", "zspool / cachebox"):
        cells = [f"{med[ratio][op]:.2f}" if op in med[ratio] else "-" for op in RANDOM_OPS]
        print(f"| **{ratio}** | " + " | ".join(cells) + " |")
    p = med["zspool.Pool"]
    print(
        f"\nzspool.Pool.load of a random handle: {p['load']:.0f} ns, dict.get of a random key:"
        f" {p['dict.get']:.0f} ns, ratio {med['load / dict.get']['load']:.2f} (median of per-round ratios)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000, help="entries in the memory runs")
    parser.add_argument("--ops", type=int, default=200_000, help="entries in the throughput runs")
    parser.add_argument("--repeat", type=int, default=4, help="throughput runs (each best of 3) to aggregate")
    parser.add_argument("--random", action="store_true", help="only the random-key table of every peer")
    parser.add_argument("--rounds", type=int, default=3, help="child runs per structure (--random)")
    parser.add_argument("--quick", action="store_true", help="every table at small N, one run (make test)")
    parser.add_argument("--random-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.ops, args.repeat, args.rounds = 20_000, 5_000, 1, 1
    if args.child:
        print(json.dumps(memory_child(args.child, args.n)))
        return
    if args.random_child:
        print(json.dumps(random_child(args.random_child, args.n, args.ops)))
        return
    if args.random or args.quick:
        print_random(args.n, args.ops, args.rounds, random_peers(args.n, args.ops, args.rounds))
        if args.random:
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
