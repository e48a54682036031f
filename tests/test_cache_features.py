"""zspool.Cache: TTL, compression, serializers, batch calls, threads, the decorator, the policy."""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time

import pytest

import zspool
from zspool import Cache


# The Python Cache has no clock hook (the Rust tests use a manual clock), so these tests
# only ever assert what wall time cannot race: an entry is gone once a sleep longer than its
# ttl has passed (expiry is at least ttl), and an entry whose ttl is a minute is still there.
LONG_TTL = 60.0


def test_ttl_per_cache_and_per_entry() -> None:
    with Cache(1 << 20, ttl=0.05) as c:
        c["default"] = b"v"  # the cache's ttl
        c.set("long", b"v", ttl=LONG_TTL)  # a per-entry ttl overrides it
        c.set("never", b"v", ttl=math.inf)
        time.sleep(0.1)
        assert "default" not in c
        assert c.get("default") is None
        with pytest.raises(KeyError):
            c["default"]
        assert c["long"] == b"v"
        assert sorted(c) == ["long", "never"], "iteration never yields expired keys"
        assert len(c) == 2
        assert c.stats().expirations == 1
        assert c.pool.stats().objects == 2, "expired entries are freed"
        c.set("x", b"v", ttl=0.01)
        time.sleep(0.03)
        assert c.expire() == 1
        assert sorted(c) == ["long", "never"]


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compression_round_trips(codec: str) -> None:
    rng = random.Random(1)
    with Cache(1 << 22, compression=codec) as c:  # type: ignore[arg-type]
        values = {}
        for i in range(300):
            kind = i % 3
            if kind == 0:
                v = json.dumps({"id": i, "name": "user" * (i % 20), "tags": ["a", "b"] * (i % 7)}).encode()
            elif kind == 1:
                v = rng.randbytes(rng.randrange(0, 3000))
            else:
                v = bytes(rng.randrange(0, 200))
            values[f"k{i}"] = v
        c.update(values)
        assert {k: c[k] for k in values} == values
        s = c.stats()
        assert s.compressed_entries > 0
        assert s.compression_ratio > 1.0
        assert s.payload_bytes == sum(len(k) + len(v) for k, v in values.items())
        assert c.compression == codec


def test_incompressible_values_are_stored_raw() -> None:
    with Cache(1 << 20, compression="lz4") as c:
        c["r"] = random.Random(2).randbytes(2000)
        assert c.stats().compressed_entries == 0


def test_serializers() -> None:
    with Cache(1 << 20, serializer="pickle") as c:
        objs = {"int": 1, "none": None, "dict": {"a": [1, 2.5, "x"]}, "text": "héllo", "raw": b"bytes stay bytes"}
        c.update(objs)
        assert {k: c[k] for k in objs} == objs
        assert c.get_many(list(objs)) == list(objs.values())
        assert c.pop("dict") == {"a": [1, 2.5, "x"]}
        assert c.setdefault("t", (1, 2)) == (1, 2)

    class JsonCodec:
        def dumps(self, obj: object) -> bytes:
            return json.dumps(obj).encode()

        def loads(self, data: bytes) -> object:
            return json.loads(data)

    with Cache(1 << 20, serializer=JsonCodec()) as c:
        c["j"] = {"x": [1, 2]}
        assert c["j"] == {"x": [1, 2]}

    class Bad:
        def dumps(self, obj: object) -> str:
            return "not bytes"

        def loads(self, data: bytes) -> object:
            return data

    with Cache(1 << 20, serializer=Bad()) as c, pytest.raises(TypeError, match="dumps\\(\\) must return bytes"):
        c["k"] = 1


def test_batch_calls() -> None:
    with Cache(1 << 20) as c:
        items = {f"k{i}": str(i).encode() * 3 for i in range(1000)}
        c.set_many(items)
        c.set_many([(b"raw", b"pair")])
        assert len(c) == 1001
        keys = [*items, "missing", b"raw"]
        got = c.get_many(keys, default=b"?")
        assert got == [*items.values(), b"?", b"pair"]
        s = c.stats()
        assert (s.hits, s.misses) == (1001, 1)
        with pytest.raises(TypeError):
            c.set_many({"ok": b"v", "bad": 1})
        assert "ok" not in c, "every item is checked before any is stored"
        with pytest.raises(TypeError):
            c.get_many(["a", 1])
        c.set_many({"t": b"v"}, ttl=0.02)
        time.sleep(0.04)  # past the ttl: expiry is at least ttl, so this cannot race
        assert c.get_many(["t"]) == [None]


