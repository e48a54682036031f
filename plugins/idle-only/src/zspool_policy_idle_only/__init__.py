"""``idle-only``: never compact while the pool is busy.

Sergey Senozhatsky's 2015 idea for zram ("STOP (or forbid) any shrinker activities while it
serves IO requests"), as a zspool policy. The pool is *busy* while an operation is in flight
or one finished less than ``idle_s`` seconds ago. The scan compacts in slices of at most
``slice_s`` seconds and re-checks between slices, so it stops within one slice of the pool
becoming busy again.

Two exceptions, where waiting for idleness would let something worse happen:

- direct reclaim (an allocation at ``mem_limit``): the pool is busy by definition then, and
  compacting is what lets the allocation through;
- critical pressure (``sc.critical``: vmpressure ``critical``, the memory cgroup past its
  last usage threshold, cgroup v2 ``max``/``oom`` events): the kernel's OOM killer is a step
  away, and a busy process it kills serves nobody. Compact everything, busy or not.
"""

from __future__ import annotations

from zspool import Pool
from zspool.shrinker_policy import SHRINK_STOP, ShrinkControl, ShrinkReason

__all__ = ["IdleOnlyPolicy"]


class IdleOnlyPolicy:
    def __init__(self, idle_s: float = 1.0, slice_s: float = 0.002) -> None:
        if idle_s < 0 or slice_s <= 0:
            raise ValueError(f"idle_s={idle_s} must be >= 0 and slice_s={slice_s} > 0 (seconds)")
        self.idle_s = idle_s
        self.slice_s = slice_s

    def busy(self, pool: Pool) -> bool:
        activity = pool.activity()
        return activity.ops_in_flight > 0 or activity.idle_s < self.idle_s

    @staticmethod
    def urgent(sc: ShrinkControl) -> bool:
        """An allocation is waiting, or the OOM killer is near: not the time to be shy."""
        return sc.reason is ShrinkReason.MEM_LIMIT or sc.critical

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        if self.urgent(sc):
            return pool.can_compact()
        return 0 if self.busy(pool) else pool.can_compact()

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        if self.urgent(sc):
            return pool.compact(max_pages=sc.nr_to_scan).pages_freed or SHRINK_STOP
        freed = 0
        while freed < sc.nr_to_scan and not self.busy(pool):
            report = pool.compact(max_pages=sc.nr_to_scan - freed, time_budget=self.slice_s)
            freed += report.pages_freed
            if report.stop_reason != "budget_reached":
                break
        return freed or SHRINK_STOP
