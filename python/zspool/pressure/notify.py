"""Memory-pressure notifications from the kernel, as file descriptors to poll.

This module owns *being told* about pressure (the package's other modules own *asking*).
Each :class:`Notifier` is one kernel notification on one descriptor; the
:class:`~zspool.Reclaimer` polls all of them in one loop with its tick and, when one is
ready, calls :meth:`Notifier.consume` to drain it and learn what happened, as a
:class:`Wakeup`. Standard library only (``ctypes`` for inotify).

The kernel's notifications and what each one means here
--------------------------------------------------------
* **cgroup v1 vmpressure** (``memory.pressure_level``, Documentation/admin-guide/
  cgroup-v1/memory.rst section 11): an ``eventfd`` registered by writing
  ``"<eventfd> <fd of memory.pressure_level> <low|medium|critical>"`` to the cgroup's
  ``cgroup.event_control``. The kernel signals it while *reclaiming* in the cgroup: ``low``
  as reclaim starts, ``medium`` when it scans much to reclaim little, ``critical`` when it
  reclaims almost nothing (OOM is near). A listener at one level also hears every higher
  one, so :class:`VmpressureNotifier` registers one eventfd per level and reports its own.
  In the kernel's ``default`` mode an event stops at the first cgroup with a listener, so
  listening here hides this cgroup's reclaim from ``default``-mode listeners in ancestor
  cgroups (a supervisor that needs to see it registers in ``hierarchy`` mode).
* **cgroup v1 usage thresholds** (section 9): an eventfd registered with
  ``"<eventfd> <fd of memory.usage_in_bytes> <bytes>"``; signalled when usage crosses the
  threshold in *either* direction. :class:`UsageThresholdNotifier` re-reads the usage and
  reports only the upward crossing. This is the early warning: vmpressure speaks only
  once the cgroup is at its limit and reclaiming.
* **cgroup v2 ``memory.events``**: counters ``low high max oom oom_kill oom_group_kill``;
  "a value change in this file generates a file modified event" (cgroup-v2.rst), which
  :class:`MemoryEventsNotifier` watches with inotify. ``high`` rising is ``medium`` (the
  cgroup is throttled at ``memory.high``), ``max``/``oom``/``oom_kill`` rising is
  ``critical`` (it hit ``memory.max``).
* **PSI triggers** (system ``/proc/pressure/memory`` or a v2 cgroup's ``memory.pressure``):
  :class:`PsiNotifier` wraps a :class:`~zspool.pressure.psi_trigger.PsiTrigger`; ``POLLPRI`` means the
  stall threshold was passed, reported as ``medium``.

Levels use vmpressure's names, ``low < medium < critical``; "critical pressure" in the
policies' documentation means a :class:`Wakeup` whose level is ``critical``.

Errors
------
A notification the kernel does not offer here (file missing, no permission, no eventfd
support) is not an error: :func:`cgroup_notifiers` returns it as an
:class:`~zspool.pressure.Unavailable` next to the notifiers it could register.
Descriptors are closed by :meth:`Notifier.close` (or a ``with`` block); one left open
warns with a :class:`ResourceWarning` when collected, like an unclosed file.
"""

from __future__ import annotations

import ctypes
import os
import select
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, Self, TypeAlias, runtime_checkable

from zspool.pressure.cgroup import CgroupDir, read_cgroup_memory
from zspool.pressure.psi_trigger import PsiTrigger, PsiTriggerSpec, register_psi_trigger
from zspool.pressure.source import StrPath, Unavailable

__all__ = [
    "DEFAULT_USAGE_THRESHOLDS",
    "LEVELS",
    "Level",
    "MemoryEventsNotifier",
    "Notifier",
    "PsiNotifier",
    "UsageThresholdNotifier",
    "VmpressureNotifier",
    "Wakeup",
    "cgroup_notifiers",
    "parse_memory_events",
]

Level: TypeAlias = Literal["low", "medium", "critical"]
#: vmpressure's levels, least severe first.
LEVELS: tuple[Level, ...] = ("low", "medium", "critical")

#: Usage thresholds registered on a v1 cgroup with a limit: fraction of the limit -> level.
#: 75 % is the early warning pressure-gated acts on. At 85 % a neighbour growing at a few
#: hundred MiB/s is a few tens of milliseconds from the kernel's OOM killer: idle-only
#: must not wait for idleness any longer, and compaction needs that time to give pages back.
DEFAULT_USAGE_THRESHOLDS: Mapping[float, Level] = {0.75: "medium", 0.85: "critical"}


