//! # zspool-core: Linux's zsmalloc, in user space
//!
//! A pool that packs many small objects densely into pages taken straight from the OS, hands
//! out *handles* instead of pointers, and can therefore move objects to give whole pages
//! back (compaction). Pure Rust, no Python; the bindings live in `rust/zspool-py`.
//!
//! ## Data layout (as in mm/zsmalloc.c)
//!
//! - **Size classes** (`class_table.rs` computes the table, `size_class.rs` is the kernel's
//!   `struct size_class`): object sizes 32..=8192 bytes in 16-byte steps (the kernel stops at
//!   4096; we go on to two pages, see `class_table.rs`). Each class stores objects of its
//!   size in **zspages**: chains of 1..=16 pages chosen to waste the least tail space.
//!   Classes whose zspages would look the same are merged.
//! - **Zspages** (`zspage.rs`): objects laid end to end over the chain, so an object may
//!   straddle two pages (three, above a page). Each zspage sits in one of 12 **fullness
//!   groups** (`fullness.rs`: empty, ≤10 %, …, ≤99 %, full); allocation fills the fullest
//!   first, compaction drains the emptiest.
//! - **Handles** (`handle.rs`): opaque `u64`s that resolve, through a per-class handle table,
//!   to (zspage, object index). Compaction rewrites the table entry, not the handle. A
//!   generation in every handle catches use after free, double free and forgery.
//! - **Owned objects** (`owned.rs`): objects an outside index (the cache) names by their
//!   location, with no handle-table entry; compaction rewrites the index's record through
//!   the [`ObjectOwner`] trait when it moves one.
//! - **Pages** (`os_pages.rs`): anonymous `mmap` arenas, handed out a page at a time and
//!   returned with `MADV_DONTNEED`, so RSS really falls when zspages die.
//! - **Large objects** (`large.rs`): bigger than two pages; a mapping of whole pages each.
//!
//! ## Locks
//!
//! A **class lock** per size class (its zspages, their bytes, its fullness lists and its
//! handle table), a **large-object shard lock** per shard, and the **page provider's** two
//! locks. The order they nest in, and how `fork.rs` holds them all across `fork()` (with
//! the [`OuterLock`]s of layers above, such as the cache mutex of `zspool-cache`), is
//! written once, in `docs/ARCHITECTURE.md` ("Lock order").
//!
//! There is no pool-wide lock on the malloc / free / read / write path. Compaction
//! (`compaction.rs`) takes one class lock at a time, in slices, and yields it to waiters.
//!
//! ## Compaction over any class storage
//!
//! The per-class loop ([`compact_class`], `compact_class.rs`) is generic over
//! [`CompactClass`] and [`LockedClass`], so a pool whose classes live elsewhere (the
//! shared-file pool of `zspool-shared`) runs the same algorithm with its own storage, next to
//! the class table ([`ClassTable`], [`ClassLayout`]), [`Fullness`] and [`can_compact`].
//!
//! `sync.rs` swaps every lock and atomic for loom's under `--cfg loom`, so the protocol is
//! model-checked (`tests/loom.rs`).

#![warn(missing_docs)]

mod activity;
mod class_table;
mod compact_class;
mod compaction;
mod error;
mod fork;
mod fullness;
mod handle;
mod large;
mod os_pages;
mod owned;
mod pool;
mod prefetch;
mod size_class;
mod stats;
mod sync;
mod zspage;

pub use activity::Activity;
pub use class_table::{
    ABOVE_PAGE_CHAIN_LIMIT, CLASS_DELTA, ClassLayout, ClassTable, DEFAULT_MAX_PAGES_PER_ZSPAGE, MAX_CHAIN_LIMIT,
    MAX_CLASS_SIZE, MIN_ALLOC_SIZE, NUM_PAGE_SIZE_SLOTS, NUM_SIZE_SLOTS, chain_limit, chain_size, size_slot,
};
pub use compact_class::{CompactClass, LockedClass, can_compact, compact_class, compact_classes};
pub use compaction::{CompactOptions, CompactionReport, LockHold, StopReason};
pub use error::{HandleProblem, Result, ZsError};
pub use fork::{Counted, ForkGate};
#[cfg(not(loom))]
pub use fork::{OuterLock, QUIESCE_DEADLINE, register_for_fork, register_outer_lock_for_fork};
pub use fullness::{FULLNESS_GROUPS, Fullness};
pub use os_pages::{PAGE_SIZE, process_rss_bytes};
pub use owned::{Location, MAX_OWNER_ID, ObjectOwner};
pub use pool::{MAX_OBJECT_SIZE, ObjectRef, Pool, PoolConfig, check_bounds};
pub use stats::{ClassStats, PoolStats};
