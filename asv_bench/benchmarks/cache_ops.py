"""Random-key reads and writes of a big zspool.Cache (and Pool.load), with a dict alongside.

At a million entries every random lookup misses the CPU caches, so these times track the
chain of dependent memory accesses per call (index bucket, slot, handle table, zspage,
page), which a small benchmark never sees. ``dict`` is the same workload on a dict in the
same process: compare the two across commits, not the absolute times.

``ZSPOOL_ASV_ENTRIES`` (default 1,000,000) sets the size; the smoke run (``make asv-smoke``)
sets it small, so that building the structure in ``setup`` stays cheap there.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, ClassVar

import zspool
from zspool.workload import PayloadSource, etc_sizes

ENTRIES = int(os.environ.get("ZSPOOL_ASV_ENTRIES", "1000000"))
OPS = 20_000


class BigRandom:
    """``ENTRIES`` entries of ETC sizes, the same seeded data for every structure; one sample
    per setup (``number = 1``), since deletes and overwrites change the structure."""

    params: ClassVar[list[str]] = ["zspool", "dict"]
    param_names: ClassVar[list[str]] = ["structure"]
    number = 1
    repeat = (3, 5, 30.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 300.0

    def data(self) -> tuple[list[int], PayloadSource, list[int]]:
        """(value sizes, payload source, the random picks the timed loops use)."""
        picks = random.Random(1).sample(range(ENTRIES), min(OPS, ENTRIES))
        return etc_sizes(ENTRIES, seed=0), PayloadSource(seed=0), picks


class CacheRandom(BigRandom):
    """get / [] / in / set (overwrite) / del of random live str keys, ETC-sized values."""

    def setup(self, structure: str) -> None:
        sizes, source, picks = self.data()
        self.m: Any = zspool.Cache(1 << 40) if structure == "zspool" else {}
        keys = [f"k{i:010d}" for i in range(ENTRIES)]
        for key, size in zip(keys, sizes, strict=True):
            self.m[key] = bytes(source.take(size))
        self.keys = [keys[i] for i in picks]
        self.values = [bytes(source.take(sizes[i])) for i in picks]

    def teardown(self, structure: str) -> None:
        if structure == "zspool":
            self.m.close()

    def time_get(self, structure: str) -> None:
        get = self.m.get
        for k in self.keys:
            get(k)

    def time_getitem(self, structure: str) -> None:
        m = self.m
        for k in self.keys:
            m[k]

    def time_contains(self, structure: str) -> None:
        m = self.m
        for k in self.keys:
            k in m

    def time_set(self, structure: str) -> None:
        m = self.m
        for k, v in zip(self.keys, self.values, strict=True):
            m[k] = v

    def time_delete(self, structure: str) -> None:
        m = self.m
        for k in self.keys:
            del m[k]


class PoolLoadRandom(BigRandom):
    """Pool.load of random handles; ``dict`` is dict.get of random keys on the same data."""

    def setup(self, structure: str) -> None:
        sizes, source, picks = self.data()
        self.read: Callable[[Any], Any]
        if structure == "zspool":
            self.pool = zspool.Pool()
            handles = [self.pool.store(source.take(size)) for size in sizes]
            self.names: list[Any] = [handles[i] for i in picks]
            self.read = self.pool.load
        else:
            d = {f"k{i:010d}": bytes(source.take(size)) for i, size in enumerate(sizes)}
            self.names = [f"k{i:010d}" for i in picks]
            self.read = d.get

    def teardown(self, structure: str) -> None:
        if structure == "zspool":
            self.pool.close()

    def time_load(self, structure: str) -> None:
        read = self.read
        for name in self.names:
            read(name)
