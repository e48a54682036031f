//! The index's slots: one 20-byte [`Slot`] per entry, at addresses that never move.
//!
//! A slot holds its entry's *location* in the pool (not a handle: see the core's `owned.rs`),
//! the key's 30-bit hash with the live and SIEVE `visited` bits, and the eviction queue's two
//! links. Compaction rewrites a slot's location when it moves the entry's object, with the
//! object's class lock held and *without* the cache mutex; everything else about a slot is
//! read and written under the cache mutex. Hence:
//!
//! - every field is an atomic (`Relaxed`: the cache mutex, or for the location the class
//!   lock, orders the accesses; the atomics only make the concurrent access defined), and
//!   slots are only ever reached through shared references;
//! - the storage is chunked and never reallocated while the pool may write it: chunk `c`
//!   holds `FIRST_CHUNK << c` slots and is allocated once, when the first of its ids is
//!   handed out, so growing the index never moves a slot (a `Vec` would, under a running
//!   compaction). The chunk directory is a fixed array of pointers. Chunks are freed only
//!   when the last owner of [`Slots`] drops it (the cache and its pool), or by
//!   [`Slots::release_chunks`] once no object names a slot.
//!
//! The location is two `u32` halves (an `AtomicU64` would pad the slot to 24 bytes). The
//! halves need not be read together atomically: the cache reads a whole location only under
//! the object's class lock (the pool's `read_owned` protocol), where compaction cannot write
//! it; unlocked, it reads only the high half, whose class and version bits a move keeps.

use std::alloc::Layout;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering::Relaxed};

use zspool_core::{Location, ObjectOwner};

/// No slot: the end of a queue list, an empty hand, a missing candidate.
pub(crate) const NIL: u32 = u32::MAX;

const LIVE: u32 = 1 << 31;
const VISITED: u32 = 1 << 30;
/// The bits of a key hash the index keeps (`cache.rs` hashes keys to this width).
pub(crate) const HASH_MASK: u32 = VISITED - 1;

/// Slots in chunk 0 (a power of two); chunk `c` holds `FIRST_CHUNK << c`.
const FIRST_SHIFT: u32 = 6;
const FIRST_CHUNK: usize = 1 << FIRST_SHIFT;
/// Chunks enough for every owner id the pool accepts (`MAX_OWNER_ID`, 2^30 - 1).
const CHUNKS: usize = 25;
const _: () = assert!((FIRST_CHUNK << CHUNKS) - FIRST_CHUNK > zspool_core::MAX_OWNER_ID as usize);

/// One entry of the index: 20 bytes, 4-byte aligned; all zeros is a dead slot.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The entry's location in the pool (`zspool_core::Location`); its top 8 bits (the
    /// owner's, which the pool keeps) are the slot's version, bumped for each new entry.
    loc_lo: AtomicU32,
    loc_hi: AtomicU32,
    /// LIVE | VISITED | the key's 30-bit hash.
    hash_flags: AtomicU32,
    /// Toward newer entries (the queue's head).
    newer: AtomicU32,
    /// Toward older entries (the queue's tail); the free-list link of a dead slot.
    older: AtomicU32,
}

/// The version bits in the location's high half.
const VERSION_SHIFT: u32 = 24;

impl Slot {
    /// The entry's location (current only under its class lock, see the module docs).
    pub(crate) fn location(&self) -> Location {
        Location(u64::from(self.loc_lo.load(Relaxed)) | u64::from(self.loc_hi.load(Relaxed)) << 32)
    }

    /// Record a new location, keeping the slot's version.
    pub(crate) fn set_location(&self, to: Location) {
        let to = to.with_owner_bits(self.version());
        self.loc_lo.store(to.0 as u32, Relaxed);
        self.loc_hi.store((to.0 >> 32) as u32, Relaxed);
    }

    /// Which entry of this slot this is: bumped for every entry it holds (8 bits).
    pub(crate) fn version(&self) -> u8 {
        (self.loc_hi.load(Relaxed) >> VERSION_SHIFT) as u8
    }

