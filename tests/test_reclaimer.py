"""The reclaimer thread and direct reclaim at mem_limit."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NoReturn

import pytest

from zspool import Pool, PoolFullError, Reclaimer
from zspool.pressure import PressureMonitor, PsiTrigger
from zspool.shrinker import SHRINK_STOP, ShrinkControl, ShrinkReason
from zspool.workload import fragment


class Always:
    def __init__(self) -> None:
        self.reasons: list[ShrinkReason] = []

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        self.reasons.append(sc.reason)
        return pool.can_compact()

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return pool.compact(max_pages=sc.nr_to_scan).pages_freed or SHRINK_STOP


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_ticks_run_the_shrinkers_and_record_events() -> None:
    with Pool(name="ticked") as pool:
        survivors = fragment(pool, 20_000, seed=11)
        predicted = pool.can_compact()
        policy = Always()
        pool.register_shrinker(policy)
        with Reclaimer(pool, interval_s=0.02, monitor=None, psi_trigger=None) as reclaimer:
            assert reclaimer.running
            assert wait_for(lambda: pool.can_compact() == 0)
        assert not reclaimer.running
        assert reclaimer.stats.ticks >= 1 and reclaimer.stats.pages_freed == predicted
        assert sum(e.pages_freed for e in reclaimer.events) == predicted
        assert reclaimer.events[0].reason == "tick" and reclaimer.events[0].pool == "ticked"
        assert ShrinkReason.TICK in policy.reasons
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_stop_is_prompt_and_idempotent() -> None:
    with Pool() as pool:
        reclaimer = Reclaimer(pool, interval_s=30, monitor=None, psi_trigger=None).start()
        started = time.monotonic()
        reclaimer.stop()
        reclaimer.stop()
        assert time.monotonic() - started < 1.0


def test_a_psi_trigger_is_registered_where_the_kernel_allows_it(
    live_unavailable: Callable[[str], NoReturn],
) -> None:
    with Pool() as pool, Reclaimer(pool, interval_s=0.05) as reclaimer:
        if reclaimer.trigger is None:
            assert reclaimer.trigger_unavailable, "no trigger must come with a reason"
            live_unavailable(f"PSI trigger not available here: {reclaimer.trigger_unavailable}")
        assert isinstance(reclaimer.trigger, PsiTrigger)
        assert wait_for(lambda: reclaimer.stats.ticks >= 1)
    assert reclaimer.trigger is None


def test_the_reclaimer_passes_a_pressure_reading() -> None:
    seen: list[object] = []

    class Watcher(Always):
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            seen.append(sc.pressure)
            return 0

    with Pool() as pool:
        pool.register_shrinker(Watcher())
        with Reclaimer(pool, interval_s=0.02, monitor=PressureMonitor(), psi_trigger=None):
            assert wait_for(lambda: len(seen) >= 1)
        assert 0.0 <= seen[0].level <= 1.0  # type: ignore[attr-defined]


def test_a_raising_monitor_does_not_stop_the_reclaimer() -> None:
    class BadMonitor:
        def read(self) -> None:
            raise ValueError("malformed /proc/pressure/memory")

    with Pool() as pool:
        fragment(pool, 5_000, seed=2)
        pool.register_shrinker(Always())
        with Reclaimer(pool, interval_s=0.02, monitor=BadMonitor(), psi_trigger=None) as reclaimer:  # type: ignore[arg-type]
            assert wait_for(lambda: pool.can_compact() == 0)
        assert reclaimer.stats.errors >= 1


def test_direct_reclaim_frees_pages_and_the_allocation_succeeds() -> None:
    with Pool(mem_limit=8 * 2**20, name="limited") as pool:
        survivors = fragment(pool, 10_000, seed=13, free_fraction=0.0)
        # fill to the limit, then fragment
        extra = []
        try:
            while True:
                extra.append(pool.store(b"x" * 300))
        except PoolFullError:
            pass
        for h in extra[::2]:
            pool.free(h)
        assert pool.can_compact() > 0
        policy = Always()
        pool.register_shrinker(policy)
        before = pool.stats()
        h = pool.store(b"y" * 20_000)  # five fresh pages: only direct reclaim makes room
        assert pool.load(h) == b"y" * 20_000
        assert ShrinkReason.MEM_LIMIT in policy.reasons
        after = pool.stats()
        # The shrinker ran and compaction freed at least the five pages the store took.
        assert after.compactions > before.compactions
        assert after.pages_compacted - before.pages_compacted >= 5, (before, after)
        assert after.pages_used <= before.pages_used
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_direct_reclaim_with_nothing_freeable_raises_and_loses_nothing() -> None:
    with Pool(mem_limit=4 * 2**20) as pool:
        stored = {}
        try:
            while True:
                data = bytes([len(stored) % 251]) * 500
                stored[pool.store(data)] = data
        except PoolFullError:
            pass
        pool.register_shrinker(Always())
        objects = len(pool)
        with pytest.raises(PoolFullError, match="mem_limit"):
            pool.store(b"z" * 20_000)
        assert len(pool) == objects
        assert all(pool.load(h) == data for h, data in stored.items())


def test_pool_activity_tracks_idle_time() -> None:
    with Pool() as pool:
        h = pool.store(b"abc")
        activity = pool.activity()
        assert activity.ops_in_flight == 0
        assert activity.idle_s < 0.5
        time.sleep(0.25)
        assert pool.activity().idle_s >= 0.2
        pool.load(h)
        assert pool.activity().idle_s < 0.2


def test_a_policy_that_raises_base_exceptions_does_not_kill_the_reclaimer() -> None:
    class Exits(Always):
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            raise SystemExit(3)

    with Pool() as pool:
        shrinker = pool.register_shrinker(Exits(), max_failures=1000)
        with Reclaimer(pool, interval_s=0.01, monitor=None, psi_trigger=None) as reclaimer:
            assert wait_for(lambda: shrinker.stats.errors >= 3)
            assert reclaimer.running


def test_concurrent_stops_close_each_descriptor_once() -> None:
    import threading

    with Pool() as pool:
        for _ in range(20):
            reclaimer = Reclaimer(pool, interval_s=5, monitor=None, psi_trigger=None).start()
            errors: list[BaseException] = []

            def stop() -> None:
                try:
                    reclaimer.stop()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)

            threads = [threading.Thread(target=stop) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            assert not reclaimer.running


def test_a_reclaimer_can_be_restarted() -> None:
    with Pool() as pool:
        fragment(pool, 5_000, seed=8)
        pool.register_shrinker(Always())
        reclaimer = Reclaimer(pool, interval_s=0.02, monitor=None, psi_trigger=None)
        reclaimer.start()
        reclaimer.stop()
        reclaimer.start()
        assert reclaimer.running
        assert wait_for(lambda: pool.can_compact() == 0)
        reclaimer.stop()


def test_idle_only_helps_direct_reclaim_even_though_the_pool_is_busy() -> None:
    with Pool(mem_limit=4 * 2**20) as pool:
        handles = []
        try:
            while True:
                handles.append(pool.store(b"i" * 300))
        except PoolFullError:
            pass
        for h in handles[::2]:
            pool.free(h)
        assert pool.can_compact() > 0
        pool.register_shrinker("idle-only", idle_s=10.0)
        big = pool.store(b"b" * 20_000)
        assert pool.size_of(big) == 20_000
