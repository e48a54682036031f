//! Handles: what callers hold instead of addresses, so that compaction can move objects.
//!
//! A handle is an opaque 64-bit number. Inside it (before the per-pool keyed mix, below):
//!
//! ```text
//!  63            37 36       28 27               0
//! +----------------+-----------+------------------+
//! | generation 27b | owner  9b | table index 28b  |
//! +----------------+-----------+------------------+
//! ```
//!
//! `owner` names the lock domain that holds the object: a size class (its class id, below 256:
//! at most 232 classes, see `class_table.rs`) or a large-object shard (256..). Each owner keeps its own [`HandleTable`] under its own lock,
//! so resolving a handle never touches another class and no pool-wide table serialises
//! classes (the kernel needs `pool->lock` for this step; we do not).
//!
//! The table entry (8 bytes, see [`Entry`]) holds the object's current location and the
//! generation of the handle that names it; compaction rewrites the location and the handle
//! stays valid. Each entry's generation is bumped when its object is freed, so a stale
//! handle (use after free, double free) no longer matches. An entry stores 17 generation
//! bits of the handle's 27: an index whose generations run out is retired for good, so the
//! check stays exact. A size class's entry packs (zspage id, object index, exact size as the
//! bytes short of the class size); a
//! large-object shard's holds a record id, the record keeping the size.
//!
//! The fields are not handed out as they are but through a keyed, invertible mix of all 64
//! bits ([`mix`]), keyed by a random per-pool key. A plain XOR with the key would keep
//! arithmetic: `h + 1` would name the next index, whose object is live as often as not, so an
//! off-by-one in user code would silently read or free a neighbour. Through the mix, a
//! handle near a valid one (or from another pool) decodes to an unrelated owner, index and
//! generation, and names a live object only if a 27-bit generation happens to match
//! (measured in `asv_bench/standalone/handle_neighbours.py`, quoted in docs/SECURITY.md).
//! Whatever the bits, decoding is bounds-checked: a forged handle can at worst name a live
//! object of *this* pool, never memory outside it.

pub(crate) const INDEX_BITS: u32 = 28;
pub(crate) const OWNER_BITS: u32 = 9;
pub(crate) const GEN_BITS: u32 = 64 - INDEX_BITS - OWNER_BITS;
pub(crate) const MAX_INDEX: u32 = (1 << INDEX_BITS) - 1;

/// The owner-id space, all of it here: size classes take the ids below this one (the class
/// table checks that its classes fit), large-object shards the [`LARGE_SHARDS`] ids from it.
pub(crate) const LARGE_OWNER_BASE: u16 = 256;
/// Number of large-object lock shards (`large.rs`).
pub(crate) const LARGE_SHARDS: usize = 8;
const _: () = assert!(LARGE_OWNER_BASE as usize + LARGE_SHARDS <= 1 << OWNER_BITS, "every shard has an owner id");

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
        mix(raw, key)
    }

    pub(crate) fn decode(handle: u64, key: u64) -> HandleParts {
        let raw = unmix(handle, key);
        HandleParts {
            index: (raw & u64::from(MAX_INDEX)) as u32,
            owner: ((raw >> INDEX_BITS) & ((1 << OWNER_BITS) - 1)) as u16,
            generation: (raw >> (INDEX_BITS + OWNER_BITS)) as u32,
        }
    }
}

/// Odd multipliers (invertible mod 2^64) of the mix, from SplitMix64's finalizer, and their
/// inverses. Multiplying spreads every bit upward; `x ^= x >> 32` folds the high half back
/// down (and is its own inverse, the shift being half the width), so two rounds carry a
/// change in any input bit to all output bits.
const MIX_M1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX_M2: u64 = 0x94D0_49BB_1331_11EB;
const MIX_M1_INV: u64 = mul_inverse(MIX_M1);
const MIX_M2_INV: u64 = mul_inverse(MIX_M2);
const _: () = assert!(MIX_M1.wrapping_mul(MIX_M1_INV) == 1 && MIX_M2.wrapping_mul(MIX_M2_INV) == 1);

/// The inverse of an odd `m` mod 2^64 (Newton's iteration: each step doubles the correct bits).
const fn mul_inverse(m: u64) -> u64 {
    let mut x = m; // correct to 3 bits for any odd m
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u64.wrapping_sub(m.wrapping_mul(x)));
        i += 1;
    }
    x
}

