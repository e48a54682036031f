"""``zspool.Cache``: a compacting, compressing in-process cache whose entries live in a pool.

A ``MutableMapping`` from ``str`` or ``bytes`` keys to ``bytes`` values (or any picklable
value with ``serializer="pickle"``), with cachetools' conventions: a byte budget
``maxsize``, ``currsize``, ``get``/``pop``/``popitem``/``setdefault``/``clear``. Keys and
values stay out of the Python heap: each entry is one object in a :class:`zspool.Pool`, and
the index is Rust (about 30 bytes per entry, no Python object per entry). When the budget
is reached, entries are evicted with SIEVE (or LRU). Deleted and evicted entries leave
holes in the pool's pages; compaction, run by a shrinker policy, moves entries together and
gives whole pages back to the OS.

Everything on the data path is the Rust class :class:`zspool._core.Cache`, inherited as is;
this module adds the ``MutableMapping`` mixins (``keys``, ``items``, ``values``,
``update``, ``==``), the serializer, and the shrinker policy with its reclaimer thread.
"""

from __future__ import annotations

import math
import pickle
import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Literal

from zspool import _core
from zspool.pool import Pool
from zspool.reclaimer import Reclaimer
from zspool.shrinker import ShrinkerPolicy

__all__ = ["Cache", "Serializer"]

Key = str | bytes
Serializer = Literal["pickle"] | Any  # "pickle", or an object with dumps(obj) -> bytes and loads(bytes) -> obj


def _codec(serializer: Serializer | None) -> tuple[Callable[[Any], bytes] | None, Callable[[bytes], Any] | None]:
    if serializer is None:
        return None, None
    if serializer == "pickle":
        return (lambda obj: pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)), pickle.loads
    dumps, loads = getattr(serializer, "dumps", None), getattr(serializer, "loads", None)
    if not callable(dumps) or not callable(loads):
        raise TypeError(
            f"serializer must be None, 'pickle', or an object with dumps(obj) -> bytes and loads(bytes) -> obj; "
            f"got {serializer!r}"
        )
    return dumps, loads


class _Recompressor:
    """What a cache with a zstd dictionary lends its pool's shrinkers (see
    :class:`zspool.shrinker.ShrinkControl`): the pages recompression is expected to free, and
    one slice of it. Holds the cache weakly: the pool must not keep its cache alive."""

    def __init__(self, cache: Cache) -> None:
        self._cache = weakref.ref(cache)

    def pages(self) -> int:
        cache = self._cache()
        return 0 if cache is None or cache.closed else cache.recompressible_pages()

    def __call__(self, time_budget: float | None) -> _core.RecompressReport | None:
        cache = self._cache()
        return None if cache is None or cache.closed else cache.recompress(time_budget=time_budget)


