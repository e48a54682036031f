"""Memory-pressure readers: PSI, cgroup memory, /proc/meminfo and process RSS.

This module owns *reading* pressure. It never compacts anything: a shrinker policy
asks a :class:`PressureMonitor` for a :class:`PressureReading` and decides what to
do (the memcached "automove" boundary: the pool knows how, policies decide when).
It imports only the standard library, so it can be used and tested without the
compiled ``zspool._core`` extension.

Signals and their units
-----------------------
* **PSI** (``/proc/pressure/memory``, cgroup v2 ``memory.pressure``): the share of
  wall time in which at least one task (``some``) or every non-idle task (``full``)
  was stalled on memory, as a *percentage* averaged over 10, 60 and 300 seconds,
  plus a cumulative stall ``total`` in *microseconds*. Missing when the kernel has
  ``CONFIG_PSI=n`` or boots with ``psi=0`` (open fails with ENOENT, or the read
  fails with EOPNOTSUPP). Kernels before 5.13 print no ``full`` line for CPU.
* **PSI triggers**: write ``"some <stall us> <window us>"`` to the pressure file
  opened ``O_RDWR | O_NONBLOCK``, then ``poll()`` for ``POLLPRI``. The kernel wants
  a window of 0.5..10 s and a stall no longer than the window; without
  ``CAP_SYS_RESOURCE`` (Linux >= 6.4) the window must be a multiple of 2 s.
* **cgroup memory** (*bytes*): v2 ``memory.current`` against ``memory.high``
  (throttling starts) and ``memory.max`` (OOM), where ``max`` means unlimited; v1
  ``memory.usage_in_bytes`` against ``memory.limit_in_bytes``, where the kernel's
  "unlimited" is a huge number (9223372036854771712 with 4 KiB pages).
* **/proc/meminfo**: ``MemTotal`` and ``MemAvailable`` (*bytes*; the file says kB,
  which means KiB). System-wide, so blind to a cgroup limit.
* **RSS**: resident pages from ``/proc/self/statm`` times the page size (*bytes*),
  or ``VmRSS`` from ``/proc/self/status``, measured against a caller's budget.

Every path is a constructor argument, so tests feed real-format files from a
temporary directory through the same parsers production uses.

Errors
------
A source that the kernel does not offer (file missing, PSI disabled, permission
denied) is *not* an error: high-level readers return an :class:`Unavailable`
(falsy, with a ``reason``). Content that does not parse is a bug worth seeing:
parsers raise :class:`ValueError` naming the file and the line.
"""

from __future__ import annotations

import errno
import math
import os
import re
import select
import time
import warnings
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Literal, TypeAlias, TypeVar

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
]

StrPath: TypeAlias = str | os.PathLike[str]
"""A filesystem path: ``str`` or any ``os.PathLike[str]``."""

PROC_PRESSURE_MEMORY = "/proc/pressure/memory"
PROC_MEMINFO = "/proc/meminfo"
PROC_SELF_CGROUP = "/proc/self/cgroup"
PROC_SELF_MOUNTINFO = "/proc/self/mountinfo"
PROC_SELF_STATM = "/proc/self/statm"
PROC_SELF_STATUS = "/proc/self/status"

# errnos meaning "the kernel does not offer this here", never "pressure":
# ENOENT/ENOTDIR (no such file: CONFIG_PSI=n, no cgroup), EOPNOTSUPP (psi=0 makes
# cgroup pressure files fail on read/write), EACCES/EPERM/EROFS (no permission),
# ENODEV (cgroup being removed).
_UNAVAILABLE_ERRNOS = frozenset(
    {errno.ENOENT, errno.ENOTDIR, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM,
     errno.EROFS, errno.ENODEV}
)
# The kernel refuses a trigger with these; the caller should poll instead.
_TRIGGER_REFUSED_ERRNOS = _UNAVAILABLE_ERRNOS | {errno.EINVAL}

# cgroup v1 prints PAGE_COUNTER_MAX * PAGE_SIZE (LONG_MAX rounded down to a page,
# 9223372036854771712 with 4 KiB pages) for "no limit". No machine has 4 EiB.
_V1_UNLIMITED_MIN = 1 << 62


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


