//! # zspool-cache: a compacting, compressing key-value cache on a zspool pool
//!
//! The Rust half of `zspool.Cache`. Pure Rust, no Python (the bindings are
//! `rust/zspool-py/src/cache.rs`).
//!
//! Each entry (a small header, the key bytes, the value bytes, compressed when that pays) is
//! **one pool object**. The cache keeps only a compact index in Rust, with no heap object per
//! entry (`index.rs` gives its size per entry), plus 8 bytes per entry for TTLs once one is
//! used. Entries are the pool's *owned* objects (the core's `owned.rs`): a slot holds its
//! entry's location, so a lookup skips the pool's handle table, and compaction, which runs
//! beside the cache, rewrites a moved entry's slot under the class lock. One cache per pool.
//!
//! One concept per file:
//!
//! - `entry.rs`: the layout of an entry's pool object, keys, and values lent to callers;
//! - `index.rs`: the hash index (its table, and the slots it hands out);
//! - `slots.rs`: the slots (location in the pool, hash, queue links), at stable addresses
//!   that compaction rewrites;
//! - `eviction.rs`: SIEVE (default) and LRU over one linked queue;
//! - `ttl.rs`: per-entry deadlines and the clock;
//! - `compression.rs`: lz4 / zstd, kept only where it saves space;
//! - `dictionary.rs`: zstd dictionary versions, their prepared contexts, usage counts;
//! - `training.rs`: sampling, training, installing and freeing a cache's dictionaries;
//! - `recompress.rs`: rewriting old values with the current dictionary, then compacting;
//! - `stats.rs`: counters and the stats snapshot;
//! - `cache.rs`: the cache itself, its mutex and the data path;
//! - `fork.rs`: `ForkSafeMutex`, the cache mutex that can be held
//!   across `fork()` (behind the core's fork gate), and its `pthread_atfork` hooks;
//! - `error.rs`: the error type.
//!
//! Locks: one **cache mutex** around the index, queue, deadlines and counters; pool calls are
//! made while holding it (its place in the lock order: `docs/ARCHITECTURE.md`). Compaction
//! never takes it: the slots' locations are the one thing it writes (`slots.rs`). Around
//! `fork()`, the core's `pthread_atfork` handlers hold it ([`register_for_fork`], `fork.rs`).

#![warn(missing_docs)]

mod cache;
mod compression;
mod dictionary;
mod entry;
mod error;
mod eviction;
mod fork;
mod index;
mod recompress;
mod slots;
mod stats;
mod training;
mod ttl;
mod zstd_frame;

pub use cache::{Cache, CacheConfig, CacheGuard, Encoded, EntryRef, register_for_fork};
pub use compression::{Codec, Compression, MIN_COMPRESS_LEN, MIN_SAVING, compress, decompress};
pub use dictionary::{
    DEFAULT_DICTIONARY_SIZE, DICTIONARY_SIZES, Dictionary, DictionaryReport, DictionaryStats, MAX_DICTIONARY_SIZE,
    MIN_DICTIONARY_SIZE, TRAIN_AFTER_BYTES, TRAIN_AFTER_VALUES, Usage, bad_size,
};
pub use entry::{Key, KeyKind, MAX_KEY_LEN, OwnedKey, Value};
pub use error::{CacheError, Result};
pub use eviction::Eviction;
pub use recompress::{RecompressReport, RecompressStop, RecompressTotals};
pub use stats::CacheStats;
pub use ttl::{Clock, Ttl};