    /// Make this slot live for a new entry of `hash`, not yet queued and with no object:
    /// a new version, no location, no links.
    pub(crate) fn start(&self, hash: u32) {
        debug_assert_eq!(hash & !HASH_MASK, 0);
        let version = self.version().wrapping_add(1);
        self.loc_lo.store(0, Relaxed);
        self.loc_hi.store(u32::from(version) << VERSION_SHIFT, Relaxed);
        self.hash_flags.store(LIVE | hash, Relaxed);
        self.newer.store(NIL, Relaxed);
        self.older.store(NIL, Relaxed);
    }

    /// A new version for a slot that is about to hold a new entry's object (an overwrite):
    /// call while no object names the slot, so compaction cannot write it meanwhile.
    pub(crate) fn renew(&self) {
        let hi = self.loc_hi.load(Relaxed);
        let version = u32::from(self.version().wrapping_add(1));
        self.loc_hi.store(hi & !(0xFF << VERSION_SHIFT) | version << VERSION_SHIFT, Relaxed);
    }

    /// Mark the slot dead (keeping its version), with `next_free` as its free-list link.
    pub(crate) fn kill(&self, next_free: u32) {
        self.hash_flags.store(0, Relaxed);
        self.newer.store(NIL, Relaxed);
        self.older.store(next_free, Relaxed);
    }

    pub(crate) fn hash(&self) -> u32 {
        self.hash_flags.load(Relaxed) & HASH_MASK
    }

    pub(crate) fn visited(&self) -> bool {
        self.hash_flags.load(Relaxed) & VISITED != 0
    }

    pub(crate) fn set_visited(&self, on: bool) {
        let flags = self.hash_flags.load(Relaxed);
        self.hash_flags.store(if on { flags | VISITED } else { flags & !VISITED }, Relaxed);
    }

    pub(crate) fn is_live(&self) -> bool {
        self.hash_flags.load(Relaxed) & LIVE != 0
    }

    pub(crate) fn newer(&self) -> u32 {
        self.newer.load(Relaxed)
    }

    pub(crate) fn older(&self) -> u32 {
        self.older.load(Relaxed)
    }

    pub(crate) fn set_newer(&self, id: u32) {
        self.newer.store(id, Relaxed);
    }

    pub(crate) fn set_older(&self, id: u32) {
        self.older.store(id, Relaxed);
    }
}

/// The slot storage: chunks at stable addresses (see the module docs). Shared between the
/// cache's index (which hands out ids, under the cache mutex) and its pool (which rewrites
/// locations, as the pool's [`ObjectOwner`]).
#[derive(Debug)]
pub(crate) struct Slots {
    chunks: [AtomicPtr<Slot>; CHUNKS],
}

/// The chunk and the position in it of slot `id`.
#[inline]
fn chunk_of(id: u32) -> (usize, usize) {
    let n = id as usize + FIRST_CHUNK;
    let top = (usize::BITS - 1 - n.leading_zeros()) as usize;
    (top - FIRST_SHIFT as usize, n - (1 << top))
}

