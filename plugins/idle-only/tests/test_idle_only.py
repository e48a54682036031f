"""``idle-only`` never compacts while a writer is active, and does once it stops."""

import threading
import time
from collections.abc import Callable

import pytest

from zspool import Pool, Reclaimer
from zspool.workload import fragment
from zspool_policy_idle_only import IdleOnlyPolicy


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def test_never_while_busy_then_compacts_when_idle() -> None:
    with Pool(name="idle") as pool:
        survivors = fragment(pool, 30_000, seed=31)
        # While the writer runs, "idle" means 2 s without an operation: the writer stores
        # every millisecond, so only a 2 s stall of this process could look idle.
        policy = IdleOnlyPolicy(idle_s=2.0)
        pool.register_shrinker(policy)
        stop = threading.Event()
        writes = 0

        def writer() -> None:
            nonlocal writes
            while not stop.is_set():
                h = pool.store(b"w" * 200)
                pool.free(h)
                writes += 1
                time.sleep(0.001)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            with Reclaimer(pool, interval_s=0.02, monitor=None, psi_trigger=None) as reclaimer:
                # Counted, not timed: ten reclaimer rounds, each asking while the writer writes.
                wait_until(lambda: reclaimer.stats.ticks >= 10 and writes >= 10, "10 ticks and 10 writes")
                assert pool.stats().pages_compacted == 0, "compacted while the writer was active"
                stop.set()
                thread.join()
                policy.idle_s = 0.05
                wait_until(lambda: pool.can_compact() == 0, "the idle pool is compacted")
            assert pool.stats().pages_compacted > 0
        finally:
            stop.set()
            thread.join()
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_scan_stops_as_soon_as_the_pool_is_busy_again() -> None:
    with Pool() as pool:
        fragment(pool, 50_000, seed=32)
        policy = IdleOnlyPolicy(idle_s=0.0, slice_s=0.0005)
        shrinker = pool.register_shrinker(policy, batch=1_000_000)
        # Make the pool look busy after the first slice: an operation starts and stays
        # "recent" because idle_s is raised in between.
        real_busy = policy.busy
        calls = {"n": 0}

        def busy_after_first_slice(p: Pool) -> bool:
            calls["n"] += 1
            return calls["n"] > 2 or real_busy(p)

        policy.busy = busy_after_first_slice  # type: ignore[method-assign,assignment]
        predicted = pool.can_compact()
        freed = pool.shrink()
        assert 0 < freed < predicted, "one slice's work, then it got out of the way"
        assert shrinker.stats.scan_calls == 1


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="slice_s"):
        IdleOnlyPolicy(slice_s=0)


def test_critical_pressure_compacts_even_while_busy() -> None:
    from zspool.pressure.notify import Wakeup
    from zspool.shrinker import ShrinkReason, shrink_pool

    with Pool(name="idle-critical") as pool:
        survivors = fragment(pool, 30_000, seed=33)
        pool.register_shrinker(IdleOnlyPolicy(idle_s=3600.0))  # busy for the next hour
        medium = Wakeup("usage_threshold", "medium", at=time.monotonic())
        assert shrink_pool(pool, ShrinkReason.PRESSURE, wakeup=medium) == 0
        critical = Wakeup("usage_threshold", "critical", at=time.monotonic())
        assert shrink_pool(pool, ShrinkReason.PRESSURE, wakeup=critical) > 0
        assert pool.can_compact() == 0
        assert all(pool.load(h) == data for h, data in survivors.items())
