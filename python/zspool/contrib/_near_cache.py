"""The store behind the Valkey and Redis near caches: replies kept serialized in one zspool.Cache.

A client with server-assisted caching (RESP3 ``CLIENT TRACKING on``) keeps the replies of
read commands and drops them when the server says a key they read has changed. The
clients' own caches hold each reply as Python objects plus a Python map from every key to
the commands that read it. Here both live in one :class:`zspool.Cache`, as bytes:

- a **reply entry** per command: key ``b"c" + the command's arguments`` (length-prefixed),
  value ``the keys it read, each with its generation`` + the serialized reply;
- a **generation entry** per key that some cached reply read: key ``b"g" + the key``,
  value a number that no other generation entry will ever have had.

A reply is served only while every key it read still has the generation it was stored
with. Invalidating a key is one delete (its generation entry), whatever number of replies
read it; the replies left behind fail the check when next looked up (and are deleted then)
or are evicted. An evicted generation entry invalidates its replies the same way, so
eviction can never serve a stale reply. Every operation is a few calls into the
thread-safe Rust cache; no Python lock is taken, and an invalidation racing a store makes
that store's reply unservable rather than stale.
"""

from __future__ import annotations

import itertools
import pickle
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from zspool._core import CacheStats
from zspool.cache import Cache

_GENERATION = struct.Struct("<Q")
_REPLY = b"c"
_KEY = b"g"
# How a reply is serialized: bytes and str as they are, anything else pickled.
_BYTES, _STR, _PICKLE = b"B", b"S", b"P"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7


def key_bytes(key: str | bytes | memoryview | float) -> bytes:
    """A Redis key as the bytes the server sees (the clients send str keys UTF-8 encoded)."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, memoryview):
        return key.tobytes()
    return str(key).encode()  # numbers, as the clients' encoders send them


def command_key(args: Iterable[Any]) -> bytes:
    """An unambiguous byte string for a command's arguments (each tagged and length-prefixed)."""
    parts = [_REPLY]
    for arg in args:
        if isinstance(arg, bytes):
            tag, raw = b"b", arg
        elif isinstance(arg, str):
            tag, raw = b"s", arg.encode("utf-8", "surrogatepass")
        elif isinstance(arg, int | float):
            tag, raw = b"n", repr(arg).encode()
        else:
            tag, raw = b"p", pickle.dumps(arg, pickle.HIGHEST_PROTOCOL)
        parts += (_varint(len(raw)), tag, raw)
    return b"".join(parts)


def _dumps(reply: Any) -> bytes:
    if isinstance(reply, bytes):
        return _BYTES + reply
    if type(reply) is str:
        return _STR + reply.encode("utf-8", "surrogatepass")
    return _PICKLE + pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)


def _loads(data: memoryview) -> Any:
    tag, body = bytes(data[:1]), data[1:]
    if tag == _BYTES:
        return body.tobytes()
    if tag == _STR:
        return str(body, "utf-8", "surrogatepass")
    return pickle.loads(body)


class ReplyStore:
    """Replies of read commands and the generations of the keys they read, in one zspool.Cache.

    ``maxbytes`` budgets the serialized replies, commands, keys and generations together;
    ``cache_options`` are :class:`zspool.Cache`'s (not ``serializer``: replies are bytes).
    ``put``/``get``/``invalidate`` take the already encoded :func:`command_key` and :func:`key_bytes`.
    """

    def __init__(self, maxbytes: int, **cache_options: Any) -> None:
        self.cache = Cache(maxbytes, **cache_options)
        self._generations = itertools.count(1)  # next() is atomic: no two keys share one

    def put(self, command: bytes, keys: Sequence[bytes], reply: Any, extra: bytes = b"") -> None:
        """Store ``reply`` for ``command``, which read ``keys``; ``extra`` rides along with it."""
        header = [_varint(len(keys))]
        for key in keys:
            fresh = _GENERATION.pack(next(self._generations))
            generation = self.cache.setdefault(_KEY + key, fresh)
            header += (generation, _varint(len(key)), key)
        header += (_varint(len(extra)), extra)
        self.cache[command] = b"".join(header) + _dumps(reply)

    def get(self, command: bytes) -> tuple[Any, bytes] | None:
        """``(reply, extra)`` if ``command``'s reply is stored and every key it read is unchanged."""
        raw = self.cache.get(command)
        if raw is None:
            return None
        view = memoryview(raw)
        count, pos = _read_varint(raw, 0)
        generations, keys = [], []
        for _ in range(count):
            generations.append(raw[pos : pos + _GENERATION.size])
            size, pos = _read_varint(raw, pos + _GENERATION.size)
            keys.append(_KEY + raw[pos : pos + size])
            pos += size
        if len(keys) == 1:  # most reads name one key: one lookup, no lists
            unchanged = self.cache.get(keys[0]) == generations[0]
        else:
            unchanged = self.cache.get_many(keys) == generations
        if not unchanged:
            self.cache.pop(command, None)  # a key it read has changed since
            return None
        size, pos = _read_varint(raw, pos)
        return _loads(view[pos + size :]), raw[pos : pos + size]

    def delete(self, command: bytes) -> bool:
        return self.cache.pop(command, None) is not None

    def delete_many(self, commands: Iterable[bytes]) -> int:
        return self.cache.delete_many(commands)

    def invalidate(self, keys: Iterable[bytes]) -> int:
        """Make every reply that read one of ``keys`` unservable; how many keys were tracked."""
        return self.cache.delete_many([_KEY + key for key in keys])

    def flush(self) -> int:
        """Drop everything; how many entries there were (replies and generations)."""
        entries = len(self.cache)
        self.cache.clear()
        return entries

    def stats(self) -> CacheStats:
        return self.cache.stats()

    def close(self) -> None:
        self.cache.close()
