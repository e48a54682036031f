"""Type stubs for ``zspool._core``, the Rust extension. Import these names from ``zspool``."""

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeAlias, final

from typing_extensions import Buffer, disjoint_base  # in collections.abc / typing from 3.12 / 3.15

__all__ = [
    "Cache",
    "CacheStats",
    "ClassStats",
    "CompactionReport",
    "DEFAULT_MAX_PAGES_PER_ZSPAGE",
    "DictionaryReport",
    "DictionaryStats",
    "MAX_CLASS_SIZE",
    "SHARED_MAX_ENTRY_SIZE",
    "MAX_OBJECT_SIZE",
    "PAGE_SIZE",
    "Pool",
    "PoolActivity",
    "PoolStats",
    "RecompressReport",
    "SharedCache",
    "SharedCacheStats",
    "__version__",
]

#: Bytes per OS page: the unit of ``pages_used``, ``can_compact()`` and ``pages_freed``.
PAGE_SIZE: Final[int]
#: The largest object packed into a size class, in bytes (8192: two pages). Bigger ones take
#: whole pages of their own and are never moved by compaction.
MAX_CLASS_SIZE: Final[int]
#: The largest entry a ``SharedCache`` stores, in bytes of header, key and stored value (65536).
SHARED_MAX_ENTRY_SIZE: Final[int]
#: A pool's ``max_pages_per_zspage`` when none is given (8, as the kernel's default).
DEFAULT_MAX_PAGES_PER_ZSPAGE: Final[int]
#: The largest object a pool accepts, in bytes (1 GiB).
MAX_OBJECT_SIZE: Final[int]
#: The package version.
__version__: Final[str]

_StopReason: TypeAlias = Literal[
    "done", "nothing_freeable", "budget_reached", "already_running", "closed", "interrupted"
]

