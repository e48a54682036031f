"""ZspoolCollector's exposition, parsed back with prometheus_client's parser (the example service's
/metrics: tests/test_example_service.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import zspool
from zspool.contrib.prometheus import ZspoolCollector


def scrape(*objects: object) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Metric family name -> {sorted labels: value}, parsed from the text exposition."""
    registry = CollectorRegistry()
    registry.register(ZspoolCollector(*objects))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def cache() -> Iterator[zspool.Cache]:
    c = zspool.Cache(1 << 20, name="web", policy="always", reclaimer_interval_s=0.05)
    yield c
    c.close()


def test_cache_pool_class_shrinker_and_reclaimer_metrics(cache: zspool.Cache) -> None:
    for i in range(2000):
        cache[f"k{i}"] = b"v" * (i % 300)
    for i in range(0, 2000, 2):
        del cache[f"k{i}"]
    assert cache.get("k1") is not None and cache.get("missing") is None
    cache.compact()
    pool_name = "web"  # the cache names its pool
    m = scrape(cache)
    web = (("cache", "web"),)
    assert m["zspool_cache_hits_total"][web] == 1
    assert m["zspool_cache_misses_total"][web] == 1
    assert m["zspool_cache_sets_total"][web] == 2000
    assert m["zspool_cache_deletes_total"][web] == 1000
    assert m["zspool_cache_entries"][web] == 1000
    assert m["zspool_cache_max_bytes"][web] == 1 << 20
    stats = cache.stats()
    assert m["zspool_cache_stored_bytes"][web] == stats.stored_bytes
    pool = (("pool", pool_name),)
    assert m["zspool_pool_objects"][pool] == 1000
    assert m["zspool_pool_used_pages"][pool] == stats.pool.pages_used
    assert m["zspool_pool_memory_used_bytes"][pool] == stats.pool.pages_used * zspool.PAGE_SIZE
    assert m["zspool_pool_compactions_total"][pool] >= 1
    assert m["zspool_pool_compacted_pages_total"][pool] == stats.pool.pages_compacted
    class_pages = {labels: v for labels, v in m["zspool_class_used_pages"].items()}
    assert sum(class_pages.values()) == stats.pool.pages_used - stats.pool.large_object_pages
    assert all(dict(labels)["class_size"].isdigit() for labels in class_pages)
    assert (("pool", pool_name), ("shrinker", "always")) in m["zspool_shrinker_scans_total"]
    assert (("reclaimer", "zspool-reclaimer-web"),) in m["zspool_reclaimer_rounds_total"]


def test_metric_names_follow_prometheus_conventions(cache: zspool.Cache) -> None:
    cache["k"] = b"v"
    registry = CollectorRegistry()
    registry.register(ZspoolCollector(cache, cache.pool))  # a pool given twice is reported once
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    for family in families:
        assert family.name.startswith("zspool_")
        units = ("_bytes", "_pages", "_seconds", "_total")
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        for sample in family.samples:
            assert not sample.name.endswith(("_kib", "_mb", "_ms")), sample.name
            if "memory" in sample.name or "size" in sample.name:
                assert sample.name.endswith(units), sample.name
        assert len({tuple(sorted(s.labels.items())) for s in family.samples}) == len(family.samples)


def test_closed_caches_are_left_out_and_bad_objects_refused(cache: zspool.Cache) -> None:
    pool = zspool.Pool(name="other")
    collector_objects = scrape(cache, pool)
    assert (("pool", "other"),) in collector_objects["zspool_pool_objects"]
    pool.close()
    cache.close()
    assert "zspool_pool_objects" not in scrape(cache, pool)
    with pytest.raises(TypeError, match="Pool, Cache or Reclaimer"):
        ZspoolCollector({"not": "a pool"})  # type: ignore[arg-type]
