"""SIEVE vs LRU for zspool.Cache, next to cachetools.LRUCache, on two seeded traces.

- **zipf**: 200,000 requests over 20,000 keys, Zipf(alpha=0.9) popularity.
- **scan-mixed**: the same Zipf requests, with a one-off sequential scan of 2,000 never-
  repeated keys injected after every 10,000 requests (a batch job or a crawler).

Every value is 100 bytes, so every cache holds the same number of entries: the budget is
10 % of the Zipf key space (2,000 entries; `maxbytes` is 2,000 stored entries). A miss
inserts the key (demand fill). Prints a Markdown table of hit ratios.

    python asv_bench/standalone/cache_eviction.py            # about 5 s
    python asv_bench/standalone/cache_eviction.py --quick    # 20,000 requests (make test)
"""

from __future__ import annotations

import argparse
import bisect
import random
from collections.abc import Iterator

import cachetools

import zspool

KEYS = 20_000
REQUESTS = 200_000
CAPACITY = 2_000
VALUE = b"v" * 100


def zipf_trace(seed: int = 0, alpha: float = 0.9, requests: int = REQUESTS) -> list[str]:
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, KEYS + 1)]
    cdf, total = [], 0.0
    for w in weights:
        total += w
        cdf.append(total)
    ids = list(range(KEYS))
    rng.shuffle(ids)  # popularity is not key order
    return [f"z{ids[bisect.bisect_left(cdf, rng.random() * total)]:06d}" for _ in range(requests)]


def scan_mixed(trace: list[str], every: int = 10_000, scan: int = 2_000) -> Iterator[str]:
    scans = 0
    for i, key in enumerate(trace):
        if i and i % every == 0:
            scans += 1
            yield from (f"s{scans:02d}{j:04d}" for j in range(scan))
        yield key


def run_zspool(trace: list[str], eviction: str) -> float:
    entry = 2 + len(trace[0]) + len(VALUE)  # header + key + value, all keys the same length
    with zspool.Cache(CAPACITY * entry, eviction=eviction) as c:  # type: ignore[arg-type]
        for key in trace:
            if c.get(key) is None:
                c[key] = VALUE
        return c.stats().hit_ratio


def run_cachetools(trace: list[str]) -> float:
    c: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(maxsize=CAPACITY)
    hits = 0
    for key in trace:
        if c.get(key) is None:
            c[key] = VALUE
        else:
            hits += 1
    return hits / len(trace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 requests, for a smoke run")
    requests = 20_000 if parser.parse_args().quick else REQUESTS
    zipf = zipf_trace(requests=requests)
    traces = {"zipf": zipf, "scan-mixed": list(scan_mixed(zipf))}
    print(f"{KEYS} keys, {requests} Zipf(0.9) requests, capacity {CAPACITY} entries\n")
    print("| trace | requests | zspool SIEVE | zspool LRU | cachetools.LRUCache |")
    print("|---|---:|---:|---:|---:|")
    for name, trace in traces.items():
        row = [run_zspool(trace, "sieve"), run_zspool(trace, "lru"), run_cachetools(trace)]
        print(f"| {name} | {len(trace):,} | " + " | ".join(f"{r:.3f}" for r in row) + " |")


if __name__ == "__main__":
    main()
