"""Debian's valkey-server and memcached, started by a benchmark and stopped by PID.

Each server runs in a scratch directory of its own with no persistence, listening on a unix
socket in that directory or on 127.0.0.1 on a free port, and is stopped by the PID of the
process started here, never by name. ``make contrib-deps`` installs both
(tests/contrib/install-servers.sh); a missing binary stops the benchmark with that advice.

    with valkey() as address: valkey.Valkey(**address.valkey_kwargs())
    with memcached(memory_mb=256) as address: pymemcache.Client(address.unix_socket)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

START_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Address:
    """Where a server listens: a unix socket path or a port on 127.0.0.1."""

    unix_socket: str | None = None
    port: int | None = None

    def connect(self) -> socket.socket:
        if self.unix_socket is not None:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(0.5)
            s.connect(self.unix_socket)
            return s
        return socket.create_connection(("127.0.0.1", self.port), timeout=0.5)

    def valkey_kwargs(self) -> dict[str, object]:
        """Connection arguments of valkey-py and redis-py for this address."""
        return {"unix_socket_path": self.unix_socket} if self.unix_socket else {"port": self.port}


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed: run `make contrib-deps`")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(address: Address, request: bytes, reply: bytes) -> bool:
    """Whether the server at `address` replies to `request` with a line starting with `reply`."""
    try:
        with address.connect() as s:
            s.sendall(request)
            return s.recv(64).startswith(reply)
    except OSError:
        return False


@contextmanager
def started(argv: list[str], address: Address, request: bytes, reply: bytes) -> Iterator[int]:
    """Run `argv` until the block ends, once it answers `request` at `address`; yields its PID."""
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers(address, request, reply):
            if process.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with status {process.returncode} before answering")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not answer at {address} within {START_TIMEOUT_S} s")
            time.sleep(0.02)
        yield process.pid
    finally:
        process.terminate()  # by its PID
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def valkey(*, unix_socket: bool = True) -> Iterator[Address]:
    """A valkey-server with no persistence (``--save '' --appendonly no``)."""
    with tempfile.TemporaryDirectory(prefix="zspool-valkey-") as workdir:
        argv = [binary("valkey-server"), "--save", "", "--appendonly", "no", "--dir", workdir,
                "--daemonize", "no"]  # fmt: skip
        if unix_socket:
            address = Address(unix_socket=os.path.join(workdir, "valkey.sock"))
            argv += ["--port", "0", "--unixsocket", str(address.unix_socket), "--unixsocketperm", "700"]
        else:
            address = Address(port=free_port())
            argv += ["--bind", "127.0.0.1", "--port", str(address.port)]
        with started(argv, address, b"PING\r\n", b"+PONG"):
            yield address


@contextmanager
def memcached(*, memory_mb: int) -> Iterator[Address]:
    """A memcached listening on a unix socket only (``-s`` turns the network off), with
    `memory_mb` MiB for items."""
    with tempfile.TemporaryDirectory(prefix="zspool-memcached-") as workdir:
        address = Address(unix_socket=os.path.join(workdir, "memcached.sock"))
        argv = [binary("memcached"), "-s", str(address.unix_socket), "-a", "0700", "-m", str(memory_mb)]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root otherwise
        with started(argv, address, b"version\r\n", b"VERSION"):
            yield address
