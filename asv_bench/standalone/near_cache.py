"""The Valkey/Redis near cache: zspool's ClientCache next to each client's default cache.

For valkey-py (``client_cache=`` vs its default ``cache_enabled=True`` cache) and redis-py
(``cache=`` vs its default ``CacheConfig()`` cache), against one valkey-server this script
starts on 127.0.0.1 (``--save '' --appendonly no``, stopped by PID):

- **cached-read latency**: ns per ``GET`` of a key already in the near cache (every read is
  served locally: the script checks the server's GET count does not move), best of 3;
  the uncached ``GET`` over TCP is printed for scale; and ns per lookup of the same reply in
  the cache object alone (what the cache, not the client's machinery around it, costs);
- **bytes per cached entry**: memory growth while N keys (11-byte names, 100-byte values)
  are read into the cache, divided by N. Python heap growth from tracemalloc, plus, for
  zspool, the pool's pages and the Rust index (outside the Python heap).

redis-py enables client-side caching only against a server calling itself "redis" >= 7.4;
Debian's Valkey 8.0 says "valkey", so this script lowers that gate for redis-py (as the
project's test does). Each client's default cache caps entries by count (10,000), so N stays
below that.

    python asv_bench/standalone/near_cache.py [--quick] [--entries 8000] [--reads 100000]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import valkey
from redis.cache import CacheKey
from redis.connection import CacheProxyConnection

import servers

from zspool.contrib.redis import ClientCache as RedisClientCache
from zspool.contrib.valkey import ClientCache as ValkeyClientCache

VALUE_BYTES = 100
MAXBYTES = 64 << 20


@contextmanager
def valkey_server() -> Iterator[int]:
    """A valkey-server on 127.0.0.1 (the clients' cache invalidation needs no unix socket)."""
    with servers.valkey(unix_socket=False) as address:
        assert address.port is not None
        yield address.port


def clients(port: int) -> dict[str, Callable[[], Any]]:
    """Name -> a factory of a caching client with that cache."""
    CacheProxyConnection.DEFAULT_SERVER_NAME = "valkey"  # redis-py's gate, see the docstring
    CacheProxyConnection.MIN_ALLOWED_VERSION = "7.0.0"
    return {
        "valkey-py default": lambda: valkey.Valkey(port=port, protocol=3, cache_enabled=True),
        "valkey-py zspool": lambda: valkey.Valkey(
            port=port, protocol=3, cache_enabled=True, client_cache=ValkeyClientCache(MAXBYTES)
        ),
        "redis-py default": lambda: redis.Redis(
            port=port, protocol=3, cache_config=redis.cache.CacheConfig()
        ),
        "redis-py zspool": lambda: redis.Redis(
            port=port, protocol=3, cache=RedisClientCache(MAXBYTES)
        ),
    }


def near_cache(client: Any) -> tuple[Any, Callable[[str], Any]]:
    """The cache object behind a client, and a lookup of one GET's reply in it."""
    pool = client.connection_pool
    if isinstance(client, redis.Redis):
        cache = pool.cache
        return cache, lambda key: cache.get(CacheKey("GET", (key,), ("GET", key)))
    connection = pool.get_connection("GET")  # valkey-py: the connection's own cache
    pool.release(connection)
    cache = connection.client_cache
    return cache, lambda key: cache.get(("GET", key))


def zspool_store(client: Any) -> Any:
    """The zspool.Cache behind a client, or None for a default cache."""
    return getattr(near_cache(client)[0], "store", None)


def outside_python_heap(client: Any) -> int:
    store = zspool_store(client)
    if store is None:
        return 0
    stats = store.stats()
    return int(stats.pool.mem_used_bytes + stats.index_bytes)


def gets(admin: valkey.Valkey) -> int:
    return int(admin.info("commandstats").get("cmdstat_get", {"calls": 0})["calls"])  # type: ignore[union-attr]


def measure(
    make: Callable[[], Any], keys: list[str], reads: int, admin: valkey.Valkey
) -> dict[str, float]:
    client = make()
    client.get(keys[0])  # connect (and start tracking) outside the measurement
    tracemalloc.start()
    heap0, outside0 = tracemalloc.get_traced_memory()[0], outside_python_heap(client)
    for key in keys:
        client.get(key)
    heap1, outside1 = tracemalloc.get_traced_memory()[0], outside_python_heap(client)
    tracemalloc.stop()
    per_entry = ((heap1 - heap0) + (outside1 - outside0)) / len(keys)
    before = gets(admin)
    best = float("inf")
    hot = [keys[i % len(keys)] for i in range(reads)]
    for _ in range(3):
        start = time.perf_counter_ns()
        for key in hot:
            client.get(key)
        best = min(best, (time.perf_counter_ns() - start) / reads)
    assert gets(admin) == before, "a cached read reached the server"
    _, lookup = near_cache(client)
    assert lookup(keys[0]) is not None
    best_lookup = float("inf")
    for _ in range(3):
        start = time.perf_counter_ns()
        for key in hot:
            lookup(key)
        best_lookup = min(best_lookup, (time.perf_counter_ns() - start) / reads)
    client.close()
    return {"ns_per_cached_get": best, "ns_per_lookup": best_lookup, "bytes_per_entry": per_entry}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 entries, 10,000 reads")
    parser.add_argument("--entries", type=int, default=8000)
    parser.add_argument("--reads", type=int, default=100_000)
    args = parser.parse_args()
    entries, reads = (1000, 10_000) if args.quick else (args.entries, args.reads)
    keys = [f"key{i:08d}" for i in range(entries)]
    with valkey_server() as port:
        admin = valkey.Valkey(port=port)
        admin.mset({key: b"v" * VALUE_BYTES for key in keys})
        start = time.perf_counter_ns()
        for key in keys[:1000]:
            admin.get(key)
        uncached = (time.perf_counter_ns() - start) / 1000
        print(
            f"{entries} entries ({len(keys[0])}-byte keys, {VALUE_BYTES}-byte values), {reads} cached reads"
        )
        print(f"uncached GET over TCP: {uncached:,.0f} ns")
        print(
            f"{'client and cache':<20} {'ns per cached GET':>18} {'ns per cache lookup':>20} {'bytes per entry':>16}"
        )
        for name, make in clients(port).items():
            r = measure(make, keys, reads, admin)
            print(
                f"{name:<20} {r['ns_per_cached_get']:>18,.0f} {r['ns_per_lookup']:>20,.0f} "
                f"{r['bytes_per_entry']:>16,.0f}"
            )
        admin.close()


if __name__ == "__main__":
    main()
