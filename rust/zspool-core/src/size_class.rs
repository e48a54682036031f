//! One size class: its zspages, their fullness lists, and the handle table of its objects.
//!
//! Lock: `SizeClass::state` (the *class lock*) guards everything in [`ClassState`]: the
//! zspages and the bytes of every object in them, the fullness lists and the handle table.
//! Malloc, free, read and write of an object take only its class's lock; compaction takes it
//! in slices (see `compaction.rs`). The page provider's lock may be taken inside it; no other
//! pool lock is. Page frames are handed back to the OS only after the class lock is dropped.
//!
//! `obj_allocated` and `obj_used` are mirrored into atomics on every change so that
//! `can_compact` (the shrinker's count) reads them without the lock, as the kernel does.

use crate::activity::ActivityCounters;
use crate::class_table::ClassLayout;
use crate::compact_class::can_compact;
use crate::fullness::{FULLNESS_GROUPS, Fullness};
use crate::handle::{HandleTable, LOCATION_BITS, PackedLocation};
use crate::owned::{OWNED_TAG, ObjectOwner, OwnerWord};
use crate::sync::{AtomicUsize, MutexGuard, Ordering, WaitedMutex};
use crate::zspage::Zspage;

/// The zspage id field of a [`ClassSlot`]: a class with more zspages than this at once is full.
pub(crate) const ZSPAGE_ID_BITS: u32 = 23;
pub(crate) const MAX_ZSPAGE_ID: u32 = (1 << ZSPAGE_ID_BITS) - 1;
const SLOT_OBJ_BITS: u32 = 11;
const SLOT_SLACK_BITS: u32 = 13;
const _: () = assert!(ZSPAGE_ID_BITS + SLOT_OBJ_BITS + SLOT_SLACK_BITS == LOCATION_BITS);
// Every object index (at most 16 pages of 32-byte objects) fits.
const _: () = assert!(
    crate::class_table::MAX_CHAIN_LIMIT * crate::os_pages::PAGE_SIZE / crate::class_table::MIN_ALLOC_SIZE
        <= 1 << SLOT_OBJ_BITS
);
// Every slack fits: an object of 1..=size bytes leaves at most size - 1 of its class slot
// unused, an empty object (in the smallest class) MIN_ALLOC_SIZE.
const _: () = assert!(
    crate::class_table::MAX_CLASS_SIZE - 1 < 1 << SLOT_SLACK_BITS
        && crate::class_table::MIN_ALLOC_SIZE < 1 << SLOT_SLACK_BITS
);

/// Where a size class keeps an object, and its exact size (a class holds objects of any size
/// up to its slot size, and reads must stop at the object's end).
///
/// The size is kept as the *slack*, the bytes of the class slot the object leaves unused:
/// sizes run to 8192 (14 bits) but a slack is below 8192 (13 bits), so the entry stays 8 bytes
/// with a 23-bit zspage id. Whoever holds a slot knows its class size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClassSlot {
    pub zspage: u32,
    pub obj: u16,
    pub slack: u16,
}

impl ClassSlot {
    /// The slot for an object of `size <= class_size` bytes at (`zspage`, `obj`).
    pub(crate) fn new(zspage: u32, obj: u16, size: usize, class_size: usize) -> ClassSlot {
        let slack = class_size.checked_sub(size).and_then(|s| u16::try_from(s).ok());
        ClassSlot { zspage, obj, slack: slack.expect("an object fits its class") }
    }

    /// The object's exact size in bytes, in a class of `class_size`.
    pub(crate) fn size(self, class_size: usize) -> usize {
        class_size - usize::from(self.slack)
    }
}

impl PackedLocation for ClassSlot {
    fn pack(self) -> u64 {
        // A value that does not fit would silently name another object: refuse it loudly.
        // The class checks zspage ids against MAX_ZSPAGE_ID before it creates a zspage.
        assert!(
            self.zspage <= MAX_ZSPAGE_ID
                && u32::from(self.obj) < 1 << SLOT_OBJ_BITS
                && u32::from(self.slack) < 1 << SLOT_SLACK_BITS,
            "class slot out of range: {self:?}"
        );
        u64::from(self.slack)
            | (u64::from(self.obj) << SLOT_SLACK_BITS)
            | (u64::from(self.zspage) << (SLOT_SLACK_BITS + SLOT_OBJ_BITS))
    }

