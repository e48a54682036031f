"""Memory-pressure readers: PSI, cgroup memory, /proc/meminfo and process RSS.

This package owns *reading* pressure. It never compacts anything: a shrinker policy asks a
:class:`PressureMonitor` for a :class:`PressureReading` and decides what to do (the
memcached "automove" boundary: the pool knows how, policies decide when). It imports only
the standard library, so it can be used and tested without the compiled ``zspool._core``
extension.

One module per source, each documenting its kernel interface and units; every public name
is re-exported here, so ``zspool.pressure.PressureMonitor`` and
``zspool.pressure.monitor.PressureMonitor`` are the same class:

* :mod:`~zspool.pressure.psi`: PSI, stall percentages and totals
  (``/proc/pressure/memory``, a cgroup's ``memory.pressure``).
* :mod:`~zspool.pressure.psi_trigger`: PSI triggers, woken by ``poll()`` instead of polling.
* :mod:`~zspool.pressure.cgroup`: the process's memory cgroup (v1 and v2), usage and limits.
* :mod:`~zspool.pressure.meminfo`: ``/proc/meminfo``, ``MemTotal`` and ``MemAvailable``.
* :mod:`~zspool.pressure.rss`: the process's RSS against a budget.
* :mod:`~zspool.pressure.monitor`: the sources folded into one level (:class:`PressureMonitor`).
* :mod:`~zspool.pressure.notify`: the kernel's pressure *notifications* (cgroup v1 vmpressure
  and usage thresholds, v2 ``memory.events``, PSI triggers) as descriptors to ``poll()``.
* :mod:`~zspool.pressure.source`: :class:`Unavailable` and the path type all of them share.

Every path is a constructor argument, so tests feed real-format files from a temporary
directory through the same parsers production uses.

Errors
------
A source that the kernel does not offer (file missing, PSI disabled, permission denied) is
*not* an error: high-level readers return an :class:`Unavailable` (falsy, with a
``reason``). Content that does not parse is a bug worth seeing: parsers raise
:class:`ValueError` naming the file and the line.
"""

from __future__ import annotations

from zspool.pressure.cgroup import (
    PROC_SELF_CGROUP,
    PROC_SELF_MOUNTINFO,
    CgroupDir,
    CgroupMemory,
    CgroupMemorySource,
    Mount,
    ProcCgroup,
    find_cgroup_dir,
    parse_mountinfo,
    parse_proc_cgroup,
    read_cgroup_memory,
)
from zspool.pressure.meminfo import PROC_MEMINFO, MemInfo, MemInfoSource, parse_meminfo, read_meminfo
from zspool.pressure.monitor import PressureMonitor, PressureReading, compute_level
from zspool.pressure.notify import (
    DEFAULT_USAGE_THRESHOLDS,
    LEVELS,
    Level,
    MemoryEventsNotifier,
    Notifier,
    PsiNotifier,
    UsageThresholdNotifier,
    VmpressureNotifier,
    Wakeup,
    cgroup_notifiers,
    parse_memory_events,
)
from zspool.pressure.psi import PROC_PRESSURE_MEMORY, PsiSource, PsiStall, PsiStats, parse_psi, read_psi
from zspool.pressure.psi_trigger import PsiTrigger, PsiTriggerSpec, register_psi_trigger
from zspool.pressure.rss import PROC_SELF_STATM, PROC_SELF_STATUS, RssSource, RssUsage, parse_statm, parse_status_vmrss
from zspool.pressure.source import StrPath, Unavailable

__all__ = [
    "PROC_PRESSURE_MEMORY",
    "PROC_MEMINFO",
    "PROC_SELF_CGROUP",
    "PROC_SELF_MOUNTINFO",
    "PROC_SELF_STATM",
    "PROC_SELF_STATUS",
    "StrPath",
    "Unavailable",
    "PsiStall",
    "PsiStats",
    "parse_psi",
    "read_psi",
    "PsiSource",
    "PsiTriggerSpec",
    "PsiTrigger",
    "register_psi_trigger",
    "ProcCgroup",
    "parse_proc_cgroup",
    "Mount",
    "parse_mountinfo",
    "CgroupDir",
    "find_cgroup_dir",
    "CgroupMemory",
    "read_cgroup_memory",
    "CgroupMemorySource",
    "MemInfo",
    "parse_meminfo",
    "read_meminfo",
    "MemInfoSource",
    "RssUsage",
    "parse_statm",
    "parse_status_vmrss",
    "RssSource",
    "PressureReading",
    "compute_level",
    "PressureMonitor",
    "Level",
    "LEVELS",
    "Wakeup",
    "Notifier",
    "VmpressureNotifier",
    "UsageThresholdNotifier",
    "MemoryEventsNotifier",
    "PsiNotifier",
    "parse_memory_events",
    "DEFAULT_USAGE_THRESHOLDS",
    "cgroup_notifiers",
]