fn chunk_layout(chunk: usize) -> Layout {
    Layout::array::<Slot>(FIRST_CHUNK << chunk).expect("chunks fit the address space")
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots { chunks: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())) }
    }

    /// Slot `id`, or `None` if its chunk was never allocated.
    #[inline]
    pub(crate) fn get(&self, id: u32) -> Option<&Slot> {
        let (chunk, at) = chunk_of(id);
        let base = self.chunks.get(chunk)?.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: a non-null chunk pointer came from `ensure`, which allocated (zeroed: a
        // valid dead Slot) `FIRST_CHUNK << chunk` slots; `at` is below that (`chunk_of`).
        // Chunks are freed only in `release_chunks` (whose caller vouches that nobody holds
        // a slot) and in drop, so the allocation outlives this `&self` borrow. All of Slot's
        // fields are atomics, so shared references are all there ever are.
        (!base.is_null()).then(|| unsafe { &*base.add(at) })
    }

    /// Slot `id`, whose chunk exists (every id the index handed out).
    #[inline]
    pub(crate) fn slot(&self, id: u32) -> &Slot {
        self.get(id).expect("a slot id the index handed out")
    }

    /// Make sure slot `id` (at most `MAX_OWNER_ID`) has its chunk. Called under the cache
    /// mutex (the compare-exchange would still keep a racing second caller sound). A heap
    /// that refuses the chunk aborts the process, as the `Vec` the slots were before did.
    pub(crate) fn ensure(&self, id: u32) {
        let (chunk, _) = chunk_of(id);
        let cell = &self.chunks[chunk];
        if !cell.load(std::sync::atomic::Ordering::Acquire).is_null() {
            return;
        }
        let layout = chunk_layout(chunk);
        // SAFETY: the layout is non-zero-sized; zeroed memory is a valid array of dead
        // Slots (all-zero atomics).
        let fresh = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Slot>();
        if fresh.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        let won = cell.compare_exchange(ptr::null_mut(), fresh, std::sync::atomic::Ordering::Release, Relaxed);
        if won.is_err() {
            // SAFETY: `fresh` was allocated just above with this layout and never shared.
            unsafe { std::alloc::dealloc(fresh.cast(), layout) };
        }
    }

    /// Heap bytes of the allocated chunks.
    pub(crate) fn heap_bytes(&self) -> usize {
        (0..CHUNKS).filter(|&c| !self.chunks[c].load(Relaxed).is_null()).map(|c| chunk_layout(c).size()).sum()
    }

    /// Free every chunk (the index was cleared and all its objects freed).
    ///
    /// # Safety
    /// No pool object may be owned by any slot (the pool would write its location into
    /// freed memory when compaction moved it), and no reference to a slot may be alive.
    pub(crate) unsafe fn release_chunks(&self) {
        for (c, cell) in self.chunks.iter().enumerate() {
            let old = cell.swap(ptr::null_mut(), std::sync::atomic::Ordering::AcqRel);
            if !old.is_null() {
                // SAFETY: allocated by `ensure` with this layout; the caller vouches that
                // nobody reaches it any more, and the swap made it unreachable from here.
                unsafe { std::alloc::dealloc(old.cast(), chunk_layout(c)) };
            }
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the last owner, the pool among them, is gone.
        unsafe { self.release_chunks() };
    }
}

/// The pool's view of the slots: compaction reads and rewrites an entry's location here.
impl ObjectOwner for Slots {
    fn location(&self, id: u32) -> Location {
        self.slot(id).location()
    }

    fn set_location(&self, id: u32, to: Location) {
        self.slot(id).set_location(to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_20_bytes() {
        assert_eq!(size_of::<Slot>(), 20);
    }

    #[test]
    fn chunks_double_and_cover_every_id() {
        assert_eq!(chunk_of(0), (0, 0));
        assert_eq!(chunk_of(63), (0, 63));
        assert_eq!(chunk_of(64), (1, 0));
        assert_eq!(chunk_of(191), (1, 127));
        assert_eq!(chunk_of(192), (2, 0));
        let (last, at) = chunk_of(zspool_core::MAX_OWNER_ID);
        assert!(last < CHUNKS && at < FIRST_CHUNK << last);
    }

    #[test]
    fn slots_stay_put_as_chunks_are_added() {
        let slots = Slots::new();
        assert!(slots.get(0).is_none());
        slots.ensure(0);
        let first: *const Slot = slots.slot(0);
        slots.slot(0).start(5);
        for id in (0..10_000).step_by(50) {
            slots.ensure(id);
        }
        assert!(std::ptr::eq(first, slots.slot(0)), "growth never moves a slot");
        assert_eq!(slots.slot(0).hash(), 5);
        assert_eq!(slots.heap_bytes(), (FIRST_CHUNK << 8) * 20 - FIRST_CHUNK * 20);
    }

    #[test]
    fn a_location_keeps_the_version_and_a_new_entry_bumps_it() {
        let slot = Slot::default();
        slot.start(1);
        assert_eq!(slot.version(), 1);
        slot.set_location(Location(0x00AB_CDEF_0123_4567).with_owner_bits(0x77));
        assert_eq!(slot.location().0 & 0x00FF_FFFF_FFFF_FFFF, 0x00AB_CDEF_0123_4567);
        assert_eq!(slot.version(), 1, "the pool's bits never change the version");
        slot.kill(NIL);
        slot.start(2);
        assert_eq!(slot.version(), 2);
        assert_eq!(slot.location().0 & 0x00FF_FFFF_FFFF_FFFF, 0, "a new entry has no location yet");
    }
}
