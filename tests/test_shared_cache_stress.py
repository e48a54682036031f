"""zspool.SharedCache across processes: checksummed stress, a SIGKILL loop, fork, and memory
that really comes back.

Every worker is a forked child. Each key has one writer (key i belongs to worker i % N, and a
respawned worker takes over its predecessor's keys); versions are CLOCK_MONOTONIC ns, so they
only grow for a key, across respawns too. Every read is checked: the value is whole (crc32),
is the value of that key, was written by its owner, its version never goes backwards for the
reader, and a worker reading its own key gets exactly what it last wrote or a miss (a cache
may forget, never lie). A failed check ends the worker with its traceback in an error file,
which fails the test. Workers count their operations in an anonymous shared page; one that
stops counting for 10 s is hung.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from shared_cache_support import (
    check_value,
    file_blocks_bytes,
    fork_worker,
    make_value,
    meminfo_shmem_bytes,
    read_errors,
    shm_file,
    wait_exit,
)

from zspool import SharedCache

MiB = 1 << 20
N_KEYS = 1500
HANG_S = 10.0


@pytest.fixture
def shm_path() -> Iterator[str]:
    yield from shm_file()


class Board:
    """An anonymous shared page: a stop flag and one operation counter per worker."""

    def __init__(self, n: int) -> None:
        self.mem = mmap.mmap(-1, 8 * (n + 1))
        self.words = memoryview(self.mem).cast("Q")

    @property
    def stop(self) -> bool:
        return self.words[0] != 0

    def set_stop(self) -> None:
        self.words[0] = 1

    def bump(self, worker: int) -> None:
        self.words[1 + worker] += 1

    def progress(self, worker: int) -> int:
        return int(self.words[1 + worker])


def run_worker(
    path: str, inherited: SharedCache, board: Board, wid: int, n: int, compactor: bool, seed: int
) -> None:
    rng = random.Random(seed)
    cache = inherited if rng.random() < 0.5 else SharedCache(path)
    own = [f"key{i}" for i in range(N_KEYS) if i % n == wid]
    everyone = [f"key{i}" for i in range(N_KEYS)]
    written: dict[str, int | None] = {}  # own keys this process wrote: version, or None once deleted
    seen: dict[str, int] = {}

    def check(key: str, value: bytes | None) -> None:
        if value is None:
            return
        writer, version = check_value(key, value)
        assert writer == int(key[3:]) % n, f"{key} holds worker {writer}'s value; its owner is {int(key[3:]) % n}"
        assert version >= seen.get(key, 0), f"{key}: version went backwards ({version} < {seen[key]})"
        seen[key] = version
        if key in written:
            assert written[key] == version, f"{key}: read version {version}, this worker last wrote {written[key]}"

    def store(key: str) -> bytes:
        version = time.monotonic_ns()
        written[key] = version
        return make_value(key, wid, version, rng.choice((40, 100, 300, 700, 1500, 2500)))

    while not board.stop:
        op = rng.random()
        if compactor and op < 0.3:
            cache.compact(time_budget=0.005)
        elif op < 0.35:
            key = rng.choice(own)
            value = store(key)
            cache[key] = value
        elif op < 0.45:
            batch = rng.sample(own, 8)
            cache.set_many({key: store(key) for key in batch})
        elif op < 0.5:
            key = rng.choice(own)
            cache.pop(key, None)
            written[key] = None
        elif op < 0.6:
            batch = rng.sample(everyone, 16)
            for key, value in zip(batch, cache.get_many(batch)):
                check(key, value)
        elif op < 0.62:
            deleted = rng.sample(own, 4)
            cache.delete_many(deleted)
            written.update(dict.fromkeys(deleted))
        else:
            key = rng.choice(own) if op < 0.7 else rng.choice(everyone)
            value = cache.get(key)
            if key in written and written[key] is None:
                assert value is None, f"{key}: deleted by its only writer, then read back"
            check(key, value)
        board.bump(wid)


def spawn(path: str, cache: SharedCache, board: Board, wid: int, n: int, compactors: int, errors: str) -> int:
    seed = random.randrange(2**32)
    return fork_worker(lambda: run_worker(path, cache, board, wid, n, wid < compactors, seed), errors)


def verify_cache(path: str, n: int) -> None:
    """After the workers: every entry is intact and its owner's, and the cache still works."""
    with SharedCache(path) as c:
        keys = list(c)
        for key, value in zip(keys, c.get_many(keys)):
            if value is not None:
                writer, _ = check_value(key, value)
                assert writer == int(key[3:]) % n
        c.set_many({f"after{i}": b"a%d" % i for i in range(200)})
        assert c.get_many([f"after{i}" for i in range(200)]).count(None) < 200
        c.compact()
        assert c.currsize <= c.maxsize
        assert len(c) == len(list(c))


