"""The Python API under hostile use (issue 12): one regression test per reported failure.

No Rust panic may reach Python (``PanicException`` is a ``BaseException``, which
``except Exception`` misses), nothing may outlive its owner, no operation may half happen,
and ``zspool.Cache`` behaves as a mapping except where its nature forces a difference. The
random-argument sweep over every public method is ``test_random_arguments.py``.
"""

from __future__ import annotations

import ast
import copy
import ctypes
import gc
import math
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
import zspool
from zspool import Cache, ObjectSizeError, Pool, PoolClosedError, Reclaimer
from zspool.shrinker import ShrinkControl


def wait_for(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


# 1. TTLs past Duration's range ----------------------------------------------------------


def test_a_ttl_past_the_clocks_range_never_expires() -> None:
    with Cache(1000, ttl=1e20) as c:
        assert c.ttl == 1e20
        c["a"] = b"1"
        c.set("k", b"v", ttl=1e20)
        c.set("big", b"v", ttl=10**400)
        c.set_many({"m": b"v"}, ttl=1e300)
        assert c.get_many(["a", "k", "big", "m"]) == [b"1", b"v", b"v", b"v"]


# 2. Allocation failures under RLIMIT_AS ---------------------------------------------------

OOM_SCRIPT = textwrap.dedent(
    """
    import pickle, resource
    from zspool import Cache

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    big = 64 * 2**20
    raw = Cache(2 * big, name="raw")
    raw["big"] = bytes(big)
    ser = Cache(4 * big, serializer="pickle", name="ser")
    ser["big"] = bytes(big)
    ser.set("obj", [bytes(big)])
    results = []
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + 16 * 2**20, hard))
    for name, call in [
        ("get", lambda: raw.get("big")),
        ("getitem", lambda: raw["big"]),
        ("get_many", lambda: raw.get_many(["big"])),
        ("pop", lambda: raw.pop("big")),
        ("popitem", lambda: raw.popitem()),
        ("pop_serialized", lambda: ser.pop("obj")),
        ("items", lambda: list(raw.items())),
    ]:
        try:
            call()
            results.append((name, "ok"))
        except MemoryError:
            results.append((name, "MemoryError"))
        except BaseException as exc:
            results.append((name, type(exc).__name__))
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    results.append(("kept", len(raw), len(ser)))
    print(repr(results))
    """
)


def test_allocation_failures_are_memory_errors_and_lose_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OOM_SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    results = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    *calls, kept = results
    assert all(outcome == "MemoryError" for _, outcome in calls), calls
    assert kept == ("kept", 1, 2), "a pop whose value could not be returned must keep the entry"


# 3. setdefault looks up first --------------------------------------------------------------


def test_setdefault_returns_the_existing_value_without_touching_the_default() -> None:
    with Cache(1000) as c:
        c["a"] = b"1"
        assert c.setdefault("a") == b"1"  # the default None is never encoded
        assert c.setdefault("a", b"x" * 10_000) == b"1"  # nor checked against maxsize
        assert c.setdefault("b", b"2") == b"2" and c["b"] == b"2"
        with pytest.raises(TypeError):
            c.setdefault("c")  # None cannot be stored without a serializer
        assert "c" not in c


# 4. items()/values()/== take one snapshot --------------------------------------------------


def test_items_and_values_never_raise_while_entries_expire() -> None:
    with Cache(1 << 20, ttl=0.002) as c, Cache(1 << 20) as other:
        for round_ in range(300):
            for i in range(20):
                c[f"k{i}"] = b"v"
            time.sleep(0.0005 * (round_ % 5))
            items = list(c.items())
            values = list(c.values())
            assert len(items) <= 20 and len(values) <= 20  # two snapshots, each consistent
            assert all(v == b"v" for _, v in items) and all(v == b"v" for v in values)
            _ = c == other
            _ = dict(c.items())


def test_items_are_one_snapshot_under_concurrent_deletes() -> None:
    with Cache(1 << 22) as c:
        stop = threading.Event()

        def churn() -> None:
            while not stop.is_set():
                for i in range(200):
                    c[f"k{i}"] = b"v"
                for i in range(200):
                    c.pop(f"k{i}", None)

        t = threading.Thread(target=churn)
        t.start()
        try:
            for _ in range(300):
                assert all(v == b"v" for _, v in c.items())
                assert all(v == b"v" for v in c.values())
        finally:
            stop.set()
            t.join()


# 5. Nothing outlives its owner -------------------------------------------------------------


def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("zspool-reclaimer"))


def test_a_dropped_cache_stops_its_reclaimer_with_a_resource_warning() -> None:
    c = Cache(1 << 20, policy="always", reclaimer_interval_s=0.01)
    assert _threads() == 1
    with pytest.warns(ResourceWarning, match="dropped without close"):
        del c
        gc.collect()
    assert wait_for(lambda: _threads() == 0)


