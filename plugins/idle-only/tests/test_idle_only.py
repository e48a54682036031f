"""``idle-only`` never compacts while a writer is active, and does once it stops."""

import threading
import time

import pytest

from zspool import Pool, Reclaimer
from zspool.workload import fragment
from zspool_policy_idle_only import IdleOnlyPolicy


def test_never_while_busy_then_compacts_when_idle() -> None:
    with Pool(name="idle") as pool:
        survivors = fragment(pool, 30_000, seed=31)
        pool.register_shrinker("idle-only", idle_s=0.2)
        stop = threading.Event()

        def writer() -> None:
            while not stop.is_set():
                h = pool.store(b"w" * 200)
                pool.free(h)
                time.sleep(0.001)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            with Reclaimer(pool, interval_s=0.02, monitor=None, psi_trigger=None) as reclaimer:
                time.sleep(0.8)
                assert reclaimer.stats.ticks >= 10, "the reclaimer kept asking"
                assert pool.stats().pages_compacted == 0, "compacted while the writer was active"
                stop.set()
                thread.join()
                deadline = time.monotonic() + 5
                while pool.can_compact() and time.monotonic() < deadline:
                    time.sleep(0.02)
            assert pool.can_compact() == 0 and pool.stats().pages_compacted > 0
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
