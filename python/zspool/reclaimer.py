"""``zspool.Reclaimer``: zspool's kswapd, a background thread that runs the pools' shrinkers.

It waits in one ``poll()`` over every wake-up it has:

- the kernel's memory-pressure notifications for this process's memory cgroup
  (:mod:`zspool.pressure.notify`): on cgroup v1, vmpressure levels (``memory.pressure_level``) and
  usage thresholds (``memory.usage_in_bytes``), both eventfds registered through
  ``cgroup.event_control``; on cgroup v2, ``memory.events`` (inotify) and a PSI trigger on
  the cgroup's ``memory.pressure``;
- a PSI trigger on ``/proc/pressure/memory`` (system-wide stalls), where the kernel lets
  this process register one; and
- a periodic tick (``interval_s``), always: policies such as ``idle-only`` need to be
  asked even when nothing is under pressure.

Each wake-up reads the pressure monitor once and runs every registered shrinker of every
pool, as the kernel's ``shrink_slab`` does (:func:`zspool.shrinker.shrink_pool`); a policy
sees which notification fired (and how severe) in ``ShrinkControl.wakeup``. Policy errors
are isolated by the shrinkers; the thread itself survives anything short of interpreter
shutdown and records what it did in :attr:`Reclaimer.events` and :attr:`Reclaimer.wakeups`.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import select
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from zspool.pool import Pool
from zspool.pressure import (
    PROC_PRESSURE_MEMORY,
    CgroupMemorySource,
    PressureMonitor,
    PressureReading,
    PsiTrigger,
    PsiTriggerSpec,
    StrPath,
    Unavailable,
    register_psi_trigger,
)
from zspool.pressure.notify import Notifier, PsiNotifier, Wakeup, cgroup_notifiers
from zspool.shrinker import shrink_pool
from zspool.shrinker_policy import ShrinkReason

__all__ = ["Reclaimer", "ReclaimEvent", "ReclaimerStats"]

log = logging.getLogger(__name__)

#: Seconds between the reclaimer's periodic wake-ups (``Reclaimer(interval_s=...)``).
DEFAULT_INTERVAL_S: Final = 1.0

#: Every Reclaimer, so that a child process can deal with the threads it did not inherit.
_reclaimers: weakref.WeakSet[Reclaimer] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for reclaimer in list(_reclaimers):
        reclaimer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class ReclaimEvent:
    """One round that freed pages: when it ended (``time.monotonic()`` seconds), why, how
    much, and the kernel notification that started it (None for a tick)."""

    at: float
    reason: str
    pool: str
    pages_freed: int
    pressure_level: float | None
    pressure_reason: str | None
    wakeup: Wakeup | None = None


@dataclass
class ReclaimerStats:
    ticks: int = 0
    pressure_events: int = 0
    rounds: int = 0
    pages_freed: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Reclaimer:
    """Run the shrinkers of ``pools`` in a background thread.

    ``interval_s``: seconds between periodic ticks. ``monitor``: where pressure readings
    come from (default: a :class:`~zspool.pressure.PressureMonitor` on this system's PSI,
    cgroup and ``/proc/meminfo``; ``None`` to pass no reading). ``psi_trigger``: the trigger
    to register (``None`` to wake on ticks only); ``psi_path`` the PSI file (a cgroup's
    ``memory.pressure`` works too). Use as a context manager, or ``start()``/``stop()``.

    After ``os.fork()`` the child has no reclaimer thread (``fork()`` copies only the calling
    thread). With ``restart_after_fork=False`` (the default) a reclaimer that was running is
    left cleanly stopped in the child: ``running`` is False, its wake-up pipe and PSI trigger
    (the parent's) are closed in the child, and ``start()`` starts a fresh one. With
    ``restart_after_fork=True`` the child starts its own thread and trigger at once. The
    parent's reclaimer is unaffected either way.
    """

    def __init__(
        self,
        *pools: Pool,
        interval_s: float = DEFAULT_INTERVAL_S,
        monitor: PressureMonitor | Literal["auto"] | None = "auto",
        psi_trigger: PsiTriggerSpec | None = PsiTriggerSpec(),
        psi_path: StrPath = PROC_PRESSURE_MEMORY,
        notifiers: Sequence[Notifier] | Literal["auto"] | None = "auto",
        name: str = "zspool-reclaimer",
        restart_after_fork: bool = False,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s={interval_s} must be > 0 seconds")
        self._pools: tuple[Pool, ...] = pools
        self.interval_s = interval_s
        if isinstance(monitor, str) and monitor != "auto":
            raise ValueError(f"monitor={monitor!r}: pass a PressureMonitor, 'auto' or None")
        self.monitor = PressureMonitor() if isinstance(monitor, str) else monitor
        self.psi_trigger_spec = psi_trigger
        self.psi_path = psi_path
        self.name = name
        self.stats = ReclaimerStats()
        self.events: collections.deque[ReclaimEvent] = collections.deque(maxlen=1000)
        self.trigger: PsiTrigger | None = None
        #: Why there is no PSI trigger (None when there is one, or none was asked for).
        self.trigger_unavailable: str | None = None
        self._notifiers_wanted = notifiers
        #: The cgroup notifications being waited on (registered by :meth:`start`).
        self.notifiers: tuple[Notifier, ...] = ()
        #: The cgroup notifications "auto" could not register here, and why.
        self.notifiers_unavailable: tuple[Unavailable, ...] = ()
        #: Every kernel notification that woke the thread, oldest first (the last 1000).
        self.wakeups: collections.deque[Wakeup] = collections.deque(maxlen=1000)
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = threading.Event()
        self._lock = threading.RLock()  # start/stop; add_pool/remove_pool
        self.restart_after_fork = restart_after_fork
        _reclaimers.add(self)

    # -- pools ---------------------------------------------------------------

    @property
    def pools(self) -> tuple[Pool, ...]:
        return self._pools

    def add_pool(self, pool: Pool) -> None:
        with self._lock:
            self._pools = (*self._pools, pool)

    def remove_pool(self, pool: Pool) -> None:
        with self._lock:
            self._pools = tuple(p for p in self._pools if p is not pool)

    # -- life cycle ----------------------------------------------------------

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping.is_set()

    def start(self) -> Reclaimer:
        """Register the PSI trigger (if possible) and start the thread. Idempotent."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stopping.is_set():
                return self
            self._teardown(timeout_s=10.0)  # a thread that died or was told to stop
            self._stopping.clear()
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if self.psi_trigger_spec is not None:
                    trigger = register_psi_trigger(self.psi_path, self.psi_trigger_spec)
                    if isinstance(trigger, PsiTrigger):
                        self.trigger, self.trigger_unavailable = trigger, None
                    else:
                        self.trigger_unavailable = str(trigger)
                        log.info("no PSI trigger, waking on ticks only: %s", trigger)
                self._register_notifiers()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            except BaseException:
                self._thread = None
                self._close_fds()
                raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the round in progress, if any) and drop the trigger.
        Safe to call from several threads and more than once."""
        with self._lock:
            self._teardown(timeout_s)

    def _teardown(self, timeout_s: float) -> None:
        """Stop and join the thread, then close the pipe and the trigger. Lock held."""
        thread = self._thread
        if thread is not None:
            self._stopping.set()
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass  # the pipe is full: the thread is waking anyway
            thread.join(timeout_s)
            if thread.is_alive():
                raise TimeoutError(f"{self.name} did not stop within {timeout_s} s (a policy call is still running)")
            self._thread = None
        self._close_fds()

    def _register_notifiers(self) -> None:
        wanted = self._notifiers_wanted
        if wanted != "auto":
            self.notifiers = tuple(wanted or ())
            return
        source = self.monitor.cgroup if isinstance(self.monitor, PressureMonitor) else None
        cgroup = (source or CgroupMemorySource()).locate()
        if isinstance(cgroup, Unavailable):
            self.notifiers, self.notifiers_unavailable = (), (cgroup,)
        else:
            found, missing = cgroup_notifiers(cgroup)
            self.notifiers, self.notifiers_unavailable = tuple(found), tuple(missing)
        for why in self.notifiers_unavailable:
            log.info("no cgroup notification: %s", why)

    def _close_fds(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1
        if self.trigger is not None:
            self.trigger.close()
            self.trigger = None
        if self._notifiers_wanted == "auto":
            for notifier in self.notifiers:
                notifier.close()
        self.notifiers = ()

    def _after_fork_in_child(self) -> None:
        """In a forked child: the thread is gone, and the locks, pipe and PSI trigger are
        copies of the parent's. Drop them all, then restart if asked to."""
        was_running = self._thread is not None
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1
        if self.trigger is not None:
            try:
                self.trigger.close()
            except OSError:
                pass
            self.trigger = None
        if self._notifiers_wanted == "auto":
            for notifier in self.notifiers:
                try:
                    notifier.close()  # the child's copies; the parent's registrations stay
                except OSError:
                    pass
        self.notifiers = ()
        if was_running and self.restart_after_fork:
            self.start()

    def __enter__(self) -> Reclaimer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the work --------------------------------------------------------------

    def run_once(self, reason: ShrinkReason = ShrinkReason.MANUAL, wakeup: Wakeup | None = None) -> int:
        """Read pressure once and run every pool's shrinkers; returns pages freed.
        ``wakeup`` is the notification that asked for this round, passed to the policies."""
        reading = self._read_pressure()
        freed = 0
        for pool in self._pools:
            if pool.closed or not pool.shrinkers:
                continue
            pages = shrink_pool(pool, reason, pressure=reading, wakeup=wakeup)
            freed += pages
            if pages:
                self.events.append(
                    ReclaimEvent(
                        at=time.monotonic(),
                        reason=reason.value,
                        pool=pool.name or hex(id(pool)),
                        pages_freed=pages,
                        pressure_level=None if reading is None else reading.level,
                        pressure_reason=None if reading is None else reading.reason,
                        wakeup=wakeup,
                    )
                )
        self.stats.rounds += 1
        self.stats.pages_freed += freed
        return freed

    def _read_pressure(self) -> PressureReading | None:
        if self.monitor is None:
            return None
        try:
            return self.monitor.read()
        except (OSError, ValueError) as exc:
            self.stats.errors += 1
            log.warning("pressure monitor failed: %s", exc)
            return None

    def _wait(self) -> tuple[ShrinkReason, Wakeup | None] | None:
        """Sleep until a tick, a pressure notification or stop; None means stop. A
        notification that turns out not to be a rise in pressure (a usage threshold crossed
        downwards) does not end the wait."""
        sources: dict[int, Notifier] = {n.fileno(): n for n in self.notifiers}
        if self.trigger is not None:
            sources[self.trigger.fileno()] = PsiNotifier(self.trigger, "psi")
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        for fd, notifier in sources.items():
            poller.register(fd, notifier.poll_events)
        deadline = time.monotonic() + self.interval_s
        while not self._stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ShrinkReason.TICK, None
            woke: list[Wakeup] = []
            for fd, events in poller.poll(max(1, math.ceil(remaining * 1000))):
                if fd == self._wake_r:
                    return None
                notifier = sources[fd]
                if events & notifier.poll_events:
                    wakeup = notifier.consume(time.monotonic())
                    if wakeup is not None:
                        woke.append(wakeup)
                    continue
                # POLLERR/POLLHUP: the notification's source went away (a removed cgroup).
                log.warning("%r failed (poll events %#x); no longer waiting on it", notifier, events)
                poller.unregister(fd)
                if self.trigger is not None and fd == self.trigger.fileno():
                    self.trigger.close()
                    self.trigger = None
                else:
                    self.notifiers = tuple(n for n in self.notifiers if n is not notifier)
                del sources[fd]
            if woke:
                self.wakeups.extend(woke)
                return ShrinkReason.PRESSURE, max(woke)
        return None

    def _run(self) -> None:
        while True:
            woke = self._wait()
            if woke is None:
                return
            reason, wakeup = woke
            if reason is ShrinkReason.TICK:
                self.stats.ticks += 1
            else:
                self.stats.pressure_events += 1
            try:
                self.run_once(reason, wakeup)
            except BaseException:  # the reclaimer must outlive any one round
                self.stats.errors += 1
                log.exception("reclaim round failed")
