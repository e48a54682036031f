"""``zspool.contrib.valkey.ClientCache``: valkey-py's client-side cache, kept in a zspool pool.

valkey-py caches the replies of read commands when the connection has server-assisted
tracking on (RESP3); give it this cache instead of its default one::

    import valkey
    from zspool.contrib.valkey import ClientCache

    r = valkey.Valkey(host="127.0.0.1", protocol=3, cache_enabled=True,
                      client_cache=ClientCache(64 * 2**20))
    r.get("k")   # from the server; tracked
    r.get("k")   # served here, until the server says "k" changed

Invalidation is valkey-py's: the server's push for a key drops every reply that read it
(multi-key reads such as MGET included), a push without keys (FLUSHDB/FLUSHALL) and a
lost connection flush everything. The replies live serialized in a :class:`zspool.Cache`
(see :mod:`zspool.contrib._near_cache`), budgeted in bytes and evicted with SIEVE, and
the cache is safe to share between threads and connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from valkey._cache import AbstractCache

from zspool._core import CacheStats
from zspool.cache import Cache
from zspool.contrib._near_cache import ReplyStore, command_key, key_bytes

__all__ = ["ClientCache"]


class ClientCache(AbstractCache):
    """A valkey-py ``client_cache`` whose replies live in a compacting zspool pool.

    ``ClientCache(maxbytes, *, ttl=None, name="valkey", **cache_options)``: ``maxbytes``
    budgets the stored replies in bytes; ``ttl`` (seconds) bounds how long a reply is
    served without the server being asked again (``None``: until invalidated);
    ``cache_options`` are :class:`zspool.Cache`'s (``compression``, ``eviction``,
    ``policy``, ...).
    """

    def __init__(
        self,
        maxbytes: int,
        *,
        ttl: float | None = None,
        name: str = "valkey",
        **cache_options: Any,
    ) -> None:
        self._store = ReplyStore(maxbytes, ttl=ttl, name=name, **cache_options)

    @property
    def store(self) -> Cache:
        """The :class:`zspool.Cache` holding the replies (for stats, compaction, a collector)."""
        return self._store.cache

    def set(self, command: str | Sequence[Any], response: Any, keys_in_command: list[Any]) -> None:
        if response is None:
            return  # valkey-py reads None from get() as "not cached"
        self._store.put(command_key(command), [key_bytes(k) for k in keys_in_command], response)

    def get(self, command: str | Sequence[Any]) -> Any:
        found = self._store.get(command_key(command))
        return None if found is None else found[0]

    def delete_command(self, command: str | Sequence[Any]) -> None:
        self._store.delete(command_key(command))

    def delete_commands(self, commands: list[str | Sequence[Any]]) -> None:
        self._store.delete_many([command_key(c) for c in commands])

    def flush(self) -> None:
        self._store.flush()

    def invalidate_key(self, key: str | bytes | memoryview) -> None:
        self._store.invalidate([key_bytes(key)])

    def stats(self) -> CacheStats:
        """The store's hits, misses, evictions and sizes (see :meth:`zspool.Cache.stats`)."""
        return self._store.stats()

    def close(self) -> None:
        """Drop every reply and free the pool."""
        self._store.close()
