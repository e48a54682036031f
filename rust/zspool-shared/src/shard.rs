//! Index shards: [`N_SHARDS`](crate::N_SHARDS) open-addressing tables of 16-byte slots
//! `(hash word, location)`, each with a robust lock, counters and a SIEVE hand.
//!
//! A slot's hash word is 0 (empty: a probe stops here) or the key's hash tag with bit 63 the
//! SIEVE visited bit. A slot with a hash word and no location is a tombstone (a deleted entry,
//! or a set that died before publishing): probes pass it, inserts reuse it. Probes look at
//! most [`PROBE`] slots from the key's home slot, so a lookup is bounded whatever the table
//! holds; an insert that finds no free slot there evicts one of them.
//!
//! **A table that grows and shrinks.** The file reserves `shard_slots` slots per shard (address
//! space only: a sparse file), and a shard uses its first `cap` of them, a power of two. An
//! insert doubles the table when it would fill more than 3/4 of it, or when its probe is
//! full; compaction halves it while the entries would fill at most 5/8, and punches the
//! pages of the slots it left. A resize rehashes every entry and rewrites the back-reference
//! in its object, so it holds, besides the shard lock, the class lock of every class its
//! entries name (taken in class order; no one else holds two class locks, and class
//! holders never wait for a shard). Its plan is made in process memory first: a table the
//! entries do not fit leaves the shard as it was. A resizer that dies leaves `resize_to`
//! set: the shard's recovery then empties the table (the classes it held are recovered,
//! their entries dropped, by their own locks' recovery).
//!
//! Eviction is SIEVE in slot order: the hand walks the slots, clearing visited bits, and
//! evicts the first live entry it finds unvisited (a hash-table SIEVE; Zhang et al., NSDI '24).
//!
//! Lock order: **shard lock** -> class lock -> allocator lock. The shard lock guards its
//! slots' hash words, the choice of which slot names which key, its counters and its hand;
//! a location word is written under the class lock of the object it names (compaction
//! rewrites it holding only that lock).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::class::{ClassGuard, lock_class};
use crate::error::SharedError;
use crate::header::{Header, MIN_SHARD_SLOTS};
use crate::location::{EPOCH_MASK, Location};
use crate::object::{Record, load_words};
use crate::regions::Regions;
use crate::robust_mutex::{Guard, RobustMutex};

/// Slots a probe looks at, at most.
pub(crate) const PROBE: usize = 32;
/// A table doubles before an insert would fill more than this fraction of it...
const GROW_LOAD: (usize, usize) = (3, 4);
/// ...and compaction halves it while the entries would fill at most this fraction.
const SHRINK_LOAD: (usize, usize) = (5, 8);
/// An empty place in a resize's plan.
const UNUSED: u32 = u32::MAX;
const VISITED: u64 = 1 << 63;

#[repr(C)]
pub(crate) struct ShardShm {
    pub(crate) lock: RobustMutex,
    pub(crate) entries: AtomicU64,
    /// Entries stored through this shard, ever (here, not in the header: a set writes this
    /// shard's line anyway, and a global counter was a line every set of every process wrote).
    pub(crate) sets: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) hand: AtomicU64,
    /// Slots in use: a power of two, `MIN_SHARD_SLOTS..=shard_slots` (checked on every read).
    pub(crate) cap: AtomicU64,
    /// The size a resize in progress is making (0: none): what a recovery must clear.
    pub(crate) resize_to: AtomicU64,
}

impl ShardShm {
    /// Set up a new file's shard (the creator).
    pub(crate) fn init(&self) {
        self.lock.init();
        self.cap.store(MIN_SHARD_SLOTS as u64, Ordering::Relaxed);
    }
}

/// A table size read from the file: `word` if it is a power of two within the reserve, else
/// the whole reserve (a scribbled size can never send a probe outside its shard).
pub(crate) fn checked_cap(word: u64, reserve: usize) -> usize {
    match usize::try_from(word) {
        Ok(cap) if cap.is_power_of_two() && (MIN_SHARD_SLOTS..=reserve).contains(&cap) => cap,
        _ => reserve,
    }
}

