"""The exceptions zspool raises.

Every error is a :class:`ZsPoolError`, and also the builtin exception that code unaware of
zspool would expect, so ``except MemoryError`` or ``except ValueError`` keep working::

    ZsPoolError(Exception)
    ├── InvalidHandleError(ZsPoolError, LookupError)   stale, freed, forged or foreign handle
    ├── PoolFullError(ZsPoolError, MemoryError)        mem_limit reached, or the OS refused pages
    ├── PoolClosedError(ZsPoolError)                   the pool was closed
    ├── ObjectSizeError(ZsPoolError, ValueError)       size < 0 or > MAX_OBJECT_SIZE
    ├── OutOfBoundsError(ZsPoolError, ValueError)      offset/length outside the object
    └── ConfigError(ZsPoolError, ValueError)           a Pool(...) argument out of range

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
    """A :class:`~zspool.Pool` constructor argument outside its allowed range."""