def _read_text(path: StrPath) -> str:
    """Read a whole (proc/sysfs/cgroupfs) file; raises OSError."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return f.read()


def _unavailable_from(path: StrPath, exc: OSError, what: str) -> Unavailable:
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


def _parse_error(source: str, lineno: int, line: str, problem: str) -> ValueError:
    return ValueError(f"{source}:{lineno}: {problem}: {line!r}")


# --------------------------------------------------------------------------- PSI

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
            raise _parse_error(source, lineno, line, "expected a 'some' or 'full' line")
        if kind in stalls:
            raise _parse_error(source, lineno, line, f"repeated '{kind}' line")
        values: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise _parse_error(source, lineno, line, f"expected key=value, got {pair!r}")
            values[key] = value
        missing = [k for k in _PSI_KEYS if k not in values]
        if missing:
            raise _parse_error(source, lineno, line, f"missing {', '.join(missing)}")
        for key in _PSI_KEYS[:3]:
            if not _PSI_AVG.fullmatch(values[key]) or float(values[key]) > 100.0:
                raise _parse_error(source, lineno, line, f"{key} is not a percentage")
        if not values["total"].isdigit():
            raise _parse_error(source, lineno, line, "total is not a microsecond count")
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
        text = _read_text(path)
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return _unavailable_from(path, exc, "PSI unavailable")
        raise
    return parse_psi(text, os.fspath(path))


@dataclass(frozen=True)
class PsiSource:
    """System-wide (default) or any other PSI file, e.g. a cgroup's memory.pressure."""

    path: StrPath = PROC_PRESSURE_MEMORY

    def read(self) -> PsiStats | Unavailable:
        """See :func:`read_psi`."""
        return read_psi(self.path)


# ------------------------------------------------------------------ PSI triggers

_WINDOW_MIN_US = 500_000
_WINDOW_MAX_US = 10_000_000
_UNPRIVILEGED_WINDOW_STEP_US = 2_000_000


