"""How much a handle betrays its neighbours, and what resolving a handle costs.

1. **Neighbours**: store ``--objects`` objects (sizes spread over the size classes), then for
   every handle ``h`` ask whether ``h + d`` and ``h - d`` (``d`` in ``1..=--distance``) name a
   live object of the pool. Prints the fraction that do: the chance that an off-by-``d`` in
   user code silently reads or frees someone else's object (docs/SECURITY.md quotes it).
2. **Cost**: ``pool.load(h)`` of a 64-byte object, in ns per call, next to a baseline in the
   same run (``dict.get`` of a bytes value plus ``bytes`` slicing of the same length, i.e. a
   lookup and a copy in pure CPython), so the ratio is comparable across runs on a noisy
   machine. Best of ``--repeat``.

Run: ``python asv_bench/standalone/handle_neighbours.py`` (a few seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from zspool import Pool


def neighbour_fraction(objects: int, distance: int, seed: int = 1) -> dict[str, float | int]:
    rng = random.Random(seed)
    with Pool() as pool:
        handles = [pool.store(bytes(rng.randrange(1, 3000))) for _ in range(objects)]
        live = 0
        probes = 0
        for h in handles:
            for d in range(1, distance + 1):
                for n in (h + d, h - d):
                    if 0 <= n < 2**64:
                        probes += 1
                        live += n in pool
        return {"objects": objects, "probes": probes, "live": live, "fraction": live / probes}


def load_cost(repeat: int, n: int = 20_000) -> dict[str, float]:
    with Pool() as pool:
        payload = bytes(range(64))
        handles = [pool.store(payload) for _ in range(n)]
        table = {h: payload * 2 for h in handles}
        best_load = best_base = float("inf")
        for _ in range(repeat):
            t = time.perf_counter_ns()
            for h in handles:
                pool.load(h)
            best_load = min(best_load, (time.perf_counter_ns() - t) / n)
            t = time.perf_counter_ns()
            for h in handles:
                table.get(h)[:64]  # type: ignore[index]
            best_base = min(best_base, (time.perf_counter_ns() - t) / n)
        return {"load_ns": best_load, "baseline_ns": best_base, "ratio": best_load / best_base}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--distance", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    result = {
        "neighbours": neighbour_fraction(args.objects, args.distance),
        "adjacent": neighbour_fraction(args.objects, 1),
        "load": load_cost(args.repeat),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
