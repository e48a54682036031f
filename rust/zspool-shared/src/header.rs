//! The file's first page: what the file is (magic, layout version, page size, class-table
//! digest), how it was configured, where each region starts (the [`Layout`], a pure function
//! of the configuration, recomputed and compared on every open), and the host-wide state
//! that belongs to no class or shard: the allocator lock and what it guards, the reclaimer
//! lease, and global counters.
//!
//! Everything above `bytes` is written once by the creator before the file is linked and is
//! read-only afterwards; the atomics below are shared state.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use zspool_cache::Compression;
use zspool_core::{ClassLayout, PAGE_SIZE};

use crate::N_SHARDS;
use crate::class::ClassShm;
use crate::classes::FileClasses;
use crate::config::{SerializerKind, SharedConfig};
use crate::robust_mutex::RobustMutex;
use crate::shard::{ShardShm, Slot};
use crate::zspage::{CHUNK_PAGES, Descriptor};

pub(crate) const MAGIC: [u8; 8] = *b"ZSPOOLSC";
/// The smallest budget a file may have.
pub(crate) const MIN_MAXBYTES: u64 = 1 << 20;
/// The largest budget a file may have (128 GiB: descriptor numbers must fit a location's
/// 27 bits and slot numbers a back-reference's 31).
pub(crate) const MAX_MAXBYTES: u64 = 1 << 37;
/// The index's reserve: `maxbytes / this` slots (address space: a shard's table uses the
/// pages of its first `cap` slots, see `shard.rs`). Entries averaging fewer stored bytes
/// than this, over the tables' fill of 3/4, are bounded by slots rather than by bytes.
const BYTES_PER_SLOT: u64 = 64;
/// The fewest slots per shard: one page of slots.
pub(crate) const MIN_SHARD_SLOTS: usize = 256;

/// The header page. `repr(C)`, fixed-width fields: the same bytes mean the same in every
/// process of this build.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) magic: [u8; 8],
    pub(crate) version: u32,
    pub(crate) page_size: u32,
    pub(crate) class_digest: u64,
    pub(crate) maxbytes: u64,
    pub(crate) compression: u32,
    pub(crate) zstd_level: i32,
    pub(crate) ttl_ns: u64,
    pub(crate) serializer: u32,
    pub(crate) mutex_kind: i32,
    pub(crate) n_classes: u64,
    pub(crate) n_shards: u64,
    pub(crate) shard_slots: u64,
    pub(crate) n_chunks: u64,
    pub(crate) pages_max: u64,
    pub(crate) class_off: u64,
    pub(crate) shard_off: u64,
    pub(crate) slot_off: u64,
    pub(crate) desc_off: u64,
    pub(crate) data_off: u64,
    pub(crate) file_len: u64,
    pub(crate) creator_pid: u32,
    _pad: u32,
    pub(crate) created_unix: u64,

    /// Stored bytes of every entry (the budget's measure), updated with each class's `bytes`.
    pub(crate) bytes: AtomicU64,
    /// Set once any entry was given a TTL: `len()` must then look at expiry times.
    pub(crate) ttl_used: AtomicU32,
    _pad2: u32,
    pub(crate) recoveries: AtomicU64,
    pub(crate) dropped_on_recovery: AtomicU64,
    pub(crate) corrupt_dropped: AtomicU64,
    pub(crate) pages_compacted: AtomicU64,
    pub(crate) objects_migrated: AtomicU64,
    pub(crate) compactions: AtomicU64,

    /// The allocator lock (`allocator.rs`) and what it guards: the free-descriptor stack,
    /// descriptors never used yet, pages and zspages in use, and the reclaimer lease.
    pub(crate) alloc_lock: RobustMutex,
    pub(crate) free_desc: AtomicU32,
    pub(crate) never_used: AtomicU32,
    pub(crate) pages_in_use: AtomicU64,
    pub(crate) zspages: AtomicU64,
    pub(crate) lease_holder: AtomicU32,
    _pad3: u32,
    pub(crate) lease_expiry: AtomicU64,
}

const _: () = assert!(size_of::<Header>() <= PAGE_SIZE);
const _: () = assert!((MAX_MAXBYTES * 2 / PAGE_SIZE as u64) + (1 << 16) < crate::location::MAX_DESCS as u64);
const _: () = assert!(MAX_MAXBYTES / BYTES_PER_SLOT <= 1 << 31);
const _: () = assert!(MIN_SHARD_SLOTS * size_of::<Slot>() == PAGE_SIZE);

/// Where each region of a file starts, computed from its configuration alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) n_classes: usize,
    pub(crate) shard_slots: usize,
    pub(crate) n_chunks: usize,
    pub(crate) pages_max: u64,
    pub(crate) class_off: usize,
    pub(crate) shard_off: usize,
    pub(crate) slot_off: usize,
    pub(crate) desc_off: usize,
    pub(crate) data_off: usize,
    pub(crate) file_len: usize,
}

/// The classes every file uses.
pub(crate) fn class_table() -> FileClasses {
    FileClasses::new()
}

/// A digest of the class table and page size: files made by a build with other classes are
/// refused.
pub(crate) fn class_digest(classes: &[ClassLayout]) -> u64 {
    let mut h = crate::hash::Hasher::new();
    h.write_u64(PAGE_SIZE as u64);
    for c in classes {
        for v in [c.index, c.size, c.pages_per_zspage, c.objs_per_zspage] {
            h.write_u64(v as u64);
        }
    }
    h.finish()
}

fn round_up(v: usize, to: usize) -> usize {
    v.div_ceil(to) * to
}

