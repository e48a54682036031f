"""Fork safety: ``os.fork()`` while other threads hammer a pool or a cache, compact it and run
a reclaimer.

Each test forks for real. The child checks what it inherited and exercises the pool (or the
cache), then leaves with ``os._exit(status)``, reporting what it checked through a pipe where
that matters; the parent waits with a deadline and kills a child that hangs (a deadlock in
the child is exactly the failure these tests exist to catch).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from typing import Self

import pytest

from zspool import Cache, CompactionReport, Pool, PoolClosedError, Reclaimer

CHILD_DEADLINE_S = 20.0


def run_child(child: Callable[[], None]) -> int:
    """Fork; run ``child`` in the child (exit 0 if it returns, 1 if it raises); return the
    child's exit status, failing the test if it does not exit within the deadline."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            child()
            status = 0
        except BaseException as exc:  # noqa: BLE001 - report anything, then leave
            os.write(2, f"child failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(status)
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    where = ""
    if shutil.which("gdb"):  # say where it hangs: the native stack of the stuck child
        where = subprocess.run(
            ["gdb", "-p", str(pid), "-batch", "-ex", "bt 30"], capture_output=True, text=True, timeout=60
        ).stdout[-8000:]
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(where)
    pytest.fail(f"the child did not finish within {CHILD_DEADLINE_S} s: deadlocked after fork")


class Workers:
    """Background threads for a fork test: started on entering, and entered only once they
    have done ``warm_up`` operations; stopped, joined and checked for errors on exit."""

    warm_up = 0

    def __init__(self, targets: list[Callable[[], None]]) -> None:
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ops = 0
        self.threads = [threading.Thread(target=target, daemon=True) for target in targets]

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        while self.ops < self.warm_up:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors[:10]


class Hammer(Workers):
    """Threads that churn a pool (small and large objects, so some calls run without the
    GIL) and a thread that compacts it in a loop, each checking its own objects' CRCs."""

    warm_up = 500

    def __init__(self, pool: Pool, threads: int = 3) -> None:
        self.pool = pool
        churners = [functools.partial(self.churn, i) for i in range(threads)]
        super().__init__([*churners, self.compact])

    def churn(self, seed: int) -> None:
        import random

        rng = random.Random(seed)
        owned: dict[int, int] = {}
        try:
            while not self.stop.is_set():
                if len(owned) < 2000 or rng.random() < 0.5:
                    size = rng.choice((rng.randint(1, 3000), rng.randint(70_000, 140_000)))
                    data = rng.randbytes(size)
                    owned[self.pool.store(data)] = zlib.crc32(data)
                else:
                    handle = rng.choice(list(owned)) if len(owned) < 50 else next(iter(owned))
                    if zlib.crc32(self.pool.load(handle)) != owned.pop(handle):
                        self.errors.append(f"corrupt object {handle:#x}")
                    self.pool.free(handle)
                self.ops += 1
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def compact(self) -> None:
        while not self.stop.is_set():
            self.pool.compact(time_budget=0.05)


def frozen_objects(pool: Pool, n: int = 3000) -> dict[int, bytes]:
    """Objects nobody else touches: the child must read every one back."""
    out = {}
    for i in range(n):
        data = (i.to_bytes(4, "little") * 1200)[: 1 + (i * 37) % 4500]
        out[pool.store(data)] = data
    return out


def exercise_child_pool(pool: Pool, frozen: dict[int, bytes]) -> None:
    """In the child: inherited objects intact, stats consistent, every operation works."""
    assert all(pool.load(h) == data for h, data in frozen.items()), "inherited objects differ"
    stats = pool.stats()
    assert stats.objects == len(pool)
    assert sum(row.obj_used for row in pool.class_stats()) + stats.large_objects == stats.objects
    fresh = {pool.store(bytes([i % 256]) * (1 + i * 13 % 9000)): i for i in range(2000)}
    for h, i in fresh.items():
        assert pool.load(h) == bytes([i % 256]) * (1 + i * 13 % 9000)
    for h in list(frozen)[::2]:
        pool.free(h)
    for h in list(fresh)[::2]:
        pool.free(h)
    report = pool.compact()
    assert report.stop_reason in ("done", "nothing_freeable"), report
    assert all(pool.load(h) == data for h, data in list(frozen.items())[1::2])
    # Threads in the child work too (no lock was left held by the parent's threads).
    t = threading.Thread(target=lambda: [pool.free(pool.store(b"x" * 100)) for _ in range(1000)])
    t.start()
    t.join(10)
    assert not t.is_alive()
    pool.close()


def test_fork_while_threads_hammer_and_compact() -> None:
    pool = Pool(name="fork")
    frozen = frozen_objects(pool)
    with Hammer(pool):
        for _ in range(5):
            assert run_child(lambda: exercise_child_pool(pool, frozen)) == 0
            time.sleep(0.05)
        # The parent kept working through the forks.
        assert all(pool.load(h) == data for h, data in frozen.items())
    assert pool.stats().objects == len(pool)
    pool.close()


def test_fork_with_several_pools_and_a_running_reclaimer() -> None:
    pools = [Pool(name=f"p{i}") for i in range(3)]
    frozen = [frozen_objects(p, 500) for p in pools]
    for p in pools:
        p.register_shrinker("always")
    with Reclaimer(*pools, interval_s=0.01, monitor=None, psi_trigger=None) as reclaimer:
        with Hammer(pools[0], threads=2):

            def child() -> None:
                assert not reclaimer.running, "the reclaimer thread does not exist in the child"
                for p, f in zip(pools, frozen, strict=True):
                    exercise_child_pool(p, f)

            assert run_child(child) == 0
        assert reclaimer.running, "the parent's reclaimer is unaffected"
    for p, f in zip(pools, frozen, strict=True):
        assert all(p.load(h) == data for h, data in f.items())
        p.close()


def test_reclaimer_restarts_in_the_child_when_asked() -> None:
    pool = Pool(name="restart")
    frozen = frozen_objects(pool, 2000)
    for h in list(frozen)[::2]:
        pool.free(h)
        del frozen[h]
    assert pool.can_compact() > 0
    # The parent's reclaimer has no shrinker to run, so the pool stays fragmented; the child
    # registers one, and only a reclaimer thread running in the child can then compact it.
    with Reclaimer(pool, interval_s=0.01, monitor=None, psi_trigger=None, restart_after_fork=True) as reclaimer:

        def child() -> None:
            assert reclaimer.running, "restart_after_fork=True starts a thread in the child"
            pool.register_shrinker("always")
            deadline = time.monotonic() + 5
            while pool.can_compact() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert pool.can_compact() == 0, "the child's reclaimer compacts the child's pool"
            reclaimer.stop()
            assert all(pool.load(h) == data for h, data in frozen.items())

        assert run_child(child) == 0
        assert pool.can_compact() > 0, "the child's compaction did not touch the parent's pool"
    pool.close()


def test_a_stopped_reclaimer_can_be_started_again_in_the_child() -> None:
    pool = Pool(name="stopped")
    with Reclaimer(pool, interval_s=0.01, monitor=None, psi_trigger=None) as reclaimer:

        def child() -> None:
            assert not reclaimer.running
            reclaimer.stop()  # cleanly stopped: stop() is a no-op
            reclaimer.start()
            assert reclaimer.running
            reclaimer.stop()

        assert run_child(child) == 0
        assert reclaimer.running
    pool.close()


def test_fork_interrupts_a_long_compaction_and_the_parent_resumes() -> None:
    # The fork must come in the middle of the run: the parent spins until the compaction has
    # freed pages (the published can_compact() dropped), then forks at once. Should the run
    # still end first (a loaded machine descheduling this thread), the scenario is repeated;
    # a fork that never interrupts a compaction fails.
    for _attempt in range(5):
        pool = Pool(name="long")
        handles = [pool.store(bytes([i % 251]) * 300) for i in range(150_000)]
        for h in handles[::3] + handles[1::3]:
            pool.free(h)
        survivors = {h: bytes([i % 251]) * 300 for i, h in enumerate(handles) if i % 3 == 2}
        inherited = dict(list(survivors.items())[:1000])  # made now: the fork must follow the spin
        freeable = pool.can_compact()
        reports: list[CompactionReport] = []
        t = threading.Thread(target=lambda p=pool, r=reports: r.append(p.compact()))
        t.start()
        while pool.can_compact() == freeable and not reports:
            pass
        assert run_child(functools.partial(exercise_child_pool, pool, inherited)) == 0
        t.join(30)
        report = reports[0]
        if report.stop_reason == "done":
            pool.close()
            continue
        assert report.stop_reason == "interrupted", report
        assert 0 < report.pages_freed < freeable, (report, freeable)
        assert pool.compact().stop_reason == "done"
        assert pool.can_compact() == 0
        assert all(pool.load(h) == data for h, data in survivors.items())
        pool.close()
        return
    pytest.fail("in five tries the compaction always finished before the fork: never interrupted")


# --- zspool.Cache: its mutex is held across fork() too, taken before the pool's locks ---


def cache_value(key: str, version: int, size: int) -> bytes:
    """A value that names its key and version and carries its own CRC-32 (the last 4 bytes)."""
    head = f"{key}|{version}|".encode()
    body = head + (head * (size // len(head) + 1))[: max(0, size - len(head))]
    return body + zlib.crc32(body).to_bytes(4, "little")


def check_cache_value(key: str, value: bytes) -> int:
    """Assert ``value`` is whole and belongs to ``key``; return its version."""
    body, crc = value[:-4], int.from_bytes(value[-4:], "little")
    assert zlib.crc32(body) == crc, f"torn value under {key!r}"
    name, version, _ = body.split(b"|", 2)
    assert name == key.encode(), f"{key!r} holds the value of {name!r}"
    return int(version)


def run_child_reporting(child: Callable[[], str]) -> tuple[int, str]:
    """:func:`run_child`, with ``child``'s return value sent back to the parent through a pipe."""
    r, w = os.pipe()
    try:

        def report() -> None:
            os.close(r)
            os.write(w, child().encode())

        status = run_child(report)
        os.close(w)
        w = -1
        with os.fdopen(r, "rb") as f:
            r = -1
            return status, f.read().decode()
    finally:
        for fd in (r, w):
            if fd >= 0:
                os.close(fd)


class CacheHammer(Workers):
    """Threads that churn a cache: per-thread keys set, read back (CRC and version checked) and
    deleted; a batch thread whose ``set_many`` chunks hold the cache mutex without the GIL and
    whose ``get_many`` chunks hold it with the GIL; and a thread compacting the cache's pool."""

    warm_up = 300

    def __init__(self, cache: Cache, threads: int = 2, batch: int = 2000) -> None:
        self.cache = cache
        self.batch = batch
        churners = [functools.partial(self.churn, i) for i in range(threads)]
        super().__init__([*churners, self.batches, self.compact])

    def churn(self, seed: int) -> None:
        import random

        rng = random.Random(seed)
        mine: dict[str, int] = {}  # key -> the version this thread last stored
        try:
            while not self.stop.is_set():
                key = f"churn{seed}-{rng.randrange(3000)}"
                action = rng.random()
                if action < 0.45:
                    version = mine.get(key, 0) + 1
                    self.cache[key] = cache_value(key, version, rng.choice((rng.randint(1, 3000), 9000)))
                    mine[key] = version
                elif action < 0.85:
                    value = self.cache.get(key)
                    if (value is None) != (key not in mine):
                        self.errors.append(f"{key}: present={value is not None}, expected {key in mine}")
                    elif value is not None and check_cache_value(key, value) != mine[key]:
                        self.errors.append(f"{key}: stale version")
                elif key in mine:
                    del self.cache[key]
                    del mine[key]
                self.ops += 1
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def batches(self) -> None:
        keys = [f"batch-{i}" for i in range(self.batch)]
        version = 0
        try:
            while not self.stop.is_set():
                version += 1
                self.cache.set_many({k: cache_value(k, version, 200 + i % 1500) for i, k in enumerate(keys)})
                for k, value in zip(keys, self.cache.get_many(keys), strict=True):
                    if value is None or check_cache_value(k, value) != version:
                        self.errors.append(f"{k}: batch version {version} not read back")
                        return
                self.ops += 1
        except Exception as exc:  # noqa: BLE001
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def compact(self) -> None:
        while not self.stop.is_set():
            self.cache.compact(time_budget=0.05)
            time.sleep(0.001)


def frozen_entries(cache: Cache, n: int = 2000) -> dict[str, bytes]:
    """Entries nobody else touches: the child must read every one back."""
    out = {f"frozen-{i}": cache_value(f"frozen-{i}", 0, 1 + (i * 37) % 6000) for i in range(n)}
    cache.set_many(out)
    return out


def exercise_child_cache(cache: Cache, frozen: dict[str, bytes]) -> str:
    """In the child: inherited entries intact and consistent with the index and the pool,
    every operation works, a thread of the child's own can use the cache. Returns a report."""
    assert not cache.closed
    assert all(cache[k] == v for k, v in frozen.items()), "inherited entries differ"
    keys = list(cache)
    for k in keys:
        check_cache_value(k, cache[k])  # whatever the parent's threads were doing, nothing is torn
    stats = cache.stats()
    assert stats.entries == len(cache) == len(keys)
    assert stats.pool.objects == stats.entries, "one pool object per entry, none half-stored"
    assert stats.stored_bytes == cache.currsize
    fresh = {f"child-{i}": cache_value(f"child-{i}", 7, i * 13 % 5000) for i in range(3000)}
    cache.set_many(fresh)
    assert cache.get_many(list(fresh)) == list(fresh.values())
    for k in list(fresh)[::2]:
        del cache[k]
    cache["one"] = b"1"
    assert cache.pop("one") == b"1"
    assert cache.compact().stop_reason in ("done", "nothing_freeable")
    t = threading.Thread(target=lambda: [cache.set(f"t{i}", b"x" * i) for i in range(2000)])
    t.start()
    t.join(10)
    assert not t.is_alive()
    assert cache.get("t1999") == b"x" * 1999
    cache.close()
    return f"{len(keys)} entries checked"


def test_cache_fork_while_threads_hammer_it() -> None:
    cache = Cache(256 * 2**20, name="cache-fork", policy="always", reclaimer_interval_s=0.01)
    frozen = frozen_entries(cache)
    with CacheHammer(cache):
        for _ in range(5):
            status, report = run_child_reporting(lambda: exercise_child_cache(cache, frozen))
            assert status == 0
            assert int(report.split()[0]) >= len(frozen)
            time.sleep(0.05)
        # The parent kept working through the forks.
        assert all(cache[k] == v for k, v in frozen.items())
    stats = cache.stats()
    assert stats.evictions == 0, "the budget is large enough that every entry stays"
    assert stats.entries == len(cache) == stats.pool.objects
    cache.close()


def test_cache_fork_during_long_batches() -> None:
    """Threads running set_many (stores without the GIL, the cache mutex held per chunk) and
    get_many over 20,000 keys each: a fork must wait for the chunk in progress, not inherit
    the mutex held. (Before the cache mutex was covered, every child here hung.)"""
    cache = Cache(512 * 2**20, name="batches")
    keys = [f"k{i}" for i in range(20_000)]
    stop = threading.Event()
    errors: list[str] = []
    rounds = [0, 0]

    def setter() -> None:
        version = 0
        while not stop.is_set():
            version += 1
            cache.set_many([(k, cache_value(k, version, 1000 + i % 3000)) for i, k in enumerate(keys)])
            rounds[0] += 1

    def getter() -> None:
        try:
            while not stop.is_set():
                for k, value in zip(keys, cache.get_many(keys), strict=True):
                    if value is not None:
                        check_cache_value(k, value)
                rounds[1] += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")

    def child() -> str:
        values = cache.get_many(keys)
        versions = {check_cache_value(k, v) for k, v in zip(keys, values, strict=True) if v is not None}
        assert sum(v is not None for v in values) == len(cache)
        cache.set_many((k, cache_value(k, 10**6, 100)) for k in keys)
        assert cache.get_many(keys) == [cache_value(k, 10**6, 100) for k in keys]
        cache.close()
        return f"{len(versions)} versions seen"

    threads = [threading.Thread(target=setter, daemon=True), threading.Thread(target=getter, daemon=True)]
    for t in threads:
        t.start()
    try:
        while rounds[0] < 1:
            time.sleep(0.005)
        for _ in range(6):
            status, report = run_child_reporting(child)
            assert status == 0, report
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not errors, errors
    assert all(check_cache_value(k, v) >= 1 for k, v in zip(keys, cache.get_many(keys), strict=True) if v)
    cache.close()


def test_pickle_cache_fork_under_load() -> None:
    """A cache with a serializer: dumps runs before the mutex is taken and loads after it is
    dropped, so forking while threads pickle and unpickle leaves nothing held in the child."""
    cache = Cache(64 * 2**20, serializer="pickle", name="pickled")
    stop = threading.Event()
    errors: list[str] = []

    def record(key: str, n: int) -> dict[str, object]:
        blob = bytes([n % 256]) * (n % 4000)
        return {"key": key, "n": n, "blob": blob, "crc": zlib.crc32(blob), "tags": [key, n, (n, key)]}

    def check(key: str, obj: object) -> None:
        assert isinstance(obj, dict) and obj["key"] == key, f"{key!r} -> {obj!r:.80}"
        assert zlib.crc32(obj["blob"]) == obj["crc"]
        assert obj["tags"] == [key, obj["n"], (obj["n"], key)]

    def churn(seed: int) -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                key = f"p{seed}-{n % 500}"
                cache[key] = record(key, n)
                check(key, cache[key])
                items = {f"m{seed}-{i}": record(f"m{seed}-{i}", n + i) for i in range(300)}
                cache.set_many(items)
                for k, obj in zip(items, cache.get_many(list(items)), strict=True):
                    check(k, obj)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")

    def child() -> str:
        keys = list(cache)
        for k in keys:
            check(k, cache[k])
        cache["child"] = record("child", 1)
        check("child", cache.setdefault("child", None))
        k, obj = cache.popitem()
        check(k, obj)
        cache.close()
        return f"{len(keys)} objects unpickled"

    threads = [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        while len(cache) < 500:
            time.sleep(0.005)
        for _ in range(4):
            status, report = run_child_reporting(child)
            assert status == 0
            assert int(report.split()[0]) >= 500
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors[:10]
    cache.close()


def test_a_closed_cache_stays_closed_in_the_child_and_a_new_one_works() -> None:
    cache = Cache(2**20, name="closed")
    cache["a"] = b"1"
    cache.close()

    def child() -> str:
        assert cache.closed
        with pytest.raises(PoolClosedError):
            cache["a"]
        fresh = Cache(2**20, name="fresh")
        fresh["a"] = b"2"
        assert fresh["a"] == b"2"
        fresh.close()
        return "ok"

    assert run_child_reporting(child) == (0, "ok")
