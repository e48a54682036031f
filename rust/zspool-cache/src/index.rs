//! The index: which pool handle holds which key, in flat arrays and no heap object per entry.
//!
//! - `slots`: one 20-byte [`Slot`] per entry (pool handle, 30-bit key hash and two flag bits,
//!   and the two links of the eviction queue), reused through a free list;
//! - `table`: open addressing with linear probing, one tag byte and one 4-byte slot number
//!   per bucket (5 bytes), at most 85 % full. Its size is not a power of two: a hash is mapped
//!   to its home bucket by a multiply-shift (Lemire's reduction), so the table grows by 1.5x
//!   and sits between 57 % and 85 % full instead of hashbrown's 44-87 %. Deletion shifts the
//!   following entries back (no tombstones), so probes stay short after churn.
//!
//! A lookup hashes the key, probes the table, skips buckets whose tag (7 more hash bits)
//! differs, then slots whose 30-bit hash differs, and the caller confirms a candidate by
//! comparing the key bytes stored in the pool object (`entry.rs`), so a hash collision can
//! never return another key's value. The table is rebuilt from the stored hashes, without
//! touching the pool. The pool's handles stay valid across compaction, so compaction never
//! touches the index.
//!
//! Batches ([`Index::find_many`]) walk their keys in passes, prefetching each key's bucket
//! before any is probed and each candidate's slot before any is checked, so the cache misses
//! of different keys overlap instead of following one another.
//!
//! Guarded by the cache mutex (`cache.rs`), like everything in `Inner`.

/// No slot: the end of a queue list, an empty hand, a missing candidate.
pub(crate) const NIL: u32 = u32::MAX;

const LIVE: u32 = 1 << 31;
const VISITED: u32 = 1 << 30;
/// The bits of a key hash the index keeps (`cache.rs` hashes keys to this width).
pub(crate) const HASH_MASK: u32 = VISITED - 1;

/// One entry of the index: 20 bytes, 4-byte aligned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// The pool handle, in two halves so that the slot needs no 8-byte alignment (a `u64`
    /// field would pad the slot to 24 bytes).
    handle_lo: u32,
    handle_hi: u32,
    /// LIVE | VISITED | the key's 30-bit hash.
    hash_flags: u32,
    /// Toward newer entries (the queue's head).
    pub newer: u32,
    /// Toward older entries (the queue's tail); the free-list link of a dead slot.
    pub older: u32,
}

impl Slot {
    const DEAD: Slot = Slot { handle_lo: 0, handle_hi: 0, hash_flags: 0, newer: NIL, older: NIL };

    pub(crate) fn handle(&self) -> u64 {
        u64::from(self.handle_lo) | (u64::from(self.handle_hi) << 32)
    }

    fn set_handle(&mut self, handle: u64) {
        self.handle_lo = handle as u32;
        self.handle_hi = (handle >> 32) as u32;
    }

    pub(crate) fn hash(&self) -> u32 {
        self.hash_flags & HASH_MASK
    }

    pub(crate) fn visited(&self) -> bool {
        self.hash_flags & VISITED != 0
    }

    pub(crate) fn set_visited(&mut self, on: bool) {
        if on { self.hash_flags |= VISITED } else { self.hash_flags &= !VISITED }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.hash_flags & LIVE != 0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub slots: Vec<Slot>,
    table: Table,
    free_head: Option<u32>,
    live: usize,
}

impl Index {
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Slots whose stored hash is `hash`, for the caller to confirm by key bytes; the first
    /// slot for which `confirm` returns true is returned.
    pub(crate) fn find(&self, hash: u32, mut confirm: impl FnMut(u32, &Slot) -> bool) -> Option<u32> {
        let slots = &self.slots;
        self.table.find(hash, |id| {
            let slot = &slots[id as usize];
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
            if let Some(slot) = self.slots.get(id as usize) {
                prefetch(std::ptr::from_ref(slot).cast());
            }
            out.push(id);
        }
        for (id, &hash) in out.iter_mut().zip(hashes) {
            if *id != NIL && self.slots[*id as usize].hash() != hash {
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

    /// A new live slot for (`handle`, `hash`), in the table; not yet queued.
    pub(crate) fn insert(&mut self, handle: u64, hash: u32) -> u32 {
        debug_assert_eq!(hash & !HASH_MASK, 0);
        let mut slot = Slot { hash_flags: LIVE | hash, ..Slot::DEAD };
        slot.set_handle(handle);
        let id = match self.free_head {
            Some(id) => {
                let next = self.slots[id as usize].older;
                self.free_head = (next != NIL).then_some(next);
                self.slots[id as usize] = slot;
                id
            }
            None => {
                let id =
                    u32::try_from(self.slots.len()).ok().filter(|&id| id != NIL).expect("fewer than 2**32 entries");
                self.slots.push(slot);
                id
            }
        };
        self.table.insert(hash, id, &self.slots);
        self.live += 1;
        id
    }

    /// Point a live slot at a new object (an overwrite).
    pub(crate) fn replace(&mut self, id: u32, handle: u64) {
        self.slots[id as usize].set_handle(handle);
    }

    /// Take a slot out of the table and put it on the free list (unlink it from the queue
    /// first).
    pub(crate) fn remove(&mut self, id: u32) {
        let hash = self.slots[id as usize].hash();
        debug_assert!(self.slots[id as usize].is_live());
        self.table.remove(hash, id, &self.slots);
        self.slots[id as usize] = Slot { older: self.free_head.unwrap_or(NIL), ..Slot::DEAD };
        self.free_head = Some(id);
        self.live -= 1;
    }

    /// Forget everything and give the memory back.
    pub(crate) fn clear(&mut self) {
        *self = Index::default();
    }

    /// Live slot ids, in slot order.
    pub(crate) fn live_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().enumerate().filter(|(_, s)| s.is_live()).map(|(i, _)| i as u32)
    }

    /// Heap bytes held by the index (slots and table, by capacity).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>() + self.table.heap_bytes()
    }
}

/// Linear probing over `tags` / `ids`. `tags[b] == 0`: bucket `b` is empty; otherwise it
/// holds slot `ids[b]` and 7 bits of that slot's hash with the top bit set.
#[derive(Debug, Default)]
struct Table {
    tags: Vec<u8>,
    ids: Vec<u32>,
    items: usize,
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
        self.tags.len()
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
            prefetch(self.tags[home..].as_ptr());
            prefetch(self.ids[home..].as_ptr().cast());
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
            match self.tags[b] {
                0 => return None,
                t if t == want && f(self.ids[b]) => return Some(self.ids[b]),
                _ => b = self.next(b),
            }
        }
    }