/// Ask the CPU to bring the first `len` bytes at `at` (at most 4 lines: the hardware's own
/// prefetcher follows a longer copy) into its cache.
fn prefetch(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..len.min(256)).step_by(64) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: SSE is in every x86_64 CPU (the target's baseline), and a prefetch is a
        // hint that never faults and reads nothing into the program, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// A slot's home within a table of `cap` slots, from the key's hash or its slot's hash word
/// (bits 1-62 of the hash, which both keep; the shard comes from the top bits).
fn home(hash_or_word: u64, cap: usize) -> usize {
    ((hash_or_word & !VISITED) >> 1) as usize & (cap - 1)
}

#[repr(C)]
pub(crate) struct Slot {
    pub(crate) hash: AtomicU64,
    pub(crate) loc: AtomicU64,
}

/// The hash word of a key hash (never 0, visited bit clear).
pub(crate) fn tag(hash: u64) -> u64 {
    (hash & !VISITED) | 1
}

/// The shard of a key hash.
pub(crate) fn shard_of(hash: u64) -> usize {
    (hash >> 58) as usize % crate::N_SHARDS
}

/// A read that would have had to wait for a lock (see [`ShardGuard::find_nowait`]).
#[derive(Debug)]
pub(crate) struct WouldBlock;

/// A locked shard.
pub(crate) struct ShardGuard<'a> {
    pub(crate) r: &'a Regions,
    pub(crate) index: usize,
    pub(crate) shm: &'a ShardShm,
    _guard: Guard<'a>,
}

/// What reading the entry a slot names found.
pub(crate) enum Found {
    /// The record (copied into the buffer), its key equal to the one asked for.
    Entry(Record),
    /// A live record of another key (a hash collision).
    OtherKey,
    /// Nothing usable: the slot was made a tombstone.
    Dropped,
}

pub(crate) fn lock_shard(r: &Regions, index: usize) -> Result<ShardGuard<'_>, SharedError> {
    let shm = r.shard(index);
    let (mut guard, died) = shm.lock.lock(&r.lock_file).map_err(crate::cache::corrupt)?;
    if died {
        crate::recovery::recover_shard(r, index, shm);
        guard.mark_consistent();
    }
    Ok(ShardGuard { r, index, shm, _guard: guard })
}

/// Take another shard's lock only if it is free now (eviction never waits on a second shard).
pub(crate) fn try_lock_shard(r: &Regions, index: usize) -> Option<ShardGuard<'_>> {
    let shm = r.shard(index);
    let (mut guard, died) = shm.lock.try_lock(&r.lock_file)?;
    if died {
        crate::recovery::recover_shard(r, index, shm);
        guard.mark_consistent();
    }
    Some(ShardGuard { r, index, shm, _guard: guard })
}

