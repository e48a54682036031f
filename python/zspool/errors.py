"""The exceptions zspool raises.

Every error is a :class:`ZsPoolError`, and also the builtin exception that code unaware of
zspool would expect, so ``except MemoryError`` or ``except ValueError`` keep working::

    ZsPoolError(Exception)
    ├── InvalidHandleError(ZsPoolError, LookupError)   stale, freed, forged or foreign handle
    ├── PoolFullError(ZsPoolError, MemoryError)        mem_limit reached, or the OS refused pages
    ├── PoolClosedError(ZsPoolError)                   the pool was closed
    ├── ObjectSizeError(ZsPoolError, ValueError)       size < 0 or > MAX_OBJECT_SIZE
    ├── OutOfBoundsError(ZsPoolError, ValueError)      offset/length outside the object
    ├── ConfigError(ZsPoolError, ValueError)           a constructor argument out of range, or a
    │                                                  SharedCache argument the file disagrees with
    └── SharedFileError(ZsPoolError, ValueError)       a SharedCache file that is not one: foreign,
                                                       truncated, garbage, or of another layout version

Messages name the handle, size or value that was wrong and what is allowed instead.
Arguments of the wrong type (a ``str`` where a handle or size belongs, ``None`` as data)
raise a plain :class:`TypeError`.
"""

from __future__ import annotations

__all__ = [
    "ZsPoolError",
    "InvalidHandleError",
    "PoolFullError",
    "PoolClosedError",
    "ObjectSizeError",
    "OutOfBoundsError",
    "ConfigError",
    "SharedFileError",
]


class ZsPoolError(Exception):
    """Base class of every error raised by a zspool pool."""


class InvalidHandleError(ZsPoolError, LookupError):
    """The handle names no live object of this pool.

    It was freed (use after free, double free), belongs to another pool, or was never
    issued (a forged int, or one outside ``0..2**64``).
    """


class PoolFullError(ZsPoolError, MemoryError):
    """The allocation would take the pool past its ``mem_limit``, or the OS refused pages.

    The pool is unchanged. Free objects, ``compact()``, or create the pool with a larger
    ``mem_limit``.
    """


class PoolClosedError(ZsPoolError):
    """The pool was closed; its objects are gone. Create a new :class:`~zspool.Pool`."""


class ObjectSizeError(ZsPoolError, ValueError):
    """An object size below 0 or above :data:`~zspool.MAX_OBJECT_SIZE` bytes."""


class OutOfBoundsError(ZsPoolError, ValueError):
    """An offset or length that reaches outside the object (or is negative)."""


class ConfigError(ZsPoolError, ValueError):
    """A constructor argument outside its allowed range (:class:`~zspool.Pool`,
    :class:`~zspool.Cache`), or a :class:`~zspool.SharedCache` argument that differs from the
    configuration stored in the file being opened (the message names the field and both
    values: open it without that argument to take the file's, or destroy the file)."""


class SharedFileError(ZsPoolError, ValueError):
    """The file given to :class:`~zspool.SharedCache` is not a shared cache this version can
    use: not ours (no magic), of another layout version, truncated, or with a header whose
    sizes, offsets or digest do not hold together. Nothing was changed in it, and nothing
    deletes it for you: give another path, :meth:`~zspool.SharedCache.destroy` a cache of
    another version (``destroy`` refuses a file without the magic, a file that was never a
    cache: remove that yourself if it is yours)."""
