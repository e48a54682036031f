"""cgroup memory (v1 and v2): find this process's memory cgroup and read its usage and limits.

All values are *bytes*: v2 ``memory.current`` against ``memory.high`` (throttling starts)
and ``memory.max`` (OOM), where ``max`` means unlimited; v1 ``memory.usage_in_bytes``
against ``memory.limit_in_bytes``, where the kernel's "unlimited" is a huge number
(9223372036854771712 with 4 KiB pages). A v2 cgroup's own ``memory.pressure`` is read with
:func:`zspool.pressure.psi.read_psi`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from zspool.pressure.psi import PsiStats, read_psi
from zspool.pressure.source import UNAVAILABLE_ERRNOS, StrPath, Unavailable, parse_error, read_text, unavailable_from

__all__ = [
    "PROC_SELF_CGROUP",
    "PROC_SELF_MOUNTINFO",
    "ProcCgroup",
    "parse_proc_cgroup",
    "Mount",
    "parse_mountinfo",
    "CgroupDir",
    "find_cgroup_dir",
    "CgroupMemory",
    "read_cgroup_memory",
    "CgroupMemorySource",
]

PROC_SELF_CGROUP = "/proc/self/cgroup"
PROC_SELF_MOUNTINFO = "/proc/self/mountinfo"

# cgroup v1 prints PAGE_COUNTER_MAX * PAGE_SIZE (LONG_MAX rounded down to a page,
# 9223372036854771712 with 4 KiB pages) for "no limit". No machine has 4 EiB.
_V1_UNLIMITED_MIN = 1 << 62


@dataclass(frozen=True)
class ProcCgroup:
    """The process's cgroups from ``/proc/self/cgroup``.

    ``unified``: the v2 path from the ``0::/path`` line, or None. ``v1``: v1
    controller (or ``name=...`` hierarchy) -> path, e.g. ``{"memory": "/a/b"}``.
    """

    unified: str | None
    v1: Mapping[str, str] = field(default_factory=dict)


def parse_proc_cgroup(text: str, source: str = PROC_SELF_CGROUP) -> ProcCgroup:
    """Parse ``hierarchy-ID:controller,list:/path`` lines. Raises ValueError
    naming ``source`` and the line for a line that is not in that form."""
    unified: str | None = None
    v1: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise parse_error(source, lineno, line, "expected 'ID:controllers:/path'")
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path
        else:
            for controller in controllers.split(","):
                if controller:
                    v1[controller] = path
    return ProcCgroup(unified=unified, v1=v1)


@dataclass(frozen=True)
class Mount:
    """One ``/proc/self/mountinfo`` line (the fields zspool uses).

    ``root``: the directory of the filesystem mounted here (for cgroupfs, the
    cgroup shown at ``mount_point``). ``super_options``: e.g. ``("rw", "memory")``.
    """

    root: str
    mount_point: str
    fstype: str
    super_options: tuple[str, ...]


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mount_field(value: str) -> str:
    # The kernel writes space, tab, newline and backslash as \040, \011, \012, \134.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), value)


def parse_mountinfo(text: str, source: str = PROC_SELF_MOUNTINFO) -> list[Mount]:
    """Parse mountinfo lines (``proc(5)``): ``id parent major:minor root mount_point
    options [optional fields...] - fstype source super_options``. Raises ValueError
    naming ``source`` and the line if the ``-`` separator or fields are missing."""
    mounts: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            raise parse_error(source, lineno, line, "no ' - ' separator after 6 fields") from None
        if len(fields) < sep + 3:
            raise parse_error(source, lineno, line, "expected fstype, source and options after ' - '")
        mounts.append(
            Mount(
                root=_unescape_mount_field(fields[3]),
                mount_point=_unescape_mount_field(fields[4]),
                fstype=fields[sep + 1],
                super_options=tuple(fields[sep + 3].split(",")),
            )
        )
    return mounts


@dataclass(frozen=True)
class CgroupDir:
    """A memory cgroup directory and its hierarchy version (1 or 2)."""

    path: str
    version: Literal[1, 2]


def _cgroup_path_under(mount: Mount, cgroup_path: str) -> str | None:
    """Where ``cgroup_path`` (from /proc/self/cgroup) lives under ``mount``, or None
    if this mount does not show it (a bind mount of some other subtree)."""
    root = mount.root.rstrip("/")
    if cgroup_path != root and not cgroup_path.startswith(root + "/"):
        return None
    relative = cgroup_path[len(root) :].lstrip("/")
    return os.path.join(mount.mount_point, relative) if relative else mount.mount_point


def find_cgroup_dir(
    proc_self_cgroup: StrPath = PROC_SELF_CGROUP,
    mountinfo: StrPath = PROC_SELF_MOUNTINFO,
) -> CgroupDir | Unavailable:
    """Find this process's memory cgroup directory.

    Prefers v2: the ``0::`` path under a ``cgroup2`` mount, if that directory has
    ``memory.current`` (the memory controller is enabled there; the root cgroup
    never has it). Otherwise v1: the ``memory`` controller's path under a
    ``cgroup`` mount whose super options include ``memory``, if it has
    ``memory.usage_in_bytes``. Hybrid hosts (v1 memory plus an empty unified
    hierarchy) therefore resolve to v1.
    """
    try:
        membership = parse_proc_cgroup(read_text(proc_self_cgroup), os.fspath(proc_self_cgroup))
        mounts = parse_mountinfo(read_text(mountinfo), os.fspath(mountinfo))
    except OSError as exc:
        if exc.errno in UNAVAILABLE_ERRNOS:
            return unavailable_from(exc.filename or proc_self_cgroup, exc, "cgroup lookup")
        raise
    if membership.unified is not None:
        for mount in mounts:
            if mount.fstype == "cgroup2":
                path = _cgroup_path_under(mount, membership.unified)
                if path and os.path.exists(os.path.join(path, "memory.current")):
                    return CgroupDir(path, 2)
    v1_path = membership.v1.get("memory")
    if v1_path is not None:
        for mount in mounts:
            if mount.fstype == "cgroup" and "memory" in mount.super_options:
                path = _cgroup_path_under(mount, v1_path)
                if path and os.path.exists(os.path.join(path, "memory.usage_in_bytes")):
                    return CgroupDir(path, 1)
    return Unavailable(
        "cgroup",
        f"no memory cgroup found for this process (v2 {membership.unified!r}, "
        f"v1 memory {v1_path!r}) in {os.fspath(mountinfo)}",
    )


# --------------------------------------------------------------- cgroup memory


@dataclass(frozen=True)
class CgroupMemory:
    """Memory use of one cgroup, in bytes.

    ``limit_bytes``: the hard limit (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), None if unlimited. ``high_bytes``: v2
    ``memory.high`` (throttling and direct reclaim start here), None if unlimited
    or v1. ``psi``: the cgroup's ``memory.pressure`` if it has one.
    """

    path: str
    version: Literal[1, 2]
    usage_bytes: int
    limit_bytes: int | None
    high_bytes: int | None
    psi: PsiStats | None = None

    @property
    def effective_limit_bytes(self) -> int | None:
        """The lower of ``high_bytes`` and ``limit_bytes``, None if both unlimited."""
        limits = [b for b in (self.high_bytes, self.limit_bytes) if b is not None]
        return min(limits) if limits else None

    @property
    def usage_fraction(self) -> float | None:
        """``usage_bytes / effective_limit_bytes`` (may exceed 1.0 above
        ``memory.high``), None if unlimited."""
        limit = self.effective_limit_bytes
        if limit is None:
            return None
        return self.usage_bytes / limit if limit > 0 else math.inf


def _read_bytes_value(path: str, *, max_means_unlimited: bool) -> int | None:
    """One cgroup integer file, in bytes; None for 'max' (v2) or the v1 huge value."""
    text = read_text(path)
    value = text.strip()
    if max_means_unlimited and value == "max":
        return None
    if not value.isdigit():
        raise ValueError(f"{path}:1: expected a byte count or 'max': {text[:80]!r}")
    number = int(value)
    if not max_means_unlimited and number >= _V1_UNLIMITED_MIN:
        return None
    return number


def _detect_version(directory: str) -> Literal[1, 2] | None:
    if os.path.exists(os.path.join(directory, "memory.current")):
        return 2
    if os.path.exists(os.path.join(directory, "memory.usage_in_bytes")):
        return 1
    return None


def read_cgroup_memory(directory: StrPath, version: Literal[1, 2] | None = None) -> CgroupMemory | Unavailable:
    """Read a cgroup's memory files from ``directory``.

    ``version`` None detects it from which files exist (``memory.current`` -> v2,
    ``memory.usage_in_bytes`` -> v1). Returns :class:`Unavailable` if the files are
    missing or unreadable; raises ValueError naming the file for bad content.
    """
    d = os.fspath(directory)
    if version is None:
        version = _detect_version(d)
        if version is None:
            return Unavailable(d, "no memory.current (v2) or memory.usage_in_bytes (v1) here")
    try:
        if version == 2:
            usage = _read_bytes_value(os.path.join(d, "memory.current"), max_means_unlimited=True)
            if usage is None:
                raise ValueError(f"{os.path.join(d, 'memory.current')}:1: usage cannot be 'max'")
            limit = _read_bytes_value(os.path.join(d, "memory.max"), max_means_unlimited=True)
            high = _read_bytes_value(os.path.join(d, "memory.high"), max_means_unlimited=True)
        else:
            usage = _read_bytes_value(os.path.join(d, "memory.usage_in_bytes"), max_means_unlimited=False)
            if usage is None:
                raise ValueError(f"{os.path.join(d, 'memory.usage_in_bytes')}:1: implausible usage")
            limit = _read_bytes_value(os.path.join(d, "memory.limit_in_bytes"), max_means_unlimited=False)
            high = None
    except OSError as exc:
        if exc.errno in UNAVAILABLE_ERRNOS:
            return unavailable_from(exc.filename or d, exc, "cgroup memory")
        raise
    psi = read_psi(os.path.join(d, "memory.pressure"))
    return CgroupMemory(d, version, usage, limit, high, psi if isinstance(psi, PsiStats) else None)


class CgroupMemorySource:
    """This process's memory cgroup (detected) or an explicit ``directory``.

    Detection reads ``proc_self_cgroup`` and ``mountinfo`` once, on the first
    :meth:`read`, and is cached (a process rarely changes cgroup).
    """

    def __init__(
        self,
        directory: StrPath | None = None,
        *,
        proc_self_cgroup: StrPath = PROC_SELF_CGROUP,
        mountinfo: StrPath = PROC_SELF_MOUNTINFO,
    ) -> None:
        self.directory = None if directory is None else os.fspath(directory)
        self.proc_self_cgroup = proc_self_cgroup
        self.mountinfo = mountinfo
        self._found: CgroupDir | Unavailable | None = None

    def locate(self) -> CgroupDir | Unavailable:
        """The cgroup directory and version (detected once, then cached), or why
        there is none."""
        if self._found is None:
            if self.directory is None:
                self._found = find_cgroup_dir(self.proc_self_cgroup, self.mountinfo)
            else:
                version = _detect_version(self.directory)
                self._found = (
                    CgroupDir(self.directory, version)
                    if version is not None
                    else Unavailable(self.directory, "no memory.current (v2) or memory.usage_in_bytes (v1) here")
                )
        return self._found

    def read(self) -> CgroupMemory | Unavailable:
        """See :func:`read_cgroup_memory`."""
        where = self.locate()
        if isinstance(where, Unavailable):
            return where
        return read_cgroup_memory(where.path, where.version)

    def __repr__(self) -> str:
        return f"CgroupMemorySource({self.directory!r})"
