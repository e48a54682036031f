"""A real valkey-server for the near-cache tests: started on 127.0.0.1 on a free port with no
persistence, stopped by PID. ``make test`` installs it (tests/contrib/install-servers.sh); a
missing server fails the tests rather than skipping them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ValkeyServer:
    """One valkey-server process; ``restart()`` keeps the port and loses the data."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("valkey-server")
        if binary is None:
            pytest.fail(
                "valkey-server is not installed: run `make contrib-deps` (part of `make test`)"
            )
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"valkey-server did not answer on 127.0.0.1:{self.port} within {START_TIMEOUT_S} s"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # by its PID
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def valkey_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    server = ValkeyServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
