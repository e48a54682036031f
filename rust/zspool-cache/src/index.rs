//! The index: which pool handle holds which key, in flat arrays and no heap object per entry.
//!
//! - `slots`: one 24-byte [`Slot`] per entry (pool handle, 32-bit key hash, stored size and
//!   flag bits, and the two links of the eviction queue), reused through a free list;
//! - `table`: a `hashbrown::HashTable<u32>` of slot numbers (4 bytes plus one control byte
//!   per bucket, at most 7/8 full).
//!
//! A lookup hashes the key, probes the table, skips slots whose 32-bit hash differs, and
//! the caller confirms a candidate by comparing the key bytes stored in the pool object
//! (`entry.rs`), so a hash collision can never return another key's value. The table is
//! rehashed from the stored 32-bit hashes, without touching the pool. The pool's handles
//! stay valid across compaction, so compaction never touches the index.
//!
//! Guarded by the cache mutex (`cache.rs`), like everything in `Inner`.

use hashbrown::HashTable;

/// No slot: the end of a queue list, or an empty hand.
pub(crate) const NIL: u32 = u32::MAX;

const LIVE: u32 = 1 << 31;
const VISITED: u32 = 1 << 30;
const SIZE_MASK: u32 = VISITED - 1;

/// One entry of the index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub handle: u64,
    pub hash: u32,
    /// LIVE | VISITED | stored bytes (< 1 GiB, the pool's object limit).
    meta: u32,
    /// Toward newer entries (the queue's head).
    pub newer: u32,
    /// Toward older entries (the queue's tail); the free-list link of a dead slot.
    pub older: u32,
}

impl Slot {
    pub(crate) fn stored(&self) -> u64 {
        u64::from(self.meta & SIZE_MASK)
    }

    pub(crate) fn visited(&self) -> bool {
        self.meta & VISITED != 0
    }

    pub(crate) fn set_visited(&mut self, on: bool) {
        if on { self.meta |= VISITED } else { self.meta &= !VISITED }
    }

    pub(crate) fn is_live(&self) -> bool {
        self.meta & LIVE != 0
    }
}

/// The hash the table sees for a stored 32-bit hash: a fixed mix, so rehashing needs nothing
/// but the slot (hashbrown takes its 7-bit tag from the top bits and the bucket from the low).
fn table_hash(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(hash)
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    pub slots: Vec<Slot>,
    table: HashTable<u32>,
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
        self.table
            .find(table_hash(hash), |&s| {
                let slot = &slots[s as usize];
                slot.hash == hash && confirm(s, slot)
            })
            .copied()
    }

    /// A new live slot for (`handle`, `hash`, `stored` bytes), in the table; not yet queued.
    pub(crate) fn insert(&mut self, handle: u64, hash: u32, stored: u64) -> u32 {
        let meta = LIVE | u32::try_from(stored).expect("pool objects are < 1 GiB");
        let slot = Slot { handle, hash, meta, newer: NIL, older: NIL };
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
        let slots = &self.slots;
        self.table.insert_unique(table_hash(hash), id, |&s| table_hash(slots[s as usize].hash));
        self.live += 1;
        id
    }

    /// Point a live slot at a new object (an overwrite).
    pub(crate) fn replace(&mut self, id: u32, handle: u64, stored: u64) {
        let slot = &mut self.slots[id as usize];
        slot.handle = handle;
        slot.meta = (slot.meta & !SIZE_MASK) | u32::try_from(stored).expect("pool objects are < 1 GiB");
    }

    /// Take a slot out of the table and put it on the free list (unlink it from the queue
    /// first). Returns the slot as it was.
    pub(crate) fn remove(&mut self, id: u32) -> Slot {
        let slot = self.slots[id as usize];
        debug_assert!(slot.is_live());
        match self.table.find_entry(table_hash(slot.hash), |&s| s == id) {
            Ok(entry) => {
                entry.remove();
            }
            Err(_) => unreachable!("a live slot is always in the table"),
        }
        let dead = &mut self.slots[id as usize];
        dead.meta = 0;
        dead.handle = 0;
        dead.newer = NIL;
        dead.older = self.free_head.unwrap_or(NIL);
        self.free_head = Some(id);
        self.live -= 1;
        slot
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
        self.slots.capacity() * size_of::<Slot>() + self.table.allocation_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_24_bytes() {
        assert_eq!(size_of::<Slot>(), 24);
    }

    #[test]
    fn insert_find_remove_reuse() {
        let mut index = Index::default();
        let a = index.insert(100, 7, 40);
        let b = index.insert(200, 7, 50); // same hash: both found, told apart by `confirm`
        assert_eq!(index.find(7, |_, s| s.handle == 200), Some(b));
        assert_eq!(index.find(7, |_, s| s.handle == 100), Some(a));
        assert_eq!(index.find(8, |_, _| true), None);
        index.remove(a);
        assert_eq!(index.find(7, |_, s| s.handle == 100), None);
        assert_eq!(index.len(), 1);
        let c = index.insert(300, 9, 60);
        assert_eq!(c, a, "freed slots are reused");
        for i in 0..10_000u32 {
            index.insert(u64::from(i) + 1000, i.wrapping_mul(2_654_435_761), 32);
        }
        assert_eq!(index.find(9, |_, s| s.handle == 300), Some(c), "survives rehashing");
        assert_eq!(index.slots[c as usize].stored(), 60);
    }
}