    fn unpack(bits: u64) -> ClassSlot {
        ClassSlot {
            slack: (bits & ((1 << SLOT_SLACK_BITS) - 1)) as u16,
            obj: ((bits >> SLOT_SLACK_BITS) & ((1 << SLOT_OBJ_BITS) - 1)) as u16,
            zspage: (bits >> (SLOT_SLACK_BITS + SLOT_OBJ_BITS)) as u32,
        }
    }
}

#[derive(Debug)]
pub(crate) struct SizeClass {
    pub(crate) layout: ClassLayout,
    state: WaitedMutex<ClassState>,
    obj_allocated: AtomicUsize,
    obj_used: AtomicUsize,
    /// Where the zspage records were at the last `publish`: only ever a prefetch hint (see
    /// [`SizeClass::prefetch_zspage`]), never dereferenced, so a stale value is harmless.
    records_hint: std::sync::atomic::AtomicPtr<Option<Zspage>>,
    pub(crate) activity: ActivityCounters,
}

impl SizeClass {
    pub(crate) fn new(layout: ClassLayout) -> SizeClass {
        SizeClass {
            layout,
            state: WaitedMutex::new(ClassState::new(layout)),
            obj_allocated: AtomicUsize::new(0),
            obj_used: AtomicUsize::new(0),
            records_hint: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            activity: ActivityCounters::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ClassState> {
        self.state.lock()
    }

    /// The class lock itself, for the fork hooks (`fork.rs`), which hold it across `fork()`.
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> &WaitedMutex<ClassState> {
        &self.state
    }

    /// Whether a thread is blocked on this class's lock right now.
    pub(crate) fn lock_is_contended(&self) -> bool {
        self.state.has_waiters()
    }

    /// Publish the counters of a locked state to the lock-free mirrors.
    pub(crate) fn publish(&self, state: &ClassState) {
        let records = state.zspages.as_ptr().cast_mut();
        if self.records_hint.load(std::sync::atomic::Ordering::Relaxed) != records {
            self.records_hint.store(records, std::sync::atomic::Ordering::Relaxed);
        }
        self.obj_allocated.store(state.obj_allocated, Ordering::Relaxed);
        self.obj_used.store(state.obj_used, Ordering::Relaxed);
    }

    /// Start loading zspage `id`'s record before the class lock is taken (a reader that knows
    /// the object's location from outside, `owned.rs`): its miss then overlaps the lock and
    /// the fork gate instead of following them. Only a hint: the address may be stale (the
    /// records moved since the last publish) and is never dereferenced.
    pub(crate) fn prefetch_zspage(&self, id: u32) {
        let records = self.records_hint.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `_mm_prefetch` is only a hint: it never dereferences the pointer, cannot
        // fault and has no effect the program can observe; `wrapping_add` makes no claim
        // that the address is in bounds.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(records.wrapping_add(id as usize).cast::<i8>().cast_const());
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (records, id);
    }

    /// Live objects, without the lock.
    pub(crate) fn objects(&self) -> usize {
        self.obj_used.load(Ordering::Relaxed)
    }

    /// The kernel's `zs_can_compact`: pages compaction could free in this class, without
    /// the lock. Wasted object slots, in whole zspages, times pages per zspage.
    pub(crate) fn can_compact(&self) -> usize {
        can_compact(&self.layout, self.obj_allocated.load(Ordering::Relaxed), self.obj_used.load(Ordering::Relaxed))
    }
}

/// Everything the class lock guards.
#[derive(Debug)]
pub(crate) struct ClassState {
    pub(crate) layout: ClassLayout,
    /// Zspages by id; `None` marks an id free for reuse (listed in `free_ids`).
    zspages: Vec<Option<Zspage>>,
    free_ids: Vec<u32>,
    /// Zspage ids per fullness group; the last element is the list head.
    groups: [Vec<u32>; FULLNESS_GROUPS],
    pub(crate) handles: HandleTable<ClassSlot>,
    /// The most zspages this class may hold at once: a handle-table entry has room for
    /// zspage ids up to `MAX_ZSPAGE_ID` (lowered in tests).
    max_zspages: usize,
    pub(crate) obj_allocated: usize,
    pub(crate) obj_used: usize,
    pub(crate) payload_bytes: u64,
}

impl ClassState {
    fn new(layout: ClassLayout) -> ClassState {
        ClassState {
            layout,
            zspages: Vec::new(),
            free_ids: Vec::new(),
            groups: Default::default(),
            handles: HandleTable::new(),
            max_zspages: MAX_ZSPAGE_ID as usize + 1,
            obj_allocated: 0,
            obj_used: 0,
            payload_bytes: 0,
        }
    }

    pub(crate) fn zspage(&self, id: u32) -> &Zspage {
        self.zspages[id as usize].as_ref().expect("live zspage id")
    }

    pub(crate) fn zspage_mut(&mut self, id: u32) -> &mut Zspage {
        self.zspages[id as usize].as_mut().expect("live zspage id")
    }

    pub(crate) fn zspage_exists(&self, id: u32) -> bool {
        matches!(self.zspages.get(id as usize), Some(Some(_)))
    }

    /// Zspage count in each fullness group.
    pub(crate) fn group_counts(&self) -> [usize; FULLNESS_GROUPS] {
        std::array::from_fn(|g| self.groups[g].len())
    }

    pub(crate) fn zspage_count(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }

    pub(crate) fn can_compact(&self) -> usize {
        can_compact(&self.layout, self.obj_allocated, self.obj_used)
    }

    /// The kernel's `find_get_zspage`: the head of the fullest non-full group.
    pub(crate) fn find_zspage_with_room(&self) -> Option<u32> {
        Fullness::with_room().rev().find_map(|g| self.groups[g.index()].last().copied())
    }

    /// Compaction's destination: the fullest non-full zspage other than `except`.
    pub(crate) fn fullest_with_room(&self, except: Option<u32>) -> Option<u32> {
        Fullness::partly_used().rev().find_map(|g| self.head_except(g, except))
    }

    /// Compaction's source: the emptiest non-empty, non-full zspage other than `except`.
    pub(crate) fn emptiest(&self, except: Option<u32>) -> Option<u32> {
        Fullness::partly_used().find_map(|g| self.head_except(g, except))
    }

    fn head_except(&self, group: Fullness, except: Option<u32>) -> Option<u32> {
        self.groups[group.index()].iter().rev().copied().find(|&id| Some(id) != except)
    }

    /// Whether one more zspage gets an id that fits a handle-table entry. Without it the
    /// class is full: `PoolFull`, never a truncated id.
    pub(crate) fn has_zspage_id(&self) -> bool {
        !self.free_ids.is_empty() || self.zspages.len() < self.max_zspages
    }

    #[cfg(test)]
    pub(crate) fn limit_zspages_for_test(&mut self, max_zspages: usize) {
        self.max_zspages = max_zspages;
    }

    /// Make room, fallibly, for everything adding one zspage (and later removing it) can
    /// grow: the zspage vector, the free-id stack, every fullness list (a zspage may move
    /// to any of them) and one handle-table entry. After this succeeds, `add_zspage`,
    /// `obj_malloc`, the fullness moves and `remove_zspage` allocate nothing, so running out
    /// of memory is a `PoolFull` error and never an abort.
    pub(crate) fn try_reserve_zspage(&mut self) -> Result<(), std::collections::TryReserveError> {
        let zspages = self.zspage_count() + 1;
        if self.free_ids.is_empty() {
            self.zspages.try_reserve(1)?;
        }
        self.free_ids.try_reserve(zspages.saturating_sub(self.free_ids.len()))?;
        for group in self.groups.iter_mut() {
            group.try_reserve(zspages.saturating_sub(group.len()))?;
        }
        self.handles.try_reserve_one()
    }

    /// Add a zspage built from fresh pages; it starts in the empty group. Call
    /// `has_zspage_id` and `try_reserve_zspage` first: then this allocates nothing.
    pub(crate) fn add_zspage(&mut self, zspage: Zspage) -> u32 {
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.zspages[id as usize] = Some(zspage);
                id
            }
            None => {
                self.zspages.push(Some(zspage));
                debug_assert!(self.zspages.len() <= self.max_zspages, "has_zspage_id was checked");
                u32::try_from(self.zspages.len() - 1).expect("zspage ids fit a handle-table entry")
            }
        };
        self.link(id, Fullness::EMPTY);
        self.obj_allocated += self.layout.objs_per_zspage;
        id
    }

