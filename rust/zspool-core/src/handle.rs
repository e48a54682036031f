//! Handles: what callers hold instead of addresses, so that compaction can move objects.
//!
//! A handle is an opaque 64-bit number. Inside it (before a per-pool XOR key is applied):
//!
//! ```text
//!  63            37 36       28 27               0
//! +----------------+-----------+------------------+
//! | generation 27b | owner  9b | table index 28b  |
//! +----------------+-----------+------------------+
//! ```
//!
//! `owner` names the lock domain that holds the object: a size class (0..=254) or a
//! large-object shard (256..). Each owner keeps its own [`HandleTable`] under its own lock,
//! so resolving a handle never touches another class and no pool-wide table serialises
//! classes (the kernel needs `pool->lock` for this step; we do not).
//!
//! The table entry holds the object's current location; compaction rewrites the entry and
//! the handle stays valid. Each entry's generation is bumped when its object is freed, so a
//! stale handle (use after free, double free) no longer matches. The XOR key, random per
//! pool, makes a handle from another pool decode to a random owner/index/generation, which
//! is rejected with overwhelming probability. Whatever the bits, decoding is bounds-checked:
//! a forged handle can at worst name a live object of *this* pool, never memory outside it.

pub(crate) const INDEX_BITS: u32 = 28;
pub(crate) const OWNER_BITS: u32 = 9;
pub(crate) const GEN_BITS: u32 = 64 - INDEX_BITS - OWNER_BITS;
pub(crate) const MAX_INDEX: u32 = (1 << INDEX_BITS) - 1;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// The owner id of the first large-object shard; size classes use ids below it.
pub(crate) const LARGE_OWNER_BASE: u16 = 256;

/// A handle's fields, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandleParts {
    pub index: u32,
    pub owner: u16,
    pub generation: u32,
}

impl HandleParts {
    pub(crate) fn encode(self, key: u64) -> u64 {
        let raw = u64::from(self.index)
            | (u64::from(self.owner) << INDEX_BITS)
            | (u64::from(self.generation) << (INDEX_BITS + OWNER_BITS));
        raw ^ key
    }

    pub(crate) fn decode(handle: u64, key: u64) -> HandleParts {
        let raw = handle ^ key;
        HandleParts {
            index: (raw & u64::from(MAX_INDEX)) as u32,
            owner: ((raw >> INDEX_BITS) & ((1 << OWNER_BITS) - 1)) as u16,
            generation: (raw >> (INDEX_BITS + OWNER_BITS)) as u32,
        }
    }
}

/// Where an object lives: a zspage id and object index for a size class, or an entry in a
/// large-object shard (`obj` unused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub container: u32,
    pub obj: u16,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    generation: u32,
    /// Object size in bytes while live; `FREE` marks a free entry.
    size: u32,
    /// Live: the location. Free: `container` is the next free index.
    loc: Location,
}

const FREE: u32 = u32::MAX;
const NIL: u32 = u32::MAX;

/// The live objects of one lock domain, by table index. Guarded by that domain's lock.
#[derive(Debug)]
pub(crate) struct HandleTable {
    entries: Vec<Entry>,
    free_head: u32,
    live: usize,
}

/// A live object, as its handle resolves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiveObject {
    pub size: usize,
    pub loc: Location,
}

