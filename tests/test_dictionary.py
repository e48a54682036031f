"""Trained zstd dictionaries and recompression through ``zspool.Cache``: training (automatic
and on demand), versions that keep old values readable, dictionaries freed with their last
value and counted in ``currsize``, ``recompress()`` under concurrent readers, writers and
compaction (checksummed), the idle-only shrinker spending idle time on it, and bad input."""

from __future__ import annotations

import threading
import time
import zlib

import pytest
import zspool
from zspool.records import user_record_bytes, user_records
from zspool.shrinker import ShrinkControl


def fill(cache: zspool.Cache, n: int, seed: int = 0) -> None:
    cache.set_many({f"user:{i}": v for i, v in enumerate(user_records(n, seed))})


def check(cache: zspool.Cache, n: int, seed: int = 0) -> None:
    for i in range(n):
        assert cache[f"user:{i}"] == user_record_bytes(i, seed), i


def test_train_then_recompress_halves_the_stored_bytes() -> None:
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        fill(cache, 3_000)
        before = cache.currsize
        assert cache.stats().dictionary.current is None, "3,000 records are under the threshold"
        dict_id = cache.train_dictionary(size=8192)
        assert dict_id is not None
        d = cache.stats().dictionary
        assert d.current == dict_id and d.trained == 1 and d.dictionaries[0].current
        assert cache.currsize == before + d.bytes, "the dictionary counts in currsize"
        assert cache.recompressible_pages() > 0
        report = cache.recompress()
        assert isinstance(report, zspool.RecompressReport)
        assert report.stop_reason == "done" and report.values_recompressed == 3_000
        assert report.bytes_after < report.bytes_before * 0.7
        assert report.pages_freed > 0, (
            "recompression (and the compaction after it) gives pages back"
        )
        check(cache, 3_000)
        s = cache.stats()
        assert s.dictionary.dictionaries[0].values == 3_000
        assert s.dictionary.values_recompressed == 3_000 and s.dictionary.recompress_runs == 1
        assert s.dictionary.value_bytes_after < s.dictionary.value_bytes_before / 2
        assert cache.recompressible_pages() == 0, "the pass is complete"
        assert cache.recompress().values_recompressed == 0


def test_dictionary_true_trains_by_itself() -> None:
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        fill(cache, 7_500)  # 2.2 MiB of records: past the 2 MiB threshold
        d = cache.stats().dictionary
        assert d.trained == 1 and d.current is not None
        check(cache, 7_500)


def test_old_dictionaries_stay_readable_and_are_freed_with_their_last_value() -> None:
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        fill(cache, 2_000)
        first = cache.train_dictionary(4096)
        fill(cache, 2_000, seed=1)  # on the first dictionary
        html = {
            f"html:{i}": f'<li class="item" data-id="{i}"><a href="/p/{i * 7}">product {i % 50}</a></li>'.encode()
            for i in range(3_000)
        }
        cache.set_many(html)
        second = cache.train_dictionary(4096)
        assert second is not None and second != first
        assert [d.id for d in cache.stats().dictionary.dictionaries] == [first, second]
        check(cache, 2_000, seed=1)
        fill(cache, 2_000, seed=2)
        for key in html:
            del cache[key]
        d = cache.stats().dictionary
        assert d.freed == 1 and [x.id for x in d.dictionaries] == [second]
        check(cache, 2_000, seed=2)
        assert cache.currsize == cache.pool.stats().payload_bytes, "entries + the live dictionary"


def test_a_dictionary_moves_between_caches_and_bad_ones_are_value_errors() -> None:
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as trainer:
        fill(trainer, 2_000)
        trainer.train_dictionary()
        trained = trainer.dictionary
    assert trained is not None and trained[:4] == b"\x37\xa4\x30\xec"
    with zspool.Cache(1 << 30, compression="zstd", dictionary=trained) as cache:
        fill(cache, 500, seed=3)
        d = cache.stats().dictionary
        assert d.dictionaries[0].values == 500 and d.value_bytes_after < d.value_bytes_before / 2
        check(cache, 500, seed=3)
    corrupt = trained[:8] + bytes(255 - b for b in trained[8:400]) + trained[400:]
    for bad, says in [
        (b"not a dictionary" * 64, "not a zstd dictionary"),
        (corrupt, "corrupt"),
        (b"\x37\xa4\x30\xec", "out of range"),
    ]:
        with pytest.raises(ValueError, match=says):
            zspool.Cache(1 << 30, compression="zstd", dictionary=bad)
    with pytest.raises(ValueError, match="zstd"):
        zspool.Cache(1 << 20, compression="lz4", dictionary=True)
    with pytest.raises(TypeError, match="dictionary must be"):
        zspool.Cache(1 << 20, compression="zstd", dictionary=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="half of maxsize"):
        zspool.Cache(20_000, compression="zstd", dictionary=trained)


