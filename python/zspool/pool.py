"""``zspool.Pool``: the Rust pool, plus the shrinkers registered with it.

Everything on the data path (``malloc``, ``store``, ``load``, ``free``, ``compact`` …) is the
Rust class :class:`zspool._core.Pool`, inherited as is: no Python frame runs per call. This
subclass adds what belongs in Python: the list of registered shrinkers and *direct reclaim*,
which the Rust side calls when an allocation would pass ``mem_limit`` (see
:meth:`Pool._direct_reclaim`).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from zspool import _core
from zspool.errors import PoolClosedError
from zspool.policies import load_policy
from zspool.shrinker import DEFAULT_MAX_FAILURES, DEFAULT_TIME_LIMIT_S, Shrinker, shrink_pool
from zspool.shrinker_policy import Recompressor, ShrinkerPolicy, ShrinkReason

__all__ = ["Pool"]

log = logging.getLogger(__name__)

#: Every live :class:`Pool`, for the fork hooks below.
_live_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """The pool itself is made fork-safe in Rust (pthread_atfork handlers in
    ``rust/zspool-core/src/fork.rs`` hold its locks across ``fork()``). Here: the Python-side
    locks, which a thread that does not exist in the child may have held."""
    for pool in list(_live_pools):
        pool._shrinker_lock = threading.Lock()
        for shrinker in pool._shrinkers:
            shrinker._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Pool(_core.Pool):
    """A compacting memory pool after Linux's zsmalloc.

    ``Pool(*, max_pages_per_zspage=8, mem_limit=None, name=None)``

    - ``max_pages_per_zspage``: longest page chain per zspage, 1..16 (the kernel's
      ``CONFIG_ZSMALLOC_CHAIN_SIZE``); longer chains waste less at the tail of each zspage.
      It applies to the classes up to :data:`PAGE_SIZE`; the classes above a page (up to
      :data:`MAX_CLASS_SIZE`) always use up to 16 pages, which is what packs them best.
    - ``mem_limit``: bytes of pages the pool may hold (zram's ``mem_limit``); an allocation
      past it first runs the registered shrinkers, then raises :class:`PoolFullError`.
    - ``name``: shown in ``repr`` and the stats.

    Objects are addressed by integer handles; see :meth:`malloc`, :meth:`store`,
    :meth:`load`, :meth:`free`. Thread-safe; bulk work releases the GIL.

    Fork-safe: ``os.fork()`` (multiprocessing, gunicorn, uwsgi) waits for calls running
    without the GIL to finish, interrupts a running compaction at its next slice, and holds
    every lock of every live pool across the fork, so the child gets a consistent copy (all
    objects readable, new ones writable) and no lock held by a thread it does not have.
    """

    def __init__(
        self,
        *,
        max_pages_per_zspage: int = _core.DEFAULT_MAX_PAGES_PER_ZSPAGE,
        mem_limit: int | None = None,
        name: str | None = None,
    ) -> None:
        # The Rust __new__ has already built the pool from the same arguments.
        self._shrinkers: tuple[Shrinker, ...] = ()
        self._shrinker_lock = threading.Lock()
        #: Set by a :class:`zspool.Cache` with a zstd dictionary: its shrinkers may ask for
        #: recompression (see :class:`zspool.shrinker.ShrinkControl`).
        self.recompressor: Recompressor | None = None
        _live_pools.add(self)

    @property
    def shrinkers(self) -> tuple[Shrinker, ...]:
        """The registered shrinkers, in registration order."""
        return self._shrinkers

    def register_shrinker(
        self,
        policy: ShrinkerPolicy | str,
        *,
        name: str | None = None,
        batch: int = 0,
        time_limit_s: float = DEFAULT_TIME_LIMIT_S,
        max_failures: int = DEFAULT_MAX_FAILURES,
        **options: Any,
    ) -> Shrinker:
        """Register a policy (an object, or the name of an installed one, built with
        ``options``) and return its :class:`~zspool.shrinker.Shrinker`.

        ``batch`` is pages per ``scan_objects`` call (0: :data:`~zspool.shrinker_policy.SHRINK_BATCH`);
        ``time_limit_s`` and ``max_failures`` bound a misbehaving policy (see :mod:`zspool.shrinker`).
        :class:`PoolClosedError` after ``close()``.
        """
        if self.closed:
            raise PoolClosedError(f"cannot register a shrinker with pool {self.name!r}: it is closed")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, not {type(name).__name__}")
        if isinstance(policy, str):
            label = name or policy
            policy = load_policy(policy, **options)
        elif options:
            raise TypeError(f"options {sorted(options)} only apply when the policy is given by name")
        else:
            if not isinstance(policy, ShrinkerPolicy):
                raise TypeError(
                    f"{type(policy).__name__} is not a shrinker policy: it needs "
                    "count_objects(pool, sc) and scan_objects(pool, sc)"
                )
            label = name or type(policy).__name__
        for what, value in (("batch", batch), ("max_failures", max_failures)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, int | float):
            raise TypeError(f"time_limit_s must be a number of seconds, not {type(time_limit_s).__name__}")
        if not (batch >= 0 and time_limit_s > 0 and max_failures >= 1):  # also refuses nan
            raise ValueError(
                f"batch={batch} must be >= 0, time_limit_s={time_limit_s} > 0, max_failures={max_failures} >= 1"
            )
        shrinker = Shrinker(policy, label, batch=batch, time_limit_s=time_limit_s, max_failures=max_failures)
        with self._shrinker_lock:
            self._shrinkers = (*self._shrinkers, shrinker)
        return shrinker

    def unregister_shrinker(self, shrinker: Shrinker | ShrinkerPolicy) -> None:
        """Remove a shrinker (or the shrinker of a policy object). ``ValueError`` if absent."""
        with self._shrinker_lock:
            kept = tuple(s for s in self._shrinkers if s is not shrinker and s.policy is not shrinker)
            if len(kept) == len(self._shrinkers):
                raise ValueError(f"{shrinker!r} is not registered with this pool")
            self._shrinkers = kept

    def shrink(self, reason: ShrinkReason = ShrinkReason.MANUAL) -> int:
        """Run the registered shrinkers once now; returns pages freed."""
        return shrink_pool(self, reason)

    def _direct_reclaim(self, requested_bytes: int) -> bool:
        """Called by the Rust side, with no pool lock held, when an allocation of
        ``requested_bytes`` would pass ``mem_limit``. Runs the shrinkers and says whether the
        pool holds fewer pages than before (the allocation is then retried once). Never
        raises, except Ctrl-C on the main thread."""
        if not getattr(self, "_shrinkers", ()):
            return False
        # A small object needs a whole new zspage (up to max_pages_per_zspage pages); one above
        # a page its own pages (a class above a page whose new zspage does not fit under the
        # limit falls back to those).
        if requested_bytes > _core.PAGE_SIZE:
            wanted = -(-requested_bytes // _core.PAGE_SIZE)
        else:
            wanted = self.max_pages_per_zspage
        before = self.stats().pages_used
        try:
            freed = shrink_pool(self, ShrinkReason.MEM_LIMIT, pages_wanted=wanted)
        except Exception:  # a reclaim failure must surface as PoolFullError, not this
            log.exception("direct reclaim failed")
            return False
        # Pages may also have come back from a compaction already running in another thread
        # (ours then returned "already_running"): retry if the pool shrank at all.
        return freed > 0 or self.stats().pages_used < before
