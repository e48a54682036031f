"""``/proc/meminfo``: system-wide ``MemTotal`` and ``MemAvailable``.

Values are *bytes* (the file says kB, which means KiB). System-wide, so blind to a cgroup
limit: :mod:`zspool.pressure.cgroup` sees that.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from zspool.pressure.source import UNAVAILABLE_ERRNOS, StrPath, Unavailable, parse_error, read_text, unavailable_from

__all__ = ["PROC_MEMINFO", "MemInfo", "parse_meminfo", "read_meminfo", "MemInfoSource"]

PROC_MEMINFO = "/proc/meminfo"


@dataclass(frozen=True)
class MemInfo:
    """``/proc/meminfo``. ``fields`` holds every line: bytes for ``kB`` lines,
    plain counts for unit-less ones (``HugePages_Total``...)."""

    total_bytes: int
    available_bytes: int
    fields: Mapping[str, int] = field(repr=False)
    source: str = PROC_MEMINFO

    @property
    def available_fraction(self) -> float:
        """``MemAvailable / MemTotal``, 0..1."""
        return self.available_bytes / self.total_bytes if self.total_bytes else 0.0


_MEMINFO_LINE = re.compile(r"([^:\s]+):\s+(\d+)(?:\s+(kB))?\s*")


def parse_meminfo(text: str, source: str = PROC_MEMINFO) -> dict[str, int]:
    """Parse ``Key:   value kB`` lines into bytes (kB is KiB); unit-less lines stay
    counts. Raises ValueError naming ``source`` and the line for anything else or
    a repeated key."""
    values: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MEMINFO_LINE.fullmatch(line)
        if match is None:
            raise parse_error(source, lineno, line, "expected 'Key: value [kB]'")
        key, value, unit = match.groups()
        if key in values:
            raise parse_error(source, lineno, line, f"repeated key {key}")
        values[key] = int(value) * 1024 if unit else int(value)
    return values


def read_meminfo(path: StrPath = PROC_MEMINFO) -> MemInfo | Unavailable:
    """Read ``/proc/meminfo``. :class:`Unavailable` if the file is missing or has no
    ``MemAvailable`` (kernels before 3.14); ValueError if it has no ``MemTotal``."""
    source = os.fspath(path)
    try:
        values = parse_meminfo(read_text(path), source)
    except OSError as exc:
        if exc.errno in UNAVAILABLE_ERRNOS:
            return unavailable_from(path, exc, "meminfo")
        raise
    if "MemTotal" not in values:
        raise ValueError(f"{source}: no MemTotal line")
    if "MemAvailable" not in values:
        return Unavailable(source, "no MemAvailable line (kernel older than 3.14)")
    return MemInfo(values["MemTotal"], values["MemAvailable"], values, source)


@dataclass(frozen=True)
class MemInfoSource:
    """System memory from ``/proc/meminfo`` (or ``path``)."""

    path: StrPath = PROC_MEMINFO

    def read(self) -> MemInfo | Unavailable:
        """See :func:`read_meminfo`."""
        return read_meminfo(self.path)
