"""The soak: long multi-threaded churn with the reclaimer running, once per shipped policy.

For each policy (``always``, ``idle-only``, ``pressure-gated``) a fresh pool gets the policy
registered and a :class:`~zspool.Reclaimer` ticking every 100 ms, and ``--threads`` worker
threads churn it for ``--minutes / 3`` minutes:

- each worker owns its objects (handle -> length and CRC-32 of the bytes it stored) and
  mixes stores (sizes 1..4096 bytes, 2 % of 4097..65536 bytes: the classes above a page up to
  8192, the large path beyond), loads that check the CRC, partial overwrites (load, check,
  patch, write, re-check), frees and ``read_into``;
- the live set swings between a low and a high water mark, so zspages fragment and the
  policy has pages to reclaim;
- every 30 s the workers pause for 1.5 s (so ``idle-only`` sees idle time), and each worker
  re-verifies every object it owns;
- a sampler records RSS, pool pages, objects and ops/s every ``--sample-s`` seconds.

At the end of each policy's run every object is checked once more, freed, and the pool's
stats must say zero objects and zero pages. Any CRC mismatch, unexpected exception or
stats disagreement is counted as corruption and makes the exit status 1.

Run (the numbers in docs/HARDENING.md): ``nice -n 19 python asv_bench/standalone/soak.py``
(30 minutes: 10 per policy). ``--minutes 1.5`` for a quick look; ``--json out.json`` to
keep the samples. The full soak is not part of CI; ``--quick`` (6 s) is, through ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field

from zspool import InvalidHandleError, Pool, Reclaimer

POLICIES = ("always", "idle-only", "pressure-gated")
POLICY_OPTIONS: dict[str, dict[str, float]] = {"always": {}, "idle-only": {"idle_s": 0.5}, "pressure-gated": {}}
PAUSE_EVERY_S = 30.0
PAUSE_S = 1.5


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGESIZE")


@dataclass
class Sample:
    t_s: float
    rss_mib: float
    pool_pages: int
    objects: int
    ops_per_s: float


@dataclass
class PolicyResult:
    policy: str
    seconds: float
    ops: int
    checks: int
    corruptions: int
    errors: list[str] = field(default_factory=list)
    rss_mib_first_third_max: float = 0.0
    rss_mib_last_third_max: float = 0.0
    rss_mib_max: float = 0.0
    pool_pages_max: int = 0
    pages_compacted: int = 0
    reclaim_rounds: int = 0
    ops_per_s_first_third: float = 0.0
    ops_per_s_last_third: float = 0.0
    samples: list[Sample] = field(default_factory=list)


class Worker(threading.Thread):
    def __init__(self, pool: Pool, seed: int, low: int, high: int, stop: threading.Event, pause: threading.Event):
        super().__init__(daemon=True)
        self.pool, self.rng = pool, random.Random(seed)
        self.low, self.high = low, high
        self.stop, self.pause = stop, pause
        self.owned: dict[int, tuple[int, int]] = {}
        self.ops = 0
        self.checks = 0
        self.corruptions = 0
        self.errors: list[str] = []
        self.growing = True
        self.verified_pause = 0

    def corrupt(self, what: str) -> None:
        self.corruptions += 1
        if len(self.errors) < 20:
            self.errors.append(what)

    def size(self) -> int:
        if self.rng.random() < 0.02:
            return self.rng.randint(4097, 65536)
        return self.rng.randint(1, 4096)

    def check(self, handle: int, data: bytes | None = None) -> bytes:
        length, crc = self.owned[handle]
        data = self.pool.load(handle) if data is None else data
        self.checks += 1
        if len(data) != length or zlib.crc32(data) != crc:
            self.corrupt(f"handle {handle:#x}: {len(data)} bytes, crc {zlib.crc32(data):#x}, want {length}/{crc:#x}")
        return data

    def verify_all(self) -> None:
        for handle in list(self.owned):
            self.check(handle)

    def step(self) -> None:
        rng, pool = self.rng, self.pool
        n = len(self.owned)
        if n >= self.high:
            self.growing = False
        elif n <= self.low:
            self.growing = True
        op = rng.random()
        if not self.owned or (self.growing and op < 0.55) or (not self.growing and op < 0.2):
            data = rng.randbytes(self.size())
            handle = pool.store(data)
            self.owned[handle] = (len(data), zlib.crc32(data))
        elif op < 0.75 or (not self.growing and op < 0.8):
            handle = rng.choice(list(self.owned)) if n < 64 else self.pick()
            if rng.random() < 0.5:
                self.check(handle)
            pool.free(handle)
            del self.owned[handle]
            if rng.random() < 0.01:
                try:
                    pool.load(handle)
                    self.corrupt(f"freed handle {handle:#x} still loads")
                except InvalidHandleError:
                    pass
        elif op < 0.9:
            self.check(self.pick())
        elif op < 0.96:
            handle = self.pick()
            old = bytearray(self.check(handle))
            if old:
                off = rng.randrange(len(old))
                patch = rng.randbytes(rng.randint(1, len(old) - off))
                pool.write(handle, patch, off)
                old[off : off + len(patch)] = patch
                self.owned[handle] = (len(old), zlib.crc32(old))
                self.check(handle)
        else:
            handle = self.pick()
            buf = bytearray(self.owned[handle][0])
            pool.read_into(handle, buf)
            self.check(handle, bytes(buf))
        self.ops += 1

    def pick(self) -> int:
        # Random choice without building a list every call: dicts keep insertion order, so
        # sample by walking from a random start only for small sets; otherwise use a cached list.
        if not hasattr(self, "_keys") or self.ops % 256 == 0:
            self._keys = list(self.owned)
        while True:
            handle = self.rng.choice(self._keys)
            if handle in self.owned:
                return handle
            self._keys = list(self.owned)

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if self.pause.is_set():
                    if self.verified_pause == 0:
                        self.verify_all()
                        self.verified_pause = 1
                    time.sleep(0.01)
                    continue
                self.verified_pause = 0
                self.step()
        except Exception as exc:  # noqa: BLE001 - any error is a soak failure, recorded
            self.corrupt(f"unexpected {type(exc).__name__}: {exc}")


def run_policy(policy: str, seconds: float, threads: int, high: int, sample_s: float, seed: int) -> PolicyResult:
    result = PolicyResult(policy=policy, seconds=seconds, ops=0, checks=0, corruptions=0)
    pool = Pool(name=f"soak-{policy}")
    pool.register_shrinker(policy, **POLICY_OPTIONS[policy])
    stop, pause = threading.Event(), threading.Event()
    workers = [Worker(pool, seed * 100 + i, high // 5, high, stop, pause) for i in range(threads)]
    start = time.monotonic()
    with Reclaimer(pool, interval_s=0.1) as reclaimer:
        for w in workers:
            w.start()
        last_ops, last_t, next_pause = 0, start, start + PAUSE_EVERY_S
        while (now := time.monotonic()) - start < seconds:
            time.sleep(min(sample_s, max(0.0, start + seconds - now)))
            now = time.monotonic()
            if now >= next_pause:
                pause.set()
                time.sleep(PAUSE_S)
                pause.clear()
                next_pause = time.monotonic() + PAUSE_EVERY_S
            ops = sum(w.ops for w in workers)
            stats = pool.stats()
            result.samples.append(
                Sample(
                    t_s=round(now - start, 1),
                    rss_mib=round(rss_bytes() / 2**20, 1),
                    pool_pages=stats.pages_used,
                    objects=stats.objects,
                    ops_per_s=round((ops - last_ops) / max(1e-9, now - last_t)),
                )
            )
            last_ops, last_t = ops, time.monotonic()
            print(f"  {policy:15s} {result.samples[-1]}", flush=True)
        stop.set()
        for w in workers:
            w.join()
        result.reclaim_rounds = reclaimer.stats.rounds
    for w in workers:
        w.verify_all()
        result.ops += w.ops
        result.checks += w.checks
        result.corruptions += w.corruptions
        result.errors.extend(w.errors)
    expected_objects = sum(len(w.owned) for w in workers)
    stats = pool.stats()
    if stats.objects != expected_objects:
        result.corruptions += 1
        result.errors.append(f"stats.objects={stats.objects}, workers own {expected_objects}")
    for w in workers:
        for handle in w.owned:
            pool.free(handle)
    stats = pool.stats()
    if stats.objects != 0 or stats.pages_used != 0:
        result.corruptions += 1
        result.errors.append(f"after freeing all: objects={stats.objects} pages_used={stats.pages_used}")
    result.pages_compacted = stats.pages_compacted
    pool.close()
    s = result.samples
    third = max(1, len(s) // 3)
    result.rss_mib_first_third_max = max(x.rss_mib for x in s[:third])
    result.rss_mib_last_third_max = max(x.rss_mib for x in s[-third:])
    result.rss_mib_max = max(x.rss_mib for x in s)
    result.pool_pages_max = max(x.pool_pages for x in s)
    result.ops_per_s_first_third = round(sum(x.ops_per_s for x in s[:third]) / third)
    result.ops_per_s_last_third = round(sum(x.ops_per_s for x in s[-third:]) / third)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total, split evenly over the policies")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--high", type=int, default=25_000, help="objects per worker at the high water mark")
    parser.add_argument("--sample-s", type=float, default=10.0)
    parser.add_argument("--policies", nargs="*", default=list(POLICIES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write every result and sample here")
    parser.add_argument("--quick", action="store_true", help="6 s in all, 2,000 objects per worker (make test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.high, args.sample_s = 0.1, 2_000, 0.5
    seconds = args.minutes * 60 / len(args.policies)
    print(f"soak: {args.minutes} min, {args.threads} threads, policies {args.policies}", flush=True)
    results = [
        run_policy(p, seconds, args.threads, args.high, min(args.sample_s, seconds / 4), args.seed)
        for p in args.policies
    ]
    print()
    print("| policy | minutes | ops | checksum checks | ops/s first third | ops/s last third "
          "| RSS MiB max, first third | RSS MiB max, last third | pages compacted | corrupted or lost |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.policy} | {r.seconds / 60:.1f} | {r.ops:,} | {r.checks:,} | {r.ops_per_s_first_third:,} "
            f"| {r.ops_per_s_last_third:,} | {r.rss_mib_first_third_max} | {r.rss_mib_last_third_max} "
            f"| {r.pages_compacted:,} | {r.corruptions} |"
        )
    for r in results:
        for e in r.errors:
            print(f"{r.policy}: {e}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 1 if any(r.corruptions for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
