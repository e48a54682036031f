//! The cache's counters and the snapshot `Cache::stats` returns. The counters live in the
//! cache's `Inner` and are guarded by its mutex (every event that bumps one holds it anyway).

use zspool_core::PoolStats;

use crate::eviction::Eviction;

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub sets: u64,
    pub deletes: u64,
    /// Key + value bytes of live entries, before compression.
    pub payload_bytes: u64,
    /// Bytes of the live entries' pool objects (header + key + value, after compression):
    /// what `max_bytes` budgets.
    pub stored_bytes: u64,
    /// Live entries whose value is stored compressed.
    pub compressed_entries: u64,
}

/// A snapshot of the cache and its pool.
#[derive(Debug, Clone)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries removed to make room.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Entries stored.
    pub sets: u64,
    /// Entries removed by the caller.
    pub deletes: u64,
    /// Live entries.
    pub entries: usize,
    /// Key + value bytes of live entries, before compression.
    pub payload_bytes: u64,
    /// Bytes of live entries in the pool (header + key + value, after compression).
    pub stored_bytes: u64,
    /// The budget, in bytes.
    pub max_bytes: u64,
    /// Live entries whose value is stored compressed.
    pub compressed_entries: u64,
    /// payload_bytes / stored_bytes (1.0 when empty); above 1 once compression pays, a little
    /// under 1 without it (the 2..4 header bytes per entry).
    pub compression_ratio: f64,
    /// Heap bytes of the index (slots, hash table, deadlines), outside the pool.
    pub index_bytes: usize,
    /// The eviction algorithm.
    pub eviction: Eviction,
    /// The pool's own stats.
    pub pool: PoolStats,
}

impl CacheStats {
    /// hits / (hits + misses), 0.0 before the first lookup.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 }
    }
}
