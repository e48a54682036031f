"""Shrinkers: how memory reclaim asks a pool to give pages back, and who decides.

This is the kernel's shrinker interface (``include/linux/shrinker.h``) in Python. The pool
knows *how* to compact; a **policy** decides *when* and *how much*, through two callbacks:

``count_objects(pool, sc) -> int``
    How many pages the policy would let the pool free now. ``0`` means "leave it alone".
    Must be cheap: ``pool.can_compact()`` is O(number of classes) and takes no lock.
``scan_objects(pool, sc) -> int``
    Do the work for up to ``sc.nr_to_scan`` pages, typically
    ``pool.compact(max_pages=sc.nr_to_scan).pages_freed``, and return the pages freed, or
    :data:`SHRINK_STOP` to end this round early.

A pool whose cache compresses with a trained zstd dictionary can also be asked to
**recompress** (zram's ``recompress``): rewrite the values stored without the current
dictionary, or with an older one, and compact what that frees. ``sc.recompressible`` says how
many pages that is expected to free (counted in the cap on a round), ``sc.recompress`` does
one slice of it; a policy that ignores both works as before. The ``idle-only`` policy spends
idle time on it.

The caller (:func:`shrink_pool`, run by the :class:`~zspool.Reclaimer` thread, by direct
reclaim when an allocation hits ``mem_limit``, or by hand) works like the kernel's
``do_shrink_slab``: count once, then scan in batches until the count is used up or the policy
says stop.

A policy is any object with those two methods (see :class:`ShrinkerPolicy`). Policies are
found by name through the entry-point group ``zspool.shrinker_policies`` (see
:mod:`zspool.policies`); the three shipped in ``plugins/`` (``always``, ``idle-only``,
``pressure-gated``) are the templates to copy.

Fault isolation: a policy that raises, returns something that is not a non-negative ``int``
(or ``SHRINK_STOP``), or takes longer than its time limit is logged on the
``zspool.shrinker`` logger and counted; after ``max_failures`` failures in a row it is
disabled. No policy error ever reaches the caller of ``malloc``/``free``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from zspool.policies import available_policies, load_policy, register_policy

if TYPE_CHECKING:
    from zspool._core import PoolActivity, RecompressReport
    from zspool.pool import Pool
    from zspool.pressure import PressureReading

__all__ = [
    "SHRINK_STOP",
    "SHRINK_BATCH",
    "ShrinkReason",
    "ShrinkControl",
    "Recompressor",
    "ShrinkerPolicy",
    "Shrinker",
    "ShrinkerStats",
    "shrink_pool",
    "register_policy",
    "load_policy",
    "available_policies",
]

log = logging.getLogger("zspool.shrinker")

#: Returned by ``scan_objects`` to end the current round (the kernel's ``SHRINK_STOP``).
SHRINK_STOP: Final = -1

#: Pages per ``scan_objects`` call when a shrinker sets no batch (the kernel's ``SHRINK_BATCH``).
SHRINK_BATCH: Final = 128


class ShrinkReason(enum.Enum):
    """Why the shrinkers are being run."""

    TICK = "tick"  #: the reclaimer's periodic wake-up
    PRESSURE = "pressure"  #: a memory-pressure event (a PSI trigger fired)
    MEM_LIMIT = "mem_limit"  #: an allocation would pass the pool's mem_limit (direct reclaim)
    MANUAL = "manual"  #: called by hand


@dataclass(frozen=True)
class ShrinkControl:
    """What a policy is told on each call (the kernel's ``struct shrink_control``).

    ``nr_to_scan`` is in pages. ``pressure`` is the latest reading, or ``None`` when the
    caller has no monitor. ``activity`` is the pool's activity when the round started.
    ``freeable`` is ``pool.can_compact()`` at that moment, in pages. ``recompressible`` and
    ``recompress`` are the pool's cache's recompression (see the module docstring): pages it
    is expected to free, and ``recompress(time_budget_s)`` to run one slice of it (``None``
    when the pool has no cache with a dictionary).
    """

    reason: ShrinkReason
    nr_to_scan: int
    freeable: int
    activity: PoolActivity
    pressure: PressureReading | None = None
    #: Pages the caller needs (direct reclaim); 0 when it just wants memory back.
    pages_wanted: int = 0
    #: Pages recompression is expected to free now (0 without a cache with a dictionary).
    recompressible: int = 0
    #: One slice of recompression, then compaction: ``recompress(time_budget_s)``.
    recompress: Recompressor | None = None


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
    """The two callbacks every policy implements; see the module docstring."""

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int: ...

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int: ...


@dataclass
class ShrinkerStats:
    """Per-shrinker counters. Times are in seconds, sizes in pages."""

    count_calls: int = 0
    scan_calls: int = 0
    pages_freed: int = 0
    time_s: float = 0.0
    errors: int = 0
    consecutive_failures: int = 0
    disabled: bool = False
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PolicyFault(Exception):
    """A policy raised, returned garbage, or overran its time limit."""


@dataclass(eq=False)
class Shrinker:
    """A policy registered with one pool, with its batch size, limits and statistics.

    ``batch``: pages per ``scan_objects`` call (``0`` means :data:`SHRINK_BATCH`).
    ``time_limit_s``: a call slower than this counts as a failure (it cannot be interrupted
    once running; the limit protects the *next* rounds). ``max_failures``: failures in a row
    before the shrinker is disabled; ``enable()`` turns it back on.
    """

    policy: ShrinkerPolicy
    name: str
    batch: int = 0
    time_limit_s: float = 1.0
    max_failures: int = 3
    stats: ShrinkerStats = field(default_factory=ShrinkerStats)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        return not self.stats.disabled

    def enable(self) -> None:
        with self._lock:
            self.stats.disabled = False
            self.stats.consecutive_failures = 0

    def count(self, pool: Pool, sc: ShrinkControl) -> int:
        with self._lock:
            self.stats.count_calls += 1
        return self._call("count_objects", pool, sc, allow_stop=False)

    def scan(self, pool: Pool, sc: ShrinkControl) -> int:
        result = self._call("scan_objects", pool, sc, allow_stop=True)
        with self._lock:
            self.stats.scan_calls += 1
            if result != SHRINK_STOP:
                self.stats.pages_freed += result
        return result

    def _call(self, method: str, pool: Pool, sc: ShrinkControl, *, allow_stop: bool) -> int:
        started = time.perf_counter()
        try:
            result = getattr(self.policy, method)(pool, sc)
            elapsed = time.perf_counter() - started
            checked = _check_result(result, allow_stop=allow_stop, where=f"{self.name}.{method}")
            if elapsed > self.time_limit_s:
                raise PolicyFault(f"{self.name}.{method} took {elapsed:.3f} s (limit {self.time_limit_s} s)")
        except BaseException as exc:  # noqa: BLE001 - isolating arbitrary plugin code is the point
            # SystemExit, GeneratorExit and the like from a plugin are its bugs, not requests
            # to stop the process. Only Ctrl-C on the main thread is the user's, and goes on.
            self._fail(exc, time.perf_counter() - started)
            if isinstance(exc, KeyboardInterrupt) and threading.current_thread() is threading.main_thread():
                raise
            return SHRINK_STOP if allow_stop else 0
        with self._lock:
            self.stats.time_s += elapsed
            self.stats.consecutive_failures = 0
        return checked

    def _fail(self, exc: BaseException, elapsed: float) -> None:
        with self._lock:
            self.stats.time_s += elapsed
            self.stats.errors += 1
            self.stats.consecutive_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            disable = self.stats.consecutive_failures >= self.max_failures and not self.stats.disabled
            if disable:
                self.stats.disabled = True
        log.warning("shrinker %r failed: %s", self.name, self.stats.last_error, exc_info=exc)
        if disable:
            log.error("shrinker %r disabled after %d failures in a row", self.name, self.max_failures)


def _check_result(result: object, *, allow_stop: bool, where: str) -> int:
    if isinstance(result, bool) or not isinstance(result, int):
        raise PolicyFault(f"{where} returned {result!r} ({type(result).__name__}); expected a page count (int)")
    if result == SHRINK_STOP and allow_stop:
        return SHRINK_STOP
    if result < 0:
        raise PolicyFault(f"{where} returned {result}; page counts are >= 0 (or SHRINK_STOP from scan_objects)")
    return result


def shrink_pool(
    pool: Pool,
    reason: ShrinkReason = ShrinkReason.MANUAL,
    *,
    pressure: PressureReading | None = None,
    pages_wanted: int = 0,
) -> int:
    """Run every enabled shrinker of ``pool`` once, as the kernel's ``shrink_slab`` does,
    and return the pages freed. Never raises because of a policy."""
    freed = 0
    for shrinker in pool.shrinkers:
        if not shrinker.enabled or pool.closed:
            continue
        freed += _do_shrink(pool, shrinker, reason, pressure, pages_wanted)
        if pages_wanted and freed >= pages_wanted:
            break
    return freed


def _do_shrink(
    pool: Pool, shrinker: Shrinker, reason: ShrinkReason, pressure: PressureReading | None, pages_wanted: int
) -> int:
    recompressor = pool.recompressor
    recompressible = recompressor.pages() if recompressor is not None else 0

    def control(nr_to_scan: int) -> ShrinkControl:
        return ShrinkControl(
            reason=reason,
            nr_to_scan=nr_to_scan,
            freeable=pool.can_compact(),
            activity=pool.activity(),
            pressure=pressure,
            pages_wanted=pages_wanted,
            recompressible=recompressible,
            recompress=recompressor if recompressible else None,
        )

    # The kernel caps a shrinker's count at twice what is freeable; pages are exact here, so
    # cap at what compaction (and recompression) could free: a policy that overstates (or
    # returns "objects scanned" from scan_objects) cannot turn one round into an endless loop.
    total_scan = min(shrinker.count(pool, control(0)), pool.can_compact() + recompressible)
    batch = shrinker.batch or SHRINK_BATCH
    freed = 0
    while total_scan > 0 and shrinker.enabled:
        nr_to_scan = min(batch, total_scan)
        result = shrinker.scan(pool, control(nr_to_scan))
        if result == SHRINK_STOP:
            break
        freed += result
        total_scan -= nr_to_scan
        if result == 0 or (pages_wanted and freed >= pages_wanted):
            break  # nothing came back from a full batch, or the allocation has its room
    return freed