@disjoint_base
class Pool:
    """A compacting pool of small objects, after Linux's zsmalloc.

    Objects are byte strings of 0..MAX_OBJECT_SIZE bytes, addressed by *handle* (an int).
    Objects up to MAX_CLASS_SIZE (8192) bytes are packed into size classes of zspages (chains
    of pages, objects may straddle pages); larger ones get whole pages of their own, as does
    an object of 4097..8192 bytes when a new zspage for it would pass ``mem_limit`` but its
    own two pages would not. Every method is
    thread-safe; compaction and bulk copies release the GIL.

    Handles are ints in ``0..2**64``; a handle of the wrong type raises ``TypeError``, one
    that names no live object of this pool raises ``InvalidHandleError``. Every method
    except ``close()`` raises ``PoolClosedError`` after the pool was closed.
    """

    def __new__(cls, *, max_pages_per_zspage: int = 8, mem_limit: int | None = None, name: str | None = None) -> Self:
        """Create a pool.

        max_pages_per_zspage: longest page chain a zspage of a class up to PAGE_SIZE may use,
            1..16 (pages); classes above a page always use up to 16, which wastes least.
        mem_limit: most bytes of pages the pool may hold (at least 4096), or None for no limit.
        name: shown in repr() and stats().
        Out-of-range values raise ConfigError.
        """
    def malloc(self, size: int) -> int:
        """Allocate a zero-filled object of exactly ``size`` bytes (0..MAX_OBJECT_SIZE); return its handle.

        Raises ObjectSizeError for a size out of range, PoolFullError past mem_limit (the
        pool is then unchanged).
        """
    def store(self, data: Buffer) -> int:
        """Allocate an object holding a copy of ``data`` (any C-contiguous bytes-like object); return its handle."""
    def write(self, handle: int, data: Buffer, offset: int = 0) -> None:
        """Copy ``data`` (any C-contiguous bytes-like object) into the object at byte ``offset``.

        Raises OutOfBoundsError unless offset + len(data) <= size of the object.
        """
    def read(self, handle: int, offset: int = 0, size: int | None = None) -> bytes:
        """Return ``size`` bytes from byte ``offset`` of the object (None: to the end) as new bytes."""
    def read_into(self, handle: int, buffer: Buffer, offset: int = 0) -> int:
        """Copy min(len(buffer), object size - offset) bytes from byte ``offset`` into the
        writable ``buffer``; return the number of bytes copied. A read-only buffer raises TypeError."""
    def load(self, handle: int) -> bytes:
        """Return the whole object as new bytes."""
    def size_of(self, handle: int) -> int:
        """Return the object's size in bytes."""
    def free(self, handle: int) -> None:
        """Free the object. The handle becomes invalid; using it again raises InvalidHandleError."""
    def stats(self) -> PoolStats:
        """Pool totals now (a snapshot)."""
    def class_stats(self) -> list[ClassStats]:
        """One row per size class, smallest class first (a snapshot)."""
    def activity(self) -> PoolActivity:
        """How busy the pool is now."""
    def can_compact(self) -> int:
        """Pages a full compaction would free now."""
    def compact(
        self,
        max_pages: int | None = None,
        time_budget: float | None = None,
        *,
        slice_objects: int = 64,
        slice_us: float = 50.0,
    ) -> CompactionReport:
        """Move objects out of sparse zspages into fuller ones and give the emptied pages back to the OS.

        max_pages: stop once this many pages were freed (None: no limit).
        time_budget: stop after this many seconds (None: no limit).
        slice_objects, slice_us: the compactor releases a class's lock after this many moved
        objects or microseconds (and after every emptied zspage, and at once when another
        thread waits for the lock), so allocations in that class wait at most one slice.
        Runs without the GIL. One compaction runs per pool at a time: a concurrent call
        returns at once with stop_reason "already_running".
        """
    def close(self) -> None:
        """Free every object and give all pages back to the OS. Idempotent."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    @property
    def name(self) -> str | None:
        """The name given to the constructor."""
    @property
    def mem_limit(self) -> int | None:
        """The most bytes of pages the pool may hold, or None."""
    @property
    def max_pages_per_zspage(self) -> int:
        """The longest page chain a zspage may use (pages)."""
    def __len__(self) -> int:
        """Number of live objects; PoolClosedError after close()."""
    def __contains__(self, handle: object, /) -> bool:
        """Whether ``handle`` names a live object of this pool (False for non-ints);
        PoolClosedError after close()."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        """Close the pool; never suppresses the exception."""

@final
class PoolStats:
    """Pool totals (after zram's ``mm_stat``), from ``Pool.stats()``."""

    @property
    def name(self) -> str | None:
        """The pool's name."""
    @property
    def pages_used(self) -> int:
        """Pages held for objects (zspages and large objects)."""
    @property
    def mem_used_bytes(self) -> int:
        """``pages_used`` in bytes."""
    @property
    def mem_used_max(self) -> int:
        """The most bytes of pages ever held at once."""
    @property
    def mem_limit(self) -> int | None:
        """The pool's mem_limit in bytes, or None."""
    @property
    def objects(self) -> int:
        """Live objects."""
    @property
    def payload_bytes(self) -> int:
        """Bytes of live objects (their requested sizes)."""
    @property
    def large_objects(self) -> int:
        """Live objects with whole pages of their own: those larger than MAX_CLASS_SIZE, and
        those of 4097..8192 bytes stored at ``mem_limit`` (see ``Pool``)."""
    @property
    def large_object_pages(self) -> int:
        """Pages held by large objects."""
    @property
    def freeable_pages(self) -> int:
        """Pages a full compaction would free now."""
    @property
    def metadata_bytes(self) -> int:
        """Heap bytes of bookkeeping (handle tables, zspage metadata), outside ``mem_used_bytes``."""
    @property
    def pages_compacted(self) -> int:
        """Pages freed by compaction, ever."""
    @property
    def objects_migrated(self) -> int:
        """Objects moved by compaction, ever."""
    @property
    def compactions(self) -> int:
        """Compaction runs that had something to do."""
    def as_dict(self) -> dict[str, int | str | None]:
        """The fields as a new dict."""

@final
class ClassStats:
    """One size class (a row of the kernel's debugfs ``classes`` table), from ``Pool.class_stats()``."""

    @property
    def index(self) -> int:
        """The kernel's class index (the size slot the class was created for)."""
    @property
    def size(self) -> int:
        """Object slot size in bytes."""
    @property
    def pages_per_zspage(self) -> int:
        """Pages in each zspage of this class."""
    @property
    def objs_per_zspage(self) -> int:
        """Object slots in each zspage of this class."""
    @property
    def fullness(self) -> tuple[int, int, int, int, int, int, int, int, int, int, int, int]:
        """Zspages per fullness group: [0] empty, [1]..[10] up to 10 %, 20 %, ... 90 %, 99 % in use, [11] full."""
    @property
    def zspages(self) -> int:
        """Zspages in this class."""
    @property
    def obj_allocated(self) -> int:
        """Object slots in the class's zspages, used or not."""
    @property
    def obj_used(self) -> int:
        """Live objects."""
    @property
    def pages_used(self) -> int:
        """Pages held by the class."""
    @property
    def freeable(self) -> int:
        """Pages compaction could free now (the kernel's ``zs_can_compact``)."""
    @property
    def payload_bytes(self) -> int:
        """Bytes of live objects (their requested sizes)."""
    def as_dict(self) -> dict[str, int | tuple[int, ...]]:
        """The fields as a new dict."""

@final
class CompactionReport:
    """What one ``Pool.compact()`` call did."""

    @property
    def pages_freed(self) -> int:
        """Pages given back to the OS."""
    @property
    def objects_migrated(self) -> int:
        """Objects moved to another zspage."""
    @property
    def bytes_migrated(self) -> int:
        """Bytes copied by those moves."""
    @property
    def classes_scanned(self) -> int:
        """Classes that had freeable pages and were worked on."""
    @property
    def lock_yields(self) -> int:
        """Times a class lock was released and re-taken mid-class."""
    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
    @property
    def stop_reason(self) -> _StopReason:
        """Why the run ended."""
    def as_dict(self) -> dict[str, int | float | str]:
        """The fields as a new dict."""

@final
class PoolActivity:
    """How busy a pool is, from ``Pool.activity()``."""

    @property
    def ops_in_flight(self) -> int:
        """Calls inside the pool right now (malloc, store, read, write, free; not compaction)."""
    @property
    def idle_s(self) -> float:
        """Seconds since the last call finished (coarse clock: 1-4 ms resolution)."""
    def as_dict(self) -> dict[str, int | float]:
        """The fields as a new dict."""

@disjoint_base
class Cache:
    """A byte-budgeted key-value cache whose entries live in ``pool``; use ``zspool.Cache``.

    Keys are ``str`` or ``bytes`` (``"a"`` and ``b"a"`` are different keys); values are
    ``bytes``, or anything ``dumps`` accepts when a serializer is given. Thread-safe.
    Wrong key or value types raise TypeError, an entry larger than ``maxsize`` raises
    ObjectSizeError, any call after ``close()`` raises PoolClosedError.
    """

    def __new__(
        cls,
        maxbytes: int,
        *,
        pool: Pool,
        compression: Literal["lz4", "zstd"] | None = None,
        compression_level: int | None = None,
        ttl: float | None = None,
        eviction: Literal["sieve", "lru"] = "sieve",
        dumps: Callable[[Any], bytes] | None = None,
        loads: Callable[[bytes], Any] | None = None,
        dictionary: bool | bytes | None = None,
    ) -> Self:
        """maxbytes: the budget in bytes of stored entries; ttl: default seconds to live (None: forever).

        dictionary (zstd only): True trains a zstd dictionary from the values once 2 MiB or
        10,000 of them (64 bytes or more) have come in; bytes uses that dictionary
        (ValueError if it is not a zstd dictionary or is corrupt)."""
    def __getitem__(self, key: str | bytes, /) -> Any:
        """The value of ``key``; on a miss a subclass's ``__missing__(key)``, else KeyError."""
    def __setitem__(self, key: str | bytes, value: Any, /) -> None:
        """Store ``value`` under ``key`` with the default TTL, evicting as needed."""
    def __delitem__(self, key: str | bytes, /) -> None:
        """Delete ``key``; KeyError if absent."""
    def __contains__(self, key: object, /) -> bool:
        """Whether ``key`` is present and not expired (neither a hit nor a miss)."""
    def __len__(self) -> int:
        """Live entries (expired ones are dropped first); PoolClosedError after close()."""
    def __iter__(self) -> Iterator[str | bytes]:
        """Iterate over a snapshot of the keys, oldest first."""
    def get(self, key: str | bytes, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
    def set(self, key: str | bytes, value: Any, ttl: float | None = None) -> None:
        """Store with a TTL in seconds (None: the cache's default; math.inf: never expires)."""
    def pop(self, key: str | bytes, *default: Any) -> Any:
        """Remove ``key`` and return its value; ``default`` (or KeyError) if absent. Never half
        done: if the value cannot be returned (MemoryError, or ``loads`` raises) it stays."""
    def popitem(self) -> tuple[str | bytes, Any]:
        """Remove and return the entry the eviction algorithm would evict next; KeyError if empty."""
    def setdefault(self, key: str | bytes, default: Any = None) -> Any:
        """The value of ``key``; if absent, store ``default`` and return it. The default is
        checked and encoded only when it is stored, as for ``dict.setdefault``."""
    def clear(self) -> None:
        """Remove every entry."""
    def expire(self) -> int:
        """Drop every expired entry now; return how many."""
    def get_many(self, keys: Iterable[str | bytes], default: Any = None) -> list[Any]:
        """The values of ``keys`` in order (``default`` for missing ones): one call into Rust.

        Each value is copied once, straight into its new ``bytes``, so this runs with the GIL
        held; the cache lock is taken once per 256 keys and the GIL let go every 4096."""
    def set_many(
        self,
        items: Mapping[str, Any] | Mapping[bytes, Any] | Iterable[tuple[str | bytes, Any]],
        ttl: float | None = None,
    ) -> None:
        """Store every (key, value): one call into Rust, stores with the GIL released.

        Every item is checked before any is stored."""
    def _items(self) -> list[tuple[str | bytes, Any]]:
        """(key, value) of every entry, oldest first: one consistent snapshot."""
    def _entries(self) -> list[tuple[str | bytes, bytes, bool, float | None]]:
        """(key, stored bytes, serialized, seconds left or None) of every entry, oldest first."""
    def _restore(self, entries: Iterable[tuple[str | bytes, bytes, bool, float | None]]) -> None:
        """Store entries as ``_entries()`` gives them."""
    def delete_many(self, keys: Iterable[str | bytes]) -> int:
        """Delete the keys present (absent ones are skipped): one call into Rust; returns how many."""
    def stats(self) -> CacheStats:
        """Counters and sizes now, with the pool's stats."""
    def train_dictionary(self, size: int | None = None) -> int | None:
        """Train a zstd dictionary of at most ``size`` bytes (256..=1 MiB; None: 16 KiB) on a sample of the
        stored values and make it current; its id, or None if it compressed the sample no
        better than the current one (or plain zstd) and was dropped. ValueError without
        compression='zstd' or with too few values (64 of 64 bytes or more)."""
    def recompress(self, max_bytes: int | None = None, time_budget: float | None = None) -> RecompressReport:
        """Rewrite values stored without the current dictionary, or with an older one, with
        it, oldest (coldest) first, in slices that let other threads in, then compact.
        ``max_bytes``: stop after this many stored bytes were rewritten or tried;
        ``time_budget``: seconds. A later call resumes an unfinished pass."""
    def recompressible_pages(self) -> int:
        """Pages recompress() is expected to free now (0 without a dictionary, or once a pass
        for the current one is complete)."""
    def close(self) -> None:
        """Drop every entry and close the pool. Idempotent."""
    @property
    def closed(self) -> bool: ...
    @property
    def maxsize(self) -> int:
        """The budget in bytes of stored entries."""
    @property
    def currsize(self) -> int:
        """Bytes of stored entries now (header + key + value after compression)."""
    @property
    def pool(self) -> Pool:
        """The pool holding the entries."""
    @property
    def ttl(self) -> float | None:
        """The default TTL in seconds, or None."""
    @property
    def eviction(self) -> Literal["sieve", "lru"]: ...
    @property
    def compression(self) -> Literal["lz4", "zstd"] | None: ...
    @property
    def dictionary(self) -> bytes | None:
        """The current zstd dictionary's bytes (pass them as ``dictionary=`` elsewhere), or None."""

_RecompressStop: TypeAlias = Literal["done", "max_bytes", "budget_reached", "no_dictionary"]

@final
class RecompressReport:
    """What one ``Cache.recompress()`` call did."""

    @property
    def values_scanned(self) -> int: ...
    @property
    def values_recompressed(self) -> int:
        """Entries rewritten with the current dictionary."""
    @property
    def values_kept(self) -> int:
        """Entries tried but kept as they were (the new form was not smaller)."""
    @property
    def bytes_before(self) -> int:
        """Stored bytes of the rewritten entries before."""
    @property
    def bytes_after(self) -> int:
        """Stored bytes of the rewritten entries after."""
    @property
    def dictionaries_freed(self) -> int:
        """Old dictionaries freed because their last value was rewritten."""
    @property
    def pages_freed(self) -> int:
        """Pages the pool holds fewer of afterwards: zspages emptied by freeing the old objects,
        and those the compaction that followed gave back."""
    @property
    def duration_s(self) -> float: ...
    @property
    def stop_reason(self) -> _RecompressStop:
        """Why the call ended."""
    def as_dict(self) -> dict[str, int | float | str]:
        """The fields as a new dict."""

@final
class DictionaryStats:
    """One zstd dictionary of a cache (id 0: the values stored without one)."""

    @property
    def id(self) -> int: ...
    @property
    def size(self) -> int:
        """Bytes of the dictionary (a pool object, counted in currsize)."""
    @property
    def current(self) -> bool:
        """New values are compressed with it."""
    @property
    def values(self) -> int:
        """Values stored with it (compressed, or tried and kept raw)."""
    @property
    def bytes_before(self) -> int:
        """Those values' bytes before compression."""
    @property
    def bytes_after(self) -> int:
        """Those values' bytes as stored."""
    def as_dict(self) -> dict[str, int | bool]:
        """The fields as a new dict."""

@final
class DictionaryReport:
    """A cache's zstd dictionaries and recompression work, from ``Cache.stats().dictionary``."""

    @property
    def current(self) -> int | None:
        """The id of the dictionary new values use."""
    @property
    def dictionaries(self) -> list[DictionaryStats]:
        """Every live dictionary, oldest first."""
    @property
    def without_dictionary(self) -> DictionaryStats:
        """Values of 64 bytes or more stored without a dictionary."""
    @property
    def bytes(self) -> int:
        """Bytes of all live dictionaries (in currsize)."""
    @property
    def value_bytes_before(self) -> int:
        """Value bytes before compression, over every dictionary and none."""
    @property
    def value_bytes_after(self) -> int:
        """Value bytes as stored, over every dictionary and none."""
    @property
    def trained(self) -> int: ...
    @property
    def rejected(self) -> int:
        """Dictionaries trained but dropped: they did not beat the current one."""
    @property
    def freed(self) -> int:
        """Dictionaries freed once their last value left."""
    @property
    def recompressible_bytes(self) -> int:
        """Stored value bytes recompress() would rewrite now."""
    @property
    def recompress_runs(self) -> int: ...
    @property
    def values_recompressed(self) -> int: ...
    @property
    def recompressed_bytes_before(self) -> int: ...
    @property
    def recompressed_bytes_after(self) -> int: ...
    @property
    def recompress_pages_freed(self) -> int: ...
    @property
    def recompress_time_s(self) -> float: ...
    def as_dict(self) -> dict[str, Any]:
        """The fields as a new dict (dictionaries as a list of dicts)."""

@final
class CacheStats:
    """A snapshot of a cache's counters and sizes, from ``Cache.stats()``."""

    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def evictions(self) -> int:
        """Entries removed to stay within maxsize."""
    @property
    def expirations(self) -> int:
        """Entries removed because their TTL had passed."""
    @property
    def sets(self) -> int: ...
    @property
    def deletes(self) -> int:
        """Entries removed by del, pop and popitem."""
    @property
    def entries(self) -> int: ...
    @property
    def payload_bytes(self) -> int:
        """Key + value bytes of live entries, before compression."""
    @property
    def stored_bytes(self) -> int:
        """Bytes of the live entries' pool objects: currsize."""
    @property
    def maxsize(self) -> int: ...
    @property
    def compressed_entries(self) -> int: ...
    @property
    def compression_ratio(self) -> float:
        """payload_bytes / stored_bytes."""
    @property
    def hit_ratio(self) -> float:
        """hits / (hits + misses); 0.0 before any lookup."""
    @property
    def index_bytes(self) -> int:
        """Heap bytes of the Rust index, outside the pool."""
    @property
    def eviction(self) -> Literal["sieve", "lru"]: ...
    @property
    def dictionary(self) -> DictionaryReport:
        """zstd dictionaries: values and bytes before/after per dictionary, recompression work."""
    @property
    def pool(self) -> PoolStats: ...
    def as_dict(self) -> dict[str, Any]:
        """The fields as a new dict, the pool's under "pool"."""

@disjoint_base
class SharedCache:
    """A cache in a shared file, used by many processes at once; use ``zspool.SharedCache``.

    The configuration arguments are ``None`` for "the file's (or the crate's default when
    this call creates the file)"; given, they must equal the file's (``ConfigError`` names the
    field and both values). ``ttl=math.inf``: no default TTL. ``dumps``/``loads``: the codec
    for values stored serialized (used when the file's serializer is ``'pickle'`` or
    ``'custom'``). A file that is not a shared cache of this version raises ``SharedFileError``.
    Wrong key or value types raise TypeError, an entry too large to store raises
    ObjectSizeError, any call after ``close()`` raises PoolClosedError.
    """

    def __new__(
        cls,
        path: str,
        *,
        maxbytes: int | None = None,
        compression: Literal["none", "lz4", "zstd"] | None = None,
        ttl: float | None = None,
        serializer: Literal["none", "pickle", "custom"] | None = None,
        create: bool = True,
        mode: int = 0o600,
        dumps: Callable[[Any], bytes] | None = None,
        loads: Callable[[bytes], Any] | None = None,
    ) -> Self: ...
    def __getitem__(self, key: str | bytes, /) -> Any:
        """The value of ``key``; KeyError if absent."""
    def __setitem__(self, key: str | bytes, value: Any, /) -> None:
        """Store ``value`` under ``key`` with the default TTL, evicting as needed."""
    def __delitem__(self, key: str | bytes, /) -> None:
        """Delete ``key``; KeyError if absent."""
    def __contains__(self, key: object, /) -> bool:
        """Whether ``key`` is present and not expired."""
    def __len__(self) -> int:
        """Live entries, every process's."""
    def __iter__(self) -> Iterator[str | bytes]:
        """Iterate over a snapshot of the keys."""
    def get(self, key: str | bytes, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
    def set(self, key: str | bytes, value: Any, ttl: float | None = None) -> None:
        """Store with a TTL in seconds (None: the file's default; math.inf: never expires)."""
    def pop(self, key: str | bytes, *default: Any) -> Any:
        """Remove ``key`` and return its value; ``default`` (or KeyError) if absent. Atomic across
        processes: of those that race to pop a key, one gets the value."""
    def setdefault(self, key: str | bytes, default: Any = None) -> Any:
        """The value of ``key``; if absent, store ``default`` and return it. Atomic across
        processes: of those that race to add a key, one stores and all return its value."""
    def clear(self) -> None:
        """Remove every entry (every process's)."""
    def expire(self) -> int:
        """Drop every expired entry now; return how many."""
    def get_many(self, keys: Iterable[str | bytes], default: Any = None) -> list[Any]:
        """The values of ``keys`` in order (``default`` for missing ones): one call into Rust."""
    def set_many(
        self,
        items: Mapping[str, Any] | Mapping[bytes, Any] | Iterable[tuple[str | bytes, Any]],
        ttl: float | None = None,
    ) -> None:
        """Store every (key, value): one call into Rust. Every item is checked before any is stored."""
    def delete_many(self, keys: Iterable[str | bytes]) -> int:
        """Delete the keys present (absent ones are skipped); returns how many."""
    def stats(self) -> SharedCacheStats:
        """The host-wide counters now."""
    def can_compact(self) -> int:
        """Pages a full compaction would free now."""
    def compact(
        self,
        max_pages: int | None = None,
        time_budget: float | None = None,
        *,
        slice_objects: int = 64,
        slice_us: float = 50.0,
    ) -> CompactionReport:
        """Move entries out of sparse zspages and punch the emptied pages out of the file
        (GIL released). ``max_pages``: stop after freeing this many; ``time_budget``: seconds."""
    def try_lease(self, pid: int, seconds: float) -> bool:
        """Take or renew the reclaimer lease for ``pid`` for ``seconds``; False if another holds it."""
    def release_lease(self, pid: int) -> None:
        """Give the reclaimer lease up if ``pid`` holds it."""
    def close(self) -> None:
        """Unmap the file in this process (its entries stay). Idempotent."""
    @staticmethod
    def destroy(path: str) -> bool:
        """Remove the file at ``path``; False if there was none."""
    @property
    def closed(self) -> bool: ...
    @property
    def path(self) -> str:
        """The file."""
    @property
    def maxsize(self) -> int:
        """The budget in bytes of stored entries."""
    @property
    def currsize(self) -> int:
        """Bytes of stored entries now, every process's."""
    @property
    def compression(self) -> Literal["lz4", "zstd"] | None: ...
    @property
    def ttl(self) -> float | None:
        """The default TTL in seconds, or None."""
    @property
    def eviction(self) -> Literal["sieve"]: ...
    @property
    def serializer_kind(self) -> Literal["pickle", "custom"] | None:
        """What the file's non-bytes values go through."""

@final
class SharedCacheStats:
    """A shared cache's counters, the whole host's, from ``SharedCache.stats()``. Fields are
    attributes and items: ``stats()["recoveries"]``."""

    @property
    def entries(self) -> int: ...
    @property
    def bytes(self) -> int:
        """Stored bytes of the entries (currsize)."""
    @property
    def maxbytes(self) -> int: ...
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def sets(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    @property
    def expirations(self) -> int: ...
    @property
    def recoveries(self) -> int:
        """Locks recovered after their holder died."""
    @property
    def entries_dropped_on_recovery(self) -> int: ...
    @property
    def corrupt_dropped(self) -> int:
        """Records that failed their checks (key, checksum, bounds) and were dropped: misses."""
    @property
    def pages_in_use(self) -> int: ...
    @property
    def pages_max(self) -> int: ...
    @property
    def file_bytes_allocated(self) -> int:
        """Bytes the file really occupies (st_blocks * 512)."""
    @property
    def zspages(self) -> int: ...
    @property
    def index_slots(self) -> int:
        """Index slots the shards' tables use now (16 bytes each)."""
    @property
    def pages_compacted(self) -> int: ...
    @property
    def objects_migrated(self) -> int: ...
    @property
    def compactions(self) -> int: ...
    def as_dict(self) -> dict[str, int]:
        """The fields as a new dict."""
    def __getitem__(self, name: str, /) -> int:
        """A field by name; KeyError for others."""