@dataclass(frozen=True)
class PsiTriggerSpec:
    """A PSI trigger: notify when tasks stall ``stall_us`` within any ``window_us``.

    ``kind`` is ``"some"`` (at least one task stalled) or ``"full"`` (all non-idle
    tasks stalled). Both times are microseconds. The kernel accepts a window of
    500 000..10 000 000 us (0.5..10 s) and 0 < stall <= window; the constructor
    checks the same, so a bad spec fails here rather than as EINVAL. The default
    is the kernel documentation's example, 150 ms of partial stall per 1 s.
    """

    kind: Literal["some", "full"] = "some"
    stall_us: int = 150_000
    window_us: int = 1_000_000

    def __post_init__(self) -> None:
        if self.kind not in ("some", "full"):
            raise ValueError(f"PSI trigger kind must be 'some' or 'full', not {self.kind!r}")
        if not _WINDOW_MIN_US <= self.window_us <= _WINDOW_MAX_US:
            raise ValueError(
                f"PSI trigger window_us={self.window_us} is outside the kernel's "
                f"{_WINDOW_MIN_US}..{_WINDOW_MAX_US} us (0.5..10 s)"
            )
        if not 0 < self.stall_us <= self.window_us:
            raise ValueError(
                f"PSI trigger stall_us={self.stall_us} must be > 0 and <= "
                f"window_us={self.window_us}"
            )

    def encode(self) -> bytes:
        """The bytes to write. The kernel overwrites the last byte written with a
        NUL, so the string carries its own terminator."""
        return f"{self.kind} {self.stall_us} {self.window_us}".encode("ascii") + b"\0"

    def unprivileged(self) -> PsiTriggerSpec:
        """The nearest spec an unprivileged process may register (Linux >= 6.4).

        The window is rounded up to a multiple of 2 s (at most 10 s) and the stall
        scaled by the same factor, so the stall *share* stays the same:
        ``some 150000 1000000`` becomes ``some 300000 2000000``.
        """
        step = _UNPRIVILEGED_WINDOW_STEP_US
        window = min(_WINDOW_MAX_US, -(-self.window_us // step) * step)
        if window == self.window_us:
            return self
        stall = min(window, max(1, round(self.stall_us * window / self.window_us)))
        return PsiTriggerSpec(self.kind, stall, window)


class PsiTrigger:
    """A registered PSI trigger: one fd, one trigger; closing the fd removes it.

    Use :func:`register_psi_trigger` to create one. ``spec`` is what the kernel
    accepted (it may be the 2 s-window fallback of ``requested``).
    """

    def __init__(self, fd: int, path: str, spec: PsiTriggerSpec,
                 requested: PsiTriggerSpec) -> None:
        self._fd: int | None = fd
        self.path = path
        self.spec = spec
        self.requested = requested
        self._poll = select.poll()
        self._poll.register(fd, select.POLLPRI)

    @property
    def fell_back(self) -> bool:
        """True if the kernel refused ``requested`` and the 2 s-window spec was used."""
        return self.spec != self.requested

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._fd is None

    def fileno(self) -> int:
        """The pressure file's descriptor, for the caller's own poll/epoll/selector
        (wait for ``POLLPRI``/``EPOLLPRI``)."""
        if self._fd is None:
            raise ValueError(f"PSI trigger on {self.path} is closed")
        return self._fd

    def wait(self, timeout_s: float | None) -> bool:
        """Block until the trigger fires (True) or ``timeout_s`` seconds pass (False).

        ``None`` waits forever. The kernel sends at most one event per window.
        ``POLLERR`` means the trigger's source is gone (e.g. the cgroup was
        removed); that raises :class:`OSError` (ENODEV) rather than reading as
        pressure, because it would otherwise return at once, forever.
        """
        fd = self.fileno()
        timeout_ms = None if timeout_s is None else max(0, math.ceil(timeout_s * 1000))
        for _, events in self._poll.poll(timeout_ms):
            if events & (select.POLLERR | select.POLLNVAL | select.POLLHUP):
                raise OSError(
                    errno.ENODEV,
                    f"PSI trigger source is gone (poll events {events:#x} on fd {fd}); "
                    "register again or fall back to polling",
                    self.path,
                )
            if events & select.POLLPRI:
                return True
        return False

    def close(self) -> None:
        """Remove the trigger (idempotent)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._poll.unregister(fd)
            os.close(fd)

    def __del__(self) -> None:
        # Like an unclosed file: say so, then release the fd (and the trigger).
        if getattr(self, "_fd", None) is not None:
            description = repr(self)
            self.close()
            warnings.warn(f"unclosed {description}", ResourceWarning, stacklevel=2)

    def __enter__(self) -> PsiTrigger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"PsiTrigger({self.path!r}, {self.spec}, {state})"


def _try_register(path: StrPath, spec: PsiTriggerSpec) -> int | OSError:
    try:
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        return exc
    try:
        os.write(fd, spec.encode())
    except OSError as exc:
        os.close(fd)
        return exc
    return fd


def register_psi_trigger(
    path: StrPath = PROC_PRESSURE_MEMORY,
    spec: PsiTriggerSpec = PsiTriggerSpec(),
    *,
    unprivileged_fallback: bool = True,
) -> PsiTrigger | Unavailable:
    """Register ``spec`` on the PSI file at ``path``.

    If the kernel refuses with EINVAL or EPERM and ``unprivileged_fallback`` is
    set, retry once with :meth:`PsiTriggerSpec.unprivileged` (processes without
    ``CAP_SYS_RESOURCE`` may only use 2 s-multiple windows). Returns a
    :class:`PsiTrigger`, or an :class:`Unavailable` (falsy) when the kernel will
    not have it (ENOENT, EACCES/EPERM, EINVAL, EOPNOTSUPP, ...): the caller should
    then poll :func:`read_psi` or another signal instead. Other OS errors raise.
    """
    result = _try_register(path, spec)
    used = spec
    if (isinstance(result, OSError) and unprivileged_fallback
            and result.errno in (errno.EINVAL, errno.EPERM)):
        fallback = spec.unprivileged()
        if fallback != spec:
            result, used = _try_register(path, fallback), fallback
    if isinstance(result, OSError):
        if result.errno in _TRIGGER_REFUSED_ERRNOS:
            what = f"PSI trigger '{used.encode()[:-1].decode()}' refused"
            if result.errno in (errno.EINVAL, errno.EPERM) and used.window_us % 2_000_000:
                what += " (without CAP_SYS_RESOURCE the window must be a multiple of 2 s)"
            return _unavailable_from(path, result, what)
        raise result
    return PsiTrigger(result, os.fspath(path), used, spec)


# ---------------------------------------------------------------- cgroup lookup

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
            raise _parse_error(source, lineno, line, "expected 'ID:controllers:/path'")
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
            raise _parse_error(source, lineno, line, "no ' - ' separator after 6 fields") from None
        if len(fields) < sep + 3:
            raise _parse_error(source, lineno, line,
                               "expected fstype, source and options after ' - '")
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
    relative = cgroup_path[len(root):].lstrip("/")
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
        membership = parse_proc_cgroup(_read_text(proc_self_cgroup), os.fspath(proc_self_cgroup))
        mounts = parse_mountinfo(_read_text(mountinfo), os.fspath(mountinfo))
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return _unavailable_from(exc.filename or proc_self_cgroup, exc, "cgroup lookup")
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
    text = _read_text(path)
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


def read_cgroup_memory(directory: StrPath, version: Literal[1, 2] | None = None
                       ) -> CgroupMemory | Unavailable:
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
            usage = _read_bytes_value(os.path.join(d, "memory.usage_in_bytes"),
                                      max_means_unlimited=False)
            if usage is None:
                raise ValueError(f"{os.path.join(d, 'memory.usage_in_bytes')}:1: implausible usage")
            limit = _read_bytes_value(os.path.join(d, "memory.limit_in_bytes"),
                                      max_means_unlimited=False)
            high = None
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return _unavailable_from(exc.filename or d, exc, "cgroup memory")
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
                    CgroupDir(self.directory, version) if version is not None else
                    Unavailable(self.directory,
                                "no memory.current (v2) or memory.usage_in_bytes (v1) here")
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


# ------------------------------------------------------------------- meminfo

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
            raise _parse_error(source, lineno, line, "expected 'Key: value [kB]'")
        key, value, unit = match.groups()
        if key in values:
            raise _parse_error(source, lineno, line, f"repeated key {key}")
        values[key] = int(value) * 1024 if unit else int(value)
    return values


def read_meminfo(path: StrPath = PROC_MEMINFO) -> MemInfo | Unavailable:
    """Read ``/proc/meminfo``. :class:`Unavailable` if the file is missing or has no
    ``MemAvailable`` (kernels before 3.14); ValueError if it has no ``MemTotal``."""
    source = os.fspath(path)
    try:
        values = parse_meminfo(_read_text(path), source)
    except OSError as exc:
        if exc.errno in _UNAVAILABLE_ERRNOS:
            return _unavailable_from(path, exc, "meminfo")
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


# ------------------------------------------------------------------------ RSS

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
                raise _parse_error(source, lineno, line, "expected 'VmRSS: <n> kB'")
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
            rss = parse_statm(_read_text(self.statm), self.page_size, os.fspath(self.statm))
        except OSError as exc:
            if exc.errno not in _UNAVAILABLE_ERRNOS:
                raise
            try:
                rss = parse_status_vmrss(_read_text(self.status), os.fspath(self.status))
            except OSError as exc2:
                if exc2.errno in _UNAVAILABLE_ERRNOS:
                    return _unavailable_from(self.status, exc2, "RSS")
                raise
        return RssUsage(rss, self.budget_bytes)

    def __repr__(self) -> str:
        return f"RssSource(budget_bytes={self.budget_bytes})"


# ------------------------------------------------------------- the level rule

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
    psi_full_scale_percent: float = 10.0,
    mem_available_healthy: float = 0.5,
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
        psi_full_scale_percent: float = 10.0,
        mem_available_healthy: float = 0.5,
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
            psi, cgroup, meminfo, rss,
            psi_full_scale_percent=self.psi_full_scale_percent,
            mem_available_healthy=self.mem_available_healthy,
        )
        return PressureReading(
            timestamp=timestamp, level=level, reason=reason, components=components,
            psi=psi, cgroup=cgroup, meminfo=meminfo, rss=rss,
            unavailable=tuple(unavailable),
        )

    def __repr__(self) -> str:
        return (f"PressureMonitor(psi={self.psi!r}, cgroup={self.cgroup!r}, "
                f"meminfo={self.meminfo!r}, rss={self.rss!r})")
