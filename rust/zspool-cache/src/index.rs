//! The index: where in the pool each key's entry is, in flat arrays and no heap object per
//! entry.
//!
//! - `slots`: one 20-byte [`Slot`] per entry (`slots.rs`: the entry's location in the pool,
//!   30-bit key hash and two flag bits, and the two links of the eviction queue), reused
//!   through a free list;
//! - `table`: open addressing with linear probing, one tag byte and one 4-byte slot number
//!   side by side per bucket (5 bytes), at most 85 % full. Its size is not a power of two: a hash is mapped
//!   to its home bucket by a multiply-shift (Lemire's reduction), so the table grows by 1.5x
//!   and sits between 57 % and 85 % full instead of hashbrown's 44-87 %. Deletion shifts the
//!   following entries back (no tombstones), so probes stay short after churn.
//!
//! A lookup hashes the key, probes the table, skips buckets whose tag (7 more hash bits)
//! differs, then slots whose 30-bit hash differs, and the caller confirms a candidate by
//! comparing the key bytes stored in the pool object (`entry.rs`), so a hash collision can
//! never return another key's value. The table is rebuilt from the stored hashes, without
//! touching the pool. Compaction touches only the slots' locations (`slots.rs`), never the
//! table, the hashes or the links.
//!
//! Batches ([`Index::find_many`]) walk their keys in passes, prefetching each key's bucket
//! before any is probed and each candidate's slot before any is checked, so the cache misses
//! of different keys overlap instead of following one another.
//!
//! Guarded by the cache mutex (`cache.rs`), like everything in `Inner`.

pub(crate) use crate::slots::{HASH_MASK, NIL};
use crate::slots::{Slot, Slots};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Index {
    /// The slots, shared with the pool, which rewrites their locations (`slots.rs`).
    pub slots: Arc<Slots>,
    table: Table,
    free_head: Option<u32>,
    /// Slot ids handed out so far: every id below has a chunk.
    fresh: u32,
    live: usize,
}

