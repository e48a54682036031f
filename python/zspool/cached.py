"""``zspool.cached``: memoize a function in a :class:`zspool.Cache`, after ``cachetools.cached``.

::

    cache = zspool.Cache(64 * 2**20, serializer="pickle")

    @zspool.cached(cache)
    def lookup(user_id: int) -> dict: ...

Keys must be ``str`` or ``bytes``: the default key pickles the function's qualified name
with its arguments (so positional and keyword calls differ, as in ``cachetools.keys.hashkey``);
pass ``key=`` to choose your own. A result too large for the cache is returned but not
cached (the ``ValueError`` is swallowed, as cachetools does). The cache is thread-safe, so no
lock is needed; two threads missing the same key may both call the function.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, MutableMapping
from typing import Any, ParamSpec, TypeVar

__all__ = ["cached", "default_key"]

P = ParamSpec("P")
R = TypeVar("R")

_MISSING = object()


def default_key(func: Callable[..., Any]) -> Callable[..., bytes]:
    """The default key function for ``func``: pickle of (module.qualname, args, sorted kwargs)."""
    name = f"{func.__module__}.{func.__qualname__}"

    def key(*args: Any, **kwargs: Any) -> bytes:
        return pickle.dumps((name, args, sorted(kwargs.items())), pickle.HIGHEST_PROTOCOL)

    return key


def cached(
    cache: MutableMapping[Any, Any], key: Callable[..., str | bytes] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a function so its results are kept in ``cache`` under ``key(*args, **kwargs)``.

    The wrapper has ``cache``, ``cache_key`` and ``cache_clear()`` (clears the whole cache),
    as cachetools' decorators do.
    """

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        make_key = key if key is not None else default_key(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            k = make_key(*args, **kwargs)
            value = cache.get(k, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[no-any-return]
            value = func(*args, **kwargs)
            try:
                cache[k] = value
            except ValueError:
                pass  # value too large for the cache: return it uncached
            return value

        wrapper.cache = cache  # type: ignore[attr-defined]
        wrapper.cache_key = make_key  # type: ignore[attr-defined]
        wrapper.cache_clear = cache.clear  # type: ignore[attr-defined]
        return wrapper

    return decorator
