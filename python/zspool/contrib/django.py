"""``zspool.contrib.django.ZspoolCache``: a Django cache backend over :class:`zspool.Cache`.

Configure it in ``settings.CACHES``::

    CACHES = {
        "default": {
            "BACKEND": "zspool.contrib.django.ZspoolCache",
            "LOCATION": "pages",                  # caches with one LOCATION share one store
            "TIMEOUT": 300,                       # Django's default timeout, seconds
            "OPTIONS": {
                "maxbytes": 256 * 2**20,          # the budget, bytes of stored entries
                "compression": "zstd",            # None, "lz4" or "zstd"
                "policy": "idle-only",            # a shrinker policy: compaction in the background
            },
        }
    }

Semantics are Django's (its own ``BaseCacheTests`` run against this backend, see
tests/contrib/test_django.py): a timeout of ``None`` keeps an entry forever, ``0`` or less
expires it at once (a ``set`` deletes the key), ``DEFAULT_TIMEOUT`` is the backend's
``TIMEOUT``; ``incr``/``decr`` keep the remaining time to live; key versioning, prefixes
and validation are the base class's. Values are pickled; each entry is one object in the
store's pool, so a million entries cost no Python objects.

Caches with the same ``LOCATION`` in one process share one store, as LocMem's do; the
first one created picks its ``OPTIONS`` and a later one that asks for different ones is
refused. ``MAX_ENTRIES`` and ``CULL_FREQUENCY`` do not apply: the store is budgeted in
bytes (``maxbytes``) and evicts with SIEVE, like Django's memcached and Redis backends
ignore them.

``OPTIONS["shared"] = True`` is reserved for ``zspool.SharedCache`` (one store for all the
worker processes of a host); it does not exist yet, so asking for it raises
``ImproperlyConfigured`` rather than quietly giving each worker its own store.
"""

from __future__ import annotations

import math
import pickle
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import (
    DEFAULT_TIMEOUT,
    BaseCache,
)
from django.core.exceptions import ImproperlyConfigured

from zspool.cache import Cache

__all__ = ["ZspoolCache"]

DEFAULT_MAXBYTES = 64 * 2**20
# The OPTIONS this backend reads (each a zspool.Cache argument), and the ones Django's
# base class reads for count-budgeted backends, accepted and ignored here.
_STORE_OPTIONS = frozenset({"maxbytes", "compression", "compression_level", "eviction", "policy", "policy_options"})
_IGNORED_OPTIONS = frozenset({"MAX_ENTRIES", "CULL_FREQUENCY"})

# An entry's value: the absolute expiry (time.time() seconds, 0.0 for never) and the
# pickle. The pool's own TTL does the expiring; the header lets incr/decr keep the
# remaining time, which the store does not report.
_EXPIRY = struct.Struct("<d")
_FOREVER = 0.0
_MISSING = object()


class _Store:
    """One LOCATION's cache, its options, and the lock its read-modify-write calls take."""

    def __init__(self, location: str, options: dict[str, Any]) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.cache = Cache(
            options.get("maxbytes", DEFAULT_MAXBYTES),
            compression=options.get("compression"),
            compression_level=options.get("compression_level"),
            eviction=options.get("eviction", "sieve"),
            policy=options.get("policy"),
            name=f"django:{location}" if location else "django",
            **options.get("policy_options", {}),
        )


_stores: dict[str, _Store] = {}
_stores_lock = threading.Lock()


def _store_for(location: str, options: Mapping[str, Any]) -> _Store:
    if options.get("shared"):
        raise ImproperlyConfigured(
            "OPTIONS['shared'] asks for zspool.SharedCache (one store for all worker "
            "processes of a host), which zspool does not provide yet; drop the option to "
            "keep one store per process."
        )
    unknown = set(options) - _STORE_OPTIONS - _IGNORED_OPTIONS - {"shared"}
    if unknown:
        raise ImproperlyConfigured(
            f"unknown OPTIONS {sorted(unknown)} for zspool.contrib.django.ZspoolCache; "
            f"it reads {sorted(_STORE_OPTIONS)}"
        )
    wanted = {k: v for k, v in options.items() if k in _STORE_OPTIONS}
    with _stores_lock:
        store = _stores.get(location)
        if store is None or store.cache.closed:
            store = _stores[location] = _Store(location, wanted)
        elif store.options != wanted:
            raise ImproperlyConfigured(
                f"LOCATION {location!r} is already a zspool store with OPTIONS {store.options}; "
                f"caches that share a LOCATION share its store and must ask for the same "
                f"OPTIONS (got {wanted})"
            )
        return store


