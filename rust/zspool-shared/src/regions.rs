//! Typed views of the file's regions (header, class states, shards, slots, descriptors, data
//! chunks), each by index. Indices given here come from the validated [`Layout`] or are
//! bounds-checked by the callers (`desc < n_chunks`, `class < n_classes`, ...); out-of-range
//! indices are clamped, never dereferenced past the mapping. No locks of its own.

use zspool_core::{ClassLayout, PAGE_SIZE};

use crate::N_SHARDS;
use crate::class::ClassShm;
use crate::classes::FileClasses;
use crate::header::{Header, Layout, MIN_SHARD_SLOTS};
use crate::mapping::Mapping;
use crate::robust_mutex::LockFile;
use crate::shard::{ShardShm, Slot};
use crate::zspage::{CHUNK_PAGES, Descriptor};

const CHUNK_BYTES: usize = CHUNK_PAGES * PAGE_SIZE;

#[derive(Debug)]
pub(crate) struct Regions {
    map: Mapping,
    pub(crate) layout: Layout,
    pub(crate) table: FileClasses,
    pub(crate) lock_file: LockFile,
}

impl Regions {
    pub(crate) fn new(map: Mapping, layout: Layout, table: FileClasses, mutex_kind: i32) -> Regions {
        let lock_file = LockFile { kind: mutex_kind, inode: map.inode() };
        Regions { map, layout, table, lock_file }
    }

    fn at<T>(&self, offset: usize) -> &T {
        debug_assert!(offset + size_of::<T>() <= self.map.len() && offset.is_multiple_of(align_of::<T>()));
        // SAFETY: offsets come from the layout, which was checked to fit the mapping when the
        // file was opened, with every region aligned for its type; the types are `repr(C)`
        // atomics (and the header's fields written once before the file was linked).
        unsafe { &*self.map.ptr(offset).cast::<T>() }
    }

    pub(crate) fn header(&self) -> &Header {
        self.at(0)
    }

    pub(crate) fn classes(&self) -> &[ClassLayout] {
        self.table.classes()
    }

    pub(crate) fn class(&self, id: usize) -> &ClassShm {
        let id = id.min(self.layout.n_classes - 1);
        self.at(self.layout.class_off + id * size_of::<ClassShm>())
    }

    pub(crate) fn shard(&self, i: usize) -> &ShardShm {
        self.at(self.layout.shard_off + (i % N_SHARDS) * size_of::<ShardShm>())
    }

    pub(crate) fn total_slots(&self) -> usize {
        N_SHARDS * self.layout.shard_slots
    }

    /// Slot `global` (shard * shard_slots + index).
    pub(crate) fn slot(&self, global: usize) -> &Slot {
        let global = global.min(self.total_slots() - 1);
        self.at(self.layout.slot_off + global * size_of::<Slot>())
    }

    pub(crate) fn desc(&self, i: u32) -> &Descriptor {
        let i = (i as usize).min(self.layout.n_chunks - 1);
        self.at(self.layout.desc_off + i * size_of::<Descriptor>())
    }

    /// The first byte of object `obj` of a zspage in chunk `desc` with objects of `size`
    /// bytes; `obj < objs_per_zspage` is the caller's check.
    pub(crate) fn object(&self, desc: u32, obj: u32, size: usize) -> *mut u8 {
        let desc = (desc as usize).min(self.layout.n_chunks - 1);
        let within = (obj as usize * size).min(CHUNK_BYTES - size);
        self.map.ptr(self.layout.data_off + desc * CHUNK_BYTES + within)
    }

    /// Give a zspage's pages back to the OS.
    pub(crate) fn punch_zspage(&self, desc: u32, pages: usize) {
        let desc = (desc as usize).min(self.layout.n_chunks - 1);
        self.map.punch_hole(self.layout.data_off + desc * CHUNK_BYTES, pages.min(CHUNK_PAGES) * PAGE_SIZE);
    }

    /// Give the pages of slots `from..to` (global numbers, page-aligned: multiples of
    /// [`MIN_SHARD_SLOTS`]) back to the OS.
    pub(crate) fn punch_slots(&self, from: usize, to: usize) {
        debug_assert!(from.is_multiple_of(MIN_SHARD_SLOTS) && to.is_multiple_of(MIN_SHARD_SLOTS));
        let (from, to) = (from.min(self.total_slots()), to.min(self.total_slots()));
        if from < to {
            self.map.punch_hole(self.layout.slot_off + from * size_of::<Slot>(), (to - from) * size_of::<Slot>());
        }
    }

    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.map.allocated_bytes()
    }

    /// Unmap now (close, once no call is in flight); the drop then does nothing.
    pub(crate) fn unmap(&self) {
        self.map.unmap();
    }
}
