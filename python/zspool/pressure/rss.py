"""This process's resident set size, measured against a caller's budget.

Resident pages from ``/proc/self/statm`` times the page size (*bytes*), or ``VmRSS`` from
``/proc/self/status``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from zspool.pressure.source import UNAVAILABLE_ERRNOS, StrPath, Unavailable, parse_error, read_text, unavailable_from

__all__ = ["PROC_SELF_STATM", "PROC_SELF_STATUS", "RssUsage", "parse_statm", "parse_status_vmrss", "RssSource"]

PROC_SELF_STATM = "/proc/self/statm"
PROC_SELF_STATUS = "/proc/self/status"


@dataclass(frozen=True)
class RssUsage:
    """Process resident set size against a caller's budget, both in bytes."""

    rss_bytes: int
    budget_bytes: int

    @property
    def fraction(self) -> float:
        """``rss_bytes / budget_bytes``; above 1.0 when over budget."""
        return self.rss_bytes / self.budget_bytes


def parse_statm(text: str, page_size: int, source: str = PROC_SELF_STATM) -> int:
    """Resident bytes from ``/proc/self/statm`` (``size resident shared ...`` in
    pages). Raises ValueError naming ``source`` if the second field is missing."""
    fields = text.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ValueError(f"{source}:1: expected 'size resident ...' page counts: {text[:80]!r}")
    return int(fields[1]) * page_size


def parse_status_vmrss(text: str, source: str = PROC_SELF_STATUS) -> int:
    """Resident bytes from the ``VmRSS:  1234 kB`` line of ``/proc/self/status``."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) != 3 or not parts[1].isdigit() or parts[2] != "kB":
                raise parse_error(source, lineno, line, "expected 'VmRSS: <n> kB'")
            return int(parts[1]) * 1024
    raise ValueError(f"{source}: no VmRSS line (kernel thread?)")


class RssSource:
    """This process's RSS against ``budget_bytes``.

    Reads ``statm`` (cheapest) and falls back to ``status`` VmRSS if ``statm`` is
    unavailable. ``page_size`` defaults to ``os.sysconf('SC_PAGE_SIZE')``.
    """

    def __init__(
        self,
        budget_bytes: int,
        *,
        statm: StrPath = PROC_SELF_STATM,
        status: StrPath = PROC_SELF_STATUS,
        page_size: int | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"RSS budget_bytes must be > 0, got {budget_bytes}")
        self.budget_bytes = budget_bytes
        self.statm = statm
        self.status = status
        self.page_size = page_size if page_size is not None else os.sysconf("SC_PAGE_SIZE")

    def read(self) -> RssUsage | Unavailable:
        """Current RSS; :class:`Unavailable` if neither file can be read."""
        try:
            rss = parse_statm(read_text(self.statm), self.page_size, os.fspath(self.statm))
        except OSError as exc:
            if exc.errno not in UNAVAILABLE_ERRNOS:
                raise
            try:
                rss = parse_status_vmrss(read_text(self.status), os.fspath(self.status))
            except OSError as exc2:
                if exc2.errno in UNAVAILABLE_ERRNOS:
                    return unavailable_from(self.status, exc2, "RSS")
                raise
        return RssUsage(rss, self.budget_bytes)

    def __repr__(self) -> str:
        return f"RssSource(budget_bytes={self.budget_bytes})"