@dataclass(frozen=True)
class Wakeup:
    """One notification that woke the reclaimer.

    ``source``: ``"vmpressure"``, ``"usage_threshold"``, ``"memory_events"``, ``"psi"``
    (system PSI trigger) or ``"cgroup_psi"`` (a cgroup's ``memory.pressure`` trigger).
    ``level``: ``low``, ``medium`` or ``critical``. ``at``: ``time.monotonic()`` seconds
    when the reclaimer saw the descriptor ready (CLOCK_MONOTONIC, comparable across
    processes). ``detail``: what the kernel said, in words (for logs).
    """

    source: str
    level: Level
    at: float
    detail: str = ""

    @property
    def critical(self) -> bool:
        """True for ``critical`` pressure: the cgroup is at (or a step from) its limit."""
        return self.level == "critical"

    def __lt__(self, other: Wakeup) -> bool:
        """Orders by severity (then time), so ``max(wakeups)`` is the most severe."""
        return (LEVELS.index(self.level), -self.at) < (LEVELS.index(other.level), -other.at)


@runtime_checkable
class Notifier(Protocol):
    """One kernel notification on one descriptor."""

    #: The ``select.poll`` event mask that means "ready" (POLLIN or POLLPRI).
    poll_events: int

    def fileno(self) -> int:
        """The descriptor to poll."""
        ...

    def consume(self, at: float) -> Wakeup | None:
        """Drain the descriptor (never blocks); the :class:`Wakeup` it carried, or None when
        it was not a rise in pressure (a downward crossing, a counter that did not grow)."""
        ...

    def close(self) -> None:
        """Unregister the notification and close its descriptors (idempotent)."""
        ...


class _Descriptors:
    """Owns a notifier's descriptors: close once, warn if collected open."""

    def __init__(self, *fds: int) -> None:
        self._fds: tuple[int, ...] = fds

    @property
    def closed(self) -> bool:
        return not self._fds

    def fileno(self) -> int:
        if not self._fds:
            raise ValueError(f"{self!r} is closed")
        return self._fds[0]

    def close(self) -> None:
        fds, self._fds = self._fds, ()
        for fd in fds:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fds", ()):
            description = repr(self)
            self.close()
            warnings.warn(f"unclosed {description}", ResourceWarning, stacklevel=2)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain_eventfd(fd: int) -> int:
    """The eventfd's counter (reset to 0 by the read), 0 if it was not signalled."""
    try:
        return int.from_bytes(os.read(fd, 8), "little")
    except BlockingIOError:
        return 0


def _register_v1_event(directory: str, control_file: str, arguments: str) -> tuple[int, int]:
    """Register an eventfd on ``control_file`` through ``cgroup.event_control`` (v1).

    Returns ``(eventfd, control file fd)``; the kernel keeps the registration until the
    eventfd is closed (or the cgroup removed, which signals it once). Raises OSError.
    """
    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    try:
        target = os.open(os.path.join(directory, control_file), os.O_RDONLY | os.O_CLOEXEC)
        try:
            control = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(control, f"{efd} {target} {arguments}".encode("ascii"))
            finally:
                os.close(control)
        except BaseException:
            os.close(target)
            raise
    except BaseException:
        os.close(efd)
        raise
    return efd, target


class VmpressureNotifier(_Descriptors):
    """cgroup v1 ``memory.pressure_level`` at ``level`` (see the module docstring).

    ``mode`` is the kernel's: ``"default"`` (an event goes to the nearest cgroup with a
    listener), ``"hierarchy"`` (to every ancestor too) or ``"local"`` (only events of this
    cgroup's own reclaim). Raises OSError if the kernel refuses the registration.
    """

    poll_events = select.POLLIN
    source = "vmpressure"

    def __init__(self, directory: StrPath, level: Level, mode: str = "default") -> None:
        if level not in LEVELS:
            raise ValueError(f"vmpressure level must be one of {LEVELS}, not {level!r}")
        if mode not in ("default", "hierarchy", "local"):
            raise ValueError(f"vmpressure mode must be default, hierarchy or local, not {mode!r}")
        self.directory = os.fspath(directory)
        self.level: Level = level
        arguments = level if mode == "default" else f"{level},{mode}"
        super().__init__(*_register_v1_event(self.directory, "memory.pressure_level", arguments))

    def consume(self, at: float) -> Wakeup | None:
        count = _drain_eventfd(self.fileno())
        if not count or not os.path.isdir(self.directory):
            return None  # nothing, or the signal the kernel sends when the cgroup is removed
        return Wakeup(self.source, self.level, at, f"{self.level} x{count} on {self.directory}")

    def __repr__(self) -> str:
        return f"VmpressureNotifier({self.directory!r}, {self.level!r})"


