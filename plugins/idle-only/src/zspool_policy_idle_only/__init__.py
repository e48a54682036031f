"""``idle-only``: never compact while the pool is busy.

Sergey Senozhatsky's 2015 idea for zram ("STOP (or forbid) any shrinker activities while it
serves IO requests"), as a zspool policy. The pool is *busy* while an operation is in flight
or one finished less than ``idle_s`` seconds ago. The scan compacts in slices of at most
``slice_s`` seconds and re-checks between slices, so it stops within one slice of the pool
becoming busy again. One scan works for at most ``scan_s`` seconds in all, then returns what
it freed: the reclaimer calls again on its next tick, and a scan stays well inside the
shrinker's time limit (``Shrinker.time_limit_s``) however slowly pages come free (a slow
machine, a recompression that frees little per slice).

Two exceptions, where waiting for idleness would let something worse happen:

- direct reclaim (an allocation at ``mem_limit``): the pool is busy by definition then, and
  compacting is what lets the allocation through;
- critical pressure (``sc.critical``: vmpressure ``critical``, the memory cgroup past its
  last usage threshold, cgroup v2 ``max``/``oom`` events): the kernel's OOM killer is a step
  away, and a busy process it kills serves nobody. Compact everything, busy or not.

Idle time is also what recompression should spend (zram recompresses idle pages): when the
pool's cache has a zstd dictionary (``sc.recompress``), the idle scan first rewrites old
values with it, slice by slice, then compacts. Recompression reads and stores through the
pool, which the pool counts as activity; the policy remembers when its own last slice ended
so that it does not take its own work for a user's.
"""

from __future__ import annotations

import time
import weakref

from zspool import Pool
from zspool.shrinker_policy import SHRINK_STOP, ShrinkControl, ShrinkReason

__all__ = ["IdleOnlyPolicy"]

#: The pool's activity clock is CLOCK_MONOTONIC_COARSE (1-4 ms behind the precise one).
_COARSE_CLOCK_S = 0.005


class IdleOnlyPolicy:
    def __init__(self, idle_s: float = 1.0, slice_s: float = 0.002, scan_s: float = 0.1) -> None:
        if idle_s < 0 or slice_s <= 0 or scan_s < slice_s:
            raise ValueError(
                f"idle_s={idle_s} must be >= 0, slice_s={slice_s} > 0 and scan_s={scan_s} >= slice_s (seconds)"
            )
        self.idle_s = idle_s
        self.slice_s = slice_s
        self.scan_s = scan_s
        # When this policy's own last recompression slice ended, per pool (time.monotonic()).
        self._own_work_end: weakref.WeakKeyDictionary[Pool, float] = weakref.WeakKeyDictionary()

    def busy(self, pool: Pool) -> bool:
        activity = pool.activity()
        if activity.ops_in_flight > 0:
            return True
        if activity.idle_s >= self.idle_s:
            return False
        last_access = time.monotonic() - activity.idle_s
        return last_access > self._own_work_end.get(pool, -1.0) + _COARSE_CLOCK_S

    @staticmethod
    def urgent(sc: ShrinkControl) -> bool:
        """An allocation is waiting, or the OOM killer is near: not the time to be shy."""
        return sc.reason is ShrinkReason.MEM_LIMIT or sc.critical

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        if self.urgent(sc):
            return pool.can_compact()
        return 0 if self.busy(pool) else pool.can_compact() + sc.recompressible

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        if self.urgent(sc):
            return pool.compact(max_pages=sc.nr_to_scan).pages_freed or SHRINK_STOP
        deadline = time.monotonic() + self.scan_s

        def more(freed: int) -> bool:
            return freed < sc.nr_to_scan and time.monotonic() < deadline and not self.busy(pool)

        freed = 0
        while sc.recompress is not None and more(freed):
            recompressed = sc.recompress(self.slice_s)
            self._own_work_end[pool] = time.monotonic()
            if recompressed is None:
                break
            freed += recompressed.pages_freed
            if recompressed.stop_reason != "budget_reached":
                break
        while more(freed):
            report = pool.compact(max_pages=sc.nr_to_scan - freed, time_budget=self.slice_s)
            freed += report.pages_freed
            if report.stop_reason != "budget_reached":
                break
        return freed or SHRINK_STOP
