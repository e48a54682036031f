//! Index shards: [`N_SHARDS`](crate::N_SHARDS) open-addressing tables of 16-byte slots
//! `(hash word, location)`, each with a robust lock, counters and a SIEVE hand.
//!
//! A slot's hash word is 0 (empty: a probe stops here) or the key's hash tag with bit 63 the
//! SIEVE visited bit. A slot with a hash word and no location is a tombstone (a deleted entry,
//! or a set that died before publishing): probes pass it, inserts reuse it. Probes look at
//! most [`PROBE`] slots from the key's home slot, so a lookup is bounded whatever the table
//! holds; an insert that finds no free slot there evicts one of them.
//!
//! Eviction is SIEVE in slot order: the hand walks the slots, clearing visited bits, and
//! evicts the first live entry it finds unvisited (a hash-table SIEVE; Zhang et al., NSDI '24).
//!
//! Lock order: **shard lock** -> class lock -> allocator lock. The shard lock guards its
//! slots' hash words, the choice of which slot names which key, its counters and its hand;
//! a location word is written under the class lock of the object it names (compaction
//! rewrites it holding only that lock).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::class::lock_class;
use crate::error::SharedError;
use crate::header::Header;
use crate::location::{EPOCH_MASK, Location};
use crate::object::{Record, load_words};
use crate::regions::Regions;
use crate::robust_mutex::{Guard, RobustMutex};

/// Slots a probe looks at, at most.
pub(crate) const PROBE: usize = 32;
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
    fn cap(&self) -> usize {
        self.r.layout.shard_slots
    }

    /// Global slot numbers of a probe for `hash`, in order.
    pub(crate) fn probe(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        let (cap, base) = (self.cap(), self.index * self.cap());
        let home = hash as usize;
        (0..PROBE.min(cap)).map(move |i| base + (home.wrapping_add(i) & (cap - 1)))
    }

    pub(crate) fn slot(&self, global: usize) -> &Slot {
        self.r.slot(global)
    }

    /// Every global slot number of the shard.
    pub(crate) fn all_slots(&self) -> std::ops::Range<usize> {
        let base = self.index * self.cap();
        base..base + self.cap()
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
    /// and both make the sequence odd first; frees through a slot need this shard's lock,
    /// and sets of other keys write only free slots. `None`: take the lock.
    fn read_unlocked(&self, g: usize, buf: &mut Vec<u8>) -> Option<Record> {
        let word = self.slot(g).loc.load(Ordering::Acquire);
        let loc = Location::unpack(word)?;
        let layout = self.r.classes().get(loc.class as usize)?;
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
        let mut hand = self.shm.hand.load(Ordering::Relaxed) as usize % cap;
        for _ in 0..2 * cap {
            let g = self.index * cap + hand;
            hand = (hand + 1) % cap;
            let slot = self.slot(g);
            if slot.loc.load(Ordering::Relaxed) == 0 {
                continue;
            }
            if slot.hash.load(Ordering::Relaxed) & VISITED != 0 {
                slot.hash.fetch_and(!VISITED, Ordering::Relaxed);
                continue;
            }
            self.shm.hand.store(hand as u64, Ordering::Relaxed);
            self.remove(g)?;
            self.shm.evictions.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        self.shm.hand.store(hand as u64, Ordering::Relaxed);
        Ok(false)
    }

    /// A slot for a new entry of `hash`: the first empty slot or tombstone of its probe, else
    /// (all live) one evicted from the probe SIEVE-wise. The slot gets the hash word.
    pub(crate) fn claim(&self, hash: u64) -> Result<usize, SharedError> {
        let mut victim = None;
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
        let g = victim.unwrap_or_else(|| self.probe(hash).next().unwrap_or(self.index * self.cap()));
        self.remove(g)?;
        self.shm.evictions.fetch_add(1, Ordering::Relaxed);
        self.slot(g).hash.store(tag(hash), Ordering::Relaxed);
        Ok(g)
    }

    /// Empty every slot (after their entries were removed).
    pub(crate) fn reset(&self) {
        for g in self.all_slots() {
            self.slot(g).loc.store(0, Ordering::Relaxed);
            self.slot(g).hash.store(0, Ordering::Relaxed);
        }
        self.shm.entries.store(0, Ordering::Relaxed);
        self.shm.hand.store(0, Ordering::Relaxed);
    }
}
