"""Memory really goes back to the OS: resident set size (from /proc/self/statm) falls
after frees, for packed small objects and for large ones."""

from __future__ import annotations

import gc
from collections.abc import Callable

from zspool import PAGE_SIZE, Pool

MiB = 1 << 20


def fill_free_and_measure(rss: Callable[[], int], size: int, total: int) -> tuple[int, int, int]:
    """Store ``total`` bytes in objects of ``size`` bytes, free them all; RSS before, full, after."""
    data = bytes([0x5A]) * size  # non-zero so every page is really touched
    gc.collect()
    with Pool(name="rss") as pool:
        before = rss()
        handles = [pool.store(data) for _ in range(total // size)]
        full = rss()
        stats = pool.stats()
        assert stats.objects == len(handles)
        assert stats.mem_used_bytes >= len(handles) * size
        for h in handles:
            pool.free(h)
        del handles
        gc.collect()
        after = rss()
        stats = pool.stats()
        assert (stats.objects, stats.pages_used) == (0, 0)
    return before, full, after


def test_rss_falls_after_freeing_small_objects(rss: Callable[[], int]) -> None:
    before, full, after = fill_free_and_measure(rss, 1024, 200 * MiB)
    grown = full - before
    assert grown >= 190 * MiB, f"RSS grew only {grown / MiB:.0f} MiB for 200 MiB of objects"
    released = full - after
    assert released >= 0.9 * 200 * MiB, (
        f"RSS fell only {released / MiB:.0f} MiB of {grown / MiB:.0f} MiB after freeing every object"
    )


def test_rss_falls_after_freeing_large_objects(rss: Callable[[], int]) -> None:
    before, full, after = fill_free_and_measure(rss, 4 * MiB + 3 * PAGE_SIZE // 2, 200 * MiB)
    grown = full - before
    assert grown >= 180 * MiB, f"RSS grew only {grown / MiB:.0f} MiB for ~200 MiB of large objects"
    released = full - after
    assert released >= 0.9 * grown, f"RSS fell only {released / MiB:.0f} of {grown / MiB:.0f} MiB"


def test_rss_falls_after_close(rss: Callable[[], int]) -> None:
    pool = Pool()
    data = b"\x01" * 700
    before = rss()
    for _ in range(100 * MiB // 700):
        pool.store(data)
    full = rss()
    pool.close()
    after = rss()
    assert full - before >= 90 * MiB
    assert full - after >= 0.9 * (full - before)