impl Layout {
    /// The layout of a file with budget `maxbytes` (already validated).
    pub(crate) fn compute(maxbytes: u64, n_classes: usize) -> Layout {
        let pages_max = (maxbytes * 2).div_ceil(PAGE_SIZE as u64) + (n_classes * CHUNK_PAGES) as u64;
        // A zspage takes one chunk whatever its pages: at most `pages_max` zspages.
        let n_chunks = pages_max as usize;
        let shard_slots =
            (maxbytes / BYTES_PER_SLOT / N_SHARDS as u64).max(MIN_SHARD_SLOTS as u64).next_power_of_two() as usize;
        let class_off = PAGE_SIZE;
        let shard_off = round_up(class_off + n_classes * size_of::<ClassShm>(), 64);
        let slot_off = round_up(shard_off + N_SHARDS * size_of::<ShardShm>(), PAGE_SIZE);
        let desc_off = round_up(slot_off + N_SHARDS * shard_slots * size_of::<Slot>(), PAGE_SIZE);
        let data_off = round_up(desc_off + n_chunks * size_of::<Descriptor>(), PAGE_SIZE);
        let file_len = data_off + n_chunks * CHUNK_PAGES * PAGE_SIZE;
        Layout {
            n_classes,
            shard_slots,
            n_chunks,
            pages_max,
            class_off,
            shard_off,
            slot_off,
            desc_off,
            data_off,
            file_len,
        }
    }
}

impl Header {
    /// Fill a new file's header (the creator, before the file is linked).
    pub(crate) fn init(&mut self, config: &SharedConfig, layout: &Layout, digest: u64) {
        let (compression, zstd_level) = compression_code(config.compression);
        self.magic = MAGIC;
        self.version = crate::LAYOUT_VERSION;
        self.page_size = PAGE_SIZE as u32;
        self.class_digest = digest;
        self.maxbytes = config.maxbytes;
        self.compression = compression;
        self.zstd_level = zstd_level;
        self.ttl_ns = config.ttl.map_or(0, |t| u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1));
        self.serializer = config.serializer.code();
        self.n_classes = layout.n_classes as u64;
        self.n_shards = N_SHARDS as u64;
        self.shard_slots = layout.shard_slots as u64;
        self.n_chunks = layout.n_chunks as u64;
        self.pages_max = layout.pages_max;
        self.class_off = layout.class_off as u64;
        self.shard_off = layout.shard_off as u64;
        self.slot_off = layout.slot_off as u64;
        self.desc_off = layout.desc_off as u64;
        self.data_off = layout.data_off as u64;
        self.file_len = layout.file_len as u64;
        self.creator_pid = std::process::id();
        self.created_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.mutex_kind = self.alloc_lock.init();
    }

    /// The configuration recorded in the header, if its fields are valid.
    pub(crate) fn config(&self) -> Result<SharedConfig, String> {
        let compression = match (self.compression, self.zstd_level) {
            (0, _) => Compression::None,
            (1, _) => Compression::Lz4,
            (2, level @ 1..=22) => Compression::Zstd(level),
            (c, l) => return Err(format!("unknown compression {c} (level {l})")),
        };
        let serializer = SerializerKind::from_code(self.serializer)
            .ok_or_else(|| format!("unknown serializer {}", self.serializer))?;
        if !(MIN_MAXBYTES..=MAX_MAXBYTES).contains(&self.maxbytes) {
            return Err(format!("maxbytes {} out of range", self.maxbytes));
        }
        let ttl = (self.ttl_ns != 0).then(|| Duration::from_nanos(self.ttl_ns));
        Ok(SharedConfig { maxbytes: self.maxbytes, compression, ttl, serializer })
    }

    /// Whether the recorded sizes and offsets are exactly the layout of the recorded budget.
    pub(crate) fn layout_matches(&self, layout: &Layout) -> bool {
        self.n_classes == layout.n_classes as u64
            && self.n_shards == N_SHARDS as u64
            && self.shard_slots == layout.shard_slots as u64
            && self.n_chunks == layout.n_chunks as u64
            && self.pages_max == layout.pages_max
            && self.class_off == layout.class_off as u64
            && self.shard_off == layout.shard_off as u64
            && self.slot_off == layout.slot_off as u64
            && self.desc_off == layout.desc_off as u64
            && self.data_off == layout.data_off as u64
            && self.file_len == layout.file_len as u64
    }

    /// Subtract from a counter without wrapping below zero (a counter in a scribbled-on file
    /// may be anything).
    pub(crate) fn sub_saturating(counter: &AtomicU64, by: u64) {
        let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(by)));
    }
}

pub(crate) fn compression_code(compression: Compression) -> (u32, i32) {
    match compression {
        Compression::None => (0, 0),
        Compression::Lz4 => (1, 0),
        Compression::Zstd(level) => (2, level),
    }
}

/// Check a configuration a file is to be created with.
pub(crate) fn validate(config: &SharedConfig) -> Result<(), String> {
    if !(MIN_MAXBYTES..=MAX_MAXBYTES).contains(&config.maxbytes) {
        return Err(format!("maxbytes must be {MIN_MAXBYTES}..={MAX_MAXBYTES} bytes, got {}", config.maxbytes));
    }
    if let Compression::Zstd(level) = config.compression
        && !(1..=22).contains(&level)
    {
        return Err(format!("zstd level must be 1..=22, got {level}"));
    }
    if config.ttl == Some(Duration::ZERO) {
        return Err("ttl must be positive (or None)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_offset_field_is_where_the_garbage_test_reads_it() {
        assert_eq!(std::mem::offset_of!(Header, data_off), 128);
        assert_eq!(std::mem::offset_of!(Header, version), 8);
    }
}
