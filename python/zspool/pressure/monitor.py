"""The pressure level: every configured source read at once and folded into one number in
[0, 1] (:class:`PressureMonitor`, :func:`compute_level`, :class:`PressureReading`)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from zspool.pressure.cgroup import CgroupMemory, CgroupMemorySource
from zspool.pressure.meminfo import MemInfo, MemInfoSource
from zspool.pressure.psi import PsiSource, PsiStats
from zspool.pressure.rss import RssSource, RssUsage
from zspool.pressure.source import Unavailable

__all__ = ["PressureReading", "compute_level", "PressureMonitor"]

#: The default of ``psi_full_scale_percent``: PSI ``some avg10`` (percent) that reads as level 1.
PSI_FULL_SCALE_PERCENT = 10.0
#: The default of ``mem_available_healthy``: the MemAvailable share at and above which meminfo reads 0.
MEM_AVAILABLE_HEALTHY = 0.5

_SIGNALS = ("psi", "cgroup_psi", "cgroup", "meminfo", "rss")


def _check_tuning(psi_full_scale_percent: float, mem_available_healthy: float) -> None:
    if not psi_full_scale_percent > 0:
        raise ValueError(f"psi_full_scale_percent must be > 0, got {psi_full_scale_percent}")
    if not 0 < mem_available_healthy <= 1:
        raise ValueError(f"mem_available_healthy must be in (0, 1], got {mem_available_healthy}")


def compute_level(
    psi: PsiStats | None = None,
    cgroup: CgroupMemory | None = None,
    meminfo: MemInfo | None = None,
    rss: RssUsage | None = None,
    *,
    psi_full_scale_percent: float = PSI_FULL_SCALE_PERCENT,
    mem_available_healthy: float = MEM_AVAILABLE_HEALTHY,
) -> tuple[float, str, dict[str, float]]:
    """Fold the signals into one level in [0, 1]; see :class:`PressureMonitor`.

    Returns ``(level, reason, components)``: ``components`` maps each signal that
    was available to its own level, ``reason`` names the largest one (first in
    the order psi, cgroup_psi, cgroup, meminfo, rss on a tie), or ``"none"`` when
    every component is 0 or nothing was available.
    """
    _check_tuning(psi_full_scale_percent, mem_available_healthy)

    def clamp(x: float) -> float:
        return min(1.0, max(0.0, x))

    components: dict[str, float] = {}
    if psi is not None:
        components["psi"] = clamp(psi.some.avg10 / psi_full_scale_percent)
    if cgroup is not None:
        if cgroup.psi is not None:
            components["cgroup_psi"] = clamp(cgroup.psi.some.avg10 / psi_full_scale_percent)
        fraction = cgroup.usage_fraction
        if fraction is not None:
            components["cgroup"] = clamp(fraction)
    if meminfo is not None:
        components["meminfo"] = clamp(1.0 - meminfo.available_fraction / mem_available_healthy)
    if rss is not None:
        components["rss"] = clamp(rss.fraction)
    level, reason = 0.0, "none"
    for name in _SIGNALS:
        if components.get(name, 0.0) > level:
            level, reason = components[name], name
    return level, reason, components


@dataclass(frozen=True)
class PressureReading:
    """One snapshot of every configured signal, and the level folded from them.

    ``level`` is in [0, 1] (see :class:`PressureMonitor` for the rule), ``reason``
    names the dominating signal (``"psi"``, ``"cgroup_psi"``, ``"cgroup"``,
    ``"meminfo"``, ``"rss"``, or ``"none"``), ``components`` each signal's own
    level. ``timestamp`` is ``time.monotonic()`` seconds. A signal that was not
    configured or not available is None; ``unavailable`` says why for the latter.
    """

    timestamp: float
    level: float
    reason: str
    components: Mapping[str, float]
    psi: PsiStats | None
    cgroup: CgroupMemory | None
    meminfo: MemInfo | None
    rss: RssUsage | None
    unavailable: tuple[Unavailable, ...] = ()

    @property
    def psi_some_avg10(self) -> float | None:
        """System PSI ``some avg10``, percent."""
        return None if self.psi is None else self.psi.some.avg10

    @property
    def cgroup_fraction(self) -> float | None:
        """cgroup usage / (lower of high and max); None if no cgroup or unlimited."""
        return None if self.cgroup is None else self.cgroup.usage_fraction

    @property
    def mem_available_fraction(self) -> float | None:
        """``MemAvailable / MemTotal``, 0..1."""
        return None if self.meminfo is None else self.meminfo.available_fraction

    @property
    def rss_fraction(self) -> float | None:
        """RSS / budget."""
        return None if self.rss is None else self.rss.fraction


_Auto = Literal["auto"]
_T = TypeVar("_T")


def _available(result: _T | Unavailable | None, sink: list[Unavailable]) -> _T | None:
    """``result`` itself, or None after noting an :class:`Unavailable` in ``sink``."""
    if isinstance(result, Unavailable):
        sink.append(result)
        return None
    return result


class PressureMonitor:
    """Owns the configured pressure sources and folds them into a level.

    Each source is ``"auto"`` (the standard kernel file for this process), None
    (not read) or a configured source object with its own paths:

    * ``psi``: :class:`PsiSource`, default ``/proc/pressure/memory``.
    * ``cgroup``: :class:`CgroupMemorySource`, default: detected from
      ``/proc/self/cgroup`` and ``/proc/self/mountinfo``.
    * ``meminfo``: :class:`MemInfoSource`, default ``/proc/meminfo``.
    * ``rss``: :class:`RssSource`; off unless given (it needs a budget).

    The level rule: ``level = max(components)``, each component clamped to
    [0, 1]:

    * ``psi``, ``cgroup_psi``: ``some avg10`` (percent of the last 10 s stalled)
      divided by ``psi_full_scale_percent`` (default 10 %, i.e. systemd's default
      of 100 ms stall per 1 s; Android lmkd calls 7 % "medium").
    * ``cgroup``: ``usage / min(memory.high, memory.max)`` (v1:
      ``usage / limit``), omitted when unlimited.
    * ``meminfo``: ``1 - (MemAvailable / MemTotal) / mem_available_healthy``, so
      any host with at least ``mem_available_healthy`` (default 0.5) of its memory
      available reads 0, and the level rises linearly to 1 as MemAvailable falls
      to 0 (25 % available -> 0.5, 5 % -> 0.9).
    * ``rss``: ``RSS / budget``.

    ``reason`` names the component that gave the maximum. Malformed kernel files
    raise ValueError from :meth:`read`; unavailable ones are listed in
    ``PressureReading.unavailable``.
    """

    def __init__(
        self,
        *,
        psi: PsiSource | _Auto | None = "auto",
        cgroup: CgroupMemorySource | _Auto | None = "auto",
        meminfo: MemInfoSource | _Auto | None = "auto",
        rss: RssSource | None = None,
        psi_full_scale_percent: float = PSI_FULL_SCALE_PERCENT,
        mem_available_healthy: float = MEM_AVAILABLE_HEALTHY,
    ) -> None:
        self.psi = PsiSource() if psi == "auto" else psi
        self.cgroup = CgroupMemorySource() if cgroup == "auto" else cgroup
        self.meminfo = MemInfoSource() if meminfo == "auto" else meminfo
        self.rss = rss
        self.psi_full_scale_percent = psi_full_scale_percent
        self.mem_available_healthy = mem_available_healthy
        _check_tuning(psi_full_scale_percent, mem_available_healthy)

    def read(self) -> PressureReading:
        """Read every configured source once and return a :class:`PressureReading`."""
        timestamp = time.monotonic()
        unavailable: list[Unavailable] = []
        psi = _available(self.psi.read() if self.psi is not None else None, unavailable)
        cgroup = _available(self.cgroup.read() if self.cgroup is not None else None, unavailable)
        meminfo = _available(self.meminfo.read() if self.meminfo is not None else None, unavailable)
        rss = _available(self.rss.read() if self.rss is not None else None, unavailable)
        level, reason, components = compute_level(
            psi,
            cgroup,
            meminfo,
            rss,
            psi_full_scale_percent=self.psi_full_scale_percent,
            mem_available_healthy=self.mem_available_healthy,
        )
        return PressureReading(
            timestamp=timestamp,
            level=level,
            reason=reason,
            components=components,
            psi=psi,
            cgroup=cgroup,
            meminfo=meminfo,
            rss=rss,
            unavailable=tuple(unavailable),
        )

    def __repr__(self) -> str:
        return f"PressureMonitor(psi={self.psi!r}, cgroup={self.cgroup!r}, meminfo={self.meminfo!r}, rss={self.rss!r})"
