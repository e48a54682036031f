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
import warnings
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


class _ThreadState:
    """What one reclaimer thread owns: its stop flag, the pipe that interrupts its
    ``poll()``, and the PSI trigger it polls. The thread holds this strongly and its
    :class:`Reclaimer` only weakly, so a dropped reclaimer is collected, its finalizer sets
    the flag, and the thread closes everything here on its way out."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.trigger: PsiTrigger | None = None
        #: The cgroup notifications the thread waits on, and whether it registered them itself
        #: (``notifiers="auto"``; then it closes them too).
        self.notifiers: tuple[Notifier, ...] = ()
        self.owns_notifiers = False
        self._lock = threading.Lock()  # the fds: set() and close() from different threads

    def set(self) -> None:
        """Ask the thread to stop, and wake it."""
        self.stopping.set()
        with self._lock:
            if self.wake_w >= 0:
                try:
                    os.write(self.wake_w, b"x")
                except OSError:
                    pass  # the pipe is full: the thread is waking anyway

    def close(self) -> None:
        """Close the pipe and the trigger (idempotent)."""
        with self._lock:
            for fd in (self.wake_r, self.wake_w):
                if fd >= 0:
                    os.close(fd)
            self.wake_r = self.wake_w = -1
            trigger, self.trigger = self.trigger, None
            notifiers, self.notifiers = (self.notifiers if self.owns_notifiers else ()), ()
        if trigger is not None:
            trigger.close()
        for notifier in notifiers:
            notifier.close()

    def forget_after_fork(self) -> None:
        """In a forked child: the fds are copies of the parent's; close them, ignore errors."""
        for fd in (self.wake_r, self.wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.wake_r = self.wake_w = -1
        if self.trigger is not None:
            try:
                self.trigger.close()
            except OSError:
                pass
            self.trigger = None
        if self.owns_notifiers:
            for notifier in self.notifiers:
                try:
                    notifier.close()  # the child's copies; the parent's registrations stay
                except OSError:
                    pass
        self.notifiers = ()


def _check_interval(interval_s: object) -> float:
    if isinstance(interval_s, bool) or not isinstance(interval_s, int | float):
        raise TypeError(f"interval_s must be a number of seconds, not {type(interval_s).__name__}")
    if not interval_s > 0:  # also refuses nan
        raise ValueError(f"interval_s={interval_s} must be > 0 seconds (math.inf: wake on pressure only)")
    try:
        return float(interval_s)
    except OverflowError:  # an int past any float: as good as never
        return math.inf


class Reclaimer:
    """Run the shrinkers of ``pools`` in a background thread.

    ``interval_s``: seconds between periodic ticks (``math.inf``: no ticks, wake on memory
    pressure only). ``monitor``: where pressure readings
    come from (default: a :class:`~zspool.pressure.PressureMonitor` on this system's PSI,
    cgroup and ``/proc/meminfo``; ``None`` to pass no reading). ``psi_trigger``: the trigger
    to register (``None`` to wake on ticks only); ``psi_path`` the PSI file (a cgroup's
    ``memory.pressure`` works too). Use as a context manager, or ``start()``/``stop()``.

    The reclaimer holds its pools and its thread holds the reclaimer only weakly: a pool
    dropped by its owner is not kept alive here, and a running reclaimer that is dropped
    without ``stop()`` stops its thread (with a ``ResourceWarning``) instead of leaking it.

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
        self.interval_s = _check_interval(interval_s)
        for pool in pools:
            if not isinstance(pool, Pool):
                raise TypeError(f"Reclaimer takes zspool.Pool objects, not {type(pool).__name__}")
        if not (monitor is None or monitor == "auto" or callable(getattr(monitor, "read", None))):
            raise TypeError(f"monitor must be 'auto', None or an object with read(), not {type(monitor).__name__}")
        if psi_trigger is not None and not isinstance(psi_trigger, PsiTriggerSpec):
            raise TypeError(f"psi_trigger must be a PsiTriggerSpec or None, not {type(psi_trigger).__name__}")
        if not isinstance(psi_path, str | os.PathLike):
            raise TypeError(f"psi_path must be a path, not {type(psi_path).__name__}")
        self._pools: tuple[weakref.ref[Pool], ...] = tuple(weakref.ref(p) for p in pools)
        self.monitor: Any = PressureMonitor() if monitor == "auto" else monitor
        self.psi_trigger_spec = psi_trigger
        self.psi_path = psi_path
        self.name = name
        self.stats = ReclaimerStats()
        self.events: collections.deque[ReclaimEvent] = collections.deque(maxlen=1000)
        #: Why there is no PSI trigger (None when there is one, or none was asked for).
        self.trigger_unavailable: str | None = None
        if notifiers != "auto" and notifiers is not None:
            notifiers = tuple(notifiers)
            for notifier in notifiers:
                if not all(hasattr(notifier, name) for name in ("fileno", "consume", "poll_events", "close")):
                    raise TypeError(f"notifiers takes Notifier objects (zspool.pressure.notify), not {notifier!r}")
        self._notifiers_wanted = notifiers
        #: The cgroup notifications "auto" could not register here, and why.
        self.notifiers_unavailable: tuple[Unavailable, ...] = ()
        #: Every kernel notification that woke the thread, oldest first (the last 1000).
        self.wakeups: collections.deque[Wakeup] = collections.deque(maxlen=1000)
        self._thread: threading.Thread | None = None
        self._state: _ThreadState | None = None
        self._lock = threading.RLock()  # start/stop; add_pool/remove_pool
        self.restart_after_fork = restart_after_fork
        #: Whether dropping this reclaimer while it runs warns (its owner may warn instead).
        self._warn_if_dropped = True
        self._finalizer: weakref.finalize[..., Reclaimer] | None = None
        _reclaimers.add(self)

    @property
    def notifiers(self) -> tuple[Notifier, ...]:
        """The cgroup notifications being waited on (registered by :meth:`start`)."""
        state = self._state
        return state.notifiers if state is not None else ()

    # -- pools ---------------------------------------------------------------

    @property
    def pools(self) -> tuple[Pool, ...]:
        """The pools still alive, in the order they were added."""
        return tuple(p for p in (ref() for ref in self._pools) if p is not None)

    def add_pool(self, pool: Pool) -> None:
        if not isinstance(pool, Pool):
            raise TypeError(f"Reclaimer takes zspool.Pool objects, not {type(pool).__name__}")
        with self._lock:
            self._pools = (*(r for r in self._pools if r() is not None), weakref.ref(pool))

    def remove_pool(self, pool: Pool) -> None:
        with self._lock:
            self._pools = tuple(r for r in self._pools if r() is not None and r() is not pool)

    # -- life cycle ----------------------------------------------------------

    @property
    def trigger(self) -> PsiTrigger | None:
        """The registered PSI trigger, while the thread runs with one."""
        state = self._state
        return None if state is None else state.trigger

    @property
    def running(self) -> bool:
        thread, state = self._thread, self._state
        return thread is not None and thread.is_alive() and state is not None and not state.stopping.is_set()

    def start(self) -> Reclaimer:
        """Register the PSI trigger (if possible) and start the thread. Idempotent."""
        with self._lock:
            if self.running:
                return self
            self._teardown(timeout_s=10.0)  # a thread that died or was told to stop
            state = _ThreadState()
            try:
                if self.psi_trigger_spec is not None:
                    trigger = register_psi_trigger(self.psi_path, self.psi_trigger_spec)
                    if isinstance(trigger, PsiTrigger):
                        state.trigger, self.trigger_unavailable = trigger, None
                    else:
                        self.trigger_unavailable = str(trigger)
                        log.info("no PSI trigger, waking on ticks only: %s", trigger)
                self._register_notifiers(state)
                thread = threading.Thread(
                    target=_thread_main, args=(weakref.ref(self), state), name=self.name, daemon=True
                )
                thread.start()
            except BaseException:
                state.close()
                raise
            self._thread, self._state = thread, state
            self._finalizer = weakref.finalize(self, _dropped, self.name, state, self._warn_if_dropped)
            self._finalizer.atexit = False  # at exit the daemon thread just ends: nothing to warn about
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (after the round in progress, if any) and drop the trigger.
        Safe to call from several threads and more than once. ``TimeoutError`` if a policy
        call keeps the thread past ``timeout_s``: it has been told to stop, and closes its
        pipe and trigger itself when that call returns."""
        with self._lock:
            self._teardown(timeout_s)

    def _signal_stop(self) -> None:
        """Tell the thread to stop, without waiting for it."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer.detach()
            if self._state is not None:
                self._state.set()

    def _teardown(self, timeout_s: float) -> None:
        """Stop and join the thread, then close the pipe and the trigger. Lock held."""
        thread, state = self._thread, self._state
        if self._finalizer is not None:
            self._finalizer.detach()
        if state is not None:
            state.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
            if thread.is_alive():
                raise TimeoutError(f"{self.name} did not stop within {timeout_s} s (a policy call is still running)")
        self._thread = self._state = None
        if state is not None:
            state.close()

    def _register_notifiers(self, state: _ThreadState) -> None:
        wanted = self._notifiers_wanted
        if wanted != "auto":
            state.notifiers = tuple(wanted or ())
            return
        source = self.monitor.cgroup if isinstance(self.monitor, PressureMonitor) else None
        cgroup = (source or CgroupMemorySource()).locate()
        found: Sequence[Notifier]
        missing: Sequence[Unavailable]
        if isinstance(cgroup, Unavailable):
            found, missing = (), (cgroup,)
        else:
            found, missing = cgroup_notifiers(cgroup)
        state.notifiers, state.owns_notifiers = tuple(found), True
        self.notifiers_unavailable = tuple(missing)
        for why in self.notifiers_unavailable:
            log.info("no cgroup notification: %s", why)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the thread is gone, and the locks, pipe and PSI trigger are
        copies of the parent's. Drop them all, then restart if asked to."""
        was_running = self._thread is not None
        self._lock = threading.RLock()
        self._thread = None
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._state is not None:
            self._state.forget_after_fork()
            self._state = None
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
        for pool in self.pools:
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
            reading: PressureReading = self.monitor.read()
            return reading
        except (OSError, ValueError) as exc:
            self.stats.errors += 1
            log.warning("pressure monitor failed: %s", exc)
            return None

    def _round(self, reason: ShrinkReason, woke: list[Wakeup]) -> None:
        """One wake-up's work, in the thread; survives anything a round raises."""
        if reason is ShrinkReason.TICK:
            self.stats.ticks += 1
        else:
            self.stats.pressure_events += 1
        self.wakeups.extend(woke)
        try:
            self.run_once(reason, max(woke) if woke else None)
        except BaseException:
            self.stats.errors += 1
            log.exception("reclaim round failed")


#: poll()'s longest timeout, in ms (a C int); longer waits are taken in several polls.
_MAX_POLL_MS = 2**31 - 1


def _wait(state: _ThreadState, interval_s: float) -> tuple[ShrinkReason, list[Wakeup]] | None:
    """Sleep until a tick, a pressure notification or stop; None means stop. A notification
    that turns out not to be a rise in pressure (a usage threshold crossed downwards) does not
    end the wait."""
    sources: dict[int, Notifier] = {n.fileno(): n for n in state.notifiers}
    if state.trigger is not None:
        sources[state.trigger.fileno()] = PsiNotifier(state.trigger, "psi")
    poller = select.poll()
    poller.register(state.wake_r, select.POLLIN)
    for fd, notifier in sources.items():
        poller.register(fd, notifier.poll_events)
    deadline = None if math.isinf(interval_s) else time.monotonic() + interval_s
    while not state.stopping.is_set():
        timeout_ms = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return ShrinkReason.TICK, []
            timeout_ms = min(max(1, math.ceil(remaining * 1000)), _MAX_POLL_MS)
        woke: list[Wakeup] = []
        for fd, events in poller.poll(timeout_ms):
            if fd == state.wake_r:
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
            if state.trigger is not None and fd == state.trigger.fileno():
                state.trigger.close()
                state.trigger = None
            else:
                state.notifiers = tuple(n for n in state.notifiers if n is not notifier)
            del sources[fd]
        if woke:
            return ShrinkReason.PRESSURE, woke
    return None


def _thread_main(ref: weakref.ref[Reclaimer], state: _ThreadState) -> None:
    """The reclaimer thread. It holds its Reclaimer only during a round, so that a dropped
    reclaimer is collected (its finalizer then stops this thread) even while it waits."""
    try:
        while not state.stopping.is_set():
            reclaimer = ref()
            if reclaimer is None:
                return
            interval_s = reclaimer.interval_s
            del reclaimer
            woke = _wait(state, interval_s)
            reclaimer = ref()
            if woke is None or reclaimer is None:
                return
            reclaimer._round(*woke)
            del reclaimer
    finally:
        state.close()


def _dropped(name: str, state: _ThreadState, warn: bool) -> None:
    """Finalizer of a running Reclaimer that was dropped without stop()."""
    state.set()
    if warn:
        warnings.warn(
            f"{name} was dropped while running; call stop() (or use it as a context manager)",
            ResourceWarning,
            stacklevel=2,
        )
