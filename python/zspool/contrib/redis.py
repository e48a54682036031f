"""``zspool.contrib.redis.ClientCache``: redis-py's client-side cache, kept in a zspool pool.

redis-py caches the replies of read commands when the connection has server-assisted
tracking on (RESP3); give it this cache instead of its default one::

    import redis
    from zspool.contrib.redis import ClientCache

    r = redis.Redis(host="127.0.0.1", protocol=3, cache=ClientCache(64 * 2**20))

redis-py enables client-side caching only against Redis 7.4 or later (it checks the
server's name and version on connect): Debian 12's Redis 7.0 and Valkey are refused by
redis-py itself, whatever the cache. This project's test lowers that gate (only in the
test) to exercise the adapter against Debian's Valkey.

redis-py drives the cache with ``CacheKey``/``CacheEntry`` objects: an entry is first
stored ``IN_PROGRESS`` (so other connections wait for the reply rather than send the
command too), then ``VALID`` with the reply. In-progress entries, a handful at a time, are
kept as the objects redis-py gave (they hold a live connection); valid replies are stored
serialized in a :class:`zspool.Cache` (see :mod:`zspool.contrib._near_cache`) with the
number of the connection that read them. Invalidation is redis-py's: the server's push for
a key drops every reply that read it, a push without keys (FLUSHDB/FLUSHALL) and a lost
connection flush everything.

Give each ``redis.Redis`` client its own ``ClientCache`` (share the client between threads,
as redis-py intends): before serving a cached reply redis-py drains pending invalidations
from the connection that cached it, under that client's pool lock, so a cache shared by two
clients would let one thread read from another client's socket while it is in use. The
stress test runs one reader thread with redis-py: with several, runs failed inside
redis-py's connection code on this project's machine, not yet understood.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections import OrderedDict
from typing import Any

from redis.cache import (
    CacheConfig,
    CacheConfigurationInterface,
    CacheEntry,
    CacheEntryStatus,
    CacheInterface,
    CacheKey,
    EvictionPolicyInterface,
)

from zspool._core import CacheStats
from zspool.cache import Cache
from zspool.contrib._near_cache import ReplyStore, command_key, key_bytes

__all__ = ["ClientCache"]


def _entry_key(key: CacheKey) -> bytes:
    return command_key((key.command, len(key.redis_keys), *key.redis_keys, *key.redis_args))


class _Connections:
    """Small numbers for the live connections that stored replies (an entry keeps the number)."""

    def __init__(self) -> None:
        self._numbers: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._by_number: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def number(self, connection: Any) -> bytes:
        with self._lock:
            n = self._numbers.get(connection)
            if n is None:
                n = self._numbers[connection] = next(self._next)
                self._by_number[n] = connection
        return str(n).encode()

    def connection(self, number: bytes) -> Any:
        """The connection, or None if it has been garbage-collected."""
        return self._by_number.get(int(number))


class _Memo(threading.local):
    """The last entry this thread decoded (redis-py looks one key up several times per read)."""

    key: CacheKey | None = None
    epoch: int = -1
    entry: CacheEntry | None = None


class ClientCache(CacheInterface):
    """A redis-py ``cache`` whose replies live in a compacting zspool pool.

    ``ClientCache(maxbytes, *, config=None, ttl=None, name="redis", **cache_options)``:
    ``maxbytes`` budgets the stored replies in bytes; ``config`` is a redis-py
    ``CacheConfig`` whose allow list says which commands are cached (its ``max_size`` does
    not apply: the budget is bytes); ``ttl`` (seconds) bounds how long a reply is served
    without asking the server (``None``: until invalidated); ``cache_options`` are
    :class:`zspool.Cache`'s (``compression``, ``eviction``, ``policy``, ...).
    """

    def __init__(
        self,
        maxbytes: int,
        *,
        config: CacheConfigurationInterface | None = None,
        ttl: float | None = None,
        name: str = "redis",
        **cache_options: Any,
    ) -> None:
        self._store = ReplyStore(maxbytes, ttl=ttl, name=name, **cache_options)
        self._config = config if config is not None else CacheConfig()
        self._in_progress: dict[CacheKey, CacheEntry] = {}
        self._lock = threading.Lock()  # guards _in_progress
        self._connections = _Connections()
        # Bumped after every delete, invalidation and store; a memo from an older epoch is stale.
        self._epochs = itertools.count(1)
        self._epoch = 0
        self._memo = _Memo()

    @property
    def store(self) -> Cache:
        """The :class:`zspool.Cache` holding the replies (for stats, compaction, a collector)."""
        return self._store.cache

    @property
    def config(self) -> CacheConfigurationInterface:
        return self._config

    @property
    def collection(self) -> OrderedDict[CacheKey, CacheEntry]:
        """Not kept: the replies are bytes in the pool, not an OrderedDict of entries."""
        raise NotImplementedError(
            "zspool's ClientCache keeps replies serialized in a pool, not as an OrderedDict; "
            "use .size, .stats() or .store"
        )

    @property
    def eviction_policy(self) -> EvictionPolicyInterface:
        """Not pluggable: the pool evicts with SIEVE (or LRU) by bytes, in Rust."""
        raise NotImplementedError(
            f"zspool's ClientCache evicts by bytes with {self._store.cache.eviction!r} in Rust; "
            "there is no redis-py eviction policy object"
        )

    @property
    def size(self) -> int:
        """Entries in the pool (replies and the generation entries of the keys they read)."""
        return len(self._store.cache)

    def is_cachable(self, key: CacheKey) -> bool:
        return bool(self._config.is_allowed_to_cache(key.command))

    def _bump(self) -> None:
        self._epoch = next(self._epochs)

    def get(self, key: CacheKey) -> CacheEntry | None:
        with self._lock:
            entry = self._in_progress.get(key)
        if entry is not None:
            return entry
        memo = self._memo
        if memo.key == key and memo.epoch == self._epoch:
            return memo.entry
        epoch = self._epoch  # read before the store, so a later change makes the memo stale
        found = self._store.get(_entry_key(key))
        if found is None:
            return None
        reply, number = found
        connection = self._connections.connection(number)
        if connection is None:
            return None  # the connection that read it is gone; so is its tracking
        entry = CacheEntry(
            cache_key=key,
            cache_value=reply,
            status=CacheEntryStatus.VALID,
            connection_ref=connection,
        )
        memo.key, memo.epoch, memo.entry = key, epoch, entry
        return entry

    def set(self, entry: CacheEntry) -> bool:
        if not self.is_cachable(entry.cache_key):
            return False
        key = entry.cache_key
        if entry.status == CacheEntryStatus.IN_PROGRESS:
            with self._lock:
                self._in_progress[key] = entry
            return True
        number = self._connections.number(entry.connection_ref)
        self._store.put(_entry_key(key), [key_bytes(k) for k in key.redis_keys], entry.cache_value, number)
        with self._lock:
            self._in_progress.pop(key, None)
        self._bump()
        return True

    def delete_by_cache_keys(self, cache_keys: list[CacheKey]) -> list[bool]:
        with self._lock:
            pending = [self._in_progress.pop(k, None) is not None for k in cache_keys]
        stored = [self._store.delete(_entry_key(k)) for k in cache_keys]
        self._bump()
        return [p or s for p, s in zip(pending, stored, strict=True)]

    def delete_by_redis_keys(self, redis_keys: list[bytes] | list[str]) -> list[bool]:
        """Drop every reply that read one of ``redis_keys``; one True per key that was tracked."""
        keys = [key_bytes(k) for k in redis_keys]
        wanted = set(keys)
        with self._lock:
            for cache_key in [k for k in self._in_progress if wanted.intersection(map(key_bytes, k.redis_keys))]:
                del self._in_progress[cache_key]
        tracked = self._store.invalidate(keys)
        self._bump()
        return [True] * tracked

    def flush(self) -> int:
        with self._lock:
            pending = len(self._in_progress)
            self._in_progress.clear()
        entries = self._store.flush()
        self._bump()
        return pending + entries

    def stats(self) -> CacheStats:
        """The store's hits, misses, evictions and sizes (see :meth:`zspool.Cache.stats`)."""
        return self._store.stats()

    def close(self) -> None:
        """Drop every reply and free the pool."""
        self.flush()
        self._store.close()
