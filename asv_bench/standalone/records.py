"""Realistic small records: what a trained zstd dictionary and recompression buy.

N JSON user profiles (``zspool.records``: seeded, about 300 bytes each) under keys
``user:<i>``, held by:

- ``zspool.Cache`` with no compression, lz4, zstd, and zstd with a dictionary
  (``dictionary=True``: trained by itself after 2 MiB of values) before and after
  ``recompress()`` (which rewrites the values stored before the dictionary existed, then
  compacts);
- a ``dict``, ``cachetools.LRUCache`` and ``cachebox.LRUCache`` holding the same records as
  ``bytes``, and as parsed Python objects (``json.loads``).

Memory: one child process per row (so that one structure's freed heap cannot hide
another's growth), RSS growth divided by the payload (key + value bytes). Latency (one
process holding the four zspool caches of the same data): ``get`` and ``set`` of one record
per call on ``--ops`` random live keys, as ratios against the uncompressed ``zspool.Cache``
timed in the same round (thread CPU time, best of 3); ``--rounds`` interleaved rounds, reported as the median and the
min-max of the per-round ratios.

    python asv_bench/standalone/records.py [--n 100000] [--ops 50000] [--rounds 5] [--quick]

``--quick`` (run by ``make test``: a few seconds) checks that every row runs and that the
dictionary row after recompression beats plain zstd; it asserts no speed.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import subprocess
import sys
import time
from typing import Any

import cachebox
import cachetools
import zspool
from zspool.records import user_record_bytes, user_records
from zspool.workload import best_time, rss_bytes, spread

BIG = 1 << 40
LATENCY_ROWS = ["zspool", "zspool lz4", "zspool zstd", "zspool zstd+dict after recompress"]
ROWS = [
    "zspool",
    "zspool lz4",
    "zspool zstd",
    "zspool zstd+dict before recompress",
    "zspool zstd+dict after recompress",
    "dict (bytes)",
    "cachetools (bytes)",
    "cachebox (bytes)",
    "dict (parsed)",
    "cachetools (parsed)",
    "cachebox (parsed)",
]


def make(row: str) -> Any:
    if row == "zspool":
        return zspool.Cache(BIG)
    if row == "zspool lz4":
        return zspool.Cache(BIG, compression="lz4")
    if row == "zspool zstd":
        return zspool.Cache(BIG, compression="zstd")
    if row.startswith("zspool zstd+dict"):
        return zspool.Cache(BIG, compression="zstd", dictionary=True)
    if row.startswith("cachetools"):
        return cachetools.LRUCache(maxsize=BIG, getsizeof=None if "parsed" in row else len)
    if row.startswith("cachebox"):
        return cachebox.LRUCache(maxsize=0)
    return {}


def memory_child(row: str, n: int) -> dict[str, Any]:
    # Records are made inside the measured region and kept only by the structure: a dict
    # holds its bytes objects (and pays for them), zspool copies them into its pool.
    parse = "parsed" in row
    payload = 0
    gc.collect()
    base = rss_bytes()
    m = make(row)
    for i in range(n):
        key, value = f"user:{i}", user_record_bytes(i)
        payload += len(key) + len(value)
        m[key] = json.loads(value) if parse else value
    del key, value
    out: dict[str, Any] = {"row": row, "n": n, "payload": payload}
    if row.endswith("after recompress"):
        wait_for_dictionary(m)
        started = time.perf_counter()
        report = m.recompress()
        elapsed = time.perf_counter() - started
        out["recompress_mb_s"] = report.bytes_before / elapsed / 1e6
        out["recompressed"] = report.values_recompressed
    gc.collect()
    out["rss_per_payload_byte"] = (rss_bytes() - base) / payload
    if row.startswith("zspool"):
        s = m.stats()
        out["stored_per_payload_byte"] = s.stored_bytes / payload
        out["pool_per_payload_byte"] = s.pool.mem_used_bytes / payload
        out["index_per_payload_byte"] = s.index_bytes / payload
        out["dictionaries"] = len(s.dictionary.dictionaries)
    return out


def run_child(row: str, n: int) -> dict[str, Any]:
    code = f"import json, records; print(json.dumps(records.memory_child({row!r}, {n})))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=sys.path[0]
    )
    return json.loads(done.stdout.splitlines()[-1])


def wait_for_dictionary(cache: zspool.Cache, timeout: float = 120.0) -> None:
    """``dictionary=True`` trains in a background thread once enough values came in: a
    ``recompress()`` before it finished would find no dictionary to recompress with."""
    deadline = time.monotonic() + timeout
    while cache.stats().dictionary.current is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no dictionary trained within {timeout} s")
        time.sleep(0.01)


def filled(row: str, keys: list[str], values: list[bytes]) -> Any:
    cache = make(row)
    for k, v in zip(keys, values, strict=True):
        cache[k] = v
    if row.endswith("recompress"):
        wait_for_dictionary(cache)
        cache.recompress()
    return cache


def latency(n: int, ops: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per row: ns per get and per set of one ~300-byte record on random live keys, and the
    ratios to the uncompressed cache timed in the same round, one of each per round."""
    values = list(user_records(n))
    keys = [f"user:{i}" for i in range(n)]
    rng = random.Random(0)
    probe = rng.sample(keys, min(ops, n))
    pairs = list(zip(probe, rng.sample(values, len(probe)), strict=True))
    caches = {row: filled(row, keys, values) for row in LATENCY_ROWS}
    out: dict[str, dict[str, list[float]]] = {
        row: {"get_ns": [], "set_ns": [], "get_ratio": [], "set_ratio": []} for row in LATENCY_ROWS
    }
    for _ in range(rounds):
        ns: dict[str, tuple[float, float]] = {}
        for row, cache in caches.items():

            def get_all(get: Any = cache.get) -> None:
                for k in probe:
                    get(k)

            def put_all(c: Any = cache) -> None:
                for k, v in pairs:
                    c[k] = v

            get_s, set_s = (best_time(f, clock=time.thread_time) for f in (get_all, put_all))
            ns[row] = (get_s / len(probe) * 1e9, set_s / len(probe) * 1e9)
        for row, (get_ns, set_ns) in ns.items():
            out[row]["get_ns"].append(get_ns)
            out[row]["set_ns"].append(set_ns)
            out[row]["get_ratio"].append(get_ns / ns["zspool"][0])
            out[row]["set_ratio"].append(set_ns / ns["zspool"][1])
    for cache in caches.values():
        cache.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument(
        "--quick", action="store_true", help="a few seconds: every row runs once, small n"
    )
    args = ap.parse_args()
    if args.quick:
        args.n, args.ops, args.rounds = 8_000, 2_000, 3
    rows = [run_child(row, args.n) for row in ROWS]
    lat = latency(args.n, args.ops, args.rounds)
    print(
        f"{args.n:,} records, {rows[0]['payload'] / args.n:.0f} payload bytes each (key + JSON)\n"
    )
    print(f"| {'':38} | RSS / payload byte | get vs uncompressed | set vs uncompressed |")
    print(f"|{'-' * 40}|-------------------:|--------------------:|--------------------:|")
    for r in rows:
        t = lat.get(r["row"])
        get = spread(t["get_ratio"]) + "x" if t else ""
        put = spread(t["set_ratio"]) + "x" if t else ""
        print(f"| {r['row']:38} | {r['rss_per_payload_byte']:18.3f} | {get:>19} | {put:>19} |")
    print(f"\nratios: median (min-max) of {args.rounds} interleaved rounds; ns per call, median:")
    for row, t in lat.items():
        get_ns, set_ns = statistics.median(t["get_ns"]), statistics.median(t["set_ns"])
        print(f"{row:38} get {get_ns:7.0f} ns   set {set_ns:7.0f} ns")
    after = next(r for r in rows if r["row"].endswith("after recompress"))
    zstd = next(r for r in rows if r["row"] == "zspool zstd")
    print(
        f"\nafter recompress: stored {after['stored_per_payload_byte']:.3f}, pool pages "
        f"{after['pool_per_payload_byte']:.3f}, index {after['index_per_payload_byte']:.3f} per payload byte; "
        f"recompression {after['recompress_mb_s']:.1f} MB/s ({after['recompressed']:,} values)"
    )
    if args.quick:
        assert after["stored_per_payload_byte"] < zstd["stored_per_payload_byte"], (after, zstd)
        assert after["dictionaries"] == 1


if __name__ == "__main__":
    main()
