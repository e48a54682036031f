"""zspool: Linux's zsmalloc allocator, in user space, for Python.

A :class:`Pool` packs many small objects (byte strings of 0 bytes up to 1 GiB, but built
for the 32..4096 byte range) densely into pages taken straight from the OS. Objects are
addressed by *handle*, an opaque int, rather than by pointer, so the pool can move them:
:meth:`Pool.compact` migrates objects out of sparsely used pages and gives those pages back
to the OS, so resident memory really falls after frees. The allocator is Rust (the
``zspool-core`` crate, after ``mm/zsmalloc.c``); every method is safe to call from many
threads, and compaction runs without the GIL.

Example::

    from zspool import Pool

    with Pool(name="cache") as pool:
        h = pool.store(b"hello, zsmalloc")     # copy bytes in, get a handle (an int)
        assert pool.load(h) == b"hello, zsmalloc"
        pool.free(h)                           # h is now invalid: using it raises
        report = pool.compact()                # give emptied pages back to the OS

Caches on top: :class:`Cache` (in-process, a ``MutableMapping`` whose entries live in a pool)
and :class:`SharedCache` (the same, in one file on tmpfs shared by every process of the host
that opens it or inherits it through ``fork()``).

Memory pressure: register shrinker policies with :meth:`Pool.register_shrinker` and run
them from a :class:`Reclaimer` thread (see :mod:`zspool.shrinker`, :mod:`zspool.reclaimer`).

Units throughout: sizes and offsets in bytes, memory in pages of :data:`PAGE_SIZE` bytes
(or bytes where a name says ``_bytes``), times in seconds. Errors are in
:mod:`zspool.errors`, re-exported here.
"""

from __future__ import annotations

from ._core import (
    MAX_CLASS_SIZE,
    MAX_OBJECT_SIZE,
    PAGE_SIZE,
    CacheStats,
    ClassStats,
    CompactionReport,
    DictionaryReport,
    DictionaryStats,
    PoolActivity,
    PoolStats,
    RecompressReport,
    SharedCacheStats,
    __version__,
)

# The cache: entries in a pool, a Rust index, SIEVE eviction; and its memoizing decorator.
from .cache import Cache
from .cached import cached
from .errors import (
    ConfigError,
    InvalidHandleError,
    ObjectSizeError,
    OutOfBoundsError,
    PoolClosedError,
    PoolFullError,
    SharedFileError,
    ZsPoolError,
)

# The Rust pool (``zspool._core.Pool``, every method inherited as is) plus the shrinkers
# registered with it; and the background thread that runs them.
from .pool import Pool
from .reclaimer import Reclaimer

# The cache in a file shared by every process of the host that opens it.
from .shared_cache import SharedCache

__all__ = [
    "Pool",
    "Reclaimer",
    "Cache",
    "cached",
    "SharedCache",
    "CacheStats",
    "SharedCacheStats",
    "PoolStats",
    "ClassStats",
    "CompactionReport",
    "RecompressReport",
    "DictionaryReport",
    "DictionaryStats",
    "PoolActivity",
    "ZsPoolError",
    "InvalidHandleError",
    "PoolFullError",
    "PoolClosedError",
    "ObjectSizeError",
    "OutOfBoundsError",
    "ConfigError",
    "SharedFileError",
    "PAGE_SIZE",
    "MAX_CLASS_SIZE",
    "MAX_OBJECT_SIZE",
    "__version__",
]