class UsageThresholdNotifier(_Descriptors):
    """cgroup v1 usage threshold: wakes when ``usage_file`` rises past ``threshold_bytes``.

    ``usage_file`` is ``memory.usage_in_bytes`` or ``memory.memsw.usage_in_bytes``. The
    kernel signals both crossings; :meth:`consume` re-reads the usage and reports only a
    usage at or above the threshold, at ``level``.
    """

    poll_events = select.POLLIN
    source = "usage_threshold"

    def __init__(
        self,
        directory: StrPath,
        threshold_bytes: int,
        level: Level = "medium",
        usage_file: str = "memory.usage_in_bytes",
    ) -> None:
        if threshold_bytes <= 0:
            raise ValueError(f"threshold_bytes must be > 0, got {threshold_bytes}")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
        self.directory = os.fspath(directory)
        self.threshold_bytes = threshold_bytes
        self.level: Level = level
        efd, self._usage_fd = _register_v1_event(self.directory, usage_file, str(threshold_bytes))
        super().__init__(efd, self._usage_fd)

    def usage_bytes(self) -> int:
        """The usage now, in bytes (a pread of the file registered on)."""
        return int(os.pread(self._usage_fd, 64, 0))

    def consume(self, at: float) -> Wakeup | None:
        if not _drain_eventfd(self.fileno()):
            return None
        try:
            usage = self.usage_bytes()
        except (OSError, ValueError):
            return None  # the cgroup is being removed
        if usage < self.threshold_bytes:
            return None  # the downward crossing: pressure fell
        return Wakeup(
            self.source,
            self.level,
            at,
            f"usage {usage >> 20} MiB >= {self.threshold_bytes >> 20} MiB",
        )

    def __repr__(self) -> str:
        return f"UsageThresholdNotifier({self.directory!r}, {self.threshold_bytes}, {self.level!r})"


def parse_memory_events(text: str, source: str = "memory.events") -> dict[str, int]:
    """Parse cgroup v2 ``memory.events`` (``name count`` lines) into counters. Raises
    ValueError naming ``source`` and the line for anything else."""
    counters: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise ValueError(f"{source}:{lineno}: expected 'name count': {line!r}")
        counters[parts[0]] = int(parts[1])
    return counters


# From <sys/inotify.h>; inotify_init1 takes O_NONBLOCK and O_CLOEXEC as its flags.
_IN_MODIFY = 0x00000002
_libc = ctypes.CDLL(None, use_errno=True)


def _inotify_watch(path: str) -> int:
    fd = int(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"inotify_init1: {os.strerror(code)}")
    if _libc.inotify_add_watch(fd, os.fsencode(path), _IN_MODIFY) < 0:
        code = ctypes.get_errno()
        os.close(fd)
        raise OSError(code, f"inotify_add_watch: {os.strerror(code)}", path)
    return fd


