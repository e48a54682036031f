"""Bad input, as a matrix: every way of holding the pool wrong raises the exact exception
class, and the message names the offending value (or type)."""

from __future__ import annotations

import array
import random
from collections.abc import Callable
from typing import Any

import pytest

from zspool import (
    MAX_OBJECT_SIZE,
    ConfigError,
    InvalidHandleError,
    ObjectSizeError,
    OutOfBoundsError,
    Pool,
    PoolClosedError,
    ZsPoolError,
)


def raises_exactly(cls: type[BaseException], call: Callable[[], object], *needles: str) -> BaseException:
    """``call()`` raises exactly ``cls`` (not a subclass) and its message contains every needle."""
    with pytest.raises(cls) as info:
        call()
    assert type(info.value) is cls, f"{type(info.value).__name__}: {info.value}"
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} not in {str(info.value)!r}"
    return info.value


# ---- handles -------------------------------------------------------------------------------

HANDLE_METHODS: dict[str, Callable[[Pool, Any], object]] = {
    "load": lambda p, h: p.load(h),
    "read": lambda p, h: p.read(h),
    "read_into": lambda p, h: p.read_into(h, bytearray(8)),
    "write": lambda p, h: p.write(h, b"x"),
    "size_of": lambda p, h: p.size_of(h),
    "free": lambda p, h: p.free(h),
}


@pytest.mark.parametrize("method", HANDLE_METHODS)
@pytest.mark.parametrize("size", [40, 5000])
def test_stale_handle(pool: Pool, method: str, size: int) -> None:
    h = pool.store(b"x" * size)
    pool.free(h)
    err = raises_exactly(InvalidHandleError, lambda: HANDLE_METHODS[method](pool, h), f"{h:#x}", "stale")
    assert isinstance(err, LookupError) and isinstance(err, ZsPoolError)
    assert h not in pool


@pytest.mark.parametrize("size", [40, 5000])
def test_double_free(pool: Pool, size: int) -> None:
    h = pool.malloc(size)
    keep = pool.store(b"keep")
    pool.free(h)
    raises_exactly(InvalidHandleError, lambda: pool.free(h), f"{h:#x}")
    assert len(pool) == 1 and pool.load(keep) == b"keep"


@pytest.mark.parametrize("method", HANDLE_METHODS)
def test_forged_handles(pool: Pool, method: str) -> None:
    live = [pool.store(b"live %d" % i) for i in range(50)] + [pool.malloc(10_000)]
    rng = random.Random(1234)
    forged = [0, 1, 2**64 - 1, 2**63] + [rng.getrandbits(64) for _ in range(200)]
    for h in forged:
        if h in live:
            continue
        raises_exactly(InvalidHandleError, lambda: HANDLE_METHODS[method](pool, h), f"{h:#x}")
    assert len(pool) == 51
    assert all(pool.load(h).startswith(b"live") or pool.size_of(h) == 10_000 for h in live)


@pytest.mark.parametrize("method", HANDLE_METHODS)
@pytest.mark.parametrize("h", [-1, -(2**63), 2**64, 2**70])
def test_handles_outside_u64(pool: Pool, method: str, h: int) -> None:
    raises_exactly(InvalidHandleError, lambda: HANDLE_METHODS[method](pool, h), str(h))
    assert h not in pool


@pytest.mark.parametrize("method", HANDLE_METHODS)
def test_handle_from_another_pool(method: str) -> None:
    with Pool() as a, Pool() as b:
        foreign = [a.store(b"in a"), a.malloc(9000)]
        b.store(b"in b")
        b.malloc(9000)
        for h in foreign:
            raises_exactly(InvalidHandleError, lambda: HANDLE_METHODS[method](b, h), f"{h:#x}")
            assert h not in b
        assert a.load(foreign[0]) == b"in a"


@pytest.mark.parametrize("method", HANDLE_METHODS)
@pytest.mark.parametrize("bad", ["1", 1.0, None, b"\x01", [1], True, False], ids=repr)
def test_handle_wrong_type(pool: Pool, method: str, bad: object) -> None:
    pool.store(b"x")
    raises_exactly(TypeError, lambda: HANDLE_METHODS[method](pool, bad), "handle", type(bad).__name__)
    assert bad not in pool


# ---- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [-1, -4096, -(2**70)])
def test_negative_size(pool: Pool, size: int) -> None:
    raises_exactly(ObjectSizeError, lambda: pool.malloc(size), str(size), str(MAX_OBJECT_SIZE))
    assert len(pool) == 0 and pool.stats().pages_used == 0


