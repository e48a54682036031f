"""``always`` frees everything freeable, whenever asked."""

from zspool import Pool
from zspool.workload import fragment
from zspool_policy_always import AlwaysPolicy


def test_always_frees_everything_freeable() -> None:
    with Pool() as pool:
        survivors = fragment(pool, 30_000, seed=21)
        predicted = pool.can_compact()
        assert predicted > 0
        pool.register_shrinker("always")
        assert pool.shrink() == predicted
        assert pool.can_compact() == 0
        assert all(pool.load(h) == data for h, data in survivors.items())


def test_always_on_a_tidy_pool_does_nothing() -> None:
    with Pool() as pool:
        for i in range(1000):
            pool.store(bytes([i % 256]) * 100)
        shrinker = pool.register_shrinker(AlwaysPolicy())
        assert pool.shrink() == 0
        assert shrinker.stats.scan_calls == 0 and pool.stats().objects_migrated == 0
