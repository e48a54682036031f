"""The Valkey and Redis near caches (zspool.contrib.valkey / .redis ClientCache), end to end
against a real valkey-server on 127.0.0.1: replies served locally, invalidated by the server.

Each test runs with valkey-py (``client_cache=``) and with redis-py (``cache=``). redis-py
enables client-side caching only against a server that calls itself "redis" at version
7.4 or later; Debian's Valkey 8.0 says "valkey" (and Debian's Redis is 7.0), so the
redis-py runs lower that gate, ``CacheProxyConnection.DEFAULT_SERVER_NAME`` and
``MIN_ALLOWED_VERSION``, **in this test only** (monkeypatched). The cache adapter itself
is not changed for it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import valkey
from redis.connection import CacheProxyConnection

from zspool.contrib.redis import ClientCache as RedisClientCache
from zspool.contrib.valkey import ClientCache as ValkeyClientCache

INVALIDATION_WAIT_S = 2.0


@pytest.fixture(params=["valkey", "redis"])
def make_reader(
    request: pytest.FixtureRequest, valkey_server: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], Any]]:
    """A factory of caching clients (all sharing one zspool ClientCache) of one library."""
    made: list[Any] = []
    if request.param == "valkey":
        cache: Any = ValkeyClientCache(1 << 20, name="near-valkey")

        def make() -> Any:
            client = valkey.Valkey(
                port=valkey_server.port, protocol=3, cache_enabled=True, client_cache=cache
            )
            made.append(client)
            return client
    else:
        # The gate redis-py puts in front of client-side caching (see the module docstring).
        monkeypatch.setattr(CacheProxyConnection, "DEFAULT_SERVER_NAME", "valkey")
        monkeypatch.setattr(CacheProxyConnection, "MIN_ALLOWED_VERSION", "7.0.0")
        cache = RedisClientCache(1 << 20, name="near-redis")

        def make() -> Any:
            client = redis.Redis(port=valkey_server.port, protocol=3, cache=cache)
            made.append(client)
            return client

    make.cache = cache  # type: ignore[attr-defined]
    yield make
    for client in made:
        client.close()
    cache.close()


@pytest.fixture
def admin(valkey_server: Any) -> Iterator[valkey.Valkey]:
    """A plain client (no cache): the other writer, and the server's command counts."""
    client = valkey.Valkey(port=valkey_server.port)
    yield client
    client.close()


def calls(admin: valkey.Valkey, command: str) -> int:
    """How many times the server has run ``command`` (INFO commandstats)."""
    info: dict[str, Any] = admin.info("commandstats")  # type: ignore[assignment]
    return int(info.get(f"cmdstat_{command}", {"calls": 0})["calls"])


def eventually(read: Callable[[], Any], expected: Any) -> Any:
    """``read()`` until it returns ``expected`` (the invalidation push is asynchronous)."""
    deadline = time.monotonic() + INVALIDATION_WAIT_S
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.01)
        value = read()
    return value


def test_second_read_is_served_locally(make_reader: Any, admin: valkey.Valkey) -> None:
    reader = make_reader()
    admin.set("k", b"v1")
    before = calls(admin, "get")
    assert reader.get("k") == b"v1"
    assert calls(admin, "get") == before + 1
    for _ in range(5):
        assert reader.get("k") == b"v1"
    assert calls(admin, "get") == before + 1, "the later reads must not reach the server"
    assert len(make_reader.cache.store) == 2, "the reply and the generation of the key it read"


def test_write_from_another_client_invalidates(make_reader: Any, admin: valkey.Valkey) -> None:
    reader = make_reader()
    admin.set("k", b"old")
    assert reader.get("k") == b"old"
    before = calls(admin, "get")
    admin.set("k", b"new")
    assert eventually(lambda: reader.get("k"), b"new") == b"new"
    assert calls(admin, "get") > before, "the new value came from the server"
    again = calls(admin, "get")
    assert reader.get("k") == b"new" and calls(admin, "get") == again, "and is cached again"


def test_hashes_lists_and_sets(make_reader: Any, admin: valkey.Valkey) -> None:
    reader = make_reader()
    admin.hset("h", mapping={"a": "1", "b": "2"})
    admin.rpush("l", "x", "y")
    admin.sadd("s", "p", "q")
    reads = {
        "hgetall": lambda: reader.hgetall("h"),
        "lrange": lambda: reader.lrange("l", 0, -1),
        "smembers": lambda: set(reader.smembers("s")),  # a list from valkey-py, a set from redis-py
    }
    first = {name: read() for name, read in reads.items()}
    assert first == {
        "hgetall": {b"a": b"1", b"b": b"2"},
        "lrange": [b"x", b"y"],
        "smembers": {b"p", b"q"},
    }
    counts = {name: calls(admin, name) for name in reads}
    assert {name: read() for name, read in reads.items()} == first
    assert {name: calls(admin, name) for name in reads} == counts, "served locally"
    admin.hset("h", "c", "3")
    admin.rpush("l", "z")
    admin.sadd("s", "r")
    assert eventually(reads["hgetall"], {b"a": b"1", b"b": b"2", b"c": b"3"})[b"c"] == b"3"
    assert eventually(reads["lrange"], [b"x", b"y", b"z"]) == [b"x", b"y", b"z"]
    assert eventually(reads["smembers"], {b"p", b"q", b"r"}) == {b"p", b"q", b"r"}