@pytest.mark.parametrize("size", [MAX_OBJECT_SIZE + 1, 2**63, 2**64, 2**100])
def test_size_too_big(pool: Pool, size: int) -> None:
    err = raises_exactly(ObjectSizeError, lambda: pool.malloc(size), str(size), str(MAX_OBJECT_SIZE))
    assert isinstance(err, ValueError)
    assert len(pool) == 0 and pool.stats().pages_used == 0


@pytest.mark.parametrize("bad", ["10", 10.0, None, b"10", [10], True], ids=repr)
def test_size_wrong_type(pool: Pool, bad: object) -> None:
    raises_exactly(TypeError, lambda: pool.malloc(bad), "size", type(bad).__name__)  # type: ignore[arg-type]


# ---- data and buffers ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, "text", [1, 2, 3], 42, {"a": 1}], ids=repr)
def test_data_wrong_type(pool: Pool, bad: object) -> None:
    h = pool.malloc(16)
    raises_exactly(TypeError, lambda: pool.write(h, bad), "data", type(bad).__name__)  # type: ignore[arg-type]
    raises_exactly(TypeError, lambda: pool.store(bad), "data", type(bad).__name__)  # type: ignore[arg-type]
    assert len(pool) == 1 and pool.load(h) == bytes(16)


def test_data_not_contiguous(pool: Pool) -> None:
    h = pool.malloc(16)
    strided = memoryview(bytes(range(32)))[::2]
    raises_exactly(BufferError, lambda: pool.write(h, strided), "contiguous", "memoryview")
    raises_exactly(BufferError, lambda: pool.store(strided), "contiguous")


@pytest.mark.parametrize("bad", [b"readonly", memoryview(b"readonly"), bytes(0)], ids=repr)
def test_read_into_readonly_buffer(pool: Pool, bad: object) -> None:
    h = pool.store(b"abc")
    raises_exactly(TypeError, lambda: pool.read_into(h, bad), "writable", type(bad).__name__)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [None, "text", [0] * 8, 8], ids=repr)
def test_read_into_not_a_buffer(pool: Pool, bad: object) -> None:
    h = pool.store(b"abc")
    raises_exactly(TypeError, lambda: pool.read_into(h, bad), "buffer", type(bad).__name__)  # type: ignore[arg-type]


def test_released_memoryview_keeps_its_own_error(pool: Pool) -> None:
    m = memoryview(bytearray(4))
    m.release()
    with pytest.raises(ValueError, match="released"):
        pool.store(m)


# ---- offsets and extents -------------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 5000])
def test_write_past_end(pool: Pool, size: int) -> None:
    h = pool.store(b"\x01" * size)
    raises_exactly(OutOfBoundsError, lambda: pool.write(h, b"xy", offset=size - 1), str(size - 1), str(size))
    raises_exactly(OutOfBoundsError, lambda: pool.write(h, b"x" * (size + 1)), str(size + 1), str(size))
    raises_exactly(OutOfBoundsError, lambda: pool.write(h, b"", offset=size + 1), str(size + 1))
    assert pool.load(h) == b"\x01" * size  # nothing written


@pytest.mark.parametrize("size", [100, 5000, 200_000])
def test_read_past_end(pool: Pool, size: int) -> None:
    h = pool.malloc(size)
    raises_exactly(OutOfBoundsError, lambda: pool.read(h, offset=size + 1), str(size + 1), str(size))
    raises_exactly(OutOfBoundsError, lambda: pool.read(h, 0, size + 1), str(size + 1), str(size))
    raises_exactly(OutOfBoundsError, lambda: pool.read(h, size - 10, 11), str(size - 10), str(size))
    raises_exactly(OutOfBoundsError, lambda: pool.read_into(h, bytearray(4), offset=size + 1), str(size + 1))


@pytest.mark.parametrize("offset", [-1, -100, 2**64, 2**80])
def test_bad_offsets(pool: Pool, offset: int) -> None:
    h = pool.store(b"abcdef")
    raises_exactly(OutOfBoundsError, lambda: pool.write(h, b"x", offset=offset), str(offset))
    raises_exactly(OutOfBoundsError, lambda: pool.read(h, offset=offset), str(offset))
    raises_exactly(OutOfBoundsError, lambda: pool.read_into(h, bytearray(2), offset=offset), str(offset))
    raises_exactly(OutOfBoundsError, lambda: pool.read(h, 0, offset), str(offset))
    assert pool.load(h) == b"abcdef"