class Cache(_core.Cache, MutableMapping[Key, Any]):
    """A byte-budgeted, thread-safe cache whose keys and values live in a compacting pool.

    ``Cache(maxbytes, *, compression=None, compression_level=None, ttl=None,
    eviction="sieve", serializer=None, policy=None, reclaimer=None, name=None, **policy_options)``

    - ``maxbytes``: the budget, in bytes of stored entries (a 2..4-byte header, the key and
      the value, after compression). ``currsize`` is the current total. A single entry
      larger than ``maxbytes`` raises :class:`ObjectSizeError` (a ``ValueError``).
    - ``compression``: ``None``, ``"lz4"`` or ``"zstd"`` (``compression_level`` 1..22,
      default 3); a value is kept compressed only where that saves at least 16 bytes.
    - ``dictionary`` (zstd only): ``True`` trains a zstd dictionary from a sample of the
      stored values once 2 MiB or 10,000 values of 64 bytes or more have come in, and
      compresses new values with it; ``bytes`` uses a dictionary you trained (a corrupt or
      foreign one raises ``ValueError``). :meth:`train_dictionary` retrains;
      :meth:`recompress` rewrites older values with the current dictionary and compacts.
      Dictionaries live in the pool and count in ``currsize``.
    - ``ttl``: default time to live in seconds (``None``: forever); ``set(key, value,
      ttl=...)`` overrides it per entry (``math.inf``: never expires). Expired entries are
      never returned.
    - ``eviction``: ``"sieve"`` (scan-resistant, the default) or ``"lru"``.
    - ``serializer``: ``None`` (values must be ``bytes``), ``"pickle"``, or an object with
      ``dumps``/``loads``; ``bytes`` values are always stored as they are.
    - ``policy``: a shrinker policy (an installed name such as ``"idle-only"``, or an
      object) registered with the cache's pool, with ``policy_options``; the cache then
      runs a :class:`Reclaimer` thread (``reclaimer_interval_s`` seconds between ticks)
      unless ``reclaimer`` names one to join. ``close()`` stops it.

    Iteration walks a snapshot of the keys, oldest first. ``len()`` drops expired entries first.

    Fork-safe: ``os.fork()`` waits for the cache operation in progress in other threads, and
    the child gets every entry the parent had. (Should another thread keep the cache busy
    for over a second, the fork goes ahead and the child's copy of this cache is closed,
    raising :class:`PoolClosedError` that says so; create a new one there.)
    """

    def __new__(
        cls,
        maxbytes: int,
        *,
        compression: Literal["lz4", "zstd"] | None = None,
        compression_level: int | None = None,
        ttl: float | None = None,
        eviction: Literal["sieve", "lru"] = "sieve",
        serializer: Serializer | None = None,
        dictionary: bool | bytes | None = None,
        policy: ShrinkerPolicy | str | None = None,
        reclaimer: Reclaimer | None = None,
        reclaimer_interval_s: float = 1.0,
        name: str | None = None,
        **policy_options: Any,
    ) -> Cache:
        if isinstance(maxbytes, bool) or not isinstance(maxbytes, int):
            raise TypeError(f"maxbytes must be an int (bytes), not {type(maxbytes).__name__}")
        if maxbytes <= 0:
            raise ValueError(f"maxbytes={maxbytes} is out of range: the budget must be >= 1 byte")
        if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"ttl={ttl} is out of range: seconds > 0, or None for no expiry")
        dumps, loads = _codec(serializer)
        pool = Pool(name=name or "cache")
        return super().__new__(
            cls,
            maxbytes,
            pool=pool,
            compression=compression,
            compression_level=compression_level,
            ttl=ttl,
            eviction=eviction,
            dumps=dumps,
            loads=loads,
            dictionary=dictionary,
        )

    def __init__(
        self,
        maxbytes: int,
        *,
        compression: Literal["lz4", "zstd"] | None = None,
        compression_level: int | None = None,
        ttl: float | None = None,
        eviction: Literal["sieve", "lru"] = "sieve",
        serializer: Serializer | None = None,
        dictionary: bool | bytes | None = None,
        policy: ShrinkerPolicy | str | None = None,
        reclaimer: Reclaimer | None = None,
        reclaimer_interval_s: float = 1.0,
        name: str | None = None,
        **policy_options: Any,
    ) -> None:
        # The Rust __new__ has built the cache and its pool.
        self.name = name or "cache"
        self._own_reclaimer: Reclaimer | None = None
        self._reclaimer = reclaimer
        if dictionary is not None and dictionary is not False:
            self.pool.recompressor = _Recompressor(self)
        if policy is None:
            if policy_options:
                raise TypeError(f"options {sorted(policy_options)} only apply with a policy")
            return
        pool: Pool = self.pool
        pool.register_shrinker(policy, **policy_options)
        if reclaimer is None:
            self._own_reclaimer = Reclaimer(pool, interval_s=reclaimer_interval_s, name=f"zspool-reclaimer-{self.name}")
            self._own_reclaimer.start()
        else:
            reclaimer.add_pool(pool)

    @property
    def pool(self) -> Pool:  # type: ignore[override]
        """The :class:`zspool.Pool` holding the entries (compact it, read its stats)."""
        return super().pool  # type: ignore[return-value]

    def compact(self, max_pages: int | None = None, time_budget: float | None = None) -> _core.CompactionReport:
        """Compact the cache's pool now (GIL released); see :meth:`zspool.Pool.compact`."""
        return self.pool.compact(max_pages, time_budget)

    def close(self) -> None:
        """Stop the cache's reclaimer (if it runs one), drop every entry, free the pool."""
        if self._own_reclaimer is not None:
            self._own_reclaimer.stop()
            self._own_reclaimer = None
        elif self._reclaimer is not None:
            self._reclaimer.remove_pool(self.pool)
        super().close()

    def __iter__(self) -> Iterator[Key]:
        return super().__iter__()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.closed:
            return f"<zspool.Cache name={self.name!r} closed>"
        return f"<zspool.Cache name={self.name!r} entries={len(self)} currsize={self.currsize} maxsize={self.maxsize}>"
