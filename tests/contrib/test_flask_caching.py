"""zspool.contrib.cachelib.ZspoolCache through Flask-Caching, with a real Flask app and its test client."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask import Flask
from flask_caching import Cache as FlaskCache

from zspool.contrib.cachelib import ZspoolCache


def zspool_backend(cache: FlaskCache) -> ZspoolCache:
    backend = cache.cache
    assert isinstance(backend, ZspoolCache)
    return backend


@pytest.fixture
def app_and_cache() -> Iterator[tuple[Flask, FlaskCache]]:
    app = Flask(__name__)
    app.config.from_mapping(
        CACHE_TYPE="zspool.contrib.cachelib.ZspoolCache",
        CACHE_DEFAULT_TIMEOUT=300,
        CACHE_OPTIONS={"maxbytes": 1 << 20, "compression": "lz4"},
    )
    cache = FlaskCache(app)
    yield app, cache
    with app.app_context():
        zspool_backend(cache).close()


def test_cache_type_names_the_backend(app_and_cache: tuple[Flask, FlaskCache]) -> None:
    app, cache = app_and_cache
    with app.app_context():
        backend = zspool_backend(cache)
    assert backend.store.maxsize == 1 << 20
    assert backend.store.compression == "lz4"
    assert backend.default_timeout == 300


def test_cached_view_is_served_from_the_cache(app_and_cache: tuple[Flask, FlaskCache]) -> None:
    app, cache = app_and_cache
    calls: list[int] = []

    @app.route("/expensive/<int:n>")
    @cache.cached(timeout=60)
    def expensive(n: int) -> str:
        calls.append(n)
        return f"square {n * n}, computed call {len(calls)}"

    client = app.test_client()
    first = client.get("/expensive/7")
    second = client.get("/expensive/7")
    other = client.get("/expensive/8")
    assert first.status_code == second.status_code == 200
    assert first.data == second.data == b"square 49, computed call 1"
    assert other.data == b"square 64, computed call 2"
    assert calls == [7, 8]
    with app.app_context():
        assert zspool_backend(cache).store.stats().hits >= 1


def test_memoize_and_delete_memoized(app_and_cache: tuple[Flask, FlaskCache]) -> None:
    app, cache = app_and_cache
    calls: list[tuple[int, int]] = []

    @cache.memoize(timeout=60)
    def add(a: int, b: int) -> dict[str, int]:
        calls.append((a, b))
        return {"sum": a + b}

    @app.route("/add/<int:a>/<int:b>")
    def view(a: int, b: int) -> dict[str, int]:
        return add(a, b)

    client = app.test_client()
    assert client.get("/add/2/3").json == {"sum": 5}
    assert client.get("/add/2/3").json == {"sum": 5}
    assert calls == [(2, 3)]
    with app.app_context():
        cache.delete_memoized(add, 2, 3)
    assert client.get("/add/2/3").json == {"sum": 5}
    assert calls == [(2, 3), (2, 3)]


def test_cachelib_api_and_timeouts(app_and_cache: tuple[Flask, FlaskCache]) -> None:
    app, cache = app_and_cache
    with app.app_context():
        assert cache.set("a", [1, 2]) and cache.get("a") == [1, 2]
        assert cache.add("a", "other") is False and cache.get("a") == [1, 2]
        assert cache.set_many({"b": b"raw", "c": None}) == ["b", "c"]
        assert cache.get_many("a", "b", "c", "missing") == [[1, 2], b"raw", None, None]
        assert cache.has("c") and not cache.has("missing")
        backend = zspool_backend(cache)  # Flask-Caching does not forward inc/dec
        assert backend.inc("n") == 1 and backend.inc("n", 5) == 6 and backend.dec("n", 2) == 4
        assert cache.delete_many("a", "b", "missing") == ["a", "b", "missing"]
        assert not cache.has("a") and cache.delete("c") and not cache.delete("c")
        cache.set("forever", 1, timeout=0)  # cachelib: 0 never expires
        cache.set("gone", 1, timeout=-1)  # a negative timeout expires at once
        cache.set("short", 1, timeout=1)
        assert cache.has("forever") and not cache.has("gone") and cache.has("short")
        time.sleep(1.2)
        assert cache.get("short") is None and cache.get("forever") == 1
        assert cache.clear() and not cache.has("forever")