class MemoryEventsNotifier(_Descriptors):
    """cgroup v2 ``memory.events``, watched with inotify (``IN_MODIFY``).

    :meth:`consume` drains the inotify queue, re-reads the counters and compares them with
    the last read: ``max``, ``oom`` or ``oom_kill`` grew -> ``critical``; ``high`` grew ->
    ``medium``; neither (``low`` only, or a spurious event) -> None.
    """

    poll_events = select.POLLIN
    source = "memory_events"
    CRITICAL_COUNTERS = ("max", "oom", "oom_kill", "oom_group_kill")

    def __init__(self, directory: StrPath) -> None:
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, "memory.events")
        fd = _inotify_watch(self.path)
        super().__init__(fd)
        try:
            self.counters = self._read()
        except BaseException:
            self.close()
            raise

    def _read(self) -> dict[str, int]:
        with open(self.path, encoding="ascii") as f:
            return parse_memory_events(f.read(), self.path)

    def consume(self, at: float) -> Wakeup | None:
        try:
            while os.read(self.fileno(), 4096):
                pass
        except BlockingIOError:
            pass
        before, self.counters = self.counters, self._read()
        grew = {k: v - before.get(k, 0) for k, v in self.counters.items() if v > before.get(k, 0)}
        detail = ", ".join(f"{k} +{n}" for k, n in grew.items())
        if any(k in grew for k in self.CRITICAL_COUNTERS):
            return Wakeup(self.source, "critical", at, detail)
        if "high" in grew:
            return Wakeup(self.source, "medium", at, detail)
        return None

    def __repr__(self) -> str:
        return f"MemoryEventsNotifier({self.directory!r})"


class PsiNotifier:
    """A PSI trigger as a notifier: ``POLLPRI`` means the stall threshold was passed.

    ``source`` is ``"psi"`` for the system file and ``"cgroup_psi"`` for a cgroup's
    ``memory.pressure``. Takes ownership of ``trigger``.
    """

    poll_events = select.POLLPRI

    def __init__(self, trigger: PsiTrigger, source: str = "psi") -> None:
        self.trigger = trigger
        self.source = source

    def fileno(self) -> int:
        return self.trigger.fileno()

    def consume(self, at: float) -> Wakeup | None:
        # A PSI trigger needs no draining: the kernel sends at most one event per window.
        return Wakeup(
            self.source,
            "medium",
            at,
            f"{self.trigger.spec.encode()[:-1].decode()} on {self.trigger.path}",
        )

    def close(self) -> None:
        self.trigger.close()

    def __repr__(self) -> str:
        return f"PsiNotifier({self.trigger!r})"


_DEFAULT_PSI_TRIGGER = PsiTriggerSpec()


def cgroup_notifiers(
    cgroup: CgroupDir,
    *,
    usage_thresholds: Mapping[float, Level] = DEFAULT_USAGE_THRESHOLDS,
    vmpressure_levels: Sequence[Level] = LEVELS,
    psi_trigger: PsiTriggerSpec | None = _DEFAULT_PSI_TRIGGER,
) -> tuple[list[Notifier], list[Unavailable]]:
    """Every notification the kernel offers for ``cgroup``, registered.

    v1: a :class:`VmpressureNotifier` per level in ``vmpressure_levels`` and, if the cgroup
    has a limit, a :class:`UsageThresholdNotifier` per ``usage_thresholds`` entry (fraction
    of the limit -> level). v2: a :class:`MemoryEventsNotifier` and a :class:`PsiNotifier`
    on the cgroup's ``memory.pressure`` (``psi_trigger``; None for none). Returns the
    notifiers and, for each one the kernel refused, why.
    """
    notifiers: list[Notifier] = []
    missing: list[Unavailable] = []

    def attempt(what: str, make: Callable[..., Notifier], *args: object) -> None:
        try:
            notifiers.append(make(*args))
        except OSError as exc:
            missing.append(Unavailable(cgroup.path, f"{what}: {exc.strerror or exc}", exc.errno))

    if cgroup.version == 1:
        for level in vmpressure_levels:
            attempt(f"vmpressure {level}", VmpressureNotifier, cgroup.path, level)
        memory = read_cgroup_memory(cgroup.path, 1)
        limit = None if isinstance(memory, Unavailable) else memory.limit_bytes
        if limit is None:
            missing.append(Unavailable(cgroup.path, "usage thresholds: the cgroup has no limit"))
        else:
            for fraction, level in sorted(usage_thresholds.items()):
                attempt(
                    f"usage threshold {fraction:.0%}",
                    UsageThresholdNotifier,
                    cgroup.path,
                    int(limit * fraction),
                    level,
                )
    else:
        attempt("memory.events", MemoryEventsNotifier, cgroup.path)
        if psi_trigger is not None:
            trigger = register_psi_trigger(os.path.join(cgroup.path, "memory.pressure"), psi_trigger)
            if isinstance(trigger, PsiTrigger):
                notifiers.append(PsiNotifier(trigger, "cgroup_psi"))
            else:
                missing.append(trigger)
    return notifiers, missing