    /// Allocate an object of `size` bytes in zspage `id` and record it in the handle table.
    /// Returns (table index, generation); `None` if the handle table is exhausted.
    pub(crate) fn obj_malloc(&mut self, id: u32, size: usize) -> Option<(u32, u32)> {
        let class_size = self.layout.size;
        let (index, generation) = self.handles.insert(ClassSlot::new(id, 0, size, class_size))?;
        let obj = self.zspage_mut(id).alloc_obj(index).expect("zspage chosen with room");
        self.handles.relocate(index, ClassSlot::new(id, obj, size, class_size));
        self.obj_used += 1;
        self.payload_bytes += size as u64;
        self.fix_fullness(id);
        Some((index, generation))
    }

    /// Allocate an object of `size` bytes in zspage `id` for record `owner` of the pool's
    /// object owner (`owned.rs`): no handle-table entry; the owner keeps the location.
    pub(crate) fn obj_malloc_owned(&mut self, id: u32, size: usize, owner: u32) -> ClassSlot {
        let obj = self.zspage_mut(id).alloc_obj(OWNED_TAG | owner).expect("zspage chosen with room");
        self.obj_used += 1;
        self.payload_bytes += size as u64;
        self.fix_fullness(id);
        ClassSlot::new(id, obj, size, self.layout.size)
    }