impl Index {
    pub(crate) fn new(slots: Arc<Slots>) -> Index {
        Index { slots, table: Table::default(), free_head: None, fresh: 0, live: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Slot `id` (one the index handed out).
    #[inline]
    pub(crate) fn slot(&self, id: u32) -> &Slot {
        self.slots.slot(id)
    }

    /// Slot `id` if it holds a live entry.
    pub(crate) fn live_slot(&self, id: u32) -> Option<&Slot> {
        (id < self.fresh).then(|| self.slot(id)).filter(|slot| slot.is_live())
    }

    /// Slots whose stored hash is `hash`, for the caller to confirm by key bytes; the first
    /// slot for which `confirm` returns true is returned.
    pub(crate) fn find(&self, hash: u32, mut confirm: impl FnMut(u32, &Slot) -> bool) -> Option<u32> {
        let slots = &*self.slots;
        self.table.find(hash, |id| {
            let slot = slots.slot(id);
            slot.hash() == hash && confirm(id, slot)
        })
    }

    /// For each of `hashes`, the first slot with that hash (or [`NIL`]), into `out`; the
    /// caller confirms each by key bytes, as after [`Index::find`]. The same answers as one
    /// `find` per hash, with the memory accesses of different hashes overlapped: every home
    /// bucket is prefetched, then every table probed and each candidate's slot prefetched,
    /// then the candidates' hashes checked.
    pub(crate) fn find_many(&self, hashes: &[u32], out: &mut Vec<u32>) {
        out.clear();
        for &hash in hashes {
            self.table.prefetch(hash);
        }
        for &hash in hashes {
            let id = self.table.find(hash, |_| true).unwrap_or(NIL);
            if id != NIL {
                prefetch(std::ptr::from_ref(self.slot(id)).cast());
            }
            out.push(id);
        }
        for (id, &hash) in out.iter_mut().zip(hashes) {
            if *id != NIL && self.slot(*id).hash() != hash {
                // Another key's tag came first in the probe (about 1 % of keys): probe again,
                // this time checking every tag match's hash.
                *id = self.find(hash, |_, _| true).unwrap_or(NIL);
            }
        }
    }

    /// Hint the CPU to load what a lookup of `hash` will read first (a batch of stores).
    pub(crate) fn prefetch(&self, hash: u32) {
        self.table.prefetch(hash);
    }

    /// A slot for a new entry of `hash`: live, with a new version, no object yet, in
    /// neither the table nor the queue. Store its object (the pool publishes the location
    /// into it), then [`Index::link`] it, or [`Index::release`] it if the store failed.
    pub(crate) fn alloc(&mut self, hash: u32) -> u32 {
        let id = match self.free_head {
            Some(id) => {
                let next = self.slot(id).older();
                self.free_head = (next != NIL).then_some(next);
                id
            }
            None => {
                let id = self.fresh;
                assert!(id <= zspool_core::MAX_OWNER_ID, "fewer than 2**30 entries");
                self.slots.ensure(id);
                self.fresh += 1;
                id
            }
        };
        self.slot(id).start(hash);
        id
    }

    /// Put the new slot `id` (from [`Index::alloc`]) in the table.
    pub(crate) fn link(&mut self, id: u32) {
        let hash = self.slot(id).hash();
        self.table.insert(hash, id, &self.slots);
        self.live += 1;
    }

    /// Give back a slot from [`Index::alloc`] that was never linked and names no object (its
    /// store failed, or its object was handed to another slot).
    pub(crate) fn release(&mut self, id: u32) {
        self.slot(id).kill(self.free_head.unwrap_or(NIL));
        self.free_head = Some(id);
    }

    /// Take a slot out of the table and put it on the free list (unlink it from the queue
    /// and free its object first).
    pub(crate) fn remove(&mut self, id: u32) {
        let hash = self.slot(id).hash();
        debug_assert!(self.slot(id).is_live());
        self.table.remove(hash, id, &self.slots);
        self.release(id);
        self.live -= 1;
    }

    /// Forget every entry (their objects must be gone from the index's view: freed, or the
    /// pool closing). The slot chunks stay (see [`Index::release_memory`]).
    pub(crate) fn clear(&mut self) {
        *self = Index::new(self.slots.clone());
    }

    /// [`Index::clear`], and give the slots' memory back.
    ///
    /// # Safety
    /// No pool object may be owned by a slot any more (every entry's object freed).
    pub(crate) unsafe fn clear_and_release(&mut self) {
        self.clear();
        // SAFETY: the caller vouches that no object names a slot; `&mut self` holds the
        // index, so no slot reference of ours is alive.
        unsafe { self.slots.release_chunks() };
    }

    /// Live slot ids, in slot order.
    pub(crate) fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.fresh).filter(|&id| self.slot(id).is_live())
    }

    /// Heap bytes held by the index (slots and table, by capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.heap_bytes() + self.table.heap_bytes()
    }
}

/// Linear probing over [`Bucket`]s (a tag of 0: empty).
#[derive(Debug, Default)]
struct Table {
    buckets: Vec<Bucket>,
    items: usize,
}

/// One bucket, 5 bytes: the tag and the slot number side by side, so that a probe's first
/// read brings both (two arrays took two cache misses, in parallel but each a miss).
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Bucket {
    /// 0: empty; else 7 bits of the slot's hash with the top bit set.
    tag: u8,
    /// The slot number, little-endian bytes (no alignment, so 5 bytes a bucket).
    id: [u8; 4],
}

impl Bucket {
    const EMPTY: Bucket = Bucket { tag: 0, id: [0; 4] };

    fn new(tag: u8, id: u32) -> Bucket {
        Bucket { tag, id: id.to_le_bytes() }
    }

    fn id(self) -> u32 {
        u32::from_le_bytes(self.id)
    }
}

/// The smallest table, in buckets.
const MIN_BUCKETS: usize = 16;
/// Grow when an insert would pass 85 % full (17/20); after growing by 1.5x it is 57 % full.
const MAX_LOAD: (usize, usize) = (17, 20);
/// Shrink when a removal leaves it under 20 % full (1/5), back to about 57 %.
const MIN_LOAD: (usize, usize) = (1, 5);

