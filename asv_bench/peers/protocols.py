"""Tiny raw-socket clients for Redis (RESP2) and memcached (text protocol).

No third-party client: both peers get the same pipelined batches from the same Python
loop, so client overhead is the same on both sides and nothing extra needs installing.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def readline(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[: end + 2]
        return line

    def readexact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[: n + 2]
        return data

    def close(self) -> None:
        self.sock.close()


class Redis(_Conn):
    """RESP2: pipelined SET / DEL / GET, and single commands for INFO, CONFIG, MEMORY."""

    @staticmethod
    def _cmd(*args: bytes) -> bytes:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            out.append(b"$%d\r\n" % len(a))
            out.append(a)
            out.append(b"\r\n")
        return b"".join(out)

    def _reply(self) -> object:
        line = self.readline()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b":"):
            return rest
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.readexact(n)
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        raise ValueError(f"unexpected RESP reply {line!r}")

    def command(self, *args: str | bytes) -> object:
        self.sock.sendall(self._cmd(*(a.encode() if isinstance(a, str) else a for a in args)))
        return self._reply()

    def set_many(self, items: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        self.sock.sendall(b"".join(self._cmd(b"SET", k, bytes(v)) for k, v in items))
        for _ in items:
            if isinstance(r := self._reply(), Exception):
                raise r

    def delete_many(self, keys: Sequence[bytes]) -> None:
        self.sock.sendall(b"".join(self._cmd(b"DEL", k) for k in keys))
        for _ in keys:
            self._reply()

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.sock.sendall(b"".join(self._cmd(b"GET", k) for k in keys))
        return [self._reply() for _ in keys]  # type: ignore[misc]

    def get(self, key: bytes) -> bytes | None:
        self.sock.sendall(self._cmd(b"GET", key))
        return self._reply()  # type: ignore[return-value]

    def info(self, section: str = "all") -> dict[str, str]:
        text = self.command("INFO", section)
        assert isinstance(text, bytes)
        fields = {}
        for line in text.decode().splitlines():
            if ":" in line and not line.startswith("#"):
                name, _, value = line.partition(":")
                fields[name] = value
        return fields


class Memcached(_Conn):
    """Text protocol: ``noreply`` sets and deletes in bulk, ``mn`` as the barrier, multi-get."""

    def set_many(self, items: Sequence[tuple[bytes, bytes | memoryview]]) -> None:
        parts = []
        for k, v in items:
            parts.append(b"set %s 0 0 %d noreply\r\n" % (k, len(v)))
            parts.append(bytes(v))
            parts.append(b"\r\n")
        parts.append(b"mn\r\n")
        self.sock.sendall(b"".join(parts))
        self._barrier()

    def delete_many(self, keys: Sequence[bytes]) -> None:
        self.sock.sendall(b"".join(b"delete %s noreply\r\n" % k for k in keys) + b"mn\r\n")
        self._barrier()

    def _barrier(self) -> None:
        while (line := self.readline()) != b"MN":
            if line.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR")):
                raise RuntimeError(line.decode())

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        found: dict[bytes, bytes] = {}
        while (line := self.readline()) != b"END":
            _, key, _, size = line.split()
            found[key] = self.readexact(int(size))
        return [found.get(k) for k in keys]

    def get(self, key: bytes) -> bytes | None:
        return self.get_many([key])[0]

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.readline().decode()

    def stats(self, group: str = "") -> dict[str, str]:
        self.sock.sendall(f"stats {group}".strip().encode() + b"\r\n")
        fields = {}
        while (line := self.readline()) != b"END":
            _, name, value = line.decode().split(" ", 2)
            fields[name] = value
        return fields