/// The keyed permutation of 64-bit values that turns a handle's fields into the handle: two
/// multiply-xorshift rounds, the key entering before each (XOR, then addition of its halves
/// swapped), so that neither the fields nor their neighbours show through. A few cycles;
/// [`unmix`] undoes it. Not a cipher: its job is to make near misses miss, not to resist
/// an attacker who sees many handles (see docs/SECURITY.md).
#[inline]
fn mix(raw: u64, key: u64) -> u64 {
    let mut x = (raw ^ key).wrapping_mul(MIX_M1);
    x ^= x >> 32;
    x = x.wrapping_add(key.rotate_left(32)).wrapping_mul(MIX_M2);
    x ^ (x >> 32)
}

/// The inverse of [`mix`] under the same key.
#[inline]
fn unmix(handle: u64, key: u64) -> u64 {
    let mut x = (handle ^ (handle >> 32)).wrapping_mul(MIX_M2_INV).wrapping_sub(key.rotate_left(32));
    x ^= x >> 32;
    x.wrapping_mul(MIX_M1_INV) ^ key
}

/// Generation bits a table entry stores. A handle has room for 27, but every bit stored here
/// is paid for on every object, and fewer bits only mean an index is retired sooner (after
/// 2^17 - 1 objects instead of 2^27 - 1). Retirements cost 8 bytes per 131,071 frees in a
/// class whatever the pattern (each free ages one index by one generation), and a class that
/// has handed out all 2^28 indices is full for good (`Pool::table_exhausted`): 3.5 * 10^13
/// frees, a year at a sustained million frees per second in one class. More bits would need
/// a wider entry (a zspage id, object index and slack take the other 47).
pub(crate) const ENTRY_GEN_BITS: u32 = 17;
const ENTRY_GEN_MASK: u32 = (1 << ENTRY_GEN_BITS) - 1;
const _: () = assert!(ENTRY_GEN_BITS <= GEN_BITS, "a stored generation fits the handle's field");
/// Bits of an entry left for the owner's location.
pub(crate) const LOCATION_BITS: u32 = 64 - ENTRY_GEN_BITS;
/// Ends the free list. Never handed out as an index, so it cannot be confused with one.
const NIL: u32 = MAX_INDEX;

/// What an owner keeps in a table entry to find its object again, packed into
/// [`LOCATION_BITS`] bits.
pub(crate) trait PackedLocation: Copy {
    fn pack(self) -> u64;
    fn unpack(bits: u64) -> Self;
}

/// Where a large-object shard keeps an object: its record id. The size is in the record
/// (large sizes do not fit next to a generation in 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LargeId(pub u32);

impl PackedLocation for LargeId {
    fn pack(self) -> u64 {
        u64::from(self.0)
    }

    fn unpack(bits: u64) -> LargeId {
        LargeId(bits as u32)
    }
}

/// One table entry, 8 bytes:
///
/// ```text
///          63         47 46                                        0
/// live:   | generation  | location (PackedLocation)                 |
/// free:   |      0      | 0 | next generation 17b | next free 28b  |
/// ```
///
/// Live generations run 1..=2^17 - 1, so a zero generation field marks a free entry, which
/// keeps the generation its next object will get and the free list's next index. A next
/// generation of 0 marks a retired index (its generations ran out; it is on no list).
#[derive(Debug, Clone, Copy)]
struct Entry(u64);

impl Entry {
    fn live(generation: u32, loc: u64) -> Entry {
        debug_assert!(generation != 0 && generation <= ENTRY_GEN_MASK && loc < 1 << LOCATION_BITS);
        Entry(u64::from(generation) << LOCATION_BITS | loc)
    }

    fn free(next_generation: u32, next_free: u32) -> Entry {
        Entry(u64::from(next_generation) << INDEX_BITS | u64::from(next_free))
    }

    /// The generation of a live entry; 0 for a free one.
    fn generation(self) -> u32 {
        (self.0 >> LOCATION_BITS) as u32
    }

    fn location(self) -> u64 {
        self.0 & ((1 << LOCATION_BITS) - 1)
    }

    fn next_generation(self) -> u32 {
        ((self.0 >> INDEX_BITS) as u32) & ENTRY_GEN_MASK
    }

    fn next_free(self) -> u32 {
        (self.0 as u32) & MAX_INDEX
    }
}

