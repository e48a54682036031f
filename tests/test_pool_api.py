"""The documented Python API of ``zspool.Pool``, method by method, on valid input."""

from __future__ import annotations

import array
import threading

import pytest

import zspool
from zspool import MAX_CLASS_SIZE, MAX_OBJECT_SIZE, PAGE_SIZE, Pool, PoolClosedError, PoolFullError


def test_namespace() -> None:
    for name in zspool.__all__:
        assert hasattr(zspool, name), name
    assert PAGE_SIZE == 4096
    assert MAX_OBJECT_SIZE == 1 << 30
    assert isinstance(zspool.__version__, str) and zspool.__version__
    # zspool.Pool is the Rust class (shown as zspool.Pool) plus Python-side shrinker support.
    assert issubclass(zspool.Pool, zspool._core.Pool)
    assert zspool._core.Pool.__module__ == "zspool"
    assert issubclass(zspool.InvalidHandleError, (zspool.ZsPoolError, LookupError))
    assert issubclass(zspool.PoolFullError, MemoryError)


def test_constructor_defaults_and_properties() -> None:
    with Pool() as p:
        assert p.name is None
        assert p.mem_limit is None
        assert p.max_pages_per_zspage == 8
        assert not p.closed
    with Pool(max_pages_per_zspage=4, mem_limit=1 << 20, name="cache") as p:
        assert (p.name, p.mem_limit, p.max_pages_per_zspage) == ("cache", 1 << 20, 4)
        assert p.stats().name == "cache"
        assert p.stats().mem_limit == 1 << 20


@pytest.mark.parametrize(
    "size", [0, 1, 31, 32, 33, 1234, 3000, 4095, 4096, 4097, 4109, 6000, 8191, 8192, 8193, 3 * PAGE_SIZE + 5, 1 << 20]
)
def test_malloc_is_zero_filled_and_exact_size(pool: Pool, size: int) -> None:
    h = pool.malloc(size)
    assert isinstance(h, int)
    assert pool.size_of(h) == size
    assert pool.load(h) == bytes(size)
    assert h in pool
    assert len(pool) == 1


@pytest.mark.parametrize("size", [0, 1, 32, 1234, 3000, 4096, 4097, 5000, 8192, 8193, 1 << 20])
def test_store_load_roundtrip(pool: Pool, pattern, size: int) -> None:  # type: ignore[no-untyped-def]
    data = pattern(size, size)
    h = pool.store(data)
    assert pool.load(h) == data
    assert pool.read(h) == data
    assert pool.size_of(h) == size