def _pack(value: Any, expiry: float) -> bytes:
    return _EXPIRY.pack(expiry) + pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def _unpack(raw: bytes) -> tuple[Any, float]:
    return pickle.loads(raw[_EXPIRY.size :]), _EXPIRY.unpack_from(raw)[0]


def _expiry(backend_timeout: float | None) -> float:
    """The header's expiry for get_backend_timeout()'s answer (None: forever)."""
    return _FOREVER if backend_timeout is None else backend_timeout


def _ttl(expiry: float) -> float:
    """Seconds left until ``expiry`` for the pool's TTL (math.inf: never; <= 0: already due)."""
    return math.inf if expiry == _FOREVER else expiry - time.time()


class ZspoolCache(BaseCache):
    """A Django cache backend whose entries live in a compacting zspool pool.

    ``LOCATION`` names the store (shared by every cache of that name in the process);
    ``OPTIONS``: ``maxbytes`` (bytes, default 64 MiB), ``compression`` (``None``,
    ``"lz4"``, ``"zstd"``), ``compression_level``, ``eviction`` (``"sieve"`` or
    ``"lru"``), ``policy`` (a shrinker policy name or object) and ``policy_options`` (a
    dict for it). See the module docstring.
    """

    pickle_protocol = pickle.HIGHEST_PROTOCOL

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self._store = _store_for(location, params.get("OPTIONS", {}))
        self._cache = self._store.cache
        self._lock = self._store.lock

    # Writes take the store's lock (so add/incr/touch, which read then write, are atomic
    # against them); pickling happens before it is taken. Reads take no lock.

    def _put(self, key: str, raw: bytes, expiry: float) -> bool:
        """Store ``raw`` under ``key`` for the time left until ``expiry``; caller holds the lock."""
        ttl = _ttl(expiry)
        if ttl <= 0:
            self._cache.pop(key, None)
            return False
        self._cache.set(key, raw, ttl=ttl)
        return True

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        expiry = _expiry(self.get_backend_timeout(timeout))
        raw = _pack(value, expiry)
        with self._lock:
            if key in self._cache:
                return False
            self._put(key, raw, expiry)
            return True

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        raw = self._cache.get(key, _MISSING)
        return default if raw is _MISSING else _unpack(raw)[0]

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        expiry = _expiry(self.get_backend_timeout(timeout))
        raw = _pack(value, expiry)
        with self._lock:
            self._put(key, raw, expiry)

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        expiry = _expiry(self.get_backend_timeout(timeout))
        with self._lock:
            raw = self._cache.get(key, _MISSING)
            if raw is _MISSING:
                return False
            self._put(key, _EXPIRY.pack(expiry) + raw[_EXPIRY.size :], expiry)
            return True

    def delete(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        with self._lock:
            return self._cache.pop(key, _MISSING) is not _MISSING

    def has_key(self, key: Any, version: int | None = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return key in self._cache

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        """Add ``delta`` to the value; the entry keeps its remaining time to live."""
        key = self.make_and_validate_key(key, version=version)
        with self._lock:
            raw = self._cache.get(key, _MISSING)
            if raw is _MISSING:
                raise ValueError(f"Key '{key}' not found")
            value, expiry = _unpack(raw)
            new_value = value + delta
            if not self._put(key, _pack(new_value, expiry), expiry):
                raise ValueError(f"Key '{key}' not found")  # expired in between
        return new_value

    # decr is the base class's: incr(key, -delta).

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """The found keys' values: one call into Rust for all of them."""
        asked = {self.make_and_validate_key(key, version=version): key for key in keys}
        raws = self._cache.get_many(list(asked), _MISSING)
        return {asked[k]: _unpack(raw)[0] for k, raw in zip(asked, raws, strict=True) if raw is not _MISSING}

    def set_many(
        self, data: Mapping[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None
    ) -> list[Any]:
        """Store every item with one timeout: one call into Rust. Returns the keys that failed (none)."""
        expiry = _expiry(self.get_backend_timeout(timeout))
        items = {self.make_and_validate_key(k, version=version): _pack(v, expiry) for k, v in data.items()}
        ttl = _ttl(expiry)
        with self._lock:
            if ttl <= 0:
                self._cache.delete_many(items)
            else:
                self._cache.set_many(items, ttl=ttl)
        return []

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Delete every key: one call into Rust."""
        names = [self.make_and_validate_key(key, version=version) for key in keys]
        with self._lock:
            self._cache.delete_many(names)
