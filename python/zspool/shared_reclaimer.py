"""The reclaimer of a :class:`zspool.SharedCache`: its shrinker policy, run by one process of the host.

Every process that opens a shared cache with ``policy=`` runs a thread here, but only the
holder of the file's **lease** works: each tick the thread asks for the lease
(``try_lease(os.getpid(), ...)``, which renews it for its holder and hands it over once it has
expired), and only if it got it does it run the policy. A holder that dies (``SIGKILL``
included) stops renewing, and another process's thread takes over within
:data:`LEASE_TICKS` ticks. So there is one reclaimer per host, as the kernel has one kswapd
per node, and it outlives any one worker.

A policy is the same object a :class:`zspool.Pool` takes (``always``, ``idle-only``,
``pressure-gated``, or yours; see :mod:`zspool.shrinker`). What it calls its ``pool`` is a
:class:`SharedPoolView` of the cache: ``can_compact()``, ``compact(max_pages=, time_budget=)``
and ``activity()``. The activity is the host's, not this process's: the cache counts every
process's gets and sets in the file, and the view reports the seconds since those counters
last moved (``ops_in_flight`` is always 0: another process's call in flight cannot be seen).

The thread holds its cache weakly; a cache dropped without ``close()`` stops it (the cache
warns). After ``os.fork()`` the child has no thread (``fork()`` copies only the calling
one); :meth:`SharedReclaimer.after_fork_in_child` forgets the parent's, and the child starts
its own only if asked (``SharedCache.start_reclaimer()``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from zspool.errors import PoolClosedError
from zspool.policies import load_policy
from zspool.shrinker import Shrinker, shrink_pool
from zspool.shrinker_policy import ShrinkerPolicy, ShrinkReason

if TYPE_CHECKING:
    from zspool._core import CompactionReport
    from zspool.pool import Pool
    from zspool.pressure import PressureMonitor, PressureReading
    from zspool.shared_cache import SharedCache

__all__ = ["SharedPoolView", "SharedActivity", "SharedReclaimer", "LEASE_TICKS"]

log = logging.getLogger(__name__)

#: The lease lasts this many ticks: a holder that misses that many (dead, or stopped) loses it.
LEASE_TICKS: Final = 3
#: The shortest lease, in seconds, however short the tick.
MIN_LEASE_S: Final = 1.0


@dataclass(frozen=True)
class SharedActivity:
    """How busy a shared cache is, host-wide (what :meth:`zspool.Pool.activity` says of a pool)."""

    ops_in_flight: int
    idle_s: float

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


class SharedPoolView:
    """What a shrinker policy calls its ``pool``, for a shared cache.

    Holds the cache weakly. ``closed`` is true once the cache is closed or gone;
    ``recompressor`` is None (a shared cache has no zstd dictionaries)."""

    recompressor = None

    def __init__(self, cache: SharedCache, shrinkers: tuple[Shrinker, ...]) -> None:
        self._cache = weakref.ref(cache)
        self.name = cache.path
        self.shrinkers = shrinkers
        self._last_ops = -1
        self._last_change = time.monotonic()

    def _live(self) -> SharedCache:
        cache = self._cache()
        if cache is None or cache.closed:
            raise PoolClosedError(f"shared cache {self.name!r} is closed")
        return cache

    @property
    def closed(self) -> bool:
        cache = self._cache()
        return cache is None or cache.closed

    def can_compact(self) -> int:
        """Pages a compaction could give back now."""
        return self._live().can_compact()

    def compact(self, max_pages: int | None = None, time_budget: float | None = None) -> CompactionReport:
        return self._live().compact(max_pages, time_budget)

    def activity(self) -> SharedActivity:
        """Seconds since any process last got or set an entry (as far as this view has seen:
        it compares the file's counters with their value at its previous call)."""
        stats = self._live().stats()
        ops = stats.hits + stats.misses + stats.sets
        now = time.monotonic()
        if ops != self._last_ops:
            self._last_ops, self._last_change = ops, now
        return SharedActivity(ops_in_flight=0, idle_s=now - self._last_change)


def make_shrinker(policy: ShrinkerPolicy | str, options: dict[str, Any]) -> Shrinker:
    """A :class:`Shrinker` for ``policy`` (an object, or an installed policy's name built with
    ``options``), as :meth:`zspool.Pool.register_shrinker` makes one."""
    if isinstance(policy, str):
        return Shrinker(load_policy(policy, **options), policy)
    if options:
        raise TypeError(f"options {sorted(options)} only apply when the policy is given by name")
    if not isinstance(policy, ShrinkerPolicy):
        raise TypeError(
            f"{type(policy).__name__} is not a shrinker policy: it needs "
            "count_objects(pool, sc) and scan_objects(pool, sc)"
        )
    return Shrinker(policy, type(policy).__name__)


@dataclass
class SharedReclaimerStats:
    """``ticks``: wake-ups; ``leased_ticks``: those on which this process held the lease and
    ran the policy; ``pages_freed``: by those runs; ``errors``: rounds that raised."""

    ticks: int = 0
    leased_ticks: int = 0
    pages_freed: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SharedReclaimer:
    """The thread that runs a shared cache's shrinker while this process holds the lease."""

    def __init__(
        self,
        cache: SharedCache,
        shrinker: Shrinker,
        interval_s: float,
        monitor: PressureMonitor | None,
    ) -> None:
        self.shrinker = shrinker
        self.interval_s = interval_s
        self.monitor = monitor
        self.stats = SharedReclaimerStats()
        self._view = SharedPoolView(cache, (shrinker,))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def lease_s(self) -> float:
        return max(MIN_LEASE_S, LEASE_TICKS * self.interval_s)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        self._stopping = threading.Event()
        self._pid = os.getpid()
        self._thread = threading.Thread(
            target=_thread_main,
            args=(weakref.ref(self), self._stopping),
            name=f"zspool-shared-reclaimer-{self._view.name}",
            daemon=True,
        )
        self._thread.start()

    @property
    def stop_event(self) -> threading.Event:
        """Set to stop the thread (what a dropped cache's finalizer does)."""
        return self._stopping

    def stop(self, timeout_s: float = 1.0) -> None:
        """Tell the thread to stop and wait ``timeout_s`` at most for a round in progress."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._thread = None

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: forget it (a child starts its own if asked)."""
        self._thread = None
        self._stopping = threading.Event()
        self._stopping.set()

    def run_once(self) -> int:
        """One tick: take or renew the lease; if this process holds it, run the policy.
        Returns the pages freed (0 without the lease)."""
        self.stats.ticks += 1
        cache = self._view._cache()
        if cache is None or cache.closed or not cache.try_lease(self._pid, self.lease_s):
            return 0
        del cache
        self.stats.leased_ticks += 1
        pressure = self._read_pressure()
        freed = shrink_pool(cast("Pool", self._view), ShrinkReason.TICK, pressure=pressure)
        self.stats.pages_freed += freed
        return freed

    def release_lease(self, cache: SharedCache) -> None:
        """Give the lease up (on close), so another process's reclaimer need not wait it out."""
        if self._pid == os.getpid():
            cache.release_lease(self._pid)

    def _read_pressure(self) -> PressureReading | None:
        if self.monitor is None:
            return None
        try:
            reading: PressureReading = self.monitor.read()
            return reading
        except (OSError, ValueError) as exc:
            log.warning("pressure monitor failed: %s", exc)
            return None


def _thread_main(ref: weakref.ref[SharedReclaimer], stopping: threading.Event) -> None:
    """Tick until told to stop, or until the reclaimer or its cache is gone. Holds the
    reclaimer only during a round, so that a dropped cache is collected meanwhile."""
    while True:
        reclaimer = ref()
        if reclaimer is None:
            return
        interval_s = reclaimer.interval_s
        del reclaimer
        if stopping.wait(interval_s):
            return
        reclaimer = ref()
        if reclaimer is None or reclaimer._view.closed:
            return
        try:
            reclaimer.run_once()
        except PoolClosedError:
            return
        except Exception:  # the thread outlives a failing round, and logs it
            reclaimer.stats.errors += 1
            log.exception("shared cache reclaim round failed")
        del reclaimer