    /// Free object `obj` of zspage `id`, which held `size` bytes. If the zspage becomes empty
    /// it is unlinked and returned for the caller to release its pages after unlocking.
    pub(crate) fn obj_free(&mut self, id: u32, obj: u16, size: usize) -> Option<Zspage> {
        let class_size = self.layout.size;
        self.zspage_mut(id).free_obj(class_size, obj, size);
        self.obj_used -= 1;
        self.payload_bytes -= size as u64;
        self.fix_fullness(id);
        (self.zspage(id).inuse() == 0).then(|| self.remove_zspage(id))
    }

    /// Start loading what moving object `obj` of zspage `src`, whose owner word is `owner`,
    /// into zspage `dst` will touch: the object's bytes, its handle-table entry (an owned
    /// object's record is the owner's, read through the trait: not prefetched) and the
    /// destination's next free slot, unrelated cache misses. Compaction asks one object ahead,
    /// so they overlap the move before it.
    pub(crate) fn prefetch_migration(&self, src: u32, obj: u16, owner: u32, dst: u32) {
        let class_size = self.layout.size;
        self.zspage(src).prefetch_object(class_size, obj, class_size);
        self.zspage(dst).prefetch_free_slot(class_size);
        if let OwnerWord::Table(index) = OwnerWord::decode(owner) {
            self.handles.prefetch(index);
        }
    }

    /// Move the object at (`src`, `obj`), whose owner word is `owner`, into zspage `dst`,
    /// and point its handle-table entry, or its record in the pool's `outside` owner
    /// (`owned.rs`), at the new place. Returns the bytes moved. The object's bytes are copied
    /// and the entry or record rewritten under the class lock, so no reader can see the
    /// object half-moved. Once it has moved what it will between them, and before it drops
    /// the lock, the caller re-lists `src` and `dst` ([`Self::fix_fullness`]: their groups
    /// matter only to the next choice of a pair, not per object) and, unless `src` is now
    /// empty and goes back to the OS whole, zeroes the slots moved out of it
    /// ([`Self::zero_moved`]: the copy left their bytes, as the kernel's migration does).
    pub(crate) fn migrate_obj(
        &mut self,
        src: u32,
        obj: u16,
        owner: u32,
        dst: u32,
        outside: Option<&dyn ObjectOwner>,
    ) -> usize {
        let class_size = self.layout.size;
        let (slot, record) = match OwnerWord::decode(owner) {
            OwnerWord::Table(index) => (self.handles.location_at(index), None),
            OwnerWord::Owned(id) => {
                let outside = outside.expect("owned objects only in a pool with an object owner");
                let at = outside.location(id);
                (at.class_slot().expect("an owned object in a class has a class location"), Some((outside, id, at)))
            }
        };
        debug_assert_eq!((slot.zspage, slot.obj), (src, obj), "the owner records where the object is");
        let size = slot.size(class_size);
        let [Some(from), Some(to)] = self.zspages.get_disjoint_mut([src as usize, dst as usize]).expect("src != dst")
        else {
            unreachable!("compaction picked a dead zspage")
        };
        let new_obj = to.alloc_obj(owner).expect("destination chosen with room");
        from.copy_obj_to(class_size, obj, size, to, new_obj);
        from.free_obj_unzeroed(obj);
        match record {
            None => self.handles.relocate(owner, ClassSlot { zspage: dst, obj: new_obj, ..slot }),
            Some((outside, id, at)) => outside.set_location(id, at.moved(dst, new_obj)),
        }
        size
    }

    /// Zero the slots of zspage `id` that [`Self::migrate_obj`] moved objects out of, each
    /// `(object index, size)`, restoring "every byte of a free object is zero".
    pub(crate) fn zero_moved(&mut self, id: u32, moved: &[(u16, usize)]) {
        let class_size = self.layout.size;
        let zspage = self.zspage_mut(id);
        for &(obj, size) in moved {
            zspage.zero(class_size, obj, size);
        }
    }

