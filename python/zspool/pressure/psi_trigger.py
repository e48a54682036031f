"""PSI triggers: be woken when memory stalls pass a threshold, instead of polling.

Write ``"some <stall us> <window us>"`` to the pressure file opened ``O_RDWR | O_NONBLOCK``,
then ``poll()`` for ``POLLPRI``. The kernel wants a window of 0.5..10 s and a stall no
longer than the window; without ``CAP_SYS_RESOURCE`` (Linux >= 6.4) the window must be a
multiple of 2 s. See ``Documentation/accounting/psi.rst``.
"""

from __future__ import annotations

import errno
import math
import os
import select
import warnings
from dataclasses import dataclass
from typing import Literal

from zspool.pressure.psi import PROC_PRESSURE_MEMORY
from zspool.pressure.source import UNAVAILABLE_ERRNOS, StrPath, Unavailable, unavailable_from

__all__ = ["PsiTriggerSpec", "PsiTrigger", "register_psi_trigger"]

# The kernel refuses a trigger with these; the caller should poll instead.
_TRIGGER_REFUSED_ERRNOS = UNAVAILABLE_ERRNOS | {errno.EINVAL}

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
            raise ValueError(f"PSI trigger stall_us={self.stall_us} must be > 0 and <= window_us={self.window_us}")

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

    def __init__(self, fd: int, path: str, spec: PsiTriggerSpec, requested: PsiTriggerSpec) -> None:
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
    if isinstance(result, OSError) and unprivileged_fallback and result.errno in (errno.EINVAL, errno.EPERM):
        fallback = spec.unprivileged()
        if fallback != spec:
            result, used = _try_register(path, fallback), fallback
    if isinstance(result, OSError):
        if result.errno in _TRIGGER_REFUSED_ERRNOS:
            what = f"PSI trigger '{used.encode()[:-1].decode()}' refused"
            if result.errno in (errno.EINVAL, errno.EPERM) and used.window_us % _UNPRIVILEGED_WINDOW_STEP_US:
                what += " (without CAP_SYS_RESOURCE the window must be a multiple of 2 s)"
            return unavailable_from(path, result, what)
        raise result
    return PsiTrigger(result, os.fspath(path), used, spec)