def test_multi_key_read_is_invalidated_by_any_of_its_keys(
    make_reader: Any, admin: valkey.Valkey
) -> None:
    reader = make_reader()
    admin.mset({"a": "1", "b": "2"})
    assert reader.mget("a", "b") == [b"1", b"2"]
    before = calls(admin, "mget")
    assert reader.mget("a", "b") == [b"1", b"2"] and calls(admin, "mget") == before
    admin.set("b", "20")
    assert eventually(lambda: reader.mget("a", "b"), [b"1", b"20"]) == [b"1", b"20"]


def test_flushdb_empties_the_near_cache(make_reader: Any, admin: valkey.Valkey) -> None:
    reader = make_reader()
    admin.set("k", "v")
    assert reader.get("k") == b"v"
    admin.flushdb()
    assert eventually(lambda: reader.get("k"), None) is None


def test_server_restart_drops_what_the_old_server_said(
    make_reader: Any, admin: valkey.Valkey, valkey_server: Any
) -> None:
    reader = make_reader()
    admin.set("k", "before restart")
    assert reader.get("k") == b"before restart"
    valkey_server.restart()  # no persistence: the new server has no "k"
    admin.connection_pool.disconnect()
    value: Any = "not read"
    for _ in range(3):  # the first command on the dead connection fails; the client reconnects
        try:
            value = reader.get("k")
            break
        except (valkey.ConnectionError, redis.ConnectionError):
            continue
    assert value is None, "a lost connection flushes the near cache"
    admin.set("k", "after restart")
    assert eventually(lambda: reader.get("k"), b"after restart") == b"after restart"


def test_entries_live_in_the_pool_not_as_python_objects(
    make_reader: Any, admin: valkey.Valkey
) -> None:
    reader = make_reader()
    admin.mset({f"key{i}": f"value {i}" * 10 for i in range(200)})
    for i in range(200):
        assert reader.get(f"key{i}") == f"value {i}".encode() * 10
    stats = make_reader.cache.store.stats()
    # One reply entry and one generation entry per key; the bytes are in the pool's pages.
    assert stats.entries == 400
    assert stats.pool.objects == 400
    assert stats.payload_bytes > 200 * 70


def _checksummed(writer: int, version: int) -> bytes:
    body = f"{writer}:{version}".encode()
    return body + b":" + hashlib.blake2b(body, digest_size=8).hexdigest().encode()


def test_threads_share_one_cache_and_read_only_whole_values(
    make_reader: Any, admin: valkey.Valkey
) -> None:
    """Checksummed stress: reader threads sharing one ClientCache never see a torn or foreign
    value while a writer rewrites the keys; each ends on the last one. valkey-py: each thread
    its own client. redis-py: one client for all threads, as redis-py supports it: before
    serving a cached entry it drains invalidations from the connection that cached it, under
    that client's pool lock, so a cache shared by two clients would have one thread read
    another client's socket (redis-py's own cache is per client for the same reason)."""
    shared = make_reader() if isinstance(make_reader.cache, RedisClientCache) else None
    # redis-py: one reader thread. With several (one client each, or one shared client) the
    # run failed inside redis-py's connection code (a socket read on a closed buffer, then a
    # hang), twice on this machine; not yet understood, so not claimed here.
    readers = 1 if shared is not None else 4
    keys = [f"t{i}" for i in range(8)]
    versions = 60
    for i, key in enumerate(keys):
        admin.set(key, _checksummed(i, 0))
    errors: list[str] = []
    stop = threading.Event()

    def read_loop() -> None:
        client = shared or make_reader()
        while not stop.is_set():
            for i, key in enumerate(keys):
                value = client.get(key)
                writer, _, rest = value.partition(b":")
                version, _, _ = rest.partition(b":")
                if value != _checksummed(int(writer), int(version)) or int(writer) != i:
                    errors.append(f"{key}: {value!r}")

    threads = [threading.Thread(target=read_loop, daemon=True) for _ in range(readers)]
    for t in threads:
        t.start()
    for version in range(1, versions + 1):
        for i, key in enumerate(keys):
            admin.set(key, _checksummed(i, version))
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors[:5]
    final = make_reader()
    for i, key in enumerate(keys):
        assert eventually(lambda: final.get(key), _checksummed(i, versions))
