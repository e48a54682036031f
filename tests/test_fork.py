"""Fork safety: ``os.fork()`` while other threads hammer the pool, compact it and run a reclaimer.

Each test forks for real. The child checks what it inherited and exercises the pool, then
leaves with ``os._exit(status)``; the parent waits with a deadline and kills a child that
hangs (a deadlock in the child is exactly the failure these tests exist to catch).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import zlib
from collections.abc import Callable

import pytest

from zspool import Pool, Reclaimer

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


class Hammer:
    """Threads that churn a pool (small and large objects, so some calls run without the
    GIL) and a thread that compacts it in a loop, each checking its own objects' CRCs."""

    def __init__(self, pool: Pool, threads: int = 3) -> None:
        self.pool = pool
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.ops = 0
        self.threads = [threading.Thread(target=self.churn, args=(i,), daemon=True) for i in range(threads)]
        self.threads.append(threading.Thread(target=self.compact, daemon=True))

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

    def __enter__(self) -> Hammer:
        for t in self.threads:
            t.start()
        while self.ops < 500:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        assert not self.errors, self.errors


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
    pool = Pool(name="long")
    handles = [pool.store(bytes([i % 251]) * 300) for i in range(150_000)]
    for h in handles[::3] + handles[1::3]:
        pool.free(h)
    survivors = handles[2::3]
    reports = []
    t = threading.Thread(target=lambda: reports.append(pool.compact()))
    t.start()
    time.sleep(0.005)
    assert run_child(lambda: exercise_child_pool(pool, {h: pool.load(h) for h in survivors[:1000]})) == 0
    t.join(30)
    assert reports and reports[0].stop_reason in ("interrupted", "done")
    pool.compact()
    assert pool.can_compact() == 0
    assert all(pool.load(h) == bytes([handles.index(h) % 251]) * 300 for h in survivors[:200])
    pool.close()
