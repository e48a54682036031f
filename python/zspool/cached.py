"""``zspool.cached``: memoize a function in a :class:`zspool.Cache`, after ``cachetools.cached``.

::

    cache = zspool.Cache(64 * 2**20, serializer="pickle")

    @zspool.cached(cache)
    def lookup(user_id: int) -> dict: ...

``cached(cache, key=None, lock=None, info=False, typed=False)`` takes the parameters of
``cachetools.cached`` that make sense for a thread-safe cache of bytes, plus ``typed`` from
``functools.lru_cache``:

- ``key``: a function of the call's arguments returning the entry's key (``str`` or
  ``bytes``). The default pickles the function's qualified name with its arguments
  (positional and keyword calls differ, as in ``cachetools.keys.hashkey``); arguments that
  compare equal as numbers give one key (``f(1)``, ``f(1.0)`` and ``f(True)`` share an entry)
  unless ``typed=True``, which keys on each argument's type too, as ``functools.lru_cache``
  does.
- ``lock``: a context manager held around each cache access (not around the call), as in
  cachetools. The cache is thread-safe without one; two threads missing the same key may
  both call the function, and with a lock the first result stored wins.
- ``info``: keep hit and miss counts for ``cache_info()``.

The wrapper has ``cache``, ``cache_key``, ``cache_lock``, ``cache_clear()`` (clears the
whole cache and the counts), ``cache_info()`` (with ``info=True``: ``CacheInfo(hits, misses,
maxsize, currsize)``) and ``store_failures``. A result that cannot be stored (too large for
the cache, not ``bytes`` without a serializer, unpicklable) is returned uncached and counted
in ``store_failures``: the function has run, so its result is never lost to the cache.
"""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Callable, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any, NamedTuple, ParamSpec, TypeVar

__all__ = ["CacheInfo", "cached", "default_key"]

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("zspool.cached")

_MISSING = object()


class CacheInfo(NamedTuple):
    """What ``cache_info()`` reports, as ``functools.lru_cache`` and cachetools do."""

    hits: int
    misses: int
    maxsize: int | None
    currsize: int | None


def _canonical(value: Any) -> Any:
    """``value`` with every number that equals an int replaced by that int (recursively in
    tuples, lists, frozensets and dicts), so that arguments equal as numbers pickle alike."""
    if isinstance(value, bool | float | complex):
        try:
            as_int = int(value.real)
        except (OverflowError, ValueError):  # inf, nan
            return value
        return as_int if as_int == value else value
    if type(value) is tuple or type(value) is list:
        return type(value)(_canonical(v) for v in value)
    if type(value) is frozenset:
        return frozenset(_canonical(v) for v in value)
    if type(value) is dict:
        return {_canonical(k): _canonical(v) for k, v in value.items()}
    return value


def default_key(func: Callable[..., Any], typed: bool = False) -> Callable[..., bytes]:
    """The default key function for ``func``: pickle of (module.qualname, args, sorted
    kwargs), with equal numbers made alike (``typed=False``) or each argument's type added
    (``typed=True``)."""
    name = f"{func.__module__}.{func.__qualname__}"

    def key(*args: Any, **kwargs: Any) -> bytes:
        items = sorted(kwargs.items())
        if typed:
            parts: tuple[Any, ...] = (name, args, items, tuple(type(a) for a in args), tuple(type(v) for _, v in items))
        else:
            parts = (name, _canonical(args), _canonical(items))
        try:
            return pickle.dumps(parts, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # PicklingError, AttributeError (local objects), RecursionError ...
            raise TypeError(
                f"{name}: the default cache key pickles the arguments, and these cannot be pickled "
                f"({type(exc).__name__}: {exc}); pass key= to cached()"
            ) from exc

    return key


def cached(
    cache: MutableMapping[Any, Any],
    key: Callable[..., str | bytes] | None = None,
    lock: AbstractContextManager[Any] | None = None,
    info: bool = False,
    typed: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so its results are kept in ``cache`` under ``key(*args, **kwargs)``;
    see the module docstring."""
    if key is not None and not callable(key):
        raise TypeError(f"key must be a function of the arguments, not {type(key).__name__}")
    if key is not None and typed:
        raise TypeError("typed= applies to the default key only; a key= function decides types itself")
    if lock is not None and not (hasattr(lock, "__enter__") and hasattr(lock, "__exit__")):
        raise TypeError(f"lock must be a context manager (a threading.Lock, say), not {type(lock).__name__}")
    guard: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        make_key = key if key is not None else default_key(func, typed)
        hits = misses = failures = 0

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            nonlocal hits, misses, failures
            k = make_key(*args, **kwargs)
            with guard:
                value = cache.get(k, _MISSING)
                if value is not _MISSING:
                    hits += 1
                    return value  # type: ignore[no-any-return]
                misses += 1
            value = func(*args, **kwargs)
            try:
                with guard:
                    if lock is None:
                        cache[k] = value
                    else:
                        # Another thread may have stored this key while func ran: keep theirs.
                        return cache.setdefault(k, value)  # type: ignore[no-any-return]
            except Exception as exc:  # noqa: BLE001 - the result is never lost to the cache
                failures += 1
                wrapper.store_failures = failures  # type: ignore[attr-defined]
                log.debug("%s: result not cached: %s", func.__qualname__, exc)
            return value

        def cache_clear() -> None:
            nonlocal hits, misses
            with guard:
                cache.clear()
                hits = misses = 0

        def cache_info() -> CacheInfo:
            with guard:
                maxsize = getattr(cache, "maxsize", None)
                currsize = getattr(cache, "currsize", None)
                return CacheInfo(hits, misses, maxsize, currsize)

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_key = make_key  # type: ignore[attr-defined]
        wrapper.cache_lock = lock  # type: ignore[attr-defined]
        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        wrapper.store_failures = 0  # type: ignore[attr-defined]
        if info:
            wrapper.cache_info = cache_info  # type: ignore[attr-defined]
        return wrapper

    return decorator