    /// Unlink a zspage whose objects are all gone and hand it back, for the caller to
    /// release its pages (and drop its metadata) after unlocking.
    pub(crate) fn remove_zspage(&mut self, id: u32) -> Zspage {
        let zspage = self.zspages[id as usize].take().expect("live zspage id");
        debug_assert_eq!(zspage.inuse(), 0);
        self.unlink(id, zspage.group(), zspage.group_pos());
        self.free_ids.push(id);
        self.obj_allocated -= self.layout.objs_per_zspage;
        zspage
    }

    /// Empty the class for pool close: every zspage, whatever it holds.
    pub(crate) fn drain_all(&mut self) -> Vec<Zspage> {
        let pages = self.zspages.drain(..).flatten().collect();
        self.free_ids.clear();
        self.groups = Default::default();
        self.handles.clear();
        self.obj_allocated = 0;
        self.obj_used = 0;
        self.payload_bytes = 0;
        pages
    }

    /// Re-list zspage `id` if its fullness group changed (`fix_fullness` in the kernel).
    pub(crate) fn fix_fullness(&mut self, id: u32) {
        let zspage = self.zspage(id);
        let (old, pos) = (zspage.group(), zspage.group_pos());
        let new = Fullness::of(zspage.inuse(), self.layout.objs_per_zspage);
        if new != old {
            self.unlink(id, old, pos);
            self.link(id, new);
        }
    }

    fn link(&mut self, id: u32, group: Fullness) {
        let list = &mut self.groups[group.index()];
        list.push(id);
        let pos = list.len() - 1;
        self.zspage_mut(id).set_group(group, pos);
    }

    fn unlink(&mut self, id: u32, group: Fullness, pos: usize) {
        let list = &mut self.groups[group.index()];
        debug_assert_eq!(list[pos], id);
        list.swap_remove(pos);
        if let Some(&moved) = list.get(pos) {
            // The former tail now sits at `pos`; its zspage may already be detached (taken)
            // when we are removing it ourselves, in which case `moved != id` still holds.
            if let Some(Some(z)) = self.zspages.get_mut(moved as usize) {
                z.set_group_pos(pos);
            }
        }
    }

    /// Heap bytes of metadata (handle table and zspage bookkeeping), for the stats.
    pub(crate) fn metadata_bytes(&self) -> usize {
        // Every id slot costs its `Option<Zspage>`; only live zspages own a metadata
        // allocation (page list and owner words).
        let per_live_zspage = Zspage::meta_bytes(self.layout.pages_per_zspage, self.layout.objs_per_zspage);
        let lists: usize = self.groups.iter().map(Vec::capacity).sum::<usize>() + self.free_ids.capacity();
        self.handles.heap_bytes()
            + self.zspages.capacity() * std::mem::size_of::<Option<Zspage>>()
            + lists * std::mem::size_of::<u32>()
            + self.zspage_count() * per_live_zspage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_slots_round_trip_at_their_limits() {
        for slot in [
            ClassSlot { zspage: 0, obj: 0, slack: 0 },
            ClassSlot { zspage: MAX_ZSPAGE_ID, obj: 2047, slack: 8191 },
            ClassSlot { zspage: 0x55_5555, obj: 0x2AA, slack: 0x1555 },
        ] {
            assert!(slot.pack() < 1 << LOCATION_BITS);
            assert_eq!(ClassSlot::unpack(slot.pack()), slot);
        }
    }

    #[test]
    fn every_size_of_every_class_round_trips_through_a_slot() {
        use crate::class_table::{ClassTable, MAX_CHAIN_LIMIT, MAX_CLASS_SIZE};
        for chain in [1, 8, MAX_CHAIN_LIMIT] {
            let table = ClassTable::new(chain);
            for size in 0..=MAX_CLASS_SIZE {
                let class_size = table.classes()[table.class_for(size)].size;
                let slot = ClassSlot::new(MAX_ZSPAGE_ID, 2047, size, class_size);
                assert_eq!(ClassSlot::unpack(slot.pack()).size(class_size), size, "size {size}, chain {chain}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "class slot out of range")]
    fn a_zspage_id_past_the_field_is_refused_not_truncated() {
        let _ = ClassSlot { zspage: MAX_ZSPAGE_ID + 1, obj: 0, slack: 1 }.pack();
    }
}