def test_threads_with_checksums() -> None:
    """Writers store self-checking values, readers verify them, while the budget evicts
    and the pool compacts underneath."""
    c = Cache(256 * 1024)
    stop = threading.Event()
    errors: list[str] = []

    def value(key: str, n: int) -> bytes:
        body = (key.encode() + b"|" + n.to_bytes(4, "little")) * (1 + n % 40)
        return hashlib.blake2b(body, digest_size=8).digest() + body

    def check(key: str | bytes, v: bytes | None) -> None:
        """A value read under ``key`` is whole and is one that was stored under ``key``."""
        key = key.decode() if isinstance(key, bytes) else key
        if v is None:
            return
        if hashlib.blake2b(v[8:], digest_size=8).digest() != v[:8]:
            errors.append(f"corrupt value under {key}")
        elif not v[8:].startswith(key.encode() + b"|"):
            errors.append(f"{key} holds another key's value: {v[8:40]!r}")
        else:
            n = int.from_bytes(v[9 + len(key) : 13 + len(key)], "little")
            if v != value(key, n):
                errors.append(f"{key}: a value never stored under it")

    migrated = 0

    def writer(t: int) -> None:
        rng = random.Random(t)
        # 3000 operations, and on until the compactor has moved something while we write (it
        # competes with four writers for the GIL: in about one run in four it had not yet
        # found a freeable page when 3000 were done), within a hang guard.
        deadline = time.monotonic() + 30
        n = 0
        while n < 3000 or (migrated == 0 and time.monotonic() < deadline):
            n += 1
            key = f"t{t}-{rng.randrange(300)}"
            if n % 10 == 0:
                c.pop(key, None)
            elif n % 50 == 0:
                c.set_many({f"{key}-{j}": value(f"{key}-{j}", j) for j in range(10)})
            else:
                c[key] = value(key, n)

    def reader() -> None:
        rng = random.Random(99)
        while not stop.is_set():
            key = f"t{rng.randrange(4)}-{rng.randrange(300)}"
            check(key, c.get(key))
            keys = [f"t0-{i}" for i in range(20)]
            for key, v in zip(keys, c.get_many(keys), strict=True):
                check(key, v)

    def compactor() -> None:
        nonlocal migrated
        while not stop.is_set():
            migrated += c.compact().objects_migrated
            time.sleep(0.001)

    writers = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    others = [threading.Thread(target=reader), threading.Thread(target=compactor)]
    for th in writers + others:
        th.start()
    for th in writers:
        th.join()
    stop.set()
    for th in others:
        th.join()
    assert not errors
    assert migrated > 0, "the compactor moved nothing while the writers ran"
    s = c.stats()
    assert s.stored_bytes <= 256 * 1024
    assert s.entries == s.pool.objects == len(c)
    for key in list(c):
        check(key, c[key])
    assert not errors
    c.close()


def test_cached_decorator() -> None:
    calls: list[tuple[object, ...]] = []
    with Cache(1 << 20, serializer="pickle") as c:

        @zspool.cached(c)
        def square(x: int, *, scale: int = 1) -> int:
            calls.append((x, scale))
            return x * x * scale

        assert [square(3), square(3), square(3, scale=2), square(4)] == [9, 9, 18, 16]
        assert calls == [(3, 1), (3, 2), (4, 1)]
        assert square.cache is c  # type: ignore[attr-defined]
        s = c.stats()
        assert (s.hits, s.misses) == (1, 3)

    small = Cache(200)

    @zspool.cached(small, key=lambda n: f"big:{n}")
    def big(n: int) -> bytes:
        return b"x" * n

    assert big(1000) == b"x" * 1000, "too large to cache: returned, not cached"
    assert "big:1000" not in small
    assert big(10) == b"x" * 10 and small["big:10"] == b"x" * 10
    small.close()


def test_policy_registers_a_shrinker_and_compacts() -> None:
    with Cache(64 << 20, policy="always", reclaimer_interval_s=0.05) as c:
        assert [s.name for s in c.pool.shrinkers] == ["always"]
        c.set_many({f"k{i}": bytes(300) for i in range(20_000)})
        for i in range(0, 20_000, 10):
            for j in range(1, 10):
                del c[f"k{i + j}"]
        deadline = time.monotonic() + 5
        while c.pool.stats().pages_compacted == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert c.pool.stats().pages_compacted > 0, "the reclaimer compacted the cache's pool"
        assert all(c[f"k{i}"] == bytes(300) for i in range(0, 20_000, 10))
        own = c._own_reclaimer
        assert own is not None and own.running
    assert not own.running, "close() stops the cache's reclaimer"
