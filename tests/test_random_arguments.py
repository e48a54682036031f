"""Random arguments of every type and size at every public method: only documented
exceptions may come out.

The documented ones are ``TypeError``, ``ValueError``, ``LookupError`` (``KeyError``,
``InvalidHandleError``), ``BufferError``, ``MemoryError`` (``PoolFullError``) and the
``zspool.errors`` hierarchy. Anything else, above all ``pyo3_runtime.PanicException`` (a
``BaseException``: a Rust panic that reached Python), ``OverflowError``, ``SystemError`` or
``AttributeError``, is a bug. Every call is made on live objects, then again after
``close()``.
"""

from __future__ import annotations

import array
import ctypes
import inspect
import math
import threading
from collections.abc import Callable
from typing import Any

import zspool
from hypothesis import given, settings
from hypothesis import strategies as st
from zspool import Cache, Pool, Reclaimer, ZsPoolError

DOCUMENTED = (TypeError, ValueError, LookupError, BufferError, MemoryError, ZsPoolError)

ints = st.one_of(
    st.integers(-3, 300),
    st.sampled_from(
        [-(2**64), -(2**63), 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100, 10**400]
    ),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-12, 1e-300, 5e-324, 1e20, 1e300, math.inf, -math.inf, math.nan]),
)
texts = st.one_of(
    st.text(max_size=20), st.sampled_from(["", "\x00", "\udcff", "always", "lru", "zstd"])
)
blobs = st.binary(max_size=300)
buffers = st.one_of(
    blobs.map(bytearray),
    blobs.map(lambda b: memoryview(b)),
    blobs.map(lambda b: memoryview(b)[::2]),  # not contiguous
    st.builds(lambda n: (ctypes.c_uint8 * n)(), st.integers(0, 64)),
    st.builds(lambda n: array.array("d", [0.5] * n), st.integers(0, 16)),
)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, blobs, buffers)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.tuples(scalars, scalars),
    st.dictionaries(texts, scalars, max_size=3),
    st.sampled_from([object(), lambda: 0, Pool, threading.Lock(), iter([1, 2]), {("k", b"v")}]),
)
arg_lists = st.lists(values, max_size=4)


def check(call: Callable[[], Any]) -> None:
    """Run ``call``; an undocumented exception (any BaseException) fails the test."""
    try:
        call()
    except DOCUMENTED:
        pass
    except BaseException as exc:
        raise AssertionError(
            f"undocumented {type(exc).__module__}.{type(exc).__qualname__}: {exc!r}"
        ) from exc


POOL_METHODS = [
    "malloc", "store", "write", "read", "read_into", "load", "size_of", "free", "stats", "class_stats",
    "activity", "can_compact", "compact", "__len__", "__contains__", "__repr__", "register_shrinker",
    "unregister_shrinker", "shrink",
]  # fmt: skip

CACHE_METHODS = [
    "get", "set", "pop", "popitem", "setdefault", "__getitem__", "__setitem__", "__delitem__",
    "__contains__", "__len__", "__iter__", "__repr__", "get_many", "set_many", "expire", "stats",
    "clear", "items", "values", "keys", "update", "compact", "__eq__", "maxsize", "currsize",
]  # fmt: skip


def call_method(obj: object, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    if inspect.isdatadescriptor(getattr(type(obj), name)):  # a property: read it
        check(lambda: getattr(obj, name))
        return

    def run() -> None:
        result = getattr(obj, name)(*args, **kwargs)
        if name in ("items", "values", "keys", "__iter__"):
            list(result)

    check(run)


kwarg_dicts = st.dictionaries(
    st.sampled_from(["offset", "size", "ttl", "default", "max_pages", "time_budget", "slice_objects", "slice_us",
                     "batch", "time_limit_s", "max_failures", "name", "reason"]),
    values,
    max_size=2,
)  # fmt: skip


@settings(max_examples=300)
@given(
    method=st.sampled_from(POOL_METHODS), args=arg_lists, kwargs=kwarg_dicts, closed=st.booleans()
)
def test_pool_methods(method: str, args: list[Any], kwargs: dict[str, Any], closed: bool) -> None:
    with Pool(mem_limit=1 << 24) as pool:
        h = pool.store(b"some bytes")
        if closed:
            pool.close()
        call_method(pool, method, args, kwargs)
        call_method(pool, method, [h, *args], kwargs)


@settings(max_examples=300)
@given(
    method=st.sampled_from(CACHE_METHODS),
    args=arg_lists,
    kwargs=kwarg_dicts,
    serializer=st.sampled_from([None, "pickle"]),
    closed=st.booleans(),
)
def test_cache_methods(
    method: str, args: list[Any], kwargs: dict[str, Any], serializer: str | None, closed: bool
) -> None:
    with Cache(4096, serializer=serializer, ttl=30) as cache:
        cache["k"] = b"v"
        if closed:
            cache.close()
        call_method(cache, method, args, kwargs)
        call_method(cache, method, ["k", *args], kwargs)


@settings(max_examples=150)
@given(args=arg_lists, kwargs=st.dictionaries(
    st.sampled_from(["compression", "compression_level", "ttl", "eviction", "serializer", "policy", "name",
                     "reclaimer_interval_s", "batch"]),
    values, max_size=3))  # fmt: skip
def test_cache_constructor(args: list[Any], kwargs: dict[str, Any]) -> None:
    made: list[Cache] = []
    check(lambda: made.append(Cache(*args, **kwargs)))
    for cache in made:
        cache.close()


@settings(max_examples=100)
@given(args=arg_lists, kwargs=st.dictionaries(
    st.sampled_from(["interval_s", "monitor", "psi_trigger", "psi_path", "name", "restart_after_fork"]),
    values, max_size=3))  # fmt: skip
def test_reclaimer(args: list[Any], kwargs: dict[str, Any]) -> None:
    made: list[Reclaimer] = []
    check(lambda: made.append(Reclaimer(*args, **kwargs)))
    for reclaimer in made:
        check(reclaimer.start)
        check(lambda: reclaimer.run_once())  # noqa: B023
        check(lambda: reclaimer.add_pool(args[0] if args else None))  # type: ignore[arg-type]  # noqa: B023
        check(reclaimer.stop)


@settings(max_examples=100)
@given(policy=values, kwargs=kwarg_dicts)
def test_register_shrinker(policy: Any, kwargs: dict[str, Any]) -> None:
    with Pool() as pool:
        check(lambda: pool.register_shrinker(policy, **kwargs))
        check(pool.shrink)


@settings(max_examples=100)
@given(
    kwargs=st.dictionaries(st.sampled_from(["key", "lock", "info", "typed"]), values, max_size=3),
    args=arg_lists,
)
def test_cached(kwargs: dict[str, Any], args: list[Any]) -> None:
    with Cache(4096, serializer="pickle") as cache:
        wrapped: list[Any] = []
        check(lambda: wrapped.append(zspool.cached(cache, **kwargs)(lambda *a: a)))
        for f in wrapped:
            check(lambda: f(*args))  # noqa: B023
            check(lambda: f(*args))  # noqa: B023
