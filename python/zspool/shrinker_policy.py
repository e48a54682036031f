"""The shrinker-policy interface: what a policy implements and what it is told.

This is the kernel's ``include/linux/shrinker.h`` in Python: the two callbacks of a policy
(:class:`ShrinkerPolicy`), the control block passed to them (:class:`ShrinkControl`, the
kernel's ``struct shrink_control``), why a round runs (:class:`ShrinkReason`) and the
constants :data:`SHRINK_STOP` and :data:`SHRINK_BATCH`. A policy imports its names from
here; :mod:`zspool.shrinker` runs policies and :mod:`zspool.policies` finds them by name,
and both import this module, which imports neither (nor anything else of zspool's at run
time).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from zspool._core import PoolActivity, RecompressReport
    from zspool.pool import Pool
    from zspool.pressure import PressureReading
    from zspool.pressure.notify import Wakeup

__all__ = ["SHRINK_STOP", "SHRINK_BATCH", "ShrinkReason", "ShrinkControl", "Recompressor", "ShrinkerPolicy"]

#: Returned by ``scan_objects`` to end the current round (the kernel's ``SHRINK_STOP``).
SHRINK_STOP: Final = -1

#: Pages per ``scan_objects`` call when a shrinker sets no batch (the kernel's ``SHRINK_BATCH``).
SHRINK_BATCH: Final = 128


class ShrinkReason(enum.Enum):
    """Why the shrinkers are being run."""

    TICK = "tick"  #: the reclaimer's periodic wake-up
    PRESSURE = "pressure"  #: a kernel memory-pressure notification (see ``ShrinkControl.wakeup``)
    MEM_LIMIT = "mem_limit"  #: an allocation would pass the pool's mem_limit (direct reclaim)
    MANUAL = "manual"  #: called by hand


@dataclass(frozen=True)
class ShrinkControl:
    """What a policy is told on each call (the kernel's ``struct shrink_control``).

    ``nr_to_scan`` is in pages. ``pressure`` is the latest reading, or ``None`` when the
    caller has no monitor. ``activity`` is the pool's activity when the round started.
    ``freeable`` is ``pool.can_compact()`` at that moment, in pages.

    ``wakeup`` is the kernel notification that started the round (reason ``PRESSURE``):
    which source fired (``vmpressure``, ``usage_threshold``, ``memory_events``, ``psi``,
    ``cgroup_psi``) and how severe (``low``/``medium``/``critical``); None otherwise.
    ``cgroup_usage_fraction`` (usage over the lower of ``memory.high`` and the limit) and
    ``cgroup_headroom_bytes`` (that limit minus usage, bytes) say how close the process's
    memory cgroup is to its limit; None without a monitor, a cgroup or a limit.

    ``recompressible`` and ``recompress`` are the pool's cache's recompression (zram's
    ``recompress``; see :mod:`zspool.shrinker`): pages it is expected to free, and
    ``recompress(time_budget_s)`` to run one slice of it (``None`` when the pool has no cache
    with a dictionary). A policy that ignores both works as before.
    """

    reason: ShrinkReason
    nr_to_scan: int
    freeable: int
    activity: PoolActivity
    pressure: PressureReading | None = None
    #: Pages the caller needs (direct reclaim); 0 when it just wants memory back.
    pages_wanted: int = 0
    wakeup: Wakeup | None = None
    cgroup_usage_fraction: float | None = None
    cgroup_headroom_bytes: int | None = None
    #: Pages recompression is expected to free now (0 without a cache with a dictionary).
    recompressible: int = 0
    #: One slice of recompression, then compaction: ``recompress(time_budget_s)``.
    recompress: Recompressor | None = None

    @property
    def critical(self) -> bool:
        """True under critical pressure: the notification was ``critical`` (vmpressure
        critical, the cgroup's usage past its critical threshold, v2 ``max``/``oom``
        events). Every shipped policy compacts everything then, busy or not."""
        return self.wakeup is not None and self.wakeup.critical


@runtime_checkable
class Recompressor(Protocol):
    """A cache's recompression, as lent to its pool's shrinkers."""

    def pages(self) -> int:
        """Pages a recompression is expected to free now."""
        ...

    def __call__(self, time_budget: float | None) -> RecompressReport | None:
        """Recompress for at most ``time_budget`` seconds, then compact; ``None`` once the
        cache is gone."""
        ...


@runtime_checkable
class ShrinkerPolicy(Protocol):
    """The two callbacks every policy implements; see :mod:`zspool.shrinker`."""

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int: ...

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int: ...