impl ShardGuard<'_> {
    /// Slots the table uses now.
    pub(crate) fn cap(&self) -> usize {
        checked_cap(self.shm.cap.load(Ordering::Relaxed), self.r.layout.shard_slots)
    }

    /// The global number of the shard's first slot.
    fn base(&self) -> usize {
        self.index * self.r.layout.shard_slots
    }

    /// Global slot numbers of a probe for `hash`, in order.
    pub(crate) fn probe(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let (cap, base) = (self.cap(), self.base());
        let home = home(hash, cap);
        (0..PROBE.min(cap)).map(move |i| base + ((home + i) & (cap - 1)))
    }

    pub(crate) fn slot(&self, global: usize) -> &Slot {
        self.r.slot(global)
    }

    /// Every global slot number of the shard.
    pub(crate) fn all_slots(&self) -> std::ops::Range<usize> {
        self.base()..self.base() + self.cap()
    }

    /// Find `key`'s entry: its slot and record (copied into `buf`).
    pub(crate) fn find(
        &self,
        hash: u64,
        kind: u8,
        key: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, Record)>, SharedError> {
        for g in self.candidates(hash) {
            if let Found::Entry(record) = self.read(g, Some((kind, key)), buf)? {
                return Ok(Some((g, record)));
            }
        }
        Ok(None)
    }

    /// [`ShardGuard::find`] without ever waiting for a class lock: only the lock-free read
    /// ([`ShardGuard::read_unlocked`]). `Err(WouldBlock)` whenever that is not enough (an
    /// object of the class is moving, or a record needs the locked path's checks).
    pub(crate) fn find_nowait(
        &self,
        hash: u64,
        kind: u8,
        key: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, Record)>, WouldBlock> {
        for g in self.candidates(hash) {
            let record = self.read_unlocked(g, buf).ok_or(WouldBlock)?;
            if record.kind != kind || record.key(buf) != key {
                continue;
            }
            return if record.checksum_ok(buf) { Ok(Some((g, record))) } else { Err(WouldBlock) };
        }
        Ok(None)
    }

    /// The slots of `hash`'s probe that may hold its entry: its hash tag, and a location.
    fn candidates(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let want = tag(hash);
        self.probe(hash)
            .map(|g| (g, self.slot(g).hash.load(Ordering::Relaxed)))
            .take_while(|&(_, word)| word != 0)
            .filter(move |&(g, word)| word & !VISITED == want && self.slot(g).loc.load(Ordering::Relaxed) != 0)
            .map(|(g, _)| g)
    }

    /// Copy the object slot `g` names into `buf` and check it (back-reference, lengths,
    /// key if given, checksum): without the class lock if no object of the class is moving,
    /// else under it. A slot naming a discarded or garbage object becomes a tombstone.
    pub(crate) fn read(&self, g: usize, key: Option<(u8, &[u8])>, buf: &mut Vec<u8>) -> Result<Found, SharedError> {
        if let Some(record) = self.read_unlocked(g, buf) {
            if let Some((kind, key)) = key
                && (record.kind != kind || record.key(buf) != key)
            {
                return Ok(Found::OtherKey);
            }
            if record.checksum_ok(buf) {
                return Ok(Found::Entry(record));
            }
            // A bad record: the locked path below decides (and drops it if it stays bad).
        }
        self.read_locked(g, key, buf)
    }

    /// The fast path of `read`: copy the object slot `g` names without its class lock, and
    /// trust the copy only if the class's move sequence was even and unchanged around it.
    ///
    /// Sound because, with the shard lock held, the object can change or go away only by
    /// compaction (moving it, then freeing its slot for reuse) or by a recovery of its class,
    /// and both make the sequence odd first; frees through a slot and overwrites in place
    /// need this shard's lock, and sets of other keys write only free slots. `None`: take
    /// the lock.
    fn read_unlocked(&self, g: usize, buf: &mut Vec<u8>) -> Option<Record> {
        let word = self.slot(g).loc.load(Ordering::Acquire);
        let loc = Location::unpack(word)?;
        let layout = self.r.classes().get(loc.class as usize)?;
        // Start the object's cache misses now, beside the descriptor's below, instead of after.
        prefetch(self.r.object(loc.desc, loc.obj, layout.size), layout.size);
        let class = self.r.class(loc.class as usize);
        let seq = class.seq.load(Ordering::Acquire);
        let live = seq & 1 == 0
            && loc.epoch == class.epoch.load(Ordering::Relaxed) & EPOCH_MASK
            && (loc.obj as usize) < layout.objs_per_zspage
            && (loc.desc as usize) < self.r.layout.n_chunks
            && self.r.desc(loc.desc).class.load(Ordering::Relaxed) == loc.class;
        if !live {
            return None;
        }
        buf.resize(layout.size, 0);
        // SAFETY: the slot is inside the mapping (`Regions::object` clamps) and 16-byte
        // aligned; `buf` is a slot long (a multiple of 16). Concurrent stores are atomic
        // (`object.rs`); a copy they tore is discarded by the sequence check below.
        unsafe { load_words(self.r.object(loc.desc, loc.obj, layout.size), buf) };
        std::sync::atomic::fence(Ordering::Acquire);
        let unchanged = class.seq.load(Ordering::Relaxed) == seq && self.slot(g).loc.load(Ordering::Relaxed) == word;
        if !unchanged {
            return None;
        }
        Record::parse(buf).filter(|r| r.backref as usize == g)
    }

    fn read_locked(&self, g: usize, key: Option<(u8, &[u8])>, buf: &mut Vec<u8>) -> Result<Found, SharedError> {
        let slot = self.slot(g);
        let Some(loc) = Location::unpack(slot.loc.load(Ordering::Relaxed)) else { return Ok(Found::Dropped) };
        if loc.class as usize >= self.r.layout.n_classes {
            return Ok(self.drop_slot(g, true));
        }
        let record = {
            let class = lock_class(self.r, loc.class)?;
            // Compaction may have moved the object since the first read: read again.
            let Some(loc) = Location::unpack(slot.loc.load(Ordering::Acquire)) else { return Ok(Found::Dropped) };
            if !class.names_live_object(&loc) {
                // An old epoch: a recovery discarded it (counted then), not a corruption.
                let corrupt = loc.epoch == class.epoch();
                drop(class);
                return Ok(self.drop_slot(g, corrupt));
            }
            class.read_object(loc.desc, loc.obj, buf);
            Record::parse(buf).filter(|r| r.backref as usize == g)
        };
        let Some(record) = record else { return Ok(self.drop_slot(g, true)) };
        if let Some((kind, key)) = key
            && (record.kind != kind || record.key(buf) != key)
        {
            return Ok(Found::OtherKey);
        }
        if !record.checksum_ok(buf) {
            return Ok(self.drop_slot(g, true));
        }
        Ok(Found::Entry(record))
    }

    /// Make slot `g` a tombstone (its object, if any, is left to compaction, which frees
    /// objects no slot names).
    fn drop_slot(&self, g: usize, corrupt: bool) -> Found {
        if self.slot(g).loc.swap(0, Ordering::Relaxed) != 0 {
            Header::sub_saturating(&self.shm.entries, 1);
        }
        if corrupt {
            self.r.header().corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Found::Dropped
    }

    /// Free the object slot `g` names and make the slot a tombstone; the stored bytes freed.
    pub(crate) fn remove(&self, g: usize) -> Result<u64, SharedError> {
        let slot = self.slot(g);
        let Some(loc) = Location::unpack(slot.loc.load(Ordering::Relaxed)) else { return Ok(0) };
        let mut freed = 0;
        if (loc.class as usize) < self.r.layout.n_classes {
            let mut class = lock_class(self.r, loc.class)?;
            if let Some(loc) = Location::unpack(slot.loc.load(Ordering::Acquire))
                && class.names_live_object(&loc)
                && class.backref(loc.desc, loc.obj) == g as u32
            {
                freed = class.stored_len(loc.desc, loc.obj);
                class.free(loc.desc, loc.obj);
                Header::sub_saturating(&class.shm.bytes, freed);
                Header::sub_saturating(&self.r.header().bytes, freed);
            }
            slot.loc.store(0, Ordering::Release);
        } else {
            slot.loc.store(0, Ordering::Release);
        }
        Header::sub_saturating(&self.shm.entries, 1);
        Ok(freed)
    }

    pub(crate) fn mark_visited(&self, g: usize) {
        self.slot(g).hash.fetch_or(VISITED, Ordering::Relaxed);
    }

    /// SIEVE: evict one entry of this shard; `false` if it has none.
    pub(crate) fn evict_one(&self) -> Result<bool, SharedError> {
        if self.shm.entries.load(Ordering::Relaxed) == 0 {
            return Ok(false);
        }
        let cap = self.cap();
        let mut hand = (self.shm.hand.load(Ordering::Relaxed) % cap as u64) as usize;
        for _ in 0..2 * cap {
            let g = self.base() + hand;
            hand = (hand + 1) % cap;
            let slot = self.slot(g);
            if slot.loc.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if slot.hash.load(Ordering::Relaxed) & VISITED != 0 {
                slot.hash.fetch_and(!VISITED, Ordering::Relaxed);
                continue;
            }
            // A slot that named nothing live (a discarded class's, a scribbled one) is
            // cleared and passed: only a freed entry is an eviction (a budget loop that
            // counted cleared slots as evictions rescanned the table once per slot).
            if self.remove(g)? == 0 {
                continue;
            }
            self.shm.hand.store(hand as u64, Ordering::Relaxed);
            self.shm.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.shm.hand.store(hand as u64, Ordering::Relaxed);
        Ok(false)
    }

    /// A slot for a new entry of `hash`: the first empty slot or tombstone of its probe (the
    /// table doubled first if it is full enough, or if the probe is all live), else one
    /// evicted from the probe SIEVE-wise. The slot gets the hash word.
    pub(crate) fn claim(&self, hash: u64) -> Result<usize, SharedError> {
        let entries = self.shm.entries.load(Ordering::Relaxed) as usize;
        // Saturating: the count is read from the file (a scribbled one must not overflow).
        if entries.saturating_add(1).saturating_mul(GROW_LOAD.1) > self.cap() * GROW_LOAD.0 {
            self.resize(self.cap() * 2)?;
        }
        let mut victim = None;
        for round in 0..2 {
            for g in self.probe(hash) {
                let slot = self.slot(g);
                if slot.hash.load(Ordering::Relaxed) == 0 || slot.loc.load(Ordering::Relaxed) == 0 {
                    slot.hash.store(tag(hash), Ordering::Relaxed);
                    return Ok(g);
                }
                if victim.is_none() && slot.hash.load(Ordering::Relaxed) & VISITED == 0 {
                    victim = Some(g);
                }
                slot.hash.fetch_and(!VISITED, Ordering::Relaxed);
            }
            if round == 1 || !self.resize(self.cap() * 2)? {
                break;
            }
            victim = None;
        }
        let g = victim.unwrap_or_else(|| self.probe(hash).next().unwrap_or(self.base()));
        self.remove(g)?;
        self.shm.evictions.fetch_add(1, Ordering::Relaxed);
        self.slot(g).hash.store(tag(hash), Ordering::Relaxed);
        Ok(g)
    }

    /// Empty every slot (after their entries were removed) and go back to the smallest
    /// table, giving the other slots' pages back.
    pub(crate) fn reset(&self) {
        let (base, cap) = (self.base(), self.cap());
        self.clear_slots(base..base + MIN_SHARD_SLOTS);
        self.shm.cap.store(MIN_SHARD_SLOTS as u64, Ordering::Relaxed);
        self.release_slots(base + MIN_SHARD_SLOTS, base + cap);
        self.shm.entries.store(0, Ordering::Relaxed);
        self.shm.hand.store(0, Ordering::Relaxed);
    }

    fn clear_slots(&self, slots: std::ops::Range<usize>) {
        for g in slots {
            self.slot(g).loc.store(0, Ordering::Relaxed);
            self.slot(g).hash.store(0, Ordering::Relaxed);
        }
    }

    /// Slots `from..to` (none if `from >= to`), beyond the table now: their pages back to the
    /// OS. What they held does not matter: no probe looks past `cap`, and a resize writes
    /// every slot of its new table.
    fn release_slots(&self, from: usize, to: usize) {
        if from < to {
            self.r.punch_slots(from, to);
        }
    }

    /// The table size compaction would shrink this shard to: the smallest the entries fill at
    /// most 5/8 of (the current size if that is not smaller).
    pub(crate) fn shrink_target(&self) -> usize {
        let entries = self.shm.entries.load(Ordering::Relaxed) as usize;
        let mut cap = self.cap();
        while cap / 2 >= MIN_SHARD_SLOTS && entries.saturating_mul(SHRINK_LOAD.1) <= cap / 2 * SHRINK_LOAD.0 {
            cap /= 2;
        }
        cap
    }

    /// Rehash the live entries into a table of `new_cap` slots (see the module comment); whether
    /// it did (not when `new_cap` is out of range or the entries do not fit its probes).
    pub(crate) fn resize(&self, new_cap: usize) -> Result<bool, SharedError> {
        let (base, cap) = (self.base(), self.cap());
        if new_cap == cap
            || !new_cap.is_power_of_two()
            || !(MIN_SHARD_SLOTS..=self.r.layout.shard_slots).contains(&new_cap)
        {
            return Ok(false);
        }
        // The plan: for each new place, the old one, from the hash words (which only this
        // shard's lock changes, and we hold it). Slots with no location or a garbage one are
        // not carried over.
        let mut plan = vec![UNUSED; new_cap];
        let mut classes = Vec::new();
        for old in 0..cap {
            let slot = self.slot(base + old);
            let word = slot.hash.load(Ordering::Relaxed);
            let Some(loc) = Location::unpack(slot.loc.load(Ordering::Relaxed)) else { continue };
            if word == 0 || loc.class as usize >= self.r.layout.n_classes {
                continue;
            }
            let home = home(word, new_cap);
            let Some(place) = (0..PROBE.min(new_cap)).map(|i| (home + i) & (new_cap - 1)).find(|&p| plan[p] == UNUSED)
            else {
                return Ok(false);
            };
            plan[place] = old as u32;
            classes.push(loc.class);
        }
        classes.sort_unstable();
        classes.dedup();
        // Compaction rewrites locations under the class lock alone: hold every class named
        // here, in class order, so that no object of this shard moves while its slot does.
        let guards = classes.iter().map(|&c| lock_class(self.r, c)).collect::<Result<Vec<_>, _>>()?;
        self.shm.resize_to.store(new_cap as u64, Ordering::Relaxed);
        // Read every carried entry before writing any slot: the old and new tables overlap.
        // Each place's (old slot, hash word, location). An entry planned but found dead now
        // (a recovery discarded its class meanwhile) stays as a tombstone, hash word without
        // location: an empty slot there would end the probes of entries planned past it.
        let carried: Vec<(usize, u64, u64)> = plan
            .iter()
            .enumerate()
            .map(|(place, &old)| {
                if old == UNUSED {
                    return (base + place, 0, 0);
                }
                let g = base + (old as usize);
                let (word, loc) = (self.slot(g).hash.load(Ordering::Relaxed), self.slot(g).loc.load(Ordering::Relaxed));
                (g, word, if names_object_of(&guards, loc, g) { loc } else { 0 })
            })
            .collect();
        let mut entries = 0;
        for (place, &(was, word, loc)) in carried.iter().enumerate() {
            let (g, slot) = (base + place, self.slot(base + place));
            if let Some(loc) = Location::unpack(loc)
                && let Some(class) = guards.iter().find(|c| c.id == loc.class)
            {
                if was != g {
                    class.set_backref(loc.desc, loc.obj, g as u32);
                }
                entries += 1;
            }
            slot.hash.store(word, Ordering::Relaxed);
            slot.loc.store(loc, Ordering::Release);
        }
        self.shm.cap.store(new_cap as u64, Ordering::Relaxed);
        self.shm.entries.store(entries, Ordering::Relaxed);
        self.shm.hand.store(0, Ordering::Relaxed);
        self.shm.resize_to.store(0, Ordering::Relaxed);
        drop(guards);
        self.release_slots(base + new_cap, base + cap);
        Ok(true)
    }
}

/// Whether location `word`, read from slot `g`, names a live object of a class in `guards`
/// whose back-reference is `g` (an entry a recovery discarded, or a garbage one, is not
/// carried over by a resize).
fn names_object_of(guards: &[ClassGuard<'_>], word: u64, g: usize) -> bool {
    let Some(loc) = Location::unpack(word) else { return false };
    let Some(class) = guards.iter().find(|c| c.id == loc.class) else { return false };
    class.names_live_object(&loc) && class.backref(loc.desc, loc.obj) as usize == g
}
