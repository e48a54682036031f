"""What the SharedCache tests share: file names that clean up after themselves, checksummed
values, and forked worker processes with bounded waits.

Every file a test creates is ``/dev/shm/zspool-test-<pid>-<n>`` (or starts with it); 
:func:`shm_file` removes it, and anything else that starts with it, afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import signal
import struct
import time
import traceback
import zlib
from collections.abc import Callable, Iterator

import pytest

SHM = "/dev/shm"
_counter = itertools.count()


def new_shm_path() -> str:
    return os.path.join(SHM, f"zspool-test-{os.getpid()}-{next(_counter)}")


def remove_all(path: str) -> None:
    """The file and every file whose name starts with its name (a creator's temporary files)."""
    for name in glob.glob(glob.escape(path) + "*") + glob.glob(os.path.join(SHM, "*" + os.path.basename(path) + "*")):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def shm_file() -> Iterator[str]:
    """A fresh test file name, and its removal afterwards (the body of each test module's
    ``shm_path`` fixture)."""
    path = new_shm_path()
    try:
        yield path
    finally:
        remove_all(path)


# -- checksummed values: key, writer, version, filler, crc32 -----------------------------------

_HEAD = struct.Struct("<HHQI")  # key length, writer, version, filler length


def make_value(key: str, writer: int, version: int, size: int) -> bytes:
    k = key.encode()
    filler_len = max(0, size - _HEAD.size - len(k) - 4)
    filler = os.urandom(filler_len)  # incompressible: the budget is reached with compression too
    body = _HEAD.pack(len(k), writer, version, filler_len) + k + filler
    return body + struct.pack("<I", zlib.crc32(body))


def check_value(key: str, value: bytes) -> tuple[int, int]:
    """(writer, version) of a value read under ``key``; AssertionError if it is not a whole,
    intact value written under that key."""
    assert isinstance(value, bytes), f"{key}: got {type(value).__name__}, not bytes"
    assert len(value) >= _HEAD.size + 4, f"{key}: value of {len(value)} bytes is too short"
    body, crc = value[:-4], struct.unpack("<I", value[-4:])[0]
    assert zlib.crc32(body) == crc, f"{key}: torn or corrupt value (crc mismatch, {len(value)} bytes)"
    klen, writer, version, filler_len = _HEAD.unpack_from(body)
    k = body[_HEAD.size : _HEAD.size + klen].decode()
    assert k == key, f"read {key!r} but got the value of {k!r}"
    assert len(body) == _HEAD.size + klen + filler_len, f"{key}: wrong length"
    return writer, version


# -- forked processes ---------------------------------------------------------------------------


def fork_worker(target: Callable[[], None], error_file: str | None = None) -> int:
    """Fork a child that runs ``target`` and exits 0, or 1 after writing the traceback to
    ``error_file`` (the child never returns into pytest)."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            target()
            status = 0
        except BaseException:  # noqa: BLE001  # the child reports any failure, then exits
            if error_file is not None:
                with open(error_file, "a") as f:
                    f.write(f"[pid {os.getpid()}]\n{traceback.format_exc()}\n")
            else:
                traceback.print_exc()
        finally:
            os._exit(status)
    return pid


def wait_exit(pid: int, timeout_s: float) -> int:
    """The exit status of child ``pid`` (-signal if killed); kills it and fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"child {pid} did not exit within {timeout_s} s (hung?)")
        time.sleep(0.01)


def read_errors(path: str) -> str:
    """What failed workers wrote to ``path`` (empty if none did)."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def file_blocks_bytes(path: str) -> int:
    """Bytes the file really occupies (st_blocks is in 512-byte units)."""
    return os.stat(path).st_blocks * 512


def meminfo_shmem_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")
