"""A memory cgroup (v1) that a test or benchmark creates, fills with processes and removes.

``MemoryCgroup.create(limit_bytes)`` makes ``<parent>/<prefix><owner pid>-<n>`` with
``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` where the kernel accounts
swap, so the limit cannot be dodged by swapping) and returns it; :meth:`MemoryCgroup.remove`
(or leaving the ``with`` block) kills every process still inside, waits for the cgroup to
empty and removes the directory, whatever happened in between.

A run that was killed outright cannot clean up after itself, so :meth:`MemoryCgroup.create`
first removes the leftovers of earlier runs: every directory under ``parent`` named with
the prefix whose owner pid is no longer alive. Children started with :meth:`popen` join the
cgroup before they exec (so the interpreter itself is charged to it) and die with their
parent (``PR_SET_PDEATHSIG``), so a killed run leaves an empty cgroup at worst.

The parent is the root of the v1 memory hierarchy (``/sys/fs/cgroup/memory``), or
``$ZSPOOL_CGROUP_PARENT``. :func:`writable_memory_cgroup_parent` says whether there is one
this process may use, or why not.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from zspool.pressure import Unavailable

__all__ = [
    "PARENT_ENV",
    "PREFIX",
    "V1_MEMORY_ROOT",
    "MemoryCgroup",
    "writable_memory_cgroup_parent",
]

V1_MEMORY_ROOT = "/sys/fs/cgroup/memory"
PARENT_ENV = "ZSPOOL_CGROUP_PARENT"
#: Every cgroup the tests and benchmarks create is named with this prefix (and only those).
PREFIX = "zspool-test-"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_serial = itertools.count()


def writable_memory_cgroup_parent() -> Path | Unavailable:
    """The v1 memory cgroup directory new cgroups go under, or why there is none here."""
    parent = Path(os.environ.get(PARENT_ENV, V1_MEMORY_ROOT))
    if not (parent / "memory.limit_in_bytes").exists():
        return Unavailable(os.fspath(parent), "no cgroup v1 memory controller mounted here")
    if not os.access(parent, os.W_OK):
        return Unavailable(os.fspath(parent), "not writable (run as root)", errno.EACCES)
    return parent


def _owner_alive(name: str) -> bool:
    owner = name[len(PREFIX) :].split("-", 1)[0]
    if not owner.isdigit():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class MemoryCgroup:
    """One v1 memory cgroup this process created; see the module docstring.

    ``path`` is its directory. Counters are read live from the kernel's files.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, limit_bytes: int, *, parent: Path | None = None, swap: bool = False) -> MemoryCgroup:
        """Remove leftovers, then create a cgroup limited to ``limit_bytes`` of memory
        (and, unless ``swap``, of memory plus swap). Raises OSError if the kernel refuses."""
        found = writable_memory_cgroup_parent() if parent is None else parent
        if isinstance(found, Unavailable):
            raise OSError(found.errno or errno.ENOENT, str(found))
        cls.remove_leftovers(found)
        path = found / f"{PREFIX}{os.getpid()}-{next(_serial)}"
        path.mkdir()
        cgroup = cls(path)
        try:
            cgroup.write("memory.limit_in_bytes", limit_bytes)
            if not swap and (path / "memory.memsw.limit_in_bytes").exists():
                cgroup.write("memory.memsw.limit_in_bytes", limit_bytes)
        except BaseException:
            cgroup.remove()
            raise
        return cgroup

    @classmethod
    def remove_leftovers(cls, parent: Path) -> list[Path]:
        """Remove every ``PREFIX`` cgroup under ``parent`` whose owner is dead; returns them."""
        removed = []
        for entry in parent.iterdir():
            if entry.name.startswith(PREFIX) and entry.is_dir() and not _owner_alive(entry.name):
                cls(entry).remove()
                removed.append(entry)
        return removed

    # -- the kernel's files --------------------------------------------------

    def write(self, name: str, value: int | str) -> None:
        (self.path / name).write_text(str(value))

    def read_int(self, name: str) -> int:
        return int((self.path / name).read_text())

    def read_keyed(self, name: str) -> dict[str, int]:
        """A ``key value`` file (``memory.oom_control``, ``memory.stat``)."""
        pairs = (line.split() for line in (self.path / name).read_text().splitlines() if line.strip())
        return {key: int(value) for key, value in pairs}

    @property
    def usage_bytes(self) -> int:
        return self.read_int("memory.usage_in_bytes")

    @property
    def limit_bytes(self) -> int:
        return self.read_int("memory.limit_in_bytes")

    @property
    def oom_kills(self) -> int:
        """Processes the OOM killer killed in this cgroup (``memory.oom_control`` oom_kill)."""
        return self.read_keyed("memory.oom_control").get("oom_kill", 0)

    @property
    def failcnt(self) -> int:
        """Times a charge hit the limit (``memory.failcnt``)."""
        return self.read_int("memory.failcnt")

    @property
    def max_usage_bytes(self) -> int:
        """Peak usage since creation or :meth:`reset_peak`."""
        return self.read_int("memory.max_usage_in_bytes")

    def reset_peak(self) -> None:
        self.write("memory.max_usage_in_bytes", 0)

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    # -- processes -----------------------------------------------------------

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start ``argv`` inside this cgroup (joined before exec) as a child that gets
        SIGKILL when this process dies. ``kwargs`` go to :class:`subprocess.Popen`."""
        procs = os.fspath(self.path / "cgroup.procs")

        def join() -> None:
            # Between fork and exec: only async-signal-safe work (open, write, prctl).
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            fd = os.open(procs, os.O_WRONLY)
            os.write(fd, b"0")  # 0: the writing process itself
            os.close(fd)

        return subprocess.Popen(argv, preexec_fn=join, text=True, **kwargs)

    def kill_all(self, timeout_s: float = 5.0) -> None:
        """SIGKILL every process inside and wait until the cgroup is empty."""
        deadline = time.monotonic() + timeout_s
        while pids := self.pids():
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.path} still has processes {pids} after {timeout_s} s")
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is inside and remove the directory (idempotent)."""
        if not self.path.exists():
            return
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.01)  # the last task is exiting; its charge is being dropped
        self.path.rmdir()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"MemoryCgroup({os.fspath(self.path)!r})"
