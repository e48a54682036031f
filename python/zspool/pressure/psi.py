"""PSI, the kernel's pressure stall information (``/proc/pressure/memory``, or a cgroup v2
``memory.pressure``), read and parsed.

The share of wall time in which at least one task (``some``) or every non-idle task
(``full``) was stalled on memory, as a *percentage* averaged over 10, 60 and 300 seconds,
plus a cumulative stall ``total`` in *microseconds*. Missing when the kernel has
``CONFIG_PSI=n`` or boots with ``psi=0`` (open fails with ENOENT, or the read fails with
EOPNOTSUPP). Kernels before 5.13 print no ``full`` line for CPU. Notifications (PSI
triggers) are in :mod:`zspool.pressure.psi_trigger`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from zspool.pressure.source import UNAVAILABLE_ERRNOS, StrPath, Unavailable, parse_error, read_text, unavailable_from

__all__ = ["PROC_PRESSURE_MEMORY", "PsiStall", "PsiStats", "parse_psi", "read_psi", "PsiSource"]

PROC_PRESSURE_MEMORY = "/proc/pressure/memory"


@dataclass(frozen=True)
class PsiStall:
    """One PSI line (``some`` or ``full``).

    ``avg10``/``avg60``/``avg300``: percent (0..100) of wall time stalled, averaged
    over 10/60/300 seconds. ``total_us``: cumulative stall time, microseconds.
    """

    avg10: float
    avg60: float
    avg300: float
    total_us: int


@dataclass(frozen=True)
class PsiStats:
    """A parsed PSI file. ``full`` is None where the kernel prints no ``full`` line."""

    some: PsiStall
    full: PsiStall | None
    source: str


_PSI_AVG = re.compile(r"\d+(?:\.\d+)?")
_PSI_KEYS = ("avg10", "avg60", "avg300", "total")


def parse_psi(text: str, source: str = "<psi>") -> PsiStats:
    """Parse PSI text (``some avg10=0.00 avg60=0.00 avg300=0.00 total=0`` lines).

    ``source`` names the file in errors. Raises :class:`ValueError` naming the file
    and line for an unknown or repeated line kind, a missing or malformed field, or
    a file with no ``some`` line. Unknown extra ``key=value`` fields are ignored.
    """
    stalls: dict[str, PsiStall] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        kind, *pairs = line.split()
        if kind not in ("some", "full"):
            raise parse_error(source, lineno, line, "expected a 'some' or 'full' line")
        if kind in stalls:
            raise parse_error(source, lineno, line, f"repeated '{kind}' line")
        values: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise parse_error(source, lineno, line, f"expected key=value, got {pair!r}")
            values[key] = value
        missing = [k for k in _PSI_KEYS if k not in values]
        if missing:
            raise parse_error(source, lineno, line, f"missing {', '.join(missing)}")
        for key in _PSI_KEYS[:3]:
            if not _PSI_AVG.fullmatch(values[key]) or float(values[key]) > 100.0:
                raise parse_error(source, lineno, line, f"{key} is not a percentage")
        if not values["total"].isdigit():
            raise parse_error(source, lineno, line, "total is not a microsecond count")
        stalls[kind] = PsiStall(
            avg10=float(values["avg10"]),
            avg60=float(values["avg60"]),
            avg300=float(values["avg300"]),
            total_us=int(values["total"]),
        )
    if "some" not in stalls:
        raise ValueError(f"{source}: no 'some' line in PSI data: {text[:120]!r}")
    return PsiStats(some=stalls["some"], full=stalls.get("full"), source=source)


def read_psi(path: StrPath = PROC_PRESSURE_MEMORY) -> PsiStats | Unavailable:
    """Read a PSI file; :class:`Unavailable` if PSI is disabled or the file missing.

    Malformed content raises :class:`ValueError` naming ``path`` and the line.
    """
    try:
        text = read_text(path)
    except OSError as exc:
        if exc.errno in UNAVAILABLE_ERRNOS:
            return unavailable_from(path, exc, "PSI unavailable")
        raise
    return parse_psi(text, os.fspath(path))


@dataclass(frozen=True)
class PsiSource:
    """System-wide (default) or any other PSI file, e.g. a cgroup's memory.pressure."""

    path: StrPath = PROC_PRESSURE_MEMORY

    def read(self) -> PsiStats | Unavailable:
        """See :func:`read_psi`."""
        return read_psi(self.path)
