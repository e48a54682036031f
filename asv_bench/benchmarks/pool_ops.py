"""Hot paths, one call at a time through Python: malloc, store, load, free.

Each timed function does ``OPS`` calls on a fresh pool built in ``setup`` (asv calls
``setup`` before every sample because ``number = 1``), so a sample never sees the previous
one's objects. Sizes: 64 and 1024 bytes (size classes, packed into zspages) and 16 KiB (the
large-object path: whole pages per object).
"""

from __future__ import annotations

from zspool import Pool
from zspool.workload import PayloadSource

OPS = 2_000


class PoolOps:
    params = [64, 1024, 16384]
    param_names = ["size"]
    number = 1
    repeat = (3, 20, 10.0)
    warmup_time = 0.0

    def setup(self, size: int) -> None:
        self.pool = Pool(name="asv")
        self.payload = bytes(PayloadSource(seed=1, max_size=size).take(size))
        self.live = [self.pool.store(self.payload) for _ in range(OPS)]

    def teardown(self, size: int) -> None:
        self.pool.close()

    def time_malloc(self, size: int) -> None:
        malloc = self.pool.malloc
        for _ in range(OPS):
            malloc(size)

    def time_store(self, size: int) -> None:
        store, payload = self.pool.store, self.payload
        for _ in range(OPS):
            store(payload)

    def time_load(self, size: int) -> None:
        load = self.pool.load
        for h in self.live:
            load(h)

    def time_free(self, size: int) -> None:
        free = self.pool.free
        for h in self.live:
            free(h)
