"""``always``: compact whatever is freeable, whenever reclaim asks.

The kernel's own zsmalloc shrinker, as a zspool policy: the count is ``can_compact()``, the
scan compacts up to ``nr_to_scan`` pages and stops the round when nothing more comes back.
"""

from __future__ import annotations

from zspool import Pool
from zspool.shrinker_policy import SHRINK_STOP, ShrinkControl

__all__ = ["AlwaysPolicy"]


class AlwaysPolicy:
    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return pool.can_compact()

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        freed = pool.compact(max_pages=sc.nr_to_scan).pages_freed
        return freed or SHRINK_STOP
