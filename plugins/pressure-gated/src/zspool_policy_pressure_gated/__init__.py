"""``pressure-gated``: compact only under real memory pressure, and keep some slack.

Minchan Kim's 2015 concern, as a zspool policy: fragmentation slack is memory the pool can
fill without asking the system for more, a buffer that matters most when the system is
short. So:

- pressure level below ``threshold``: do nothing;
- between ``threshold`` and ``high_threshold``: compact, but leave ``reserve_pages`` of
  freeable slack in place (to within one zspage);
- at or above ``high_threshold``, under critical pressure (``sc.critical``: vmpressure
  ``critical``, the memory cgroup past its last usage threshold, cgroup v2 ``max``/``oom``
  events), or when the pool hit its own ``mem_limit`` (direct reclaim): compact everything,
  the reserve included; the reserve is there for exactly that moment.

The level (0..1) comes from the reclaimer's reading (``sc.pressure``) or, when the caller
passed none, from this policy's own :class:`zspool.pressure.PressureMonitor`: PSI, cgroup
usage against its limits, and ``/proc/meminfo`` MemAvailable.
"""

from __future__ import annotations

from zspool import Pool
from zspool.pressure import PressureMonitor
from zspool.shrinker_policy import SHRINK_STOP, ShrinkControl, ShrinkReason

__all__ = ["PressureGatedPolicy"]


class PressureGatedPolicy:
    def __init__(
        self,
        threshold: float = 0.5,
        high_threshold: float = 0.8,
        reserve_pages: int = 256,
        monitor: PressureMonitor | None = None,
    ) -> None:
        if not 0 <= threshold <= high_threshold <= 1 or reserve_pages < 0:
            raise ValueError(
                f"need 0 <= threshold ({threshold}) <= high_threshold ({high_threshold}) <= 1 "
                f"and reserve_pages ({reserve_pages}) >= 0"
            )
        self.threshold = threshold
        self.high_threshold = high_threshold
        self.reserve_pages = reserve_pages
        self.monitor = monitor

    def allowed_pages(self, pool: Pool, sc: ShrinkControl) -> int:
        """Pages this policy lets the pool free right now."""
        freeable = pool.can_compact()
        if sc.reason is ShrinkReason.MEM_LIMIT or sc.critical:
            return freeable
        reading = sc.pressure
        if reading is None:
            self.monitor = self.monitor or PressureMonitor()
            reading = self.monitor.read()
        if reading.level < self.threshold:
            return 0
        if reading.level >= self.high_threshold:
            return freeable
        return max(0, freeable - self.reserve_pages)

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return self.allowed_pages(pool, sc)

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        budget = min(sc.nr_to_scan, self.allowed_pages(pool, sc))
        if budget <= 0:
            return SHRINK_STOP
        return pool.compact(max_pages=budget).pages_freed or SHRINK_STOP
