"""Many threads on one pool while a compactor runs in a loop: no object is ever lost, torn
or mixed up, and the counters agree at the end."""

from __future__ import annotations

import hashlib
import random
import threading
import time

import pytest

from zspool import Pool, PoolClosedError

WORKERS = 8
OPS_PER_WORKER = 4000
SIZES = [1, 24, 100, 500, 1234, 3000, 4096, 6000]


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def test_workers_and_a_compactor(pattern) -> None:  # type: ignore[no-untyped-def]
    pool = Pool(name="threads")
    errors: list[BaseException] = []
    live: list[dict[int, tuple[bytes, bytes]]] = [{} for _ in range(WORKERS)]
    stop = threading.Event()
    reports = []

    def worker(wid: int) -> None:
        rng = random.Random(wid)
        mine = live[wid]
        try:
            for step in range(OPS_PER_WORKER):
                op = rng.random()
                if op < 0.40 or not mine:
                    data = pattern(wid * 1_000_000 + step, rng.choice(SIZES))
                    h = pool.store(data)
                    mine[h] = (data, digest(data))
                elif op < 0.65:
                    h = rng.choice(list(mine))
                    data, check = mine[h]
                    got = pool.load(h)
                    assert digest(got) == check, f"worker {wid}: object {h:#x} corrupted"
                elif op < 0.80:
                    h = rng.choice(list(mine))
                    data, _ = mine[h]
                    if data:
                        offset = rng.randrange(len(data))
                        chunk = bytes([rng.randrange(256)]) * rng.randint(1, len(data) - offset)
                        pool.write(h, chunk, offset=offset)
                        data = data[:offset] + chunk + data[offset + len(chunk) :]
                        mine[h] = (data, digest(data))
                    buf = bytearray(len(data))
                    assert pool.read_into(h, buf) == len(data)
                    assert digest(bytes(buf)) == mine[h][1]
                else:
                    h = rng.choice(list(mine))
                    del mine[h]
                    pool.free(h)
            for h, (_, check) in mine.items():
                assert digest(pool.load(h)) == check
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def compactor() -> None:
        try:
            while not stop.is_set():
                reports.append(pool.compact())
                time.sleep(0.001)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    background = threading.Thread(target=compactor)
    background.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    stop.set()
    background.join(timeout=60)
    try:
        assert not errors, errors
        assert not any(t.is_alive() for t in [*threads, background])
        assert reports, "the compactor never ran"
        assert {r.stop_reason for r in reports} <= {"done", "nothing_freeable", "already_running"}

        total = sum(len(m) for m in live)
        for mine in live:
            for h, (data, _) in mine.items():
                assert pool.load(h) == data
        stats = pool.stats()
        assert len(pool) == stats.objects == total
        rows = pool.class_stats()
        assert sum(r.obj_used for r in rows) + stats.large_objects == stats.objects
        assert stats.payload_bytes == sum(len(d) for m in live for d, _ in m.values())
        assert stats.pages_compacted == sum(r.pages_freed for r in reports)
        # The point of the test: objects really moved while the workers were using them.
        assert stats.objects_migrated > 0 and stats.pages_compacted > 0

        # Quiesced: one more full compaction leaves nothing freeable anywhere.
        pool.compact()
        assert pool.can_compact() == 0
        assert all(r.freeable == 0 for r in pool.class_stats())
        for mine in live:
            for h, (data, _) in mine.items():
                assert pool.load(h) == data
    finally:
        pool.close()


def test_concurrent_close_is_safe() -> None:
    """Closing while other threads use the pool: they fail with PoolClosedError, nothing
    crashes, and the pool ends closed and empty."""

    pool = Pool()
    handles = [pool.store(b"x" * 300) for _ in range(5000)]
    for h in handles[::2]:
        pool.free(h)
    outcomes: list[str] = []

    def user() -> None:
        try:
            while True:
                h = pool.store(b"y" * 200)
                pool.load(h)
        except PoolClosedError:
            outcomes.append("closed")
        except BaseException as exc:  # noqa: BLE001
            outcomes.append(repr(exc))

    def compactor() -> None:
        try:
            while not pool.closed:
                pool.compact()
        except PoolClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=user) for _ in range(3)] + [threading.Thread(target=compactor)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    pool.close()
    for t in threads:
        t.join(timeout=30)
    assert outcomes == ["closed"] * 3
    assert pool.closed
    with pytest.raises(PoolClosedError):
        len(pool)
