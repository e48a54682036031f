"""What every pressure reader shares: :class:`Unavailable`, the path type, and how a kernel
file is read.

A source that the kernel does not offer (file missing, PSI disabled, permission denied) is
*not* an error: readers return an :class:`Unavailable` (falsy, with a ``reason``). Content
that does not parse is a bug worth seeing: parsers raise :class:`ValueError` naming the file
and the line (:func:`parse_error`).

``read_text``, ``unavailable_from``, ``parse_error`` and ``UNAVAILABLE_ERRNOS`` are for the
readers in this package; they are not part of the public API.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["StrPath", "Unavailable"]

StrPath: TypeAlias = str | os.PathLike[str]
"""A filesystem path: ``str`` or any ``os.PathLike[str]``."""

# errnos meaning "the kernel does not offer this here", never "pressure":
# ENOENT/ENOTDIR (no such file: CONFIG_PSI=n, no cgroup), EOPNOTSUPP (psi=0 makes
# cgroup pressure files fail on read/write), EACCES/EPERM/EROFS (no permission),
# ENODEV (cgroup being removed).
UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENODEV}
)


@dataclass(frozen=True)
class Unavailable:
    """A signal the kernel does not offer here. Falsy, so ``if reading:`` works.

    ``source`` is the path (or signal name) that was tried, ``reason`` says why in
    words, ``errno`` is the OS error number when one caused it.
    """

    source: str
    reason: str
    errno: int | None = None

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def read_text(path: StrPath) -> str:
    """Read a whole (proc/sysfs/cgroupfs) file; raises OSError."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def unavailable_from(path: StrPath, exc: OSError, what: str) -> Unavailable:
    """Map an OSError with an 'unavailable' errno to an :class:`Unavailable`."""
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    hint = {
        errno.ENOENT: "no such file",
        errno.ENOTDIR: "no such file",
        errno.EOPNOTSUPP: "not supported (PSI disabled with psi=0?)",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENODEV: "device gone (cgroup removed?)",
        errno.EINVAL: "invalid argument",
    }.get(exc.errno or 0, exc.strerror or "error")
    return Unavailable(os.fspath(path), f"{what}: {hint} ({name})", exc.errno)


def parse_error(source: str, lineno: int, line: str, problem: str) -> ValueError:
    return ValueError(f"{source}:{lineno}: {problem}: {line!r}")