def test_fifty_dropped_caches_leave_no_threads_and_give_memory_back(rss: Any) -> None:
    gc.collect()
    before_threads = threading.active_count()
    before = rss()
    with pytest.warns(ResourceWarning):
        for _ in range(50):
            c = Cache(4 << 20, policy="always", reclaimer_interval_s=0.05)
            for i in range(1000):
                c[f"k{i}"] = bytes(2000)
            del c
        gc.collect()
    assert wait_for(lambda: threading.active_count() == before_threads), threading.enumerate()
    # 50 caches held 2 MB each: were anything kept, RSS would be up by 100 MB.
    assert rss() - before < 20 * 2**20


def test_a_dropped_running_reclaimer_stops_its_thread() -> None:
    with Pool() as pool:
        r = Reclaimer(
            pool, interval_s=0.01, monitor=None, psi_trigger=None, name="zspool-reclaimer-x"
        ).start()
        with pytest.warns(ResourceWarning, match="dropped while running"):
            del r
            gc.collect()
        assert wait_for(lambda: _threads() == 0)


def test_the_reclaimer_holds_its_pools_weakly() -> None:
    pool = Pool()
    with Reclaimer(pool, interval_s=0.01, monitor=None, psi_trigger=None) as r:
        assert r.pools == (pool,)
        del pool
        gc.collect()
        assert r.pools == ()
        assert r.running


# 6. Reclaimer intervals ----------------------------------------------------------------------


def test_an_infinite_interval_means_pressure_only_and_a_huge_one_works() -> None:
    with Pool() as pool:
        for interval in (math.inf, 1e7, 2**40):
            r = Reclaimer(pool, interval_s=interval, monitor=None, psi_trigger=None).start()
            time.sleep(0.05)
            assert r.running, f"the thread died at once with interval_s={interval}"
            started = time.monotonic()
            r.stop()
            assert time.monotonic() - started < 1.0
    for bad in (math.nan, 0, -1.0, -math.inf):
        with pytest.raises(ValueError, match="interval_s"):
            Reclaimer(interval_s=bad)
    with pytest.raises(TypeError, match="interval_s"):
        Reclaimer(interval_s=True)


# 7. Handles do not betray neighbours ---------------------------------------------------------


def test_a_handle_near_a_live_one_names_nothing() -> None:
    with Pool() as pool:
        handles = [pool.store(bytes(1 + (i * 37) % 3000)) for i in range(2000)]
        live = sum(
            (h + d in pool) + (0 <= h - d and h - d in pool) for h in handles for d in range(1, 51)
        )
        # 200,000 probes; with a 27-bit generation to match, a handful at most. With the old
        # XOR encoding, nearly every h +- 1 named a live object.
        assert live <= 5, f"{live} of 200,000 neighbours name a live object"


# 8. After close() ------------------------------------------------------------------------------


def test_a_closed_pool_raises_pool_closed_error() -> None:
    p = Pool()
    h = p.store(b"x")
    p.close()
    with pytest.raises(PoolClosedError):
        len(p)
    with pytest.raises(PoolClosedError):
        h in p
    with pytest.raises(PoolClosedError):
        p.register_shrinker("always")
    assert p.closed and "closed" in repr(p)


def test_a_closed_cache_raises_pool_closed_error() -> None:
    c = Cache(1000)
    c["a"] = b"1"
    c.close()
    for op in (lambda: len(c), lambda: c.currsize, lambda: "a" in c, lambda: list(c.items())):
        with pytest.raises(PoolClosedError):
            op()
    assert "closed" in repr(c)
    d = Cache(1000)
    d["a"] = b"1"
    d.pool.close()  # the pool, not the cache
    assert d.closed
    with pytest.raises(PoolClosedError):
        len(d)
    with pytest.raises(PoolClosedError):
        d.get("a")


# 9. ctypes buffers (NULL strides: C-contiguous) ------------------------------------------------


def test_ctypes_arrays_and_scalars_are_buffers(pool: Pool) -> None:
    arr = (ctypes.c_uint8 * 5)(1, 2, 3, 4, 5)
    h = pool.store(arr)
    assert pool.load(h) == b"\x01\x02\x03\x04\x05"
    pool.write(h, (ctypes.c_uint8 * 2)(9, 9), 1)
    out = (ctypes.c_uint8 * 5)()
    assert pool.read_into(h, out) == 5
    assert bytes(out) == b"\x01\x09\x09\x04\x05"
    scalar = pool.store(ctypes.c_uint32(0x01020304))
    assert pool.load(scalar) == (0x01020304).to_bytes(4, sys.byteorder)
    grid = (ctypes.c_uint16 * 3 * 2)()
    assert pool.size_of(pool.store(grid)) == 12