impl HandleTable {
    pub(crate) fn new() -> HandleTable {
        HandleTable { entries: Vec::new(), free_head: NIL, live: 0 }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Make sure the next `insert` allocates nothing (see `ClassState::try_reserve_zspage`).
    pub(crate) fn try_reserve_one(&mut self) -> Result<(), std::collections::TryReserveError> {
        if self.free_head == NIL { self.entries.try_reserve(1) } else { Ok(()) }
    }

    /// Record a new object and return its (index, generation); `None` when all
    /// 2^28 indices of this domain are in use.
    pub(crate) fn insert(&mut self, size: usize, loc: Location) -> Option<(u32, u32)> {
        let size = u32::try_from(size).expect("object sizes are checked against MAX_OBJECT_SIZE");
        debug_assert_ne!(size, FREE);
        let index = if self.free_head != NIL {
            let index = self.free_head;
            let entry = &mut self.entries[index as usize];
            self.free_head = entry.loc.container;
            entry.size = size;
            entry.loc = loc;
            index
        } else {
            let index = u32::try_from(self.entries.len()).ok().filter(|&i| i <= MAX_INDEX)?;
            self.entries.push(Entry { generation: 1, size, loc });
            index
        };
        self.live += 1;
        Some((index, self.entries[index as usize].generation))
    }

    /// The live object at (index, generation), or `None` if that pair names nothing live.
    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<LiveObject> {
        let entry = self.entries.get(index as usize)?;
        (entry.size != FREE && entry.generation == generation)
            .then_some(LiveObject { size: entry.size as usize, loc: entry.loc })
    }

    /// Whether `index` was ever handed out (so a failed lookup is stale, not forged).
    pub(crate) fn has_index(&self, index: u32) -> bool {
        (index as usize) < self.entries.len()
    }

    /// The location of a live entry by index alone (the compactor knows the index from
    /// the zspage's back-reference, not from a caller's handle).
    pub(crate) fn relocate(&mut self, index: u32, to: Location) {
        let entry = &mut self.entries[index as usize];
        debug_assert_ne!(entry.size, FREE, "relocating a free handle");
        entry.loc = to;
    }

    pub(crate) fn size_at(&self, index: u32) -> usize {
        self.entries[index as usize].size as usize
    }

    /// Free the live entry at (index, generation), bumping its generation.
    pub(crate) fn remove(&mut self, index: u32, generation: u32) -> Option<LiveObject> {
        let live = self.get(index, generation)?;
        let entry = &mut self.entries[index as usize];
        entry.size = FREE;
        self.live -= 1;
        let next = (entry.generation + 1) & GEN_MASK;
        if next == 0 {
            // Every generation of this index has been handed out: reusing it would let a
            // handle freed 2^27 cycles ago name a live object again. Retire the index for
            // good (16 bytes) instead; a stale handle to it stays stale forever.
            entry.loc = Location { container: NIL, obj: 0 };
            return Some(live);
        }
        entry.generation = next;
        entry.loc = Location { container: self.free_head, obj: 0 };
        self.free_head = index;
        Some(live)
    }

    /// Forget every entry (pool close); the generation history goes with it.
    pub(crate) fn clear(&mut self) {
        *self = HandleTable::new();
    }

    /// Bytes of heap this table uses, for the metadata figure in the stats.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

/// Draw a per-pool key from the OS's entropy (getrandom), falling back to the clock.
pub(crate) fn random_key() -> u64 {
    let mut key = 0u64;
    // SAFETY: getrandom writes at most 8 bytes into the u64 we pass by pointer.
    let n = unsafe { libc::getrandom((&raw mut key).cast(), 8, 0) };
    if n != 8 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        key = nanos.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (&raw const key as u64);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_whose_generations_ran_out_is_retired() {
        let mut table = HandleTable::new();
        let loc = Location { container: 0, obj: 0 };
        let (index, _) = table.insert(1, loc).unwrap();
        table.entries[index as usize].generation = GEN_MASK; // as after 2^27 - 2 reuses
        assert!(table.remove(index, GEN_MASK).is_some());
        let (next, generation) = table.insert(1, loc).unwrap();
        assert_ne!(next, index, "the exhausted index is never handed out again");
        assert_eq!(generation, 1);
        assert_eq!(table.get(index, GEN_MASK), None);
        assert_eq!(table.get(index, 1), None, "not even under a wrapped generation");
    }

    #[test]
    fn encode_decode_round_trip() {
        let key = random_key();
        let parts = HandleParts { index: MAX_INDEX, owner: 300, generation: GEN_MASK };
        assert_eq!(HandleParts::decode(parts.encode(key), key), parts);
    }

    #[test]
    fn freed_entries_reject_their_old_generation() {
        let mut table = HandleTable::new();
        let loc = Location { container: 3, obj: 7 };
        let (i, g) = table.insert(10, loc).unwrap();
        assert_eq!(table.get(i, g), Some(LiveObject { size: 10, loc }));
        assert!(table.remove(i, g).is_some());
        assert_eq!(table.get(i, g), None, "use after free");
        assert_eq!(table.remove(i, g), None, "double free");
        let (i2, g2) = table.insert(5, loc).unwrap();
        assert_eq!(i2, i, "indices are reused");
        assert_ne!(g2, g, "with a new generation");
        assert_eq!(table.get(i, g), None);
        assert_eq!(table.get(999, 1), None, "out of range");
    }
}
