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
import pickle
import threading
from collections.abc import Callable
from typing import Any

import pytest
import zspool
from hypothesis import given, settings
from hypothesis import strategies as st
from zspool import Cache, Pool, Reclaimer, ZsPoolError

# pickle.PickleError: the pickle serializer's own error for a value it cannot pickle, which
# the Cache docstring says propagates unchanged (the entry is not stored).
DOCUMENTED = (TypeError, ValueError, LookupError, BufferError, MemoryError, ZsPoolError, pickle.PickleError)

ints = st.one_of(
    st.integers(-3, 300),
    st.sampled_from(
        [-(2**64), -(2**63), 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100, 10**400]
    ),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            0.0,
            -0.0,
            1e-12,
            1e-300,
            5e-324,
            0.5,
            1e9,
            1e18,
            1.8e19,
            1e20,
            1e300,
            1.7e308,
            math.inf,
            -math.inf,
            math.nan,
        ]
    ),
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


#: Every public method, with the keyword arguments it takes.
POOL_METHODS: dict[str, tuple[str, ...]] = {
    "malloc": (), "store": (), "write": ("offset",), "read": ("offset", "size"),
    "read_into": ("offset",), "load": (), "size_of": (), "free": (), "stats": (),
    "class_stats": (), "activity": (), "can_compact": (),
    "compact": ("max_pages", "time_budget", "slice_objects", "slice_us"),
    "__len__": (), "__contains__": (), "__repr__": (),
    "register_shrinker": ("name", "batch", "time_limit_s", "max_failures"),
    "unregister_shrinker": (), "shrink": ("reason",),
}  # fmt: skip

CACHE_METHODS: dict[str, tuple[str, ...]] = {
    "get": ("default",), "set": ("ttl",), "pop": (), "popitem": (), "setdefault": ("default",),
    "__getitem__": (), "__setitem__": (), "__delitem__": (), "__contains__": (), "__len__": (),
    "__iter__": (), "__repr__": (), "get_many": ("default",), "set_many": ("ttl",),
    "expire": (), "stats": (), "clear": (), "items": (), "values": (), "keys": (),
    "update": (), "compact": ("max_pages", "time_budget"), "__eq__": (), "maxsize": (),
    "currsize": (), "ttl": (), "__copy__": (), "__reduce__": (),
    "train_dictionary": ("size",), "recompress": ("max_bytes", "time_budget"),
}  # fmt: skip


#: Arguments: numbers at and past every edge more often than anything else.
kwarg_values = st.one_of(ints, floats, values)
arg_lists = st.lists(kwarg_values, max_size=4)


def kwargs_for(names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    if not names:
        return st.just({})
    return st.dictionaries(st.sampled_from(names), kwarg_values, max_size=3)


def call_method(obj: object, name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    if inspect.isdatadescriptor(getattr(type(obj), name)):  # a property: read it
        check(lambda: getattr(obj, name))
        return

    def run() -> None:
        result = getattr(obj, name)(*args, **kwargs)
        if name in ("items", "values", "keys", "__iter__"):
            list(result)

    check(run)


@pytest.mark.parametrize("method", sorted(POOL_METHODS))
@settings(max_examples=40)
@given(data=st.data(), closed=st.booleans())
def test_pool_methods(method: str, data: st.DataObject, closed: bool) -> None:
    args = data.draw(arg_lists)
    kwargs = data.draw(kwargs_for(POOL_METHODS[method]))
    with Pool(mem_limit=1 << 24) as pool:
        h = pool.store(b"some bytes")
        if closed:
            pool.close()
        call_method(pool, method, args, kwargs)
        call_method(pool, method, [h, *args], kwargs)


@pytest.mark.parametrize("method", sorted(CACHE_METHODS))
@settings(max_examples=40)
@given(data=st.data(), serializer=st.sampled_from([None, "pickle"]), closed=st.booleans())
def test_cache_methods(
    method: str, data: st.DataObject, serializer: str | None, closed: bool
) -> None:
    args = data.draw(arg_lists)
    kwargs = data.draw(kwargs_for(CACHE_METHODS[method]))
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
        check(lambda: reclaimer.run_once())
        check(lambda: reclaimer.add_pool(args[0] if args else None))  # type: ignore[arg-type]
        check(reclaimer.stop)


@settings(max_examples=100)
@given(
    policy=values,
    kwargs=kwargs_for(POOL_METHODS["register_shrinker"]),
)
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
            check(lambda: f(*args))
            check(lambda: f(*args))