    /// Put slot `id` (whose hash is `hash`; not in the table yet) in its bucket. `slots`
    /// gives every other entry's hash, for rebuilding.
    fn insert(&mut self, hash: u32, id: u32, slots: &[Slot]) {
        if (self.items + 1) * MAX_LOAD.1 > self.buckets() * MAX_LOAD.0 {
            self.rebuild((self.buckets() * 3 / 2).max(MIN_BUCKETS), slots);
        }
        self.place(hash, id);
        self.items += 1;
    }

    fn place(&mut self, hash: u32, id: u32) {
        let mixed = mix(hash);
        let mut b = self.home(mixed);
        while self.tags[b] != 0 {
            b = self.next(b);
        }
        self.tags[b] = tag(mixed);
        self.ids[b] = id;
    }

    /// Take slot `id` (hash `hash`, in the table) out, shifting later entries of its probe
    /// run back so that no probe ever stops early at the gap.
    fn remove(&mut self, hash: u32, id: u32, slots: &[Slot]) {
        let mut hole = {
            let mixed = mix(hash);
            let mut b = self.home(mixed);
            while self.ids[b] != id || self.tags[b] == 0 {
                assert_ne!(self.tags[b], 0, "a live slot is always in the table");
                b = self.next(b);
            }
            b
        };
        let mut b = self.next(hole);
        while self.tags[b] != 0 {
            let home = self.home(mix(slots[self.ids[b] as usize].hash()));
            // The entry at `b` may fill the hole unless its home lies after the hole (then
            // moving it before its home would hide it from its own probes).
            if !cyclic_between(home, hole, b) {
                self.tags[hole] = self.tags[b];
                self.ids[hole] = self.ids[b];
                hole = b;
            }
            b = self.next(b);
        }
        self.tags[hole] = 0;
        self.items -= 1;
        if self.buckets() > MIN_BUCKETS && self.items * MIN_LOAD.1 < self.buckets() * MIN_LOAD.0 {
            // About 57 % full again: items / (0.85 / 1.5) buckets.
            let target = self.items * MAX_LOAD.1 * 3 / (MAX_LOAD.0 * 2) + 1;
            self.rebuild(target.max(MIN_BUCKETS), slots);
        }
    }

    /// Re-place every entry in a table of `buckets` buckets, from the slots' stored hashes.
    fn rebuild(&mut self, buckets: usize, slots: &[Slot]) {
        let old_ids = std::mem::take(&mut self.ids);
        let old_tags = std::mem::replace(&mut self.tags, vec![0; buckets]);
        self.ids = vec![0; buckets];
        for (&t, &id) in old_tags.iter().zip(&old_ids) {
            if t != 0 {
                self.place(slots[id as usize].hash(), id);
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.tags.capacity() + self.ids.capacity() * size_of::<u32>()
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
mod tests {
    use super::*;

    #[test]
    fn slot_is_20_bytes() {
        assert_eq!(size_of::<Slot>(), 20);
        let mut s = Slot::DEAD;
        s.set_handle(0xDEAD_BEEF_0123_4567);
        assert_eq!(s.handle(), 0xDEAD_BEEF_0123_4567);
    }

    #[test]
    fn insert_find_remove_reuse() {
        let mut index = Index::default();
        let a = index.insert(100, 7);
        let b = index.insert(200, 7); // same hash: both found, told apart by `confirm`
        assert_eq!(index.find(7, |_, s| s.handle() == 200), Some(b));
        assert_eq!(index.find(7, |_, s| s.handle() == 100), Some(a));
        assert_eq!(index.find(8, |_, _| true), None);
        index.remove(a);
        assert_eq!(index.find(7, |_, s| s.handle() == 100), None);
        assert_eq!(index.len(), 1);
        let c = index.insert(300, 9);
        assert_eq!(c, a, "freed slots are reused");
        for i in 0..10_000u32 {
            index.insert(u64::from(i) + 1000, i.wrapping_mul(2_654_435_761) & HASH_MASK);
        }
        assert_eq!(index.find(9, |_, s| s.handle() == 300), Some(c), "survives rebuilding");
    }

    /// The table against a model (a std HashMap from slot to hash), through growth, random
    /// removals (backward shifts across the wrap-around), shrinking and reuse; colliding
    /// hashes are frequent on purpose (a 9-bit hash space).
    #[test]
    fn table_agrees_with_a_model_under_churn() {
        use std::collections::HashMap;
        let mut index = Index::default();
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
                let id = index.insert(step, hash);
                model.insert(id, (hash, step));
            } else {
                let victim = *model.keys().nth((r >> 8) as usize % model.len()).unwrap();
                index.remove(victim);
                model.remove(&victim);
            }
            if step % 997 == 0 {
                for (&id, &(hash, handle)) in &model {
                    assert_eq!(index.find(hash, |_, s| s.handle() == handle), Some(id));
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
