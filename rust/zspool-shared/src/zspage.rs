//! Zspage descriptors: one per 64 KiB chunk of the data region. A descriptor is free (on the
//! allocator's stack) or belongs to one class, whose zspage then uses the first
//! `pages_per_zspage` pages of its chunk. The free objects of a zspage form a list threaded
//! through their back-reference words (`object.rs`).
//!
//! Guarded by: the owning class's lock for `inuse`, `free_head`, `group`, `prev`, `next`;
//! the allocator lock for `class` (ownership changes) and `next_free`.

use std::sync::atomic::AtomicU32;

/// Pages per chunk: the longest zspage chain (`MAX_CHAIN_LIMIT`).
pub(crate) const CHUNK_PAGES: usize = zspool_core::MAX_CHAIN_LIMIT;
/// "No descriptor / no object" in a link field.
pub(crate) const NONE: u32 = u32::MAX;
/// The `class` of a descriptor on the allocator's free stack.
pub(crate) const FREE_CLASS: u32 = u32::MAX;

#[repr(C)]
pub(crate) struct Descriptor {
    pub(crate) class: AtomicU32,
    pub(crate) inuse: AtomicU32,
    pub(crate) free_head: AtomicU32,
    pub(crate) group: AtomicU32,
    pub(crate) prev: AtomicU32,
    pub(crate) next: AtomicU32,
    pub(crate) next_free: AtomicU32,
    _pad: u32,
}
