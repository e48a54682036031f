"""``zspool.Cache``: a compacting, compressing in-process cache whose entries live in a pool.

A ``MutableMapping`` from ``str`` or ``bytes`` keys to ``bytes`` values (or any picklable
value with ``serializer="pickle"``), with cachetools' conventions: a byte budget
``maxsize``, ``currsize``, ``get``/``pop``/``popitem``/``setdefault``/``clear``. Keys and
values stay out of the Python heap: each entry is one object in a :class:`zspool.Pool`, and
the index is Rust (a small slot per entry holding the entry's place in the pool, sized in
``rust/zspool-cache/src/slots.rs`` and ``index.rs``; no Python object per entry). A pool
holds one cache. When the budget is reached, entries are evicted with SIEVE (or
LRU). Deleted and evicted entries leave holes in the pool's pages; compaction, run by a
shrinker policy, moves entries together and gives whole pages back to the OS.

Everything on the data path is the Rust class :class:`zspool._core.Cache`, inherited as is;
this module adds the ``MutableMapping`` mixins (``keys``, ``items``, ``values``,
``update``, ``==``), the serializer, copying and pickling, and the shrinker policy with its
reclaimer thread.
"""

from __future__ import annotations

import copy
import math
import pickle
import types
import warnings
import weakref
from collections.abc import Callable, ItemsView, Iterator, MutableMapping, ValuesView
from typing import Any, Literal, Protocol, Self

from zspool import _core
from zspool.errors import ConfigError
from zspool.pool import Pool
from zspool.reclaimer import DEFAULT_INTERVAL_S, Reclaimer
from zspool.shrinker import ShrinkerPolicy

__all__ = ["Cache", "Serializer"]

Key = str | bytes
_DEFAULT_NAME = "cache"  # the cache's and its pool's name when none is given
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


class _Snapshotting(Protocol):
    """A cache whose ``_items()`` takes a snapshot of its entries in one step (``Cache``,
    ``SharedCache``)."""

    def _items(self) -> list[tuple[Key, Any]]: ...


class _SnapshotItems(ItemsView[Key, Any]):
    """``items()``: iterates over a snapshot taken in one step, so an entry that expires, is
    evicted or is deleted by another thread or process meanwhile cannot make it fail."""

    _mapping: _Snapshotting

    def __iter__(self) -> Iterator[tuple[Key, Any]]:
        return iter(self._mapping._items())


