"""Deterministic, seeded workloads shared by the demo and the benchmarks.

Value sizes follow Facebook's memcached "ETC" trace (Atikoglu et al., SIGMETRICS 2012): a
generalized Pareto distribution with location 0, scale 214.476 and shape 0.348238, sampled
by inverse CDF and clipped to 32..4096 bytes so every value fits a size class. Over a million
draws the clipped mean is about 324 bytes and the median 168 bytes.

Payloads are slices of one random blob, so nothing compresses and no per-value
``os.urandom`` call dominates the timing.
"""

from __future__ import annotations

import ctypes
import gc
import os
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zspool import Pool

__all__ = [
    "ETC_SCALE",
    "ETC_SHAPE",
    "etc_sizes",
    "shifted_sizes",
    "fragment",
    "payload_source",
    "PayloadSource",
    "rss_bytes",
    "best_time",
    "spread",
]

ETC_SCALE = 214.476
ETC_SHAPE = 0.348238


def etc_sizes(count: int, *, seed: int = 0, low: int = 32, high: int = 4096) -> list[int]:
    """``count`` value sizes in bytes from the ETC distribution, clipped to ``low..high``."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(count):
        u = rng.random()
        x = ETC_SCALE / ETC_SHAPE * ((1.0 - u) ** -ETC_SHAPE - 1.0)
        sizes.append(min(high, max(low, int(x))))
    return sizes


def shifted_sizes(count: int, *, factor: int = 3, seed: int = 0, high: int = 9216) -> list[int]:
    """``count`` ETC sizes (fresh draws) scaled by ``factor`` and clipped to ``high`` bytes:
    the "size-shifted refill" of a cache whose values grew after a mass eviction."""
    return [min(high, factor * size) for size in etc_sizes(count, seed=seed)]


class PayloadSource:
    """Hands out random payloads as zero-copy ``memoryview`` slices of one random blob."""

    def __init__(self, *, seed: int = 0, blob_bytes: int = 1 << 20, max_size: int = 8192) -> None:
        self._blob = random.Random(seed).randbytes(blob_bytes + max(max_size, 8192))
        self._view = memoryview(self._blob)
        self._rng = random.Random(seed + 1)
        self._limit = blob_bytes

    def take(self, size: int) -> memoryview:
        """A payload of ``size`` bytes (at most ``max_size``, default 8 KiB) starting at a random offset."""
        return self.at(self.offset(), size)

    def offset(self) -> int:
        """A random start offset into the blob (the next one :meth:`take` would use)."""
        return self._rng.randrange(self._limit)

    def at(self, offset: int, size: int) -> memoryview:
        """The payload of ``size`` bytes at ``offset``: a value can be regenerated to verify it."""
        return self._view[offset : offset + size]

    def offsets(self, sizes: list[int]) -> Iterator[memoryview]:
        for size in sizes:
            yield self.take(size)


def payload_source(seed: int = 0) -> PayloadSource:
    return PayloadSource(seed=seed)


def rss_bytes() -> int:
    """This process's resident set size in bytes, from ``/proc/self/statm``."""
    with open("/proc/self/statm") as f:
        resident_pages = int(f.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def reclaim_python_heap() -> None:
    """A Python heap's own reclaim lever, which every benchmark gives a dict or cachetools
    baseline where zspool compacts: ``gc.collect()``, then glibc's ``malloc_trim(0)`` (give
    the free pages inside the heap back to the OS)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def fragment(pool: Pool, count: int, *, free_fraction: float = 0.7, seed: int = 0) -> dict[int, bytes]:
    """Store ``count`` ETC-sized random values in ``pool``, then free a random
    ``free_fraction`` of them, the way cache evictions fragment a pool. Returns the
    surviving handles with the bytes each must still hold."""
    rng = random.Random(seed)
    source = PayloadSource(seed=seed)
    stored = {}
    for size in etc_sizes(count, seed=seed):
        payload = bytes(source.take(size))
        stored[pool.store(payload)] = payload
    for handle in rng.sample(list(stored), int(count * free_fraction)):
        pool.free(handle)
        del stored[handle]
    return stored


def best_time(fn: Callable[[], object], repeat: int = 3, clock: Callable[[], float] = time.perf_counter) -> float:
    """The shortest of ``repeat`` timed calls of ``fn``, in seconds of ``clock``: the run least
    disturbed by the rest of the machine (``time.thread_time`` also leaves out the time the
    thread waited for a CPU, on a shared machine most of the noise)."""
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """A figure over several runs: the median, and min-max when there is more than one run."""
    values = sorted(values)
    median = fmt.format(statistics.median(values))
    return median if len(values) == 1 else f"{median} ({fmt.format(values[0])}-{fmt.format(values[-1])})"