# 10. close() while a policy call runs long ---------------------------------------------------


class Sleepy:
    """A policy whose count_objects sleeps (as a policy stuck on I/O would)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.entered = threading.Event()

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        self.entered.set()
        time.sleep(self.seconds)
        return 0

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return 0


def test_close_closes_even_while_a_policy_call_runs_long() -> None:
    policy = Sleepy(3.0)
    c = Cache(1000, policy=policy, reclaimer_interval_s=0.01, time_limit_s=10)
    assert policy.entered.wait(5)
    started = time.monotonic()
    c.close()  # no TimeoutError
    assert c.closed and time.monotonic() - started < 2.5
    assert wait_for(lambda: _threads() == 0, timeout=10)


def test_with_cache_does_not_raise_from_exit_when_a_policy_is_slow() -> None:
    policy = Sleepy(2.0)
    with Cache(1000, policy=policy, reclaimer_interval_s=0.01, time_limit_s=10) as c:
        assert policy.entered.wait(5)
    assert c.closed
    assert wait_for(lambda: _threads() == 0, timeout=10)


# 11. mem_limit shorter than a zspage chain --------------------------------------------------


def test_a_small_mem_limit_shortens_the_chains() -> None:
    with Pool(mem_limit=16384) as pool:
        h = pool.store(b"x" * 100)
        assert pool.load(h) == b"x" * 100
        assert pool.stats().pages_used <= 4
    with Pool(mem_limit=4096) as pool:
        handles = [pool.store(b"y" * 3000)]
        assert pool.load(handles[0]) == b"y" * 3000


# 12. Absurd page counts from a policy --------------------------------------------------------


class Liar:
    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        return 10**30

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        pool.compact(max_pages=sc.nr_to_scan)
        return 10**30


def test_pages_freed_is_capped_at_what_compaction_could_free(pool: Pool) -> None:
    handles = [pool.store(bytes(100)) for _ in range(20_000)]
    for h in handles[::2]:
        pool.free(h)
    freeable = pool.can_compact()
    assert freeable > 0
    shrinker = pool.register_shrinker(Liar())
    freed = pool.shrink()
    assert shrinker.stats.pages_freed == freed <= freeable


# 13. cached: a result that cannot be stored is returned ---------------------------------------


def test_cached_returns_results_it_cannot_store() -> None:
    with Cache(1 << 20, serializer="pickle") as c:
        calls = []

        @zspool.cached(c)
        def unpicklable(x: int) -> Any:
            calls.append(x)
            return lambda: x  # a lambda cannot be pickled

        assert unpicklable(1)() == 1
        assert unpicklable(1)() == 1
        assert calls == [1, 1] and unpicklable.store_failures == 2  # type: ignore[attr-defined]
    with Cache(1 << 20) as raw:

        @zspool.cached(raw)
        def not_bytes(x: int) -> int:
            return x

        assert not_bytes(3) == 3 and not_bytes.store_failures == 1  # type: ignore[attr-defined]


# 14. The smaller ones ------------------------------------------------------------------------


def test_out_of_range_ints_are_value_errors(pool: Pool) -> None:
    with pytest.raises(ValueError, match="slice_objects"):
        pool.compact(slice_objects=-1)
    with pytest.raises(ValueError, match="slice_objects"):
        pool.compact(slice_objects=2**70)
    with pytest.raises(ValueError, match="maxbytes"):
        Cache(2**64)
    with pytest.raises(ValueError, match="maxbytes"):
        Cache(-1)


def test_compaction_slices_and_budgets_past_durations_range(pool: Pool) -> None:
    handles = [pool.store(bytes(100)) for _ in range(5000)]
    for h in handles[::2]:
        pool.free(h)
    pool.compact(slice_us=1e300)  # a slice longer than Duration holds: no slice limit
    for h in handles[1::2]:
        pool.free(h)
    pool.compact(time_budget=1e300)  # past the clock's range: no budget
    pool.compact(time_budget=9.3e18)
    with pytest.raises(ValueError, match="slice_us"):
        pool.compact(slice_us=math.inf)
    with pytest.raises(ValueError, match="time_budget"):
        pool.compact(time_budget=math.nan)


def test_ttl_true_is_refused_and_tiny_ttls_are_kept_as_given() -> None:
    with pytest.raises(TypeError, match="ttl"):
        Cache(1000, ttl=True)
    with Cache(1000) as c:
        with pytest.raises(TypeError, match="ttl"):
            c.set("k", b"v", ttl=True)
        with pytest.raises(TypeError, match="ttl"):
            c.set("k", b"v", ttl="1")  # type: ignore[arg-type]
    with Cache(1000, ttl=1e-12) as c:
        assert c.ttl == 1e-12 and c.ttl > 0


class Picky:
    """A serializer whose loads fails on demand."""

    fail = False

    @staticmethod
    def dumps(obj: Any) -> bytes:
        return pickle.dumps(obj)

    @classmethod
    def loads(cls, data: bytes) -> Any:
        if cls.fail:
            raise ValueError("cannot load that now")
        return pickle.loads(data)


def test_a_pop_whose_loads_raises_keeps_the_entry() -> None:
    with Cache(1000, serializer=Picky) as c:
        c["k"] = [1, 2]
        Picky.fail = True
        try:
            with pytest.raises(ValueError, match="cannot load"):
                c.pop("k")
            with pytest.raises(ValueError, match="cannot load"):
                c.popitem()
        finally:
            Picky.fail = False
        assert c["k"] == [1, 2]
        assert c.pop("k") == [1, 2] and "k" not in c


# Mapping semantics ----------------------------------------------------------------------------


def test_maxbytes_zero_caches_nothing() -> None:
    with Cache(0) as c:
        assert c.maxsize == 0
        with pytest.raises(ObjectSizeError):
            c["a"] = b""
        assert len(c) == 0 and c.currsize == 0


def test_subclasses_can_define_missing() -> None:
    class Defaulting(Cache):
        def __missing__(self, key: str) -> bytes:
            self[key] = key.encode()
            return key.encode()

    with Defaulting(1000) as c:
        assert c["a"] == b"a" and c["a"] == b"a" and len(c) == 1
        assert c.get("b") is None and "b" not in c
        with pytest.raises(KeyError):
            c.pop("b")


def test_copy_deepcopy_and_pickle_make_a_new_cache_with_the_same_entries() -> None:
    with Cache(1 << 16, serializer="pickle", eviction="lru", ttl=60, name="orig") as c:
        c["a"] = {"x": 1}
        c.set("b", b"raw", ttl=math.inf)
        c["c"] = [1, 2]
        for clone in (copy.copy(c), copy.deepcopy(c), pickle.loads(pickle.dumps(c))):
            try:
                assert type(clone) is Cache and clone is not c and clone.pool is not c.pool
                assert clone == c and list(clone) == list(c)
                assert (clone.maxsize, clone.eviction, clone.ttl, clone.name) == (
                    1 << 16,
                    "lru",
                    60,
                    "orig",
                )
                clone["d"] = b"only in the clone"
                assert "d" not in c
            finally:
                clone.close()


def test_a_cache_joined_to_a_reclaimer_refuses_pickle_clearly() -> None:
    with (
        Reclaimer(monitor=None, psi_trigger=None) as r,
        Cache(1000, policy="always", reclaimer=r) as c,
    ):
        with pytest.raises(TypeError, match="Reclaimer"):
            pickle.dumps(c)
        clone = copy.copy(c)
        try:
            assert clone.pool in r.pools
        finally:
            clone.close()


def test_repr_starts_with_the_class_name() -> None:
    class Mine(Cache):
        pass

    with Cache(1000) as c, Mine(1000) as m:
        assert repr(c).startswith("Cache(") and repr(m).startswith("Mine(")


def test_popitem_on_empty_suppresses_context_as_mutable_mapping_does() -> None:
    with Cache(1000) as c, pytest.raises(KeyError) as info:
        c.popitem()
    assert info.value.__suppress_context__


def test_cached_takes_key_lock_info_and_typed() -> None:
    with Cache(1 << 20, serializer="pickle") as c:
        calls: list[Any] = []

        @zspool.cached(c, info=True)
        def f(x: Any) -> Any:
            calls.append(x)
            return x

        assert f(1) == 1 and f(1.0) == 1 and f(True) == 1
        assert len(calls) == 1 and len(c) == 1
        assert f.cache_info() == (2, 1, c.maxsize, c.currsize)  # type: ignore[attr-defined]
        f.cache_clear()  # type: ignore[attr-defined]
        assert len(c) == 0 and f.cache_info().hits == 0  # type: ignore[attr-defined]

        @zspool.cached(c, typed=True)
        def g(x: Any) -> Any:
            calls.append(x)
            return x

        calls.clear()
        g(1), g(1.0), g(1)
        assert calls == [1, 1.0]

        lock = threading.Lock()

        @zspool.cached(c, key=lambda x: f"h:{x}", lock=lock)
        def h(x: int) -> int:
            return x * 2

        assert h(4) == 8 and c["h:4"] == 8 and h.cache_lock is lock  # type: ignore[attr-defined]
