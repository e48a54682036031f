//! The snapshot `SharedCache::stats` returns. Counters live in the file (header, class states,
//! shards), so they are the whole host's, not this process's.

/// Counters of a shared cache, summed over every process that uses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SharedStats {
    /// Entries the shards count: expired ones not yet dropped, and ones a recovery discarded
    /// that no read has noticed yet, included (`len()` is exact).
    pub entries: u64,
    /// Stored bytes of the entries (`currsize`).
    pub bytes: u64,
    /// The budget (`maxsize`), bytes.
    pub maxbytes: u64,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries stored.
    pub sets: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Entries dropped because their TTL had passed.
    pub expirations: u64,
    /// Locks recovered after their holder died.
    pub recoveries: u64,
    /// Entries lost because a class was discarded by a recovery.
    pub entries_dropped_on_recovery: u64,
    /// Records that failed their checks (key, checksum, bounds) and were dropped.
    pub corrupt_dropped: u64,
    /// Pages of zspages in use.
    pub pages_in_use: u64,
    /// Pages of zspages the file has room for.
    pub pages_max: u64,
    /// Bytes the file really occupies (`st_blocks * 512`).
    pub file_bytes_allocated: u64,
    /// Zspages in use.
    pub zspages: u64,
    /// Index slots the shards' tables use now (16 bytes each): they grow with the entries and
    /// compaction shrinks them.
    pub index_slots: u64,
    /// Pages freed by compaction, ever.
    pub pages_compacted: u64,
    /// Objects moved by compaction, ever.
    pub objects_migrated: u64,
    /// Compaction runs that found work.
    pub compactions: u64,
}

/// Sum the counters in the file.
pub(crate) fn collect(r: &crate::regions::Regions) -> SharedStats {
    use std::sync::atomic::Ordering::Relaxed;
    let h = r.header();
    let mut s = SharedStats {
        bytes: h.bytes.load(Relaxed),
        maxbytes: h.maxbytes,
        recoveries: h.recoveries.load(Relaxed),
        entries_dropped_on_recovery: h.dropped_on_recovery.load(Relaxed),
        corrupt_dropped: h.corrupt_dropped.load(Relaxed),
        pages_in_use: h.pages_in_use.load(Relaxed),
        pages_max: r.layout.pages_max,
        file_bytes_allocated: r.allocated_bytes(),
        zspages: h.zspages.load(Relaxed),
        pages_compacted: h.pages_compacted.load(Relaxed),
        objects_migrated: h.objects_migrated.load(Relaxed),
        compactions: h.compactions.load(Relaxed),
        ..SharedStats::default()
    };
    for i in 0..crate::N_SHARDS {
        let shard = r.shard(i);
        s.entries = s.entries.saturating_add(shard.entries.load(Relaxed));
        s.sets = s.sets.saturating_add(shard.sets.load(Relaxed));
        s.index_slots = s
            .index_slots
            .saturating_add(crate::shard::checked_cap(shard.cap.load(Relaxed), r.layout.shard_slots) as u64);
        s.hits = s.hits.saturating_add(shard.hits.load(Relaxed));
        s.misses = s.misses.saturating_add(shard.misses.load(Relaxed));
        s.evictions = s.evictions.saturating_add(shard.evictions.load(Relaxed));
        s.expirations = s.expirations.saturating_add(shard.expirations.load(Relaxed));
    }
    s
}
