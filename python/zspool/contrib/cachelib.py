"""``zspool.contrib.cachelib.ZspoolCache``: a ``cachelib`` backend, so Flask-Caching can use zspool.

With Flask-Caching, name the class as ``CACHE_TYPE``; ``CACHE_OPTIONS`` are its keyword
arguments (Flask-Caching passes ``default_timeout`` from ``CACHE_DEFAULT_TIMEOUT``)::

    app.config.from_mapping(
        CACHE_TYPE="zspool.contrib.cachelib.ZspoolCache",
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_OPTIONS={"maxbytes": 64 * 2**20, "compression": "lz4"},
    )
    cache = flask_caching.Cache(app)

Timeouts are cachelib's: whole seconds, ``0`` never expires, a negative one expires at
once, ``None`` is ``default_timeout``. Values are pickled into the pool (``bytes`` are
stored as they are). ``inc``/``dec`` are atomic; like cachelib's own backends they store
the new value with the default timeout.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
from typing import Any, Literal

from cachelib import BaseCache

from zspool.cache import Cache
from zspool.shrinker import ShrinkerPolicy

__all__ = ["ZspoolCache"]

_MISSING = object()


class ZspoolCache(BaseCache):
    """A cachelib cache whose entries live in a compacting zspool pool (one per instance).

    ``ZspoolCache(maxbytes=64 MiB, default_timeout=300, *, compression=None,
    compression_level=None, eviction="sieve", policy=None, name="cachelib",
    ignore_delete_many_errors=True, **policy_options)``: ``maxbytes`` is the budget in
    bytes of stored entries; the rest are :class:`zspool.Cache`'s arguments.
    """

    def __init__(
        self,
        maxbytes: int = 64 * 2**20,
        default_timeout: int | dt.timedelta = 300,
        *,
        compression: Literal["lz4", "zstd"] | None = None,
        compression_level: int | None = None,
        eviction: Literal["sieve", "lru"] = "sieve",
        policy: ShrinkerPolicy | str | None = None,
        name: str = "cachelib",
        ignore_delete_many_errors: bool = True,
        **policy_options: Any,
    ) -> None:
        super().__init__(default_timeout, ignore_delete_many_errors)
        self._cache = Cache(
            maxbytes,
            compression=compression,
            compression_level=compression_level,
            eviction=eviction,
            serializer="pickle",
            policy=policy,
            name=name,
            **policy_options,
        )
        self._lock = threading.Lock()  # makes add and inc/dec atomic against each other

    @property
    def store(self) -> Cache:
        """The :class:`zspool.Cache` holding the entries (its stats, compaction, close)."""
        return self._cache

    def _ttl(self, timeout: int | dt.timedelta | None) -> float | None:
        """The pool's TTL for a cachelib timeout; ``None`` if the entry is already expired."""
        seconds = self._normalize_timeout(timeout)
        if seconds == 0:
            return math.inf
        return seconds if seconds > 0 else None

    def get(self, key: str) -> Any:
        return self._cache.get(key)

    def get_many(self, *keys: str) -> list[Any]:
        """The values (``None`` for missing keys): one call into Rust."""
        return self._cache.get_many(keys)

    def has(self, key: str) -> bool:
        return key in self._cache

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        ttl = self._ttl(timeout)
        if ttl is None:
            self._cache.pop(key, None)
        else:
            self._cache.set(key, value, ttl=ttl)
        return True

    def set_many(self, mapping: dict[str, Any], timeout: int | dt.timedelta | None = None) -> list[Any]:
        """Store every item: one call into Rust. Returns the keys set (all of them)."""
        ttl = self._ttl(timeout)
        if ttl is None:
            self._cache.delete_many(mapping)
        else:
            self._cache.set_many(mapping, ttl=ttl)
        return list(mapping)

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        with self._lock:
            if key in self._cache:
                return False
            return self.set(key, value, timeout)

    def delete(self, key: str) -> bool:
        return self._cache.pop(key, _MISSING) is not _MISSING

    def delete_many(self, *keys: str) -> list[Any]:
        """Delete every key: one call into Rust. Returns them all (absent keys count as deleted)."""
        self._cache.delete_many(keys)
        return list(keys)

    def clear(self) -> bool:
        self._cache.clear()
        return True

    def inc(self, key: str, delta: int = 1) -> int | None:
        with self._lock:
            value = (self._cache.get(key) or 0) + delta
            self.set(key, value)
        return int(value)

    def dec(self, key: str, delta: int = 1) -> int | None:
        return self.inc(key, -delta)

    def close(self) -> None:
        """Drop every entry and free the pool (stops the policy's reclaimer, if any)."""
        self._cache.close()
