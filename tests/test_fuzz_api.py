"""Property-based fuzz of the Python API: random operations with random handles (ints of
any size, negative, stale, another pool's), sizes, offsets and wrong types.

Only documented exceptions may ever come out, each where the docs say, and a Python oracle
(handle -> bytes) of this pool stays exact after every step: every byte, ``len``, and the
object and payload totals of ``stats()``. ``HYPOTHESIS_PROFILE=thorough`` runs more examples.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zspool import (
    MAX_OBJECT_SIZE,
    InvalidHandleError,
    ObjectSizeError,
    OutOfBoundsError,
    Pool,
    PoolFullError,
)

# What a caller may get for a bad argument, by argument kind (docs: README "Errors").
HANDLE_ERRORS = (InvalidHandleError, TypeError)
EXTENT_ERRORS = (OutOfBoundsError, TypeError)
DATA_ERRORS = (TypeError, BufferError)

ints = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 2**64, 2**64 - 1, -(2**63)]),
)
wrong_types: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.floats(), st.text(max_size=5), st.lists(st.integers(), max_size=2)
)
payloads: st.SearchStrategy[Any] = st.one_of(
    st.binary(max_size=5000),
    st.binary(min_size=4097, max_size=20_000),
    st.binary(max_size=300).map(bytearray),
    st.binary(max_size=300).map(memoryview),
)

op = st.one_of(
    st.tuples(st.just("store"), st.one_of(payloads, wrong_types)),
    st.tuples(st.just("malloc"), st.one_of(st.integers(-5, 9000), ints, wrong_types)),
    st.tuples(st.just("load"), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("read"), st.integers(0, 10**6), st.one_of(st.integers(-3, 6000), wrong_types), st.integers(-3, 6000)),
    st.tuples(st.just("write"), st.integers(0, 10**6), st.integers(-3, 6000), st.one_of(st.binary(max_size=300), wrong_types)),
    st.tuples(st.just("read_into"), st.integers(0, 10**6), st.integers(0, 6000)),
    st.tuples(st.just("free"), st.integers(0, 10**6), st.booleans()),
    st.tuples(st.just("forged"), st.one_of(ints, wrong_types)),
    st.tuples(st.just("foreign"), st.integers(0, 10**6)),
    st.tuples(st.just("compact"), st.integers(0, 4)),
)


def expect(errors: tuple[type[BaseException], ...], call: Any) -> Any:
    """Run ``call``; return its result, or None if it raised one of ``errors``. Any other
    exception fails the test."""
    try:
        return call()
    except errors:
        return None


@given(ops=st.lists(op, max_size=60))
def test_random_api_use_keeps_the_oracle_exact(ops: list[tuple[Any, ...]]) -> None:
    pool, other = Pool(name="fuzz"), Pool(name="other")
    oracle: dict[int, bytes] = {}
    stale: list[int] = []
    foreign = [other.store(b"foreign %d" % i) for i in range(4)]
    try:
        for step in ops:
            kind = step[0]
            live = list(oracle)
            pick = (lambda i: live[i % len(live)]) if live else (lambda i: None)
            if kind == "store":
                h = expect(DATA_ERRORS, lambda: pool.store(step[1]))
                if h is not None:
                    assert isinstance(step[1], (bytes, bytearray, memoryview))
                    oracle[h] = bytes(step[1])
            elif kind == "malloc":
                size = step[1]
                h = expect((ObjectSizeError, TypeError, PoolFullError), lambda: pool.malloc(size))
                if h is not None:
                    assert isinstance(size, int) and 0 <= size <= MAX_OBJECT_SIZE
                    oracle[h] = bytes(size)
                elif isinstance(size, int) and not isinstance(size, bool) and 0 <= size <= 9000:
                    raise AssertionError(f"malloc({size}) failed")
            elif kind == "load":
                h = pick(step[1])
                if h is not None:
                    assert pool.load(h) == oracle[h]
            elif kind == "read":
                h = pick(step[1])
                if h is None:
                    continue
                offset, size = step[2], step[3]
                got = expect(EXTENT_ERRORS, lambda: pool.read(h, offset, size))
                offset = 0 if offset is None else offset  # None is the documented default
                ok = isinstance(offset, int) and not isinstance(offset, bool) and 0 <= offset
                ok = ok and 0 <= size and offset + size <= len(oracle[h])
                if ok:
                    assert got == oracle[h][offset : offset + size]
                else:
                    assert got is None
            elif kind == "write":
                h = pick(step[1])
                if h is None:
                    continue
                offset, data = step[2], step[3]
                expect(EXTENT_ERRORS + DATA_ERRORS, lambda: pool.write(h, data, offset))
                fits = isinstance(data, bytes) and 0 <= offset and offset + len(data) <= len(oracle[h])
                if fits:
                    old = oracle[h]
                    oracle[h] = old[:offset] + data + old[offset + len(data) :]
                assert pool.load(h) == oracle[h], "the write went wrong (or a refused write changed the object)"
            elif kind == "read_into":
                h = pick(step[1])
                if h is not None:
                    buf = bytearray(step[2])
                    n = pool.read_into(h, buf)
                    assert n == min(len(buf), len(oracle[h])) and bytes(buf[:n]) == oracle[h][:n]
            elif kind == "free":
                h = pick(step[1])
                if h is not None:
                    pool.free(h)
                    del oracle[h]
                    stale.append(h)
                if step[2] and stale:  # use after free / double free
                    s = stale[step[1] % len(stale)]
                    for call in (pool.load, pool.free, pool.size_of):
                        assert expect(HANDLE_ERRORS, lambda c=call: c(s)) is None
                    assert s not in pool
            elif kind == "forged":
                h = step[1]
                if isinstance(h, int) and not isinstance(h, bool) and h in oracle:
                    assert pool.load(h) == oracle[h]
                    continue
                for call in (pool.load, pool.free, pool.size_of, lambda x: pool.write(x, b"z")):
                    assert expect(HANDLE_ERRORS, lambda c=call: c(h)) is None
            elif kind == "foreign":
                h = foreign[step[1] % len(foreign)]
                if h not in oracle:  # 2**-27-ish: the other pool's handle could name one of ours
                    assert expect(HANDLE_ERRORS, lambda: pool.load(h)) is None
                    assert expect(HANDLE_ERRORS, lambda: pool.free(h)) is None
            elif kind == "compact":
                pool.compact(max_pages=step[1] or None)
            stats = pool.stats()
            assert len(pool) == stats.objects == len(oracle)
            assert stats.payload_bytes == sum(len(b) for b in oracle.values())
        assert all(pool.load(h) == b for h, b in oracle.items())
        assert [other.load(h) for h in foreign] == [b"foreign %d" % i for i in range(4)], "the other pool changed"
        # Fresh objects never show old data.
        for h in list(oracle):
            pool.free(h)
        fresh = [pool.malloc(n) for n in (1, 100, 4096, 5000)]
        assert all(pool.load(h) == bytes(len(pool.load(h))) for h in fresh)
    finally:
        pool.close()
        other.close()
