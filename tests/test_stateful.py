"""A hypothesis state machine drives one pool and a dict oracle side by side: every
malloc/store/write/read/free/compact must leave the pool holding exactly the oracle's bytes."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import note
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

from zspool import InvalidHandleError, OutOfBoundsError, Pool

# Sizes that hit the interesting places: tiny, class boundaries, page-straddling, exactly a
# page, the classes above a page (straddling up to three pages), the largest class (8192),
# just over it (the large path).
SIZES = st.one_of(
    st.integers(0, 64),
    st.sampled_from([32, 33, 48, 1234, 2047, 2048, 3000, 4095, 4096, 4097, 4109, 8191, 8192, 8193, 12289]),
    st.integers(0, 4096),
    st.integers(4097, 8192),
)


class PoolVersusDict(RuleBasedStateMachine):
    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.pool = Pool(max_pages_per_zspage=4, name="stateful")
        self.oracle: dict[int, bytearray] = {}
        self.freed: list[int] = []

    @rule(target=handles, size=SIZES)
    def malloc(self, size: int) -> int:
        h = self.pool.malloc(size)
        assert h not in self.oracle
        self.oracle[h] = bytearray(size)
        return h

    @rule(target=handles, data=st.binary(max_size=5000))
    def store(self, data: bytes) -> int:
        h = self.pool.store(data)
        assert h not in self.oracle
        self.oracle[h] = bytearray(data)
        return h

    @rule(h=handles, data=st.data())
    def write_at_offset(self, h: int, data: st.DataObject) -> None:
        if h not in self.oracle:
            return
        size = len(self.oracle[h])
        offset = data.draw(st.integers(0, size), label="offset")
        chunk = data.draw(st.binary(max_size=size - offset), label="chunk")
        self.pool.write(h, chunk, offset=offset)
        self.oracle[h][offset : offset + len(chunk)] = chunk

    @rule(h=handles, data=st.data())
    def write_past_end_changes_nothing(self, h: int, data: st.DataObject) -> None:
        if h not in self.oracle:
            return
        size = len(self.oracle[h])
        offset = data.draw(st.integers(0, size + 2), label="offset")
        chunk = b"\xee" * (size - offset + data.draw(st.integers(1, 3), label="excess"))
        try:
            self.pool.write(h, chunk, offset=offset)
        except OutOfBoundsError:
            pass
        else:
            raise AssertionError("write past the end succeeded")

    @rule(h=handles, data=st.data())
    def read(self, h: int, data: st.DataObject) -> None:
        if h not in self.oracle:
            return
        want = self.oracle[h]
        offset = data.draw(st.integers(0, len(want)), label="offset")
        size = data.draw(st.none() | st.integers(0, len(want) - offset), label="size")
        end = len(want) if size is None else offset + size
        assert self.pool.read(h, offset, size) == want[offset:end]

    @rule(h=handles)
    def size_of(self, h: int) -> None:
        if h in self.oracle:
            assert self.pool.size_of(h) == len(self.oracle[h])
        else:
            try:
                self.pool.size_of(h)
            except InvalidHandleError:
                pass
            else:
                raise AssertionError("size_of a freed handle succeeded")

    @rule(h=consumes(handles))
    def free(self, h: int) -> None:
        if h not in self.oracle:
            return
        self.pool.free(h)
        del self.oracle[h]
        self.freed.append(h)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def freed_handle_is_invalid(self, data: st.DataObject) -> None:
        h = data.draw(st.sampled_from(self.freed), label="freed")
        if h in self.oracle:  # a new object can never get an old handle, but be precise
            return
        try:
            self.pool.load(h)
        except InvalidHandleError:
            pass
        else:
            raise AssertionError(f"load of freed handle {h:#x} succeeded")

    @rule(max_pages=st.none() | st.integers(0, 8))
    def compact(self, max_pages: int | None) -> None:
        freeable = self.pool.can_compact()
        report = self.pool.compact(max_pages=max_pages)
        note(f"compact({max_pages}) with {freeable} freeable -> {report}")
        if max_pages is None:
            assert report.pages_freed == freeable
            assert self.pool.can_compact() == 0
        else:
            assert report.pages_freed <= freeable

    @invariant()
    def counts_agree(self) -> None:
        assert len(self.pool) == len(self.oracle)
        stats = self.pool.stats()
        assert stats.objects == len(self.oracle)
        assert stats.payload_bytes == sum(len(v) for v in self.oracle.values())

    @invariant()
    def every_live_handle_loads_its_bytes(self) -> None:
        for h, want in self.oracle.items():
            assert self.pool.load(h) == want

    def teardown(self) -> None:
        self.pool.close()


TestPoolVersusDict = PoolVersusDict.TestCase
