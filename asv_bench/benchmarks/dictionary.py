"""Trained zstd dictionaries on realistic records: compression ratio and recompression speed.

One scenario per benchmark process (``setup_cache``): ``FILL`` JSON user profiles
(``zspool.records``, about 300 bytes each, seeded) stored with ``compression="zstd"`` and no
dictionary, then a 16 KiB dictionary trained on them and ``recompress()`` run over all of
them. Tracked: the compression ratio (payload bytes / stored bytes, ``CacheStats``) with
plain zstd and with the dictionary, the recompression throughput in MB/s of stored values
rewritten, and the pool's pages per payload byte after it (compaction included).
The latency of a ``get`` is timed on the dictionary-compressed cache and an uncompressed one.
"""

from __future__ import annotations

import zspool
from zspool.records import user_records

FILL = 20_000


def _scenario() -> dict[str, float]:
    values = list(user_records(FILL, seed=7))
    with zspool.Cache(1 << 40, compression="zstd") as cache:
        cache.set_many({f"user:{i}": v for i, v in enumerate(values)})
        plain = cache.stats()
        cache.train_dictionary(16 * 1024)
        report = cache.recompress()
        after = cache.stats()
    return {
        "ratio_zstd": plain.compression_ratio,
        "ratio_dict": after.compression_ratio,
        "mb_per_s": report.bytes_before / 1e6 / max(report.duration_s, 1e-9),
        "pool_per_payload_byte": after.pool.mem_used_bytes / after.payload_bytes,
    }


class Dictionary:
    timeout = 300

    def setup_cache(self) -> dict[str, float]:
        return _scenario()

    def track_compression_ratio_zstd(self, r: dict[str, float]) -> float:
        return r["ratio_zstd"]

    def track_compression_ratio_zstd_dictionary(self, r: dict[str, float]) -> float:
        return r["ratio_dict"]

    def track_recompression_mb_per_s(self, r: dict[str, float]) -> float:
        return r["mb_per_s"]

    def track_pool_bytes_per_payload_byte_after_recompress(self, r: dict[str, float]) -> float:
        return r["pool_per_payload_byte"]

    track_compression_ratio_zstd.unit = "payload / stored"  # type: ignore[attr-defined]
    track_compression_ratio_zstd_dictionary.unit = "payload / stored"  # type: ignore[attr-defined]
    track_recompression_mb_per_s.unit = "MB/s rewritten"  # type: ignore[attr-defined]
    track_pool_bytes_per_payload_byte_after_recompress.unit = "bytes per payload byte"  # type: ignore[attr-defined]


class GetRecord:
    """One ``get`` of a ~300-byte record: uncompressed vs trained-dictionary zstd."""

    params = ["none", "zstd+dictionary"]
    param_names = ["compression"]

    def setup(self, compression: str) -> None:
        values = list(user_records(5_000, seed=8))
        if compression == "none":
            self.cache = zspool.Cache(1 << 40)
        else:
            self.cache = zspool.Cache(1 << 40, compression="zstd")
        self.cache.set_many({f"user:{i}": v for i, v in enumerate(values)})
        if compression != "none":
            self.cache.train_dictionary(16 * 1024)
            self.cache.recompress()
        self.keys = [f"user:{i}" for i in range(0, 5_000, 5)]

    def teardown(self, compression: str) -> None:
        self.cache.close()

    def time_get(self, compression: str) -> None:
        get = self.cache.__getitem__
        for k in self.keys:
            get(k)