@pytest.mark.parametrize("bad", ["1", 1.5, True], ids=repr)
def test_offset_wrong_type(pool: Pool, bad: object) -> None:
    h = pool.store(b"abcdef")
    raises_exactly(TypeError, lambda: pool.read(h, offset=bad), "offset", type(bad).__name__)  # type: ignore[arg-type]
    raises_exactly(TypeError, lambda: pool.write(h, b"x", bad), "offset", type(bad).__name__)  # type: ignore[arg-type]
    raises_exactly(TypeError, lambda: pool.read(h, 0, bad), "size", type(bad).__name__)  # type: ignore[arg-type]


# ---- use after close -----------------------------------------------------------------------

AFTER_CLOSE: dict[str, Callable[[Pool, int], object]] = {
    "malloc": lambda p, h: p.malloc(10),
    "store": lambda p, h: p.store(b"x"),
    "write": lambda p, h: p.write(h, b"x"),
    "read": lambda p, h: p.read(h),
    "read_into": lambda p, h: p.read_into(h, bytearray(4)),
    "load": lambda p, h: p.load(h),
    "size_of": lambda p, h: p.size_of(h),
    "free": lambda p, h: p.free(h),
    "stats": lambda p, h: p.stats(),
    "class_stats": lambda p, h: p.class_stats(),
    "activity": lambda p, h: p.activity(),
    "can_compact": lambda p, h: p.can_compact(),
    "compact": lambda p, h: p.compact(),
    "malloc_large": lambda p, h: p.malloc(1 << 20),
}


@pytest.mark.parametrize("method", AFTER_CLOSE)
def test_use_after_close(method: str) -> None:
    p = Pool()
    h = p.store(b"abc")
    p.close()
    raises_exactly(PoolClosedError, lambda: AFTER_CLOSE[method](p, h), "closed")
    # What still works: the properties, repr and another close(); len and in raise too.
    assert p.closed and "closed" in repr(p)
    raises_exactly(PoolClosedError, lambda: len(p), "closed")
    raises_exactly(PoolClosedError, lambda: h in p, "closed")
    p.close()


# ---- constructor ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 17, 100, -1, 2**64, 2**70])
def test_bad_max_pages_per_zspage(value: int) -> None:
    err = raises_exactly(
        ConfigError, lambda: Pool(max_pages_per_zspage=value), f"max_pages_per_zspage={value}", "1..=16"
    )
    assert isinstance(err, ValueError)


@pytest.mark.parametrize("value", [0, 1, 4095, -1, -4096, -(2**70), 2**64])
def test_bad_mem_limit(value: int) -> None:
    raises_exactly(ConfigError, lambda: Pool(mem_limit=value), f"mem_limit={value}")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_pages_per_zspage": "8"}, "max_pages_per_zspage"),
        ({"max_pages_per_zspage": 8.0}, "max_pages_per_zspage"),
        ({"mem_limit": "1M"}, "mem_limit"),
        ({"mem_limit": 1e6}, "mem_limit"),
        ({"name": 5}, "name"),
    ],
)
def test_constructor_wrong_types(kwargs: dict[str, object], needle: str) -> None:
    raises_exactly(TypeError, lambda: Pool(**kwargs), needle)  # type: ignore[arg-type]


def test_constructor_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Pool(8)  # type: ignore[misc]


# ---- compact arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, -(2**70), 2**64])
def test_bad_max_pages(pool: Pool, value: int) -> None:
    raises_exactly(ValueError, lambda: pool.compact(max_pages=value), f"max_pages={value}")


@pytest.mark.parametrize("value", [-1.0, -0.001, float("nan")])
def test_bad_time_budget(pool: Pool, value: float) -> None:
    raises_exactly(ValueError, lambda: pool.compact(time_budget=value), f"time_budget={value}")


@pytest.mark.parametrize("kwargs", [{"max_pages": "1"}, {"max_pages": 1.0}, {"time_budget": "1s"}])
def test_compact_wrong_types(pool: Pool, kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        pool.compact(**kwargs)  # type: ignore[arg-type]


def test_arrays_of_wide_items_are_bytes(pool: Pool) -> None:
    # Not an error: a wide array is written as its raw bytes (len counts bytes, not items).
    h = pool.malloc(8)
    pool.write(h, array.array("H", [1, 2, 3, 4]))
    assert pool.load(h) == array.array("H", [1, 2, 3, 4]).tobytes()
    raises_exactly(OutOfBoundsError, lambda: pool.write(h, array.array("H", [1, 2, 3, 4, 5])), "10 bytes")