/// A 30-bit key hash spread over 64 bits: the high half picks the home bucket, bits 25..32
/// the tag. (The key hash is already a keyed SipHash; this only spreads it.)
fn mix(hash: u32) -> u64 {
    (u64::from(hash) | (u64::from(hash) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn tag(mixed: u64) -> u8 {
    ((mixed >> 25) as u8) | 0x80
}

/// Whether `x` lies in the cyclic bucket range (`from`, `to`].
fn cyclic_between(x: usize, from: usize, to: usize) -> bool {
    if from <= to { from < x && x <= to } else { from < x || x <= to }
}

impl Table {
    fn buckets(&self) -> usize {
        self.buckets.len()
    }

    fn home(&self, mixed: u64) -> usize {
        (((mixed >> 32) * self.buckets() as u64) >> 32) as usize
    }

    fn next(&self, bucket: usize) -> usize {
        if bucket + 1 == self.buckets() { 0 } else { bucket + 1 }
    }

    fn prefetch(&self, hash: u32) {
        if self.items > 0 {
            let home = self.home(mix(hash));
            prefetch(self.buckets[home..].as_ptr().cast());
        }
    }

    /// Probe for `hash`: the first slot number with a matching tag for which `f` is true.
    fn find(&self, hash: u32, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.items == 0 {
            return None;
        }
        let mixed = mix(hash);
        let want = tag(mixed);
        let mut b = self.home(mixed);
        // Ends: the table is never full, so an empty bucket lies ahead.
        loop {
            let bucket = self.buckets[b];
            match bucket.tag {
                0 => return None,
                t if t == want && f(bucket.id()) => return Some(bucket.id()),
                _ => b = self.next(b),
            }
        }
    }

    /// Put slot `id` (whose hash is `hash`; not in the table yet) in its bucket. `slots`
    /// gives every other entry's hash, for rebuilding.
    fn insert(&mut self, hash: u32, id: u32, slots: &Slots) {
        if (self.items + 1) * MAX_LOAD.1 > self.buckets() * MAX_LOAD.0 {
            self.rebuild((self.buckets() * 3 / 2).max(MIN_BUCKETS), slots);
        }
        self.place(hash, id);
        self.items += 1;
    }

    fn place(&mut self, hash: u32, id: u32) {
        let mixed = mix(hash);
        let mut b = self.home(mixed);
        while self.buckets[b].tag != 0 {
            b = self.next(b);
        }
        self.buckets[b] = Bucket::new(tag(mixed), id);
    }

    /// The bucket holding slot `id`, whose hash is `hash`.
    fn bucket_of(&self, hash: u32, id: u32) -> usize {
        let mut b = self.home(mix(hash));
        while self.buckets[b].id() != id || self.buckets[b].tag == 0 {
            assert_ne!(self.buckets[b].tag, 0, "a live slot is always in the table");
            b = self.next(b);
        }
        b
    }

    /// Take slot `id` (hash `hash`, in the table) out, shifting later entries of its probe
    /// run back so that no probe ever stops early at the gap.
    fn remove(&mut self, hash: u32, id: u32, slots: &Slots) {
        let mut hole = self.bucket_of(hash, id);
        let mut b = self.next(hole);
        while self.buckets[b].tag != 0 {
            let home = self.home(mix(slots.slot(self.buckets[b].id()).hash()));
            // The entry at `b` may fill the hole unless its home lies after the hole (then
            // moving it before its home would hide it from its own probes).
            if !cyclic_between(home, hole, b) {
                self.buckets[hole] = self.buckets[b];
                hole = b;
            }
            b = self.next(b);
        }
        self.buckets[hole] = Bucket::EMPTY;
        self.items -= 1;
        if self.buckets() > MIN_BUCKETS && self.items * MIN_LOAD.1 < self.buckets() * MIN_LOAD.0 {
            // About 57 % full again: items / (0.85 / 1.5) buckets.
            let target = self.items * MAX_LOAD.1 * 3 / (MAX_LOAD.0 * 2) + 1;
            self.rebuild(target.max(MIN_BUCKETS), slots);
        }
    }

    /// Re-place every entry in a table of `buckets` buckets, from the slots' stored hashes.
    fn rebuild(&mut self, buckets: usize, slots: &Slots) {
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::EMPTY; buckets]);
        for bucket in old {
            if bucket.tag != 0 {
                self.place(slots.slot(bucket.id()).hash(), bucket.id());
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
    }
}

/// Hint the CPU to start loading the cache line at `ptr`; never reads or faults.
fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is only a hint: it never dereferences the pointer, cannot fault
    // and has no effect the program can observe; every caller passes a pointer into a live
    // allocation anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An empty index on its own slots.
    pub(crate) fn index() -> Index {
        Index::new(Arc::new(Slots::new()))
    }

    /// A new linked slot whose location is `tag` (standing in for a stored object).
    pub(crate) fn insert(index: &mut Index, tag: u64, hash: u32) -> u32 {
        let id = index.alloc(hash);
        index.slot(id).set_location(zspool_core::Location(tag));
        index.link(id);
        id
    }

    /// The location bits a test stored, without the slot's version.
    fn tag_of(slot: &Slot) -> u64 {
        slot.location().with_owner_bits(0).0
    }

    #[test]
    fn insert_find_remove_reuse() {
        let mut index = index();
        let a = insert(&mut index, 100, 7);
        let b = insert(&mut index, 200, 7); // same hash: both found, told apart by `confirm`
        assert_eq!(index.find(7, |_, s| tag_of(s) == 200), Some(b));
        assert_eq!(index.find(7, |_, s| tag_of(s) == 100), Some(a));
        assert_eq!(index.find(8, |_, _| true), None);
        index.remove(a);
        assert_eq!(index.find(7, |_, s| tag_of(s) == 100), None);
        assert_eq!(index.len(), 1);
        let c = insert(&mut index, 300, 9);
        assert_eq!(c, a, "freed slots are reused");
        for i in 0..10_000u32 {
            insert(&mut index, u64::from(i) + 1000, i.wrapping_mul(2_654_435_761) & HASH_MASK);
        }
        assert_eq!(index.find(9, |_, s| tag_of(s) == 300), Some(c), "survives rebuilding");
    }

    /// The table against a model (a std HashMap from slot to hash), through growth, random
    /// removals (backward shifts across the wrap-around), shrinking and reuse; colliding
    /// hashes are frequent on purpose (a 9-bit hash space).
    #[test]
    fn table_agrees_with_a_model_under_churn() {
        use std::collections::HashMap;
        let mut index = index();
        let mut model: HashMap<u32, (u32, u64)> = HashMap::new();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..60_000u64 {
            let r = next();
            let grow_phase = (step / 15_000) % 2 == 0;
            if model.is_empty() || (r % 3 != 0) == grow_phase {
                let hash = (r >> 20) as u32 & 0x1FF;
                let id = insert(&mut index, step, hash);
                model.insert(id, (hash, step));
            } else {
                let victim = *model.keys().nth((r >> 8) as usize % model.len()).unwrap();
                index.remove(victim);
                model.remove(&victim);
            }
            if step % 997 == 0 {
                for (&id, &(hash, handle)) in &model {
                    assert_eq!(index.find(hash, |_, s| tag_of(s) == handle), Some(id));
                }
                let hashes: Vec<u32> = model.values().map(|&(h, _)| h).chain([0x3FFF_FFFF]).collect();
                let mut out = Vec::new();
                index.find_many(&hashes, &mut out);
                for (&id, &hash) in out.iter().zip(&hashes) {
                    assert_eq!(id, index.find(hash, |_, _| true).unwrap_or(NIL), "find_many == find");
                }
            }
            assert_eq!(index.len(), model.len());
            let t = &index.table;
            assert!(t.items * MAX_LOAD.1 <= t.buckets() * MAX_LOAD.0 || t.buckets() == 0);
        }
        while let Some(&id) = model.keys().next() {
            index.remove(id);
            model.remove(&id);
        }
        assert_eq!(index.table.buckets(), MIN_BUCKETS, "shrinks back after mass deletes");
    }
}