const _: () = assert!(INDEX_BITS + ENTRY_GEN_BITS <= LOCATION_BITS, "a free entry fits");

/// The live objects of one lock domain, by table index. Guarded by that domain's lock.
#[derive(Debug)]
pub(crate) struct HandleTable<L> {
    entries: Vec<Entry>,
    free_head: u32,
    live: usize,
    _location: std::marker::PhantomData<L>,
}

impl<L: PackedLocation> HandleTable<L> {
    pub(crate) fn new() -> HandleTable<L> {
        HandleTable { entries: Vec::new(), free_head: NIL, live: 0, _location: std::marker::PhantomData }
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Make sure the next `insert` allocates nothing (see `ClassState::try_reserve_zspage`).
    pub(crate) fn try_reserve_one(&mut self) -> Result<(), std::collections::TryReserveError> {
        if self.free_head == NIL { self.entries.try_reserve(1) } else { Ok(()) }
    }

    /// Record a new object and return its (index, generation); `None` when all
    /// 2^28 - 1 indices of this domain are in use or retired.
    pub(crate) fn insert(&mut self, loc: L) -> Option<(u32, u32)> {
        let loc = loc.pack();
        let (index, generation) = if self.free_head != NIL {
            let index = self.free_head;
            let entry = self.entries[index as usize];
            self.free_head = entry.next_free();
            (index, entry.next_generation())
        } else {
            let index = u32::try_from(self.entries.len()).ok().filter(|&i| i < NIL)?;
            self.entries.push(Entry::free(1, NIL));
            (index, 1)
        };
        self.entries[index as usize] = Entry::live(generation, loc);
        self.live += 1;
        Some((index, generation))
    }

    /// The live object at (index, generation), or `None` if that pair names nothing live.
    /// A handle carries more generation bits than an entry stores; one whose extra bits are
    /// set matches nothing, as it should (no entry ever handed it out).
    pub(crate) fn get(&self, index: u32, generation: u32) -> Option<L> {
        let entry = self.entries.get(index as usize)?;
        (generation != 0 && entry.generation() == generation).then(|| L::unpack(entry.location()))
    }

    /// Whether `index` was ever handed out (so a failed lookup is stale, not forged).
    pub(crate) fn has_index(&self, index: u32) -> bool {
        (index as usize) < self.entries.len()
    }

    /// The location of the live entry at `index`, by index alone (the compactor knows the
    /// index from the zspage's back-reference, not from a caller's handle).
    pub(crate) fn location_at(&self, index: u32) -> L {
        let entry = self.entries[index as usize];
        debug_assert_ne!(entry.generation(), 0, "reading a free handle");
        L::unpack(entry.location())
    }

    /// Hint the CPU to start loading the entry at `index` (compaction, one object ahead).
    pub(crate) fn prefetch(&self, index: u32) {
        if let Some(entry) = self.entries.get(index as usize) {
            crate::prefetch::prefetch_line(entry);
        }
    }

    /// Point the live entry at `index` somewhere else (compaction, or a malloc that learns
    /// its object index after the table index).
    pub(crate) fn relocate(&mut self, index: u32, to: L) {
        let entry = &mut self.entries[index as usize];
        debug_assert_ne!(entry.generation(), 0, "relocating a free handle");
        *entry = Entry::live(entry.generation(), to.pack());
    }

    /// Free the live entry at (index, generation); its next object gets the next generation.
    pub(crate) fn remove(&mut self, index: u32, generation: u32) -> Option<L> {
        let live = self.get(index, generation)?;
        self.live -= 1;
        let next = (generation + 1) & ENTRY_GEN_MASK;
        if next == 0 {
            // Every generation of this index has been handed out: reusing it would let a
            // handle freed 2^17 - 1 objects ago name a live object again. Retire the index
            // for good (8 bytes) instead; a stale handle to it stays stale forever.
            self.entries[index as usize] = Entry::free(0, NIL);
            return Some(live);
        }
        self.entries[index as usize] = Entry::free(next, self.free_head);
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
    /// A location that is its own bits: the table tested apart from any owner's packing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Bits(u64);

    impl PackedLocation for Bits {
        fn pack(self) -> u64 {
            self.0
        }

        fn unpack(bits: u64) -> Bits {
            Bits(bits)
        }
    }

    const SLOT: Bits = Bits(0x1234);

    #[test]
    fn an_entry_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
    }

    #[test]
    fn entries_round_trip_through_the_table() {
        let mut table = HandleTable::new();
        let far = Bits((1 << LOCATION_BITS) - 1);
        let (i, g) = table.insert(far).unwrap();
        assert_eq!(table.get(i, g), Some(far));
        table.relocate(i, SLOT);
        assert_eq!(table.location_at(i), SLOT);
        let mut large = HandleTable::new();
        let (j, h) = large.insert(LargeId(u32::MAX)).unwrap();
        assert_eq!(large.get(j, h), Some(LargeId(u32::MAX)));
    }

    #[test]
    fn an_index_whose_generations_ran_out_is_retired() {
        let mut table = HandleTable::new();
        let (index, _) = table.insert(SLOT).unwrap();
        // Free and reuse the index until its last generation is live: 2^17 - 2 reuses.
        let mut generation = 1;
        for _ in 1..ENTRY_GEN_MASK {
            assert!(table.remove(index, generation).is_some());
            let (again, next) = table.insert(SLOT).unwrap();
            assert_eq!(again, index, "the free list reuses the index");
            assert_eq!(next, generation + 1);
            generation = next;
        }
        assert_eq!(generation, ENTRY_GEN_MASK);
        assert!(table.remove(index, generation).is_some());
        let (next, first) = table.insert(SLOT).unwrap();
        assert_ne!(next, index, "the exhausted index is never handed out again");
        assert_eq!(first, 1);
        assert_eq!(table.get(index, ENTRY_GEN_MASK), None);
        assert_eq!(table.get(index, 0), None, "not under the wrapped generation");
        assert_eq!(table.get(index, 1), None);
        assert!(table.has_index(index), "a stale handle to it reads as stale");
        assert_eq!(table.live(), 1);
    }

    #[test]
    fn handle_generations_beyond_the_stored_bits_match_nothing() {
        let mut table = HandleTable::new();
        let (i, g) = table.insert(SLOT).unwrap();
        assert_eq!(table.get(i, g | 1 << ENTRY_GEN_BITS), None);
        assert_eq!(table.remove(i, g | 1 << ENTRY_GEN_BITS), None);
        assert_eq!(table.get(i, g), Some(SLOT));
    }

    #[test]
    fn the_mix_is_a_permutation_that_scatters_neighbours() {
        let key = random_key();
        for raw in [0, 1, u64::MAX, 0x8000_0000_0000_0000, key, 1 << 28 | 7, (1 << 37) | (3 << 28) | 42] {
            assert_eq!(unmix(mix(raw, key), key), raw);
            assert_eq!(mix(unmix(raw, key), key), raw);
        }
        // A handle's neighbours decode to unrelated fields: the generation (which must match
        // exactly for a handle to name anything) differs in about half its bits.
        let h = HandleParts { index: 5, owner: 3, generation: 1 }.encode(key);
        for n in [h.wrapping_add(1), h.wrapping_sub(1), h ^ 1, h ^ (1 << 63)] {
            let p = HandleParts::decode(n, key);
            assert!((p.generation ^ 1).count_ones() >= 4, "{p:?} too close to its neighbour");
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let key = random_key();
        let parts = HandleParts { index: MAX_INDEX, owner: 300, generation: (1 << GEN_BITS) - 1 };
        assert_eq!(HandleParts::decode(parts.encode(key), key), parts);
    }

    #[test]
    fn freed_entries_reject_their_old_generation() {
        let mut table = HandleTable::new();
        let (i, g) = table.insert(SLOT).unwrap();
        assert_eq!(table.get(i, g), Some(SLOT));
        assert!(table.remove(i, g).is_some());
        assert_eq!(table.get(i, g), None, "use after free");
        assert_eq!(table.remove(i, g), None, "double free");
        let (i2, g2) = table.insert(SLOT).unwrap();
        assert_eq!(i2, i, "indices are reused");
        assert_ne!(g2, g, "with a new generation");
        assert_eq!(table.get(i, g), None);
        assert_eq!(table.get(999, 1), None, "out of range");
    }

    #[test]
    fn free_entries_never_match_generation_zero() {
        let mut table: HandleTable<Bits> = HandleTable::new();
        let (i, g) = table.insert(SLOT).unwrap();
        table.remove(i, g).unwrap();
        assert_eq!(table.get(i, 0), None);
        assert_eq!(table.remove(i, 0), None);
    }
}
