//! # zspool-shared: one zspool pool and cache index in a shared file
//!
//! The Rust half of `zspool.SharedCache`. Pure Rust, no Python (the bindings live in
//! `rust/zspool-py`). The design, the file layout, the lock order and what happens when a
//! lock holder dies are in `docs/SHARED.md`; this is the map of the code.
//!
//! A file on tmpfs holds everything: a header page (`header.rs`), a class state per size class
//! (`class.rs`; the core's class table, then one-object classes of 3..16 pages for entries up
//! to 64 KiB, `classes.rs`), 64 index shards of slots (`shard.rs`), a zspage
//! descriptor per 64 KiB chunk (`zspage.rs`) and the chunks, where each entry is one object
//! (`object.rs`) carrying its key and a checksum. It is created sparse and linked into place,
//! then mapped whole by every process (`open.rs`, `mapping.rs`, `regions.rs`); everything in
//! it is an offset or an index, and every one read is bounds-checked.
//!
//! Locks are robust process-shared pthread mutexes in the file (`robust_mutex.rs`), taken in
//! the order **shard -> class -> allocator** (`allocator.rs`: free descriptors and the page
//! budget). When a holder dies, the next one repairs what the lock guards (`recovery.rs`): a
//! class drops its entries by bumping its epoch, which every slot's location (`location.rs`)
//! names; a shard recounts; the allocator rebuilds. A cache may forget, never lie.
//!
//! Compaction is zspool-core's loop (`compact_class.rs` there) run through its traits
//! (`compaction.rs`); eviction is SIEVE per shard; `cache.rs` is the data path.

#![warn(missing_docs)]

mod allocator;
mod cache;
mod class;
mod classes;
mod clock;
mod compaction;
mod config;
mod error;
mod hash;
mod header;
mod in_flight;
mod location;
mod mapping;
mod object;
mod open;
mod recovery;
mod regions;
mod robust_mutex;
mod shard;
mod stats;
mod value_flags;
mod zspage;

pub use cache::SharedCache;
pub use classes::MAX_OBJECT as MAX_ENTRY_SIZE;
pub use config::{OpenOptions, SerializerKind, SharedConfig};
pub use error::SharedError;
pub use stats::SharedStats;
pub use value_flags::ValueFlags;

/// The layout version written in every file's header; a file of another version is refused.
pub const LAYOUT_VERSION: u32 = 2;
/// Index shards, each with its own lock.
pub const N_SHARDS: usize = 64;
