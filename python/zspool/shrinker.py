"""Shrinkers: how memory reclaim asks a pool to give pages back, and who decides.

This is the kernel's shrinker machinery (``mm/shrinker.c``) in Python. The pool knows *how*
to compact; a **policy** decides *when* and *how much*, through two callbacks (the interface,
with :class:`ShrinkControl`, :class:`ShrinkReason` and the constants, lives in
:mod:`zspool.shrinker_policy`, the kernel's ``include/linux/shrinker.h``):

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

import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Final

from zspool.errors import PoolClosedError
from zspool.policies import available_policies, load_policy, register_policy
from zspool.shrinker_policy import (
    SHRINK_BATCH,
    SHRINK_STOP,
    Recompressor,
    ShrinkControl,
    ShrinkerPolicy,
    ShrinkReason,
)

if TYPE_CHECKING:
    from zspool.pool import Pool
    from zspool.pressure import PressureReading
    from zspool.pressure.notify import Wakeup

# The policy interface (zspool.shrinker_policy) and the registry (zspool.policies) are
# re-exported: ``from zspool.shrinker import ShrinkControl`` works, as it always has.
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

log = logging.getLogger(__name__)

#: A policy call slower than this, in seconds, counts as a failure (``Shrinker.time_limit_s``).
DEFAULT_TIME_LIMIT_S: Final = 1.0
#: Failures in a row before a shrinker is disabled (``Shrinker.max_failures``).
DEFAULT_MAX_FAILURES: Final = 3


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
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    max_failures: int = DEFAULT_MAX_FAILURES
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

    def scan(self, pool: Pool, sc: ShrinkControl, limit: int | None = None) -> int:
        """Call ``scan_objects``; a result above ``limit`` (default ``sc.freeable``) is counted
        as ``limit``: no scan frees more pages than compaction could when the round began, and
        a larger figure ("objects scanned", or garbage) would corrupt ``pages_freed``."""
        result = self._call("scan_objects", pool, sc, allow_stop=True)
        limit = sc.freeable if limit is None else max(0, limit)
        if result > limit:
            log.warning(
                "shrinker %r: scan_objects returned %d pages, more than the %d it could free; counted as %d",
                self.name,
                result,
                limit,
                limit,
            )
            result = limit
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
        except BaseException as exc:  # isolating arbitrary plugin code is the point
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
    wakeup: Wakeup | None = None,
) -> int:
    """Run every enabled shrinker of ``pool`` once, as the kernel's ``shrink_slab`` does,
    and return the pages freed. Never raises because of a policy."""
    freed = 0
    for shrinker in pool.shrinkers:
        if not shrinker.enabled or pool.closed:
            continue
        try:
            freed += _do_shrink(pool, shrinker, reason, pressure, pages_wanted, wakeup)
        except PoolClosedError:
            break  # closed by another thread during the round: nothing left to reclaim
        if pages_wanted and freed >= pages_wanted:
            break
    return freed


def _do_shrink(
    pool: Pool,
    shrinker: Shrinker,
    reason: ShrinkReason,
    pressure: PressureReading | None,
    pages_wanted: int,
    wakeup: Wakeup | None,
) -> int:
    cgroup = None if pressure is None else pressure.cgroup
    limit = None if cgroup is None else cgroup.effective_limit_bytes
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
            wakeup=wakeup,
            cgroup_usage_fraction=None if cgroup is None else cgroup.usage_fraction,
            cgroup_headroom_bytes=None if cgroup is None or limit is None else limit - cgroup.usage_bytes,
            recompressible=recompressible,
            recompress=recompressor if recompressible else None,
        )

    # The kernel caps a shrinker's count at twice what is freeable; pages are exact here, so
    # cap at what compaction (and recompression) could free: a policy that overstates (or
    # returns "objects scanned" from scan_objects) cannot turn one round into an endless loop.
    freeable = pool.can_compact() + recompressible
    total_scan = min(shrinker.count(pool, control(0)), freeable)
    batch = shrinker.batch or SHRINK_BATCH
    freed = 0
    while total_scan > 0 and shrinker.enabled:
        nr_to_scan = min(batch, total_scan)
        result = shrinker.scan(pool, control(nr_to_scan), limit=freeable - freed)
        if result == SHRINK_STOP:
            break
        freed += result
        total_scan -= nr_to_scan
        if result == 0 or (pages_wanted and freed >= pages_wanted):
            break  # nothing came back from a full batch, or the allocation has its room
    return freed