@pytest.mark.parametrize("size", [1234, 3000])
def test_page_straddling_objects(pool: Pool, pattern, size: int) -> None:  # type: ignore[no-untyped-def]
    # Enough objects that many start in one page and end in the next.
    handles = {pool.store(pattern(i, size)): i for i in range(64)}
    straddlers = sum(1 for i in range(64) if (i * size) // PAGE_SIZE != (i * size + size - 1) // PAGE_SIZE)
    assert straddlers > 10
    for h, i in handles.items():
        assert pool.load(h) == pattern(i, size)
    # Rewrite a window across the middle of every object, then check both halves survived.
    for h, i in handles.items():
        pool.write(h, b"\xaa" * 100, offset=size // 2 - 50)
    for h, i in handles.items():
        want = bytearray(pattern(i, size))
        want[size // 2 - 50 : size // 2 + 50] = b"\xaa" * 100
        assert pool.load(h) == bytes(want)


@pytest.mark.parametrize("size", [100, 3000, 4096, 4109, 8192, 20000])
def test_zero_fill_after_reuse(pool: Pool, size: int) -> None:
    handles = [pool.malloc(size) for _ in range(20)]
    for h in handles:
        pool.write(h, b"\xff" * size)
    for h in handles:
        pool.free(h)
    fresh = [pool.malloc(size) for _ in range(20)]
    for h in fresh:
        assert pool.load(h) == bytes(size)


def test_write_and_read_at_offsets(pool: Pool) -> None:
    h = pool.malloc(100)
    pool.write(h, b"abc")
    pool.write(h, b"xyz", offset=97)
    pool.write(h, b"", offset=100)
    assert pool.read(h, 0, 3) == b"abc"
    assert pool.read(h, offset=97) == b"xyz"
    assert pool.read(h, 97, 3) == b"xyz"
    assert pool.read(h, 100) == b""
    assert pool.read(h, 50, 0) == b""
    assert pool.read(h, size=2) == b"ab"
    assert pool.load(h) == b"abc" + bytes(94) + b"xyz"


@pytest.mark.parametrize(
    "make",
    [bytes, bytearray, lambda b: memoryview(bytes(b)), lambda b: array.array("B", b), lambda b: memoryview(b)[2:]],
)
def test_write_accepts_bytes_like(pool: Pool, make) -> None:  # type: ignore[no-untyped-def]
    raw = bytes(range(64))
    data = make(raw)
    h = pool.malloc(64)
    pool.write(h, data)
    want = bytes(memoryview(data).cast("B"))
    assert pool.read(h, 0, len(want)) == want
    assert pool.load(pool.store(data)) == want


def test_write_accepts_wide_arrays(pool: Pool) -> None:
    data = array.array("I", [0x01020304, 0xA0B0C0D0])
    h = pool.store(data)
    assert pool.load(h) == data.tobytes()
    assert pool.size_of(h) == 8


def test_large_copies_roundtrip(pool: Pool, pattern) -> None:  # type: ignore[no-untyped-def]
    # > 64 KiB: the bindings release the GIL for these copies.
    data = pattern(7, 300_000)
    h = pool.store(data)
    assert pool.load(h) == data
    pool.write(h, bytes(200_000), offset=50_000)
    assert pool.read(h, 40_000, 220_000) == data[40_000:50_000] + bytes(200_000) + data[250_000:260_000]
    pool.write(h, bytearray(b"\x01" * 100_000))
    assert pool.read(h, 0, 100_001) == b"\x01" * 100_000 + b"\x00"


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "array"])
def test_read_into(pool: Pool, kind: str) -> None:
    h = pool.store(bytes(range(200)))
    if kind == "bytearray":
        buf = bytearray(50)
        view = memoryview(buf)
    elif kind == "memoryview":
        backing = bytearray(60)
        buf = memoryview(backing)[10:]
        view = buf
    else:
        buf = array.array("B", bytes(50))
        view = memoryview(buf)
    assert pool.read_into(h, buf) == 50
    assert bytes(view) == bytes(range(50))
    assert pool.read_into(h, buf, offset=180) == 20
    assert bytes(view[:20]) == bytes(range(180, 200))
    assert bytes(view[20:]) == bytes(range(20, 50))
    assert pool.read_into(h, buf, offset=200) == 0


def test_read_into_large_object(pool: Pool, pattern) -> None:  # type: ignore[no-untyped-def]
    data = pattern(1, 100_000)
    h = pool.store(data)
    buf = bytearray(200_000)
    assert pool.read_into(h, buf) == 100_000
    assert bytes(buf[:100_000]) == data
    assert buf[100_000:] == bytes(100_000)


def test_free_and_contains(pool: Pool) -> None:
    a, b = pool.store(b"a" * 40), pool.store(b"b" * 5000)
    assert a in pool and b in pool
    assert "x" not in pool and None not in pool and -1 not in pool and 2**70 not in pool
    pool.free(a)
    assert a not in pool and b in pool
    pool.free(b)
    assert b not in pool
    assert len(pool) == 0


def test_stats_fields(pool: Pool) -> None:
    s = pool.stats()
    assert (s.objects, s.pages_used, s.payload_bytes, s.large_objects) == (0, 0, 0, 0)
    small = [pool.store(b"x" * 100) for _ in range(100)]
    big = pool.malloc(1 << 20)
    s = pool.stats()
    assert s.objects == 101
    assert s.payload_bytes == 100 * 100 + (1 << 20)
    assert s.large_objects == 1
    assert s.large_object_pages == (1 << 20) // PAGE_SIZE
    assert s.pages_used >= s.large_object_pages + 3
    assert s.mem_used_bytes == s.pages_used * PAGE_SIZE
    assert s.mem_used_max >= s.mem_used_bytes
    assert s.metadata_bytes > 0
    assert s.freeable_pages == 0
    assert (s.pages_compacted, s.objects_migrated, s.compactions) == (0, 0, 0)
    d = s.as_dict()
    assert set(d) == {
        "name", "pages_used", "mem_used_bytes", "mem_used_max", "mem_limit", "objects", "payload_bytes",
        "large_objects", "large_object_pages", "freeable_pages", "metadata_bytes", "pages_compacted",
        "objects_migrated", "compactions",
    }  # fmt: skip
    assert all(d[k] == getattr(s, k) for k in d)
    assert "objects=101" in repr(s)
    pool.free(big)
    for h in small:
        pool.free(h)
    s = pool.stats()
    assert (s.objects, s.pages_used, s.payload_bytes, s.large_objects) == (0, 0, 0, 0)
    assert s.mem_used_max >= (1 << 20)


def test_class_stats_rows(pool: Pool, pattern) -> None:  # type: ignore[no-untyped-def]
    sizes = [1, 40, 100, 1234, 3000, 4096, 4109, 8192]
    for i in range(400):
        pool.store(pattern(i, sizes[i % len(sizes)]))
    rows = pool.class_stats()
    assert rows and all(isinstance(r, zspool.ClassStats) for r in rows)
    assert [r.size for r in rows] == sorted(r.size for r in rows)
    assert rows[0].size == 32 and rows[-1].size == MAX_CLASS_SIZE == 2 * PAGE_SIZE
    assert sum(r.obj_used for r in rows) == pool.stats().objects == 400
    assert pool.stats().large_objects == 0
    assert sum(r.pages_used for r in rows) == pool.stats().pages_used
    for r in rows:
        assert isinstance(r.fullness, tuple) and len(r.fullness) == 12
        assert sum(r.fullness) == r.zspages
        assert r.obj_allocated == r.zspages * r.objs_per_zspage
        assert r.pages_used == r.zspages * r.pages_per_zspage
        assert 0 <= r.obj_used <= r.obj_allocated
        assert r.freeable == 0
        # The pool's limit (8) up to a page; classes above a page may always use 16.
        assert 1 <= r.pages_per_zspage <= (8 if r.size <= PAGE_SIZE else 16)
        d = r.as_dict()
        assert d["fullness"] == r.fullness and d["obj_used"] == r.obj_used and d["freeable"] == r.freeable
    by_size = {r.size: r for r in rows}
    assert by_size[PAGE_SIZE].obj_used == by_size[MAX_CLASS_SIZE].obj_used == 50
    assert sum(r.payload_bytes for r in rows) == pool.stats().payload_bytes


def test_max_pages_per_zspage_shapes_classes() -> None:
    with Pool(max_pages_per_zspage=1) as p:
        assert all(r.pages_per_zspage == 1 for r in p.class_stats() if r.size <= PAGE_SIZE)
        above_one = [(r.size, r.pages_per_zspage, r.objs_per_zspage) for r in p.class_stats() if r.size > PAGE_SIZE]
    with Pool(max_pages_per_zspage=16) as p:
        assert max(r.pages_per_zspage for r in p.class_stats() if r.size <= PAGE_SIZE) > 8
        above_16 = [(r.size, r.pages_per_zspage, r.objs_per_zspage) for r in p.class_stats() if r.size > PAGE_SIZE]
    # Classes above a page ignore the limit: they always pick the best chain of up to 16 pages.
    assert above_one == above_16 and len(above_one) == 40


# 4109-byte objects (class 4368, 15 per 16 pages) start at most 3808 bytes into a page, so
# they never reach a third one; nor do 6000 (class 6144, 2 per 3 pages) or 8000 (alone in two
# pages). The others do.
@pytest.mark.parametrize(("size", "three_pages"), [(4109, False), (5000, True), (6000, False), (7000, True), (8000, False)])
def test_objects_above_a_page_straddle_three_pages(pool: Pool, pattern, size: int, three_pages: bool) -> None:  # type: ignore[no-untyped-def]
    row = next(r for r in pool.class_stats() if r.size >= size)
    n = 2 * row.objs_per_zspage
    handles = {pool.store(pattern(i, size)): i for i in range(n)}
    starts = [(i % row.objs_per_zspage) * row.size % PAGE_SIZE for i in range(n)]
    assert any(start + size > 2 * PAGE_SIZE for start in starts) == three_pages
    s = pool.stats()
    assert s.large_objects == 0 and s.pages_used == 2 * row.pages_per_zspage
    assert s.pages_used <= 2 * n, "never more pages than the large path (two per object)"
    # Rewrite a window across the middle of every object (its middle page, for those that
    # straddle three), then check every byte through load, read and read_into.
    for h in handles:
        pool.write(h, b"\xaa" * 4000, offset=size // 2 - 2000)
    for h, i in handles.items():
        want = bytearray(pattern(i, size))
        want[size // 2 - 2000 : size // 2 + 2000] = b"\xaa" * 4000
        assert pool.load(h) == bytes(want)
        assert pool.read(h, offset=10, size=size - 20) == bytes(want[10:-10])
        buf = bytearray(size)
        assert pool.read_into(h, buf) == size and buf == want


def test_the_largest_class_and_the_first_large_object(pool: Pool) -> None:
    packed = pool.malloc(MAX_CLASS_SIZE)
    assert pool.stats().large_objects == 0 and pool.stats().pages_used == 2
    large = pool.malloc(MAX_CLASS_SIZE + 1)
    s = pool.stats()
    assert (s.large_objects, s.large_object_pages, s.pages_used) == (1, 3, 5)
    assert sum(r.obj_used for r in pool.class_stats()) + s.large_objects == s.objects == 2
    pool.free(packed)
    pool.free(large)
    assert pool.stats().pages_used == 0


def test_mem_limit_refuses_and_changes_nothing() -> None:
    with Pool(mem_limit=16 * PAGE_SIZE) as p:
        handles = []
        with pytest.raises(PoolFullError) as info:
            while True:
                handles.append(p.store(b"z" * 1000))
        assert "mem_limit=65536" in str(info.value)
        before = p.stats()
        assert before.pages_used <= 16
        with pytest.raises(PoolFullError):
            p.malloc(1000)
        with pytest.raises(PoolFullError):
            p.malloc(20 * PAGE_SIZE)
        with pytest.raises(MemoryError):
            p.store(b"q" * 1000)
        after = p.stats()
        assert (after.objects, after.pages_used, after.payload_bytes) == (
            before.objects,
            before.pages_used,
            before.payload_bytes,
        )
        assert all(p.load(h) == b"z" * 1000 for h in handles)
        p.free(handles.pop())
        p.store(b"z" * 1000)  # room again


def test_compact_and_can_compact_basics(pool: Pool) -> None:
    handles = [pool.malloc(200) for _ in range(2000)]
    for h in handles[::2]:
        pool.free(h)
    assert pool.can_compact() > 0
    r = pool.compact()
    assert isinstance(r, zspool.CompactionReport)
    assert r.stop_reason == "done"
    assert r.pages_freed > 0 and r.objects_migrated > 0 and r.bytes_migrated >= 200 * r.objects_migrated
    assert r.classes_scanned == 1 and r.duration_s >= 0
    assert set(r.as_dict()) == {
        "pages_freed", "objects_migrated", "bytes_migrated", "classes_scanned", "lock_yields", "duration_s",
        "stop_reason",
    }  # fmt: skip
    assert "stop_reason='done'" in repr(r)
    assert pool.can_compact() == 0
    for h in handles[1::2]:
        assert pool.load(h) == bytes(200)


def test_activity(pool: Pool) -> None:
    pool.store(b"x")
    a = pool.activity()
    assert a.ops_in_flight == 0
    assert a.idle_s >= 0
    assert a.as_dict() == {"ops_in_flight": 0, "idle_s": a.idle_s}


def test_len_repr_and_close(pattern) -> None:  # type: ignore[no-untyped-def]
    p = Pool(name="r")
    for i in range(10):
        p.store(pattern(i, 500))
    assert len(p) == 10
    r = repr(p)
    assert "name='r'" in r and "objects=10" in r and "pages_used=" in r
    p.close()
    assert p.closed
    assert "closed" in repr(p)
    with pytest.raises(zspool.PoolClosedError):
        len(p)  # the docs promise PoolClosedError after close(), len included
    p.close()  # idempotent


def test_context_manager_closes_even_on_error() -> None:
    with pytest.raises(KeyError):
        with Pool() as p:
            h = p.store(b"data")
            raise KeyError("boom")
    assert p.closed
    with pytest.raises(PoolClosedError):
        p.load(h)


def test_subclass_direct_reclaim_hook() -> None:
    """A Python subclass's ``_direct_reclaim`` runs when mem_limit is hit, then the
    allocation is retried once."""

    class Reclaiming(Pool):
        def __init__(self, **kwargs: object) -> None:
            self.victims: list[int] = []
            self.calls: list[int] = []
            self.enabled = False

        def _direct_reclaim(self, requested_bytes: int) -> bool:
            self.calls.append(requested_bytes)
            if not self.enabled:
                return False
            self.free(self.victims.pop())
            return True

    p = Reclaiming(mem_limit=4 * PAGE_SIZE)
    try:
        while True:
            try:
                p.victims.append(p.malloc(PAGE_SIZE))
            except PoolFullError:
                break
        assert p.calls == [PAGE_SIZE]
        assert len(p) == len(p.victims) == 4
        p.enabled = True
        p.victims.append(p.malloc(PAGE_SIZE))  # reclaims one victim, then succeeds
        assert p.calls == [PAGE_SIZE, PAGE_SIZE]
        assert len(p) == 4
        assert all(p.load(h) == bytes(PAGE_SIZE) for h in p.victims)
    finally:
        p.close()
    with Pool(mem_limit=PAGE_SIZE) as base:  # the base class never calls into Python
        base.malloc(PAGE_SIZE)
        with pytest.raises(PoolFullError):
            base.malloc(PAGE_SIZE)


def test_pool_is_shareable_across_threads(pool: Pool) -> None:
    out: list[bytes] = []
    h = pool.store(b"shared")
    t = threading.Thread(target=lambda: out.append(pool.load(h)))
    t.start()
    t.join()
    assert out == [b"shared"]