class _SnapshotValues(ValuesView[Any]):
    """``values()``: as :class:`_SnapshotItems`."""

    _mapping: _Snapshotting

    def __iter__(self) -> Iterator[Any]:
        return (value for _, value in self._mapping._items())


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
      the value, after compression); ``0`` caches nothing. ``currsize`` is the current total.
      A single entry larger than ``maxbytes`` raises :class:`ObjectSizeError` (a ``ValueError``).
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
      never returned. Resolution 1 ns; TTLs past the clock's range (~584 years) never expire.
    - ``eviction``: ``"sieve"`` (scan-resistant, the default) or ``"lru"``.
    - ``serializer``: ``None`` (values must be ``bytes``), ``"pickle"``, or an object with
      ``dumps``/``loads``; ``bytes`` values are always stored as they are. An error of
      ``dumps`` (``pickle.PicklingError`` for a value pickle cannot serialize) propagates
      unchanged, and nothing is stored.
    - ``policy``: a shrinker policy (an installed name such as ``"idle-only"``, or an
      object) registered with the cache's pool, with ``policy_options``; the cache then
      runs a :class:`Reclaimer` thread (``reclaimer_interval_s`` seconds between ticks)
      unless ``reclaimer`` names one to join. ``close()`` stops it; a cache dropped without
      ``close()`` stops it too, with a ``ResourceWarning``.

    Iteration walks a snapshot of the keys, oldest first. ``len()`` drops expired entries first.

    **A mapping, as ``dict`` and ``cachetools.Cache`` are**, except where its nature forces a
    difference. The forced differences, all of them:

    1. Keys are ``str`` or ``bytes`` and are compared by their bytes, not by ``__eq__``/
       ``__hash__`` (``"a"`` and ``b"a"`` are different keys); anything else is ``TypeError``.
    2. Values are copied in and out: ``c[k] is c[k]`` is false, and mutating a value read
       from the cache does not change the cache. Values are ``bytes`` unless a serializer is
       given, which decides what round-trips.
    3. The budget is bytes of stored entries, not a count or ``getsizeof``: ``maxsize`` and
       ``currsize`` are bytes, and inserting may evict other entries (cachetools, not dict).
    4. Entries may vanish by themselves (eviction, TTL): ``k in c`` may be true and ``c[k]``
       raise ``KeyError`` a moment later, and ``len()`` may shrink without a delete.
       ``items()``, ``values()``, ``==`` and copies take one consistent snapshot;
       ``dict(c)`` and ``{**c}`` list the keys and then look each one up (CPython's protocol
       for any mapping that is not a dict), so use ``dict(c.items())`` for a snapshot.
    5. After ``close()`` every operation, ``len()`` included, raises
       :class:`PoolClosedError`.
    6. ``copy.copy``, ``copy.deepcopy`` and ``pickle`` make a new cache (a new pool) with the
       same configuration and entries (remaining TTLs kept); a cache joined to a
       ``reclaimer=`` cannot be pickled (a thread is not picklable: ``TypeError``), and a
       copy joins the same reclaimer.
    7. ``setdefault(k)`` with the default ``None`` stores ``None``, so it needs a serializer
       (``TypeError`` otherwise), as any non-``bytes`` value does.

    Subclasses may define ``__missing__(key)``, which ``c[key]`` calls on a miss (and only
    ``c[key]``), as for ``dict``.

    Fork-safe: ``os.fork()`` waits for the cache operation in progress in other threads, and
    the child gets every entry the parent had. (Should another thread keep the cache busy
    for over a second, the fork goes ahead and the child's copy of this cache is closed,
    raising :class:`PoolClosedError` that says so; create a new one there.)
    """

    def __class_getitem__(cls, params: Any) -> types.GenericAlias:
        """``Cache[str, bytes]`` in annotations, as for ``dict``."""
        return types.GenericAlias(cls, params)

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
        reclaimer_interval_s: float = DEFAULT_INTERVAL_S,
        name: str | None = None,
        **policy_options: Any,
    ) -> Self:
        if isinstance(maxbytes, bool) or not isinstance(maxbytes, int):
            raise TypeError(f"maxbytes must be an int (bytes), not {type(maxbytes).__name__}")
        if not 0 <= maxbytes < 2**64:
            raise ValueError(f"maxbytes={maxbytes} is out of range: the budget must be 0..2**64-1 bytes")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float):
                raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
            if not (ttl > 0 and math.isfinite(ttl)):
                raise ValueError(f"ttl={ttl} is out of range: seconds > 0, or None for no expiry")
        if compression_level is not None:
            if isinstance(compression_level, bool) or not isinstance(compression_level, int):
                raise TypeError(f"compression_level must be an int, not {type(compression_level).__name__}")
            if not -(2**31) <= compression_level < 2**31:
                raise ConfigError(f"zstd level={compression_level} is out of range: allowed 1..=22")
        dumps, loads = _codec(serializer)
        pool = Pool(name=name or _DEFAULT_NAME)
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
        reclaimer_interval_s: float = DEFAULT_INTERVAL_S,
        name: str | None = None,
        **policy_options: Any,
    ) -> None:
        # The Rust __new__ has built the cache and its pool.
        self.name = name or _DEFAULT_NAME
        self._own_reclaimer: Reclaimer | None = None
        self._reclaimer = reclaimer
        #: What copy and pickle rebuild this cache from: (args, kwargs) of the constructor.
        #: A subclass whose constructor takes other arguments sets its own.
        self._constructor_args: tuple[tuple[Any, ...], dict[str, Any]] = (
            (maxbytes,),
            dict(
                compression=compression,
                compression_level=compression_level,
                ttl=ttl,
                eviction=eviction,
                serializer=serializer,
                dictionary=dictionary,
                policy=policy,
                reclaimer=reclaimer,
                reclaimer_interval_s=reclaimer_interval_s,
                name=name,
                **policy_options,
            ),
        )
        if dictionary is not None and dictionary is not False:
            self.pool.recompressor = _Recompressor(self)
        if policy is None:
            if policy_options:
                raise TypeError(f"options {sorted(policy_options)} only apply with a policy")
            return
        pool: Pool = self.pool
        pool.register_shrinker(policy, **policy_options)
        if reclaimer is None:
            own = Reclaimer(pool, interval_s=reclaimer_interval_s, name=f"zspool-reclaimer-{self.name}")
            own._warn_if_dropped = False  # the cache warns: it is what the user dropped
            own.start()
            self._own_reclaimer = own
            assert own._state is not None
            self._finalizer = weakref.finalize(self, _dropped_open, type(self).__name__, self.name, own._state)
            self._finalizer.atexit = False  # at exit the daemon thread just ends: nothing to warn about
        else:
            reclaimer.add_pool(pool)

    @property
    def pool(self) -> Pool:
        """The :class:`zspool.Pool` holding the entries (compact it, read its stats)."""
        return super().pool  # type: ignore[return-value]

    def compact(self, max_pages: int | None = None, time_budget: float | None = None) -> _core.CompactionReport:
        """Compact the cache's pool now (GIL released); see :meth:`zspool.Pool.compact`."""
        return self.pool.compact(max_pages, time_budget)

    def close(self) -> None:
        """Stop the cache's reclaimer (if it runs one), drop every entry, free the pool.

        Never fails to close: a policy call still running in the reclaimer thread is waited
        for a second at most; the thread has been told to stop and ends when that call
        returns (the pool it would compact is closed by then)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer.detach()
        own, self._own_reclaimer = getattr(self, "_own_reclaimer", None), None
        if own is not None:
            own._signal_stop()
        elif getattr(self, "_reclaimer", None) is not None:
            self._reclaimer.remove_pool(self.pool)  # type: ignore[union-attr]
        super().close()
        if own is not None:
            try:
                own.stop(timeout_s=1.0)
            except TimeoutError:
                pass  # told to stop; it exits, closing its pipe and trigger, after the call

    def items(self) -> _SnapshotItems:
        """(key, value) pairs of one consistent snapshot, oldest first."""
        return _SnapshotItems(self)

    def values(self) -> _SnapshotValues:
        """Values of one consistent snapshot, oldest first."""
        return _SnapshotValues(self)

    def __iter__(self) -> Iterator[Key]:
        return super().__iter__()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cls = type(self).__name__
        if self.closed:
            return f"{cls}(name={self.name!r}, closed)"
        return f"{cls}(name={self.name!r}, entries={len(self)}, currsize={self.currsize}, maxsize={self.maxsize})"

    # -- copies and pickles: a new cache with the same configuration and entries ----------

    def __reduce__(self) -> tuple[Any, ...]:
        args, kwargs = self._constructor_args
        if kwargs.get("reclaimer") is not None:
            raise TypeError(
                f"cannot pickle {type(self).__name__} {self.name!r}: it joins a Reclaimer, whose thread "
                "cannot be pickled; pickle a cache without reclaimer= (or copy.copy it in-process)"
            )
        return (_rebuild, (type(self), args, kwargs, self._entries()))

    def __copy__(self) -> Cache:
        args, kwargs = self._constructor_args
        return _rebuild(type(self), args, kwargs, self._entries())

    def __deepcopy__(self, memo: dict[int, Any]) -> Cache:
        args, kwargs = self._constructor_args
        reclaimer = kwargs.get("reclaimer")
        if reclaimer is not None:
            memo[id(reclaimer)] = reclaimer  # a thread is shared, never copied
        return _rebuild(type(self), copy.deepcopy(args, memo), copy.deepcopy(kwargs, memo), self._entries())


def _rebuild(cls: type[Cache], args: tuple[Any, ...], kwargs: dict[str, Any], entries: list[tuple[Any, ...]]) -> Cache:
    """A new ``cls(*args, **kwargs)`` holding ``entries`` (as ``Cache._entries()`` gives them)."""
    cache = cls(*args, **kwargs)
    cache._restore(entries)
    return cache


def _dropped_open(cls: str, name: str, reclaimer_state: Any) -> None:
    """Finalizer of a cache with a reclaimer thread, dropped without close()."""
    reclaimer_state.set()
    warnings.warn(
        f"{cls} {name!r} was dropped without close(); its reclaimer thread is stopped now "
        "(call close(), or use the cache as a context manager)",
        ResourceWarning,
        stacklevel=2,
    )
