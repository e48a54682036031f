"""zspool.Cache: the MutableMapping contract (run against dict too), eviction order, bad input."""

from __future__ import annotations

import math
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

import zspool
from zspool import Cache, ObjectSizeError, PoolClosedError


class MappingContract:
    """Behaviour a dict has and a zspool.Cache (with room to spare) must share."""

    def make(self) -> MutableMapping[Any, Any]:
        raise NotImplementedError

    @pytest.fixture
    def m(self) -> Iterator[MutableMapping[Any, Any]]:
        m = self.make()
        yield m
        if isinstance(m, Cache):
            m.close()

    def test_is_a_mutable_mapping(self, m: MutableMapping[Any, Any]) -> None:
        assert isinstance(m, MutableMapping)

    def test_set_get_overwrite(self, m: MutableMapping[Any, Any]) -> None:
        m["a"] = b"1"
        m[b"a"] = b"2"
        assert m["a"] == b"1" and m[b"a"] == b"2"
        m["a"] = b"three"
        assert m["a"] == b"three"
        assert len(m) == 2

    def test_missing(self, m: MutableMapping[Any, Any]) -> None:
        with pytest.raises(KeyError) as e:
            m["nope"]
        assert e.value.args == ("nope",)
        with pytest.raises(KeyError):
            del m["nope"]
        assert m.get("nope") is None
        assert m.get("nope", b"d") == b"d"
        assert "nope" not in m

    def test_pop_popitem_setdefault(self, m: MutableMapping[Any, Any]) -> None:
        m["k"] = b"v"
        assert m.pop("k") == b"v"
        assert m.pop("k", None) is None
        with pytest.raises(KeyError):
            m.pop("k")
        with pytest.raises(KeyError):
            m.popitem()
        assert m.setdefault("s", b"x") == b"x"
        assert m.setdefault("s", b"y") == b"x"
        assert m.popitem() == ("s", b"x")
        assert len(m) == 0

    def test_iteration_views_equality(self, m: MutableMapping[Any, Any]) -> None:
        data = {f"k{i}": bytes([i]) * i for i in range(50)}
        m.update(data)
        assert list(m) == list(data), "insertion order"
        assert set(m.keys()) == set(data)
        assert sorted(m.values()) == sorted(data.values())
        assert dict(m.items()) == data
        assert m == data
        m["k3"] = b"new"
        assert list(m) == list(data), "an overwrite keeps its place"
        del m["k0"]
        assert "k0" not in m and len(m) == 49
        m.clear()
        assert len(m) == 0 and list(m) == []

    def test_empty_key_and_value(self, m: MutableMapping[Any, Any]) -> None:
        m[""] = b""
        m[b""] = b""
        assert m[""] == b"" and len(m) == 2


class TestDictContract(MappingContract):
    def make(self) -> MutableMapping[Any, Any]:
        return {}


class TestCacheContract(MappingContract):
    def make(self) -> MutableMapping[Any, Any]:
        return Cache(1 << 20)


def test_sieve_eviction_order() -> None:
    # key "kN" (2 bytes) + 98-byte value + 2 header bytes = 102 bytes: room for 4.
    with Cache(4 * 102) as c:
        v = b"x" * 98
        for i in range(4):
            c[f"k{i}"] = v
        assert c.currsize == 4 * 102
        assert c["k0"] == v  # a hit: SIEVE spares k0 once
        c["k4"] = v
        assert list(c) == ["k0", "k2", "k3", "k4"]
        c["k5"] = v  # the hand continues after k1's place: k2 goes
        assert list(c) == ["k0", "k3", "k4", "k5"]
        assert c.popitem()[0] == "k3", "popitem removes what eviction would"
        assert c.stats().evictions == 2


def test_lru_eviction_order() -> None:
    with Cache(3 * 102, eviction="lru") as c:
        v = b"x" * 98
        for i in range(3):
            c[f"k{i}"] = v
        c["k0"]
        c["k3"] = v
        assert list(c) == ["k2", "k0", "k3"], "least recently used first"


def test_stats_and_pool() -> None:
    with Cache(1 << 20, name="s") as c:
        c["a"] = b"1" * 100
        c["a"]
        c.get("b")
        s = c.stats()
        assert (s.hits, s.misses, s.entries, s.sets) == (1, 1, 1, 1)
        assert s.payload_bytes == 101 and s.stored_bytes == 103 == c.currsize
        assert s.pool.objects == 1 and s.pool.payload_bytes == 103
        assert s.hit_ratio == 0.5
        d = s.as_dict()
        assert d["pool"]["objects"] == 1 and d["eviction"] == "sieve"
        assert isinstance(c.pool, zspool.Pool) and c.pool.name == "s"
        assert "entries=1" in repr(c)


def test_a_pool_holds_one_cache() -> None:
    """The cache's index holds its entries' locations, which compaction rewrites: a pool
    routes those rewrites to one cache, so a second cache on the same pool is refused."""
    with Cache(1 << 20) as c:
        c["a"] = b"1"
        with pytest.raises(zspool.ConfigError, match="one cache per pool"):
            zspool._core.Cache(1 << 20, pool=c.pool)
        assert c["a"] == b"1"
        handle = c.pool.store(b"beside the cache")
        assert c.pool.load(handle) == b"beside the cache"


def test_bad_input() -> None:
    with Cache(1000) as c:
        for key in (1, None, 2.5, ("t",), bytearray(b"k")):
            with pytest.raises(TypeError, match="keys must be str or bytes"):
                c[key] = b"v"  # type: ignore[index]
            with pytest.raises(TypeError, match="keys must be str or bytes"):
                c[key]  # type: ignore[index]
            assert key not in c
        for value in ("text", 1, None, bytearray(b"v"), memoryview(b"v")):
            with pytest.raises(TypeError, match="values must be bytes.*serializer"):
                c["k"] = value
        with pytest.raises(ObjectSizeError, match="maxbytes=1000") as e:
            c["big"] = b"x" * 1000
        assert isinstance(e.value, ValueError)
        with pytest.raises(ValueError, match="ttl"):
            c.set("k", b"v", ttl=-1)
        with pytest.raises(TypeError):
            c.pop("a", 1, 2)  # type: ignore[call-arg]
        assert len(c) == 0
    with pytest.raises(ValueError, match="maxbytes=-1"):
        Cache(-1)
    with pytest.raises(TypeError, match="maxbytes must be an int"):
        Cache(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compression"):
        Cache(100, compression="snappy")  # type: ignore[arg-type]
    with pytest.raises(zspool.ConfigError, match="zstd level"):
        Cache(100, compression="zstd", compression_level=50)
    with pytest.raises(ValueError, match="eviction"):
        Cache(100, eviction="fifo")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        Cache(100, ttl=math.nan)
    with pytest.raises(TypeError, match="serializer"):
        Cache(100, serializer=42)


def test_closed_cache() -> None:
    c = Cache(1000)
    c["a"] = b"v"
    c.close()
    c.close()
    assert c.closed
    for call in (lambda: c["a"], lambda: c.__setitem__("a", b"v"), lambda: c.get("a"), c.stats, c.clear, lambda: list(c)):
        with pytest.raises(PoolClosedError):
            call()
    assert "closed" in repr(c)
