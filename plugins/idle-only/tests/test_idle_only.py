"""``idle-only`` never compacts while a writer is active, and does once it stops."""

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from zspool import Pool, Reclaimer
from zspool.shrinker_policy import SHRINK_STOP, ShrinkControl, ShrinkReason
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


def test_one_scan_ends_within_scan_s_however_little_each_slice_frees() -> None:
    """A recompression that frees nothing per slice (a slow machine, values that barely
    shrink) must not keep one scan running past the shrinker's time limit."""

    class Stingy:
        slices = 0

        def pages(self) -> int:
            return 1_000

        def __call__(self, time_budget: float | None) -> SimpleNamespace:
            Stingy.slices += 1
            time.sleep(time_budget or 0)
            return SimpleNamespace(pages_freed=0, stop_reason="budget_reached")

    with Pool() as pool:
        policy = IdleOnlyPolicy(idle_s=0.0, slice_s=0.005, scan_s=0.05)
        sc = ShrinkControl(
            reason=ShrinkReason.TICK,
            nr_to_scan=1_000,
            freeable=0,
            activity=pool.activity(),
            recompressible=1_000,
            recompress=Stingy(),  # type: ignore[arg-type]  # its reports: the two fields read
        )
        started = time.monotonic()
        assert policy.scan_objects(pool, sc) == SHRINK_STOP
        # Counted, not timed: about scan_s / slice_s slices, far fewer than an unbounded loop.
        assert 1 <= Stingy.slices <= 12
        assert time.monotonic() - started < 1.0


def test_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="slice_s"):
        IdleOnlyPolicy(slice_s=0)
    with pytest.raises(ValueError, match="scan_s"):
        IdleOnlyPolicy(slice_s=0.01, scan_s=0.001)


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
