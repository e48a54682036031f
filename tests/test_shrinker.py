"""The shrinker interface: the shrink_slab loop, fault isolation, and the policy registry."""

from __future__ import annotations

import logging
import time

import pytest

from zspool import Pool
from zspool.policies import AUTOLOAD_ENV, PolicyNotFound, load_policy, register_policy, unregister_policy
from zspool.shrinker import SHRINK_BATCH, SHRINK_STOP, ShrinkControl, ShrinkerPolicy, ShrinkReason, shrink_pool
from zspool.workload import fragment


class Recording:
    """A policy that frees what it is asked to, and remembers every call."""

    def __init__(self, count: int | None = None) -> None:
        self.count = count
        self.calls: list[tuple[str, ShrinkControl]] = []

    def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        self.calls.append(("count", sc))
        return pool.can_compact() if self.count is None else self.count

    def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
        self.calls.append(("scan", sc))
        return pool.compact(max_pages=sc.nr_to_scan).pages_freed or SHRINK_STOP


def _boom() -> int:
    raise RuntimeError("boom")


@pytest.fixture
def fragmented() -> Pool:
    pool = Pool(name="fragmented")
    fragment(pool, 20_000, seed=3)
    assert pool.can_compact() > SHRINK_BATCH, "the tests below need several batches of work"
    yield pool
    pool.close()


def test_count_then_scan_in_batches_until_the_count_is_used(fragmented: Pool) -> None:
    policy = Recording()
    shrinker = fragmented.register_shrinker(policy)
    predicted = fragmented.can_compact()
    freed = fragmented.shrink()
    assert freed == predicted and fragmented.can_compact() == 0
    kinds = [kind for kind, _ in policy.calls]
    assert kinds[0] == "count" and set(kinds[1:]) == {"scan"}
    assert all(sc.nr_to_scan <= SHRINK_BATCH for kind, sc in policy.calls if kind == "scan")
    assert policy.calls[0][1].reason is ShrinkReason.MANUAL
    assert policy.calls[0][1].freeable == predicted
    assert shrinker.stats.pages_freed == freed and shrinker.stats.scan_calls == len(kinds) - 1


def test_zero_count_means_no_scan(fragmented: Pool) -> None:
    policy = Recording(count=0)
    fragmented.register_shrinker(policy)
    assert fragmented.shrink() == 0
    assert [kind for kind, _ in policy.calls] == ["count"]


def test_shrink_stop_ends_the_round(fragmented: Pool) -> None:
    class StopsAtOnce(Recording):
        def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            self.calls.append(("scan", sc))
            return SHRINK_STOP

    policy = StopsAtOnce()
    fragmented.register_shrinker(policy)
    assert fragmented.shrink() == 0
    assert [kind for kind, _ in policy.calls] == ["count", "scan"]


def test_batch_size_is_the_shrinkers(fragmented: Pool) -> None:
    policy = Recording()
    fragmented.register_shrinker(policy, batch=16)
    fragmented.shrink()
    scans = [sc.nr_to_scan for kind, sc in policy.calls if kind == "scan"]
    assert max(scans) == 16


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_boom, id="raises"),
        pytest.param(lambda: "many", id="str"),
        pytest.param(lambda: None, id="none"),
        pytest.param(lambda: 3.5, id="float"),
        pytest.param(lambda: True, id="bool"),
        pytest.param(lambda: -7, id="negative"),
    ],
)
def test_a_broken_policy_is_isolated_counted_and_disabled(fragmented: Pool, bad, caplog) -> None:
    class Broken:
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            return bad()

        def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            return bad()

    shrinker = fragmented.register_shrinker(Broken(), max_failures=3)
    good = fragmented.register_shrinker(Recording())
    with caplog.at_level(logging.WARNING, logger="zspool.shrinker"):
        for _ in range(4):
            fragmented.shrink()  # never raises
    assert shrinker.stats.errors == 3 and shrinker.stats.disabled
    assert shrinker.stats.last_error
    assert any("disabled" in r.getMessage() for r in caplog.records)
    assert good.stats.pages_freed > 0, "the healthy shrinker kept working"
    # malloc/free never see policy errors
    handle = fragmented.store(b"still fine")
    assert fragmented.load(handle) == b"still fine"
    fragmented.free(handle)
    shrinker.enable()
    assert shrinker.enabled and shrinker.stats.consecutive_failures == 0


def test_a_slow_policy_counts_as_a_failure(fragmented: Pool) -> None:
    class Slow(Recording):
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            time.sleep(0.06)
            return 0

    shrinker = fragmented.register_shrinker(Slow(), time_limit_s=0.05, max_failures=2)
    fragmented.shrink()
    fragmented.shrink()
    assert shrinker.stats.disabled and "took" in (shrinker.stats.last_error or "")


def test_register_rejects_non_policies() -> None:
    with Pool() as pool:
        with pytest.raises(TypeError, match="count_objects"):
            pool.register_shrinker(object())  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="batch"):
            pool.register_shrinker(Recording(), batch=-1)
        shrinker = pool.register_shrinker(Recording())
        pool.unregister_shrinker(shrinker)
        with pytest.raises(ValueError, match="not registered"):
            pool.unregister_shrinker(shrinker)
        assert pool.shrinkers == ()


def test_protocol_is_runtime_checkable() -> None:
    assert isinstance(Recording(), ShrinkerPolicy)
    assert not isinstance(object(), ShrinkerPolicy)


def test_register_and_load_policy_by_name() -> None:
    register_policy("test-recording", Recording)
    try:
        assert isinstance(load_policy("test-recording", count=5), Recording)
        with pytest.raises(ValueError, match="already registered"):
            register_policy("test-recording", Recording)
        with Pool() as pool:
            shrinker = pool.register_shrinker("test-recording", count=0)
            assert shrinker.name == "test-recording"
    finally:
        unregister_policy("test-recording")
    with pytest.raises(PolicyNotFound, match="test-recording"):
        load_policy("test-recording")


def test_a_factory_that_builds_garbage_is_refused() -> None:
    register_policy("test-garbage", lambda: 42)
    try:
        with pytest.raises(TypeError, match="lacks count_objects"):
            load_policy("test-garbage")
    finally:
        unregister_policy("test-garbage")


def test_autoload_switch_hides_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    with pytest.raises(PolicyNotFound, match=AUTOLOAD_ENV):
        load_policy("always")


def test_shrink_pool_on_a_closed_pool_does_nothing(fragmented: Pool) -> None:
    fragmented.register_shrinker(Recording())
    fragmented.close()
    assert shrink_pool(fragmented) == 0


def test_a_policy_raising_system_exit_is_just_a_failure(fragmented: Pool) -> None:
    class Exits(Recording):
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            raise SystemExit(3)

    shrinker = fragmented.register_shrinker(Exits())
    assert fragmented.shrink() == 0
    assert shrinker.stats.errors == 1 and "SystemExit" in (shrinker.stats.last_error or "")


def test_an_overstated_count_cannot_make_a_round_endless(fragmented: Pool) -> None:
    class Liar(Recording):
        def count_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            return 10**12

        def scan_objects(self, pool: Pool, sc: ShrinkControl) -> int:
            self.calls.append(("scan", sc))
            return sc.nr_to_scan  # "objects scanned", whatever was freed

    policy = Liar()
    fragmented.register_shrinker(policy)
    freeable = fragmented.can_compact()
    fragmented.shrink()
    scans = sum(1 for kind, _ in policy.calls if kind == "scan")
    assert scans <= -(-freeable // SHRINK_BATCH), "the count is capped at what can be freed"