def test_bad_training_and_recompress_arguments() -> None:
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        with pytest.raises(ValueError, match="too few values"):
            cache.train_dictionary()
        fill(cache, 500)
        for size in (10, -1, 1 << 70, (1 << 20) + 1):
            with pytest.raises(zspool.ConfigError, match="dictionary size"):
                cache.train_dictionary(size=size)
        with pytest.raises(ValueError, match="time_budget"):
            cache.recompress(time_budget=-1)
        assert cache.recompress().stop_reason == "no_dictionary"
    with zspool.Cache(1 << 30, compression="lz4") as lz4:
        fill(lz4, 500)
        with pytest.raises(ValueError, match="zstd"):
            lz4.train_dictionary()


def test_values_that_do_not_shrink_are_kept_as_they_are() -> None:
    import random

    noise = random.Random(5).randbytes(300)
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        fill(cache, 1_000)
        cache.train_dictionary(4096)
        cache["noise"] = noise
        assert cache["noise"] == noise
        d = cache.stats().dictionary.dictionaries[0]
        assert d.values == 1 and d.bytes_before == d.bytes_after == 300


def test_recompression_under_readers_writers_and_compaction_keeps_every_value() -> None:
    """Values carry their own CRC: a torn or misrouted value fails it."""

    def value(i: int, gen: int) -> bytes:
        body = user_record_bytes(i, gen)
        return body + b"#" + str(zlib.crc32(body)).encode()

    def intact(v: bytes) -> bool:
        body, _, crc = v.rpartition(b"#")
        return zlib.crc32(body) == int(crc)

    n = 6_000
    with zspool.Cache(1 << 30, compression="zstd", dictionary=True) as cache:
        cache.set_many({f"user:{i}": value(i, 0) for i in range(n)})
        cache.train_dictionary(8192)
        stop = threading.Event()
        errors: list[str] = []

        def worker(t: int) -> None:
            gen = 1
            while not stop.is_set():
                for i in range(t, n, 4):
                    v = cache.get(f"user:{i}")
                    if v is None or not intact(v):
                        errors.append(f"user:{i}: {v!r}")
                    if i % 3 == 0:
                        cache[f"user:{i}"] = value(i, gen)
                gen += 1

        def compactor() -> None:
            while not stop.is_set():
                cache.compact(time_budget=0.002)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(3)]
        threads.append(threading.Thread(target=compactor))
        for th in threads:
            th.start()
        try:
            slices = 0
            deadline = time.monotonic() + 20
            while (
                cache.recompress(time_budget=0.003).stop_reason == "budget_reached"
                and time.monotonic() < deadline
            ):
                slices += 1
        finally:
            stop.set()
            for th in threads:
                th.join()
        assert not errors, errors[:3]
        assert slices > 1, "recompression yielded in slices"
        for i in range(n):
            v = cache[f"user:{i}"]
            assert intact(v), i
        assert cache.currsize == cache.pool.stats().payload_bytes


def test_idle_only_policy_recompresses_when_idle() -> None:
    with zspool.Cache(
        1 << 30,
        compression="zstd",
        dictionary=True,
        policy="idle-only",
        idle_s=0.05,
        reclaimer_interval_s=0.02,
    ) as cache:
        fill(cache, 4_000)
        cache.train_dictionary(8192)
        deadline = time.monotonic() + 10
        while cache.recompressible_pages() and time.monotonic() < deadline:
            time.sleep(0.02)
        # The policy recompresses while that frees a page: what is left when it stops saves
        # less than one (recompressible_pages() is 0), not necessarily no value at all.
        assert cache.recompressible_pages() == 0
        d = cache.stats().dictionary
        assert d.values_recompressed > 3_000 and d.recompress_pages_freed > 0
        check(cache, 4_000)


def test_shrink_control_stays_backward_compatible() -> None:
    """A policy built against the old ShrinkControl still gets the fields it knew."""
    with zspool.Pool() as pool:
        sc = ShrinkControl(
            reason=zspool.shrinker.ShrinkReason.MANUAL,
            nr_to_scan=1,
            freeable=0,
            activity=pool.activity(),
        )
        assert sc.recompressible == 0 and sc.recompress is None
        assert pool.recompressor is None