def test_eight_processes_checksummed(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    n, errors = 8, os.path.join(tmp_path, "errors")
    board = Board(n)
    with SharedCache(shm_path, MiB, compression="lz4") as cache:
        pids = [spawn(shm_path, cache, board, wid, n, 2, errors) for wid in range(n)]
        try:
            started = time.monotonic()
            last = [0] * n
            while time.monotonic() - started < 12:
                time.sleep(2)
                now = [board.progress(w) for w in range(n)]
                assert all(a > b for a, b in zip(now, last)), f"a worker made no progress in 2 s: {now}"
                last = now
                assert not os.path.exists(errors), read_errors(errors)
        finally:
            board.set_stop()
            statuses = [wait_exit(pid, 30) for pid in pids]
        assert statuses == [0] * n, read_errors(errors)
        assert sum(board.progress(w) for w in range(n)) > 10_000
        stats = cache.stats()
        assert stats.evictions > 0 and stats.hits > 0 and stats.recoveries == 0
    verify_cache(shm_path, n)


def test_kill_loop(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """>= 500 SIGKILLs of random workers at random moments (two compact in a loop, and the
    cache is kept over its budget, so some die compacting or evicting) while the others go on."""
    n, compactors, errors = 8, 2, os.path.join(tmp_path, "errors")
    board = Board(n)
    rng = random.Random(1616)
    kills = 0
    with SharedCache(shm_path, MiB) as cache:
        pids = {wid: spawn(shm_path, cache, board, wid, n, compactors, errors) for wid in range(n)}
        last_progress = {wid: (board.progress(wid), time.monotonic()) for wid in range(n)}
        try:
            started = time.monotonic()
            while kills < 500:
                assert time.monotonic() - started < 90, f"only {kills} kills in 90 s"
                time.sleep(rng.uniform(0.0, 0.03))
                for wid, pid in pids.items():
                    done, status = os.waitpid(pid, os.WNOHANG)
                    assert not done, f"worker {wid} exited by itself ({status}):\n{read_errors(errors)}"
                wid = rng.randrange(n)
                os.kill(pids[wid], signal.SIGKILL)
                assert wait_exit(pids[wid], 10) == -signal.SIGKILL
                kills += 1
                pids[wid] = spawn(shm_path, cache, board, wid, n, compactors, errors)
                now = time.monotonic()
                for w in range(n):
                    count = board.progress(w)
                    if count != last_progress[w][0]:
                        last_progress[w] = (count, now)
                    assert now - last_progress[w][1] < HANG_S, f"worker {w} made no progress for {HANG_S} s (hung)"
            # Then the survivors run unharmed for a while: every one must still make progress.
            before = [board.progress(w) for w in range(n)]
            time.sleep(2)
            after = [board.progress(w) for w in range(n)]
            assert all(a > b for a, b in zip(after, before)), f"hung after the kills: {before} -> {after}"
        finally:
            board.set_stop()
            statuses = [wait_exit(pid, 30) for pid in pids.values()]
        assert statuses == [0] * n, read_errors(errors)
        assert not os.path.exists(errors), read_errors(errors)
        stats = cache.stats()
        assert stats["recoveries"] > 0, stats.as_dict()
    verify_cache(shm_path, n)


def test_child_uses_the_inherited_cache_at_once(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    errors = os.path.join(tmp_path, "errors")
    with SharedCache(shm_path, 2 * MiB, serializer="pickle") as cache:
        cache["from-parent"] = {"n": 1}

        def child() -> None:
            assert cache["from-parent"] == {"n": 1}
            cache["from-child"] = [os.getpid()]

        pid = fork_worker(child, errors)
        assert wait_exit(pid, 30) == 0, read_errors(errors)
        assert cache["from-child"] == [pid]


def test_fork_while_a_thread_and_a_process_hold_locks(shm_path: str, tmp_path: os.PathLike[str]) -> None:
    """Fork while a thread of this process and another process hammer the cache (so its locks
    are held at the moment of the fork): every child works at once and exits in time."""
    errors = os.path.join(tmp_path, "errors")
    board = Board(1)
    with SharedCache(shm_path, MiB) as cache:

        def hammer() -> None:
            i = 0
            while not board.stop:
                cache[f"h{i % 500}"] = b"h" * (i % 900)
                cache.get(f"h{(i * 7) % 500}")
                if i % 100 == 0:
                    cache.compact(time_budget=0.002)
                i += 1

        other = fork_worker(hammer, errors)
        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            for round_ in range(30):

                def child(round_: int = round_) -> None:
                    key = f"child{round_}"
                    cache[key] = b"%d" % round_
                    assert cache.get(key) in (b"%d" % round_, None)
                    cache.compact(time_budget=0.002)

                assert wait_exit(fork_worker(child, errors), 30) == 0, read_errors(errors)
        finally:
            board.set_stop()
            thread.join(30)
            assert wait_exit(other, 30) == 0, read_errors(errors)
        assert not thread.is_alive()
        assert not os.path.exists(errors), read_errors(errors)


def test_fill_evict_delete_compact_gives_memory_back(shm_path: str) -> None:
    maxbytes = 16 * MiB
    with SharedCache(shm_path, maxbytes) as cache:
        rng = random.Random(7)
        i = 0
        while cache.stats().evictions == 0 or i < 60_000:
            cache[f"k{i}"] = rng.randbytes(rng.choice((200, 400, 700, 1200)))
            i += 1
        assert cache.currsize <= cache.maxsize
        assert cache.currsize > 0.8 * maxbytes
        keys = list(cache)
        full_blocks = file_blocks_bytes(shm_path)
        full_shmem = meminfo_shmem_bytes()
        assert full_blocks >= cache.currsize
        assert cache.stats().file_bytes_allocated == full_blocks

        rng.shuffle(keys)
        cache.delete_many(keys[: int(len(keys) * 0.7)])
        live = cache.currsize
        report = cache.compact()
        assert report.pages_freed > 0
        after_blocks = file_blocks_bytes(shm_path)
        after_shmem = meminfo_shmem_bytes()
        # The file's blocks are exact: about the live 30 % is left, plus metadata and
        # partly used zspages.
        assert after_blocks < 0.5 * full_blocks, (full_blocks, after_blocks, live)
        # Shmem is the host's: other processes move it too, so only half the drop is required.
        dropped = full_blocks - after_blocks
        assert full_shmem - after_shmem > 0.5 * dropped, (full_shmem, after_shmem, dropped)
        for key, value in zip(keys[-100:], cache.get_many(keys[-100:])):
            assert value is None or len(value) in (200, 400, 700, 1200), key
