//! # zspool-shared: one zspool pool and cache index in a shared file
//!
//! The Rust half of `zspool.SharedCache`. Pure Rust, no Python (the bindings live in
//! `rust/zspool-py`). The design, the file layout, the lock order and what happens when a
//! lock holder dies are in `docs/SHARED.md`.

#![warn(missing_docs)]

mod allocator;
mod cache;
mod class;
mod clock;
mod compaction;
mod config;
mod error;
mod hash;
mod header;
mod location;
mod mapping;
mod object;
mod recovery;
mod regions;
mod robust_mutex;
mod shard;
mod stats;
mod value_flags;
mod zspage;

pub use cache::SharedCache;
pub use config::{OpenOptions, SerializerKind, SharedConfig};
pub use error::SharedError;
pub use stats::SharedStats;
pub use value_flags::ValueFlags;

/// The layout version written in every file's header; a file of another version is refused.
pub const LAYOUT_VERSION: u32 = 1;
/// Index shards, each with its own lock.
pub const N_SHARDS: usize = 64;
