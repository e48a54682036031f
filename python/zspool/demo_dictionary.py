"""``zspool demo --dictionary``: a zstd cache of small records trains a dictionary by itself,
then the ``idle-only`` shrinker spends the idle time recompressing the older records with it.

The run, step by step:

1. a ``Cache(compression="zstd", dictionary=True, policy="idle-only")`` takes ``records``
   JSON user profiles (about 300 bytes each); after the first 2 MiB it trains a dictionary,
   and the records after that are stored with it;
2. while the writes go on, the policy leaves the cache alone (it is busy);
3. once idle, each reclaimer tick recompresses a slice of the older records with the
   dictionary and compacts: the lines show the stored bytes and the pool's pages going down;
4. every record is read back and checked.
"""

from __future__ import annotations

import time
from typing import TextIO

from zspool.cache import Cache
from zspool.records import user_record_bytes
from zspool.workload import rss_bytes

__all__ = ["run_dictionary_demo"]

MiB = 1024 * 1024


def _line(cache: Cache, started: float) -> str:
    s = cache.stats()
    d = s.dictionary
    return (
        f"  t={time.monotonic() - started:5.2f} s  stored {s.stored_bytes / MiB:6.1f} MiB "
        f"({s.stored_bytes / max(s.payload_bytes, 1):.3f} of payload)  pool {s.pool.mem_used_bytes / MiB:6.1f} MiB  "
        f"recompressed {d.values_recompressed:,} values, {d.recompress_pages_freed:,} pages freed\n"
    )


def run_dictionary_demo(records: int, busy_s: float, idle_s: float, out: TextIO) -> int:
    rss_base = rss_bytes()
    with Cache(
        1 << 40,
        compression="zstd",
        dictionary=True,
        policy="idle-only",
        idle_s=0.2,
        reclaimer_interval_s=0.05,
    ) as cache:
        out.write(
            f"zspool demo --dictionary: {records:,} JSON user records (about 300 B each) into "
            "Cache(compression='zstd', dictionary=True, policy='idle-only')\n"
        )
        started = time.monotonic()
        for i in range(records):
            cache[f"user:{i}"] = user_record_bytes(i)
        d = cache.stats().dictionary
        out.write(
            f"stored; dictionary {d.current} trained after the first 2 MiB ({d.bytes:,} bytes, in currsize); "
            f"{d.without_dictionary.values:,} earlier records stored without it\n"
        )
        out.write(_line(cache, started))
        out.write(f"busy phase ({busy_s} s of overwrites): the policy stays away\n")
        busy_until = time.monotonic() + busy_s
        i = 0
        while time.monotonic() < busy_until:
            key = (i * 7919) % records
            cache[f"user:{key}"] = user_record_bytes(key)
            i += 1
        out.write(_line(cache, started))
        out.write(f"idle phase (up to {idle_s} s): recompression, slice by slice, then compaction\n")
        idle_until = time.monotonic() + idle_s
        last = 0.0
        while time.monotonic() < idle_until and cache.recompressible_pages() > 0:
            time.sleep(0.05)
            if time.monotonic() - last > 0.5:
                out.write(_line(cache, started))
                last = time.monotonic()
        time.sleep(0.2)
        out.write(_line(cache, started))
        s = cache.stats()
        out.write(
            f"values per dictionary: {[(x.id, x.values) for x in s.dictionary.dictionaries]}, "
            f"none: {s.dictionary.without_dictionary.values}; "
            f"value bytes {s.dictionary.value_bytes_before / MiB:.1f} MiB "
            f"-> {s.dictionary.value_bytes_after / MiB:.1f} MiB; RSS growth {(rss_bytes() - rss_base) / MiB:.1f} MiB\n"
        )
        bad = sum(cache.get(f"user:{i}") != user_record_bytes(i) for i in range(records))
        out.write(f"verified {records:,} records: {'all intact' if bad == 0 else f'{bad} WRONG'}\n")
        return 1 if bad else 0
