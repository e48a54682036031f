"""``zspool.contrib.prometheus.ZspoolCollector``: pools, caches and reclaimers as Prometheus metrics.

Register it with a ``prometheus_client`` registry; every scrape reads fresh stats::

    from prometheus_client import REGISTRY, start_http_server
    from zspool.contrib.prometheus import ZspoolCollector

    REGISTRY.register(ZspoolCollector(cache, other_pool))
    start_http_server(9100)

Names follow Prometheus's conventions: the ``zspool_`` prefix, the unit in the name
(``_bytes``, ``_pages``, ``_seconds``), ``_total`` on counters, labels for the pool,
cache, class, shrinker and reclaimer. Closed pools and caches are left out.

========================================  =======  ===========================================
metric                                    type     labels
========================================  =======  ===========================================
zspool_pool_used_pages                    gauge    pool (and ``_memory_used_bytes``,
                                                   ``_memory_used_max_bytes``, ``_objects``,
                                                   ``_payload_bytes``, ``_metadata_bytes``,
                                                   ``_freeable_pages``, ``_large_objects``)
zspool_pool_compactions_total             counter  pool (and ``_compacted_pages_total``,
                                                   ``_migrated_objects_total``)
zspool_class_used_pages                   gauge    pool, class_size (and ``_zspages``,
                                                   ``_allocated_objects``, ``_used_objects``,
                                                   ``_freeable_pages``); classes in use only
zspool_shrinker_scans_total               counter  pool, shrinker (and ``_freed_pages_total``,
                                                   ``_seconds_total``, ``_errors_total``)
zspool_cache_hits_total                   counter  cache (and ``_misses_total``,
                                                   ``_evictions_total``, ``_expirations_total``,
                                                   ``_sets_total``, ``_deletes_total``)
zspool_cache_entries                      gauge    cache (and ``_stored_bytes``,
                                                   ``_payload_bytes``, ``_max_bytes``,
                                                   ``_index_bytes``)
zspool_reclaimer_rounds_total             counter  reclaimer (and ``_ticks_total``,
                                                   ``_pressure_events_total``,
                                                   ``_freed_pages_total``, ``_errors_total``)
========================================  =======  ===========================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from zspool.cache import Cache
from zspool.pool import Pool
from zspool.reclaimer import Reclaimer

__all__ = ["ZspoolCollector"]

# (metric name, help, field of the stats object). Counters are named without "_total":
# prometheus_client adds it to the exposed sample.
_POOL_GAUGES = [
    ("zspool_pool_used_pages", "Pages the pool holds", "pages_used"),
    ("zspool_pool_memory_used_bytes", "Bytes of pages the pool holds", "mem_used_bytes"),
    ("zspool_pool_memory_used_max_bytes", "Highest memory_used_bytes so far", "mem_used_max"),
    ("zspool_pool_objects", "Live objects", "objects"),
    ("zspool_pool_payload_bytes", "Bytes of live objects", "payload_bytes"),
    ("zspool_pool_metadata_bytes", "Heap bytes of the pool's own bookkeeping", "metadata_bytes"),
    ("zspool_pool_freeable_pages", "Pages compaction could free now", "freeable_pages"),
    ("zspool_pool_large_objects", "Objects larger than the largest class", "large_objects"),
]
_POOL_COUNTERS = [
    ("zspool_pool_compactions", "Compaction runs", "compactions"),
    ("zspool_pool_compacted_pages", "Pages freed by compaction", "pages_compacted"),
    ("zspool_pool_migrated_objects", "Objects moved by compaction", "objects_migrated"),
]
_CLASS_GAUGES = [
    ("zspool_class_used_pages", "Pages of the size class", "pages_used"),
    ("zspool_class_zspages", "Zspages of the size class", "zspages"),
    ("zspool_class_allocated_objects", "Object slots in the class's zspages", "obj_allocated"),
    ("zspool_class_used_objects", "Object slots in use", "obj_used"),
    ("zspool_class_freeable_pages", "Pages compaction could free in the class", "freeable"),
]
_SHRINKER_COUNTERS = [
    ("zspool_shrinker_scans", "scan_objects calls", "scan_calls"),
    ("zspool_shrinker_freed_pages", "Pages the shrinker freed", "pages_freed"),
    ("zspool_shrinker_seconds", "Seconds spent in the shrinker", "time_s"),
    ("zspool_shrinker_errors", "Shrinker calls that failed", "errors"),
]
_CACHE_COUNTERS = [
    ("zspool_cache_hits", "Lookups that found an entry", "hits"),
    ("zspool_cache_misses", "Lookups that found none", "misses"),
    ("zspool_cache_evictions", "Entries evicted to stay within the budget", "evictions"),
    ("zspool_cache_expirations", "Entries dropped because their TTL passed", "expirations"),
    ("zspool_cache_sets", "Entries stored", "sets"),
    ("zspool_cache_deletes", "Entries deleted", "deletes"),
]
_CACHE_GAUGES = [
    ("zspool_cache_entries", "Live entries", "entries"),
    (
        "zspool_cache_stored_bytes",
        "Bytes of stored entries after compression (the budgeted size)",
        "stored_bytes",
    ),
    (
        "zspool_cache_payload_bytes",
        "Key and value bytes of live entries before compression",
        "payload_bytes",
    ),
    ("zspool_cache_max_bytes", "The byte budget", "maxsize"),
    ("zspool_cache_index_bytes", "Heap bytes of the Rust index", "index_bytes"),
]
_RECLAIMER_COUNTERS = [
    ("zspool_reclaimer_rounds", "Shrink rounds run", "rounds"),
    ("zspool_reclaimer_ticks", "Wake-ups of the reclaimer thread", "ticks"),
    ("zspool_reclaimer_pressure_events", "Memory pressure events seen", "pressure_events"),
    ("zspool_reclaimer_freed_pages", "Pages freed by the reclaimer's rounds", "pages_freed"),
    ("zspool_reclaimer_errors", "Rounds that failed", "errors"),
]

_Table = list[tuple[str, str, str]]


class _Families:
    """One metric family per (name) in a table, filled with a labelled sample per object."""

    def __init__(self, table: _Table, kind: type[GaugeMetricFamily | CounterMetricFamily], labels: list[str]) -> None:
        self.table = table
        self.families = [kind(name, help_text, labels=labels) for name, help_text, _ in table]

    def add(self, labels: list[str], stats: Any) -> None:
        for family, (_, _, field) in zip(self.families, self.table, strict=True):
            family.add_metric(labels, getattr(stats, field))


class ZspoolCollector(Collector):
    """A ``prometheus_client`` collector for :class:`zspool.Pool`, :class:`zspool.Cache`
    and :class:`zspool.Reclaimer` objects (a cache brings its pool and its reclaimer).

    Pass them at construction or later with :meth:`add`.
    """

    def __init__(self, *pools_or_caches: Pool | Cache | Reclaimer) -> None:
        self._objects: list[Pool | Cache | Reclaimer] = []
        for obj in pools_or_caches:
            self.add(obj)

    def add(self, obj: Pool | Cache | Reclaimer) -> None:
        if not isinstance(obj, Pool | Cache | Reclaimer):
            raise TypeError(f"ZspoolCollector takes zspool Pool, Cache or Reclaimer objects, not {type(obj).__name__}")
        self._objects.append(obj)

    def _members(self) -> tuple[list[Pool], list[Cache], list[Reclaimer]]:
        pools: list[Pool] = []
        caches: list[Cache] = []
        reclaimers: list[Reclaimer] = []
        for obj in self._objects:
            if isinstance(obj, Cache):
                if obj.closed:
                    continue
                caches.append(obj)
                pools.append(obj.pool)
                reclaimer = obj._own_reclaimer or obj._reclaimer
                if reclaimer is not None:
                    reclaimers.append(reclaimer)
            elif isinstance(obj, Pool):
                if not obj.closed:
                    pools.append(obj)
            else:
                reclaimers.append(obj)
        # The same object given twice (or a shared reclaimer) is reported once.
        return _unique(pools), _unique(caches), _unique(reclaimers)

    def collect(self) -> Iterator[Metric]:
        pools, caches, reclaimers = self._members()
        pool_gauges = _Families(_POOL_GAUGES, GaugeMetricFamily, ["pool"])
        pool_counters = _Families(_POOL_COUNTERS, CounterMetricFamily, ["pool"])
        class_gauges = _Families(_CLASS_GAUGES, GaugeMetricFamily, ["pool", "class_size"])
        shrinkers = _Families(_SHRINKER_COUNTERS, CounterMetricFamily, ["pool", "shrinker"])
        for pool in pools:
            name = pool.name or ""
            stats = pool.stats()
            pool_gauges.add([name], stats)
            pool_counters.add([name], stats)
            for row in pool.class_stats():
                if row.zspages:
                    class_gauges.add([name, str(row.size)], row)
            for shrinker in pool.shrinkers:
                shrinkers.add([name, shrinker.name], shrinker.stats)
        cache_counters = _Families(_CACHE_COUNTERS, CounterMetricFamily, ["cache"])
        cache_gauges = _Families(_CACHE_GAUGES, GaugeMetricFamily, ["cache"])
        for cache in caches:
            cache_stats = cache.stats()
            cache_counters.add([cache.name], cache_stats)
            cache_gauges.add([cache.name], cache_stats)
        reclaimer_counters = _Families(_RECLAIMER_COUNTERS, CounterMetricFamily, ["reclaimer"])
        for reclaimer in reclaimers:
            reclaimer_counters.add([reclaimer.name], reclaimer.stats)
        for group in (
            pool_gauges,
            pool_counters,
            class_gauges,
            shrinkers,
            cache_counters,
            cache_gauges,
            reclaimer_counters,
        ):
            yield from group.families


def _unique(objects: list[Any]) -> list[Any]:
    """``objects`` without repeats (by identity), in order."""
    return list({id(o): o for o in objects}.values())
