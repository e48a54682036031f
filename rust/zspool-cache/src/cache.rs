//! The cache: a byte-budgeted map from keys to values whose entries live in a zspool pool.
//!
//! ```text
//! set(key, value) -> encode (compress if it pays; no lock)
//!                 -> cache mutex -> look the key up (index, then key bytes in the pool)
//!                 -> evict until the new entry fits max_bytes (SIEVE hand / LRU tail)
//!                 -> Pool::store (class lock) -> index slot, queue, deadline
//! get(key)        -> cache mutex -> index bucket -> slot (the entry's location) ->
//!                    Pool::read_owned (class lock, location re-read): compare the key,
//!                    copy (or decompress) the value out -> mark the hit
//! ```
//!
//! Entries are the pool's *owned* objects (the core's `owned.rs`): a slot holds its entry's
//! location, not a handle, and the slots (`slots.rs`) are the pool's `ObjectOwner`, so a get
//! skips the handle table. One cache per pool (the pool accepts one owner).
//!
//! Locks: the **cache mutex**, taken before the pool's (the lock order is in
//! `docs/ARCHITECTURE.md`), which are taken and dropped inside each pool call. Compaction
//! takes only the pool's locks and never the cache mutex: when it moves an entry's object it
//! rewrites that slot's location under the class lock; the table, hashes and links are
//! untouched. An overwrite stores the new object under a spare slot, frees the old object,
//! then hands the new one the entry's slot (`CacheGuard::overwrite`, the pool's `reown`):
//! while the old object lives, compaction may still write its location into that slot.
//! Every operation is a method of [`CacheGuard`], the held mutex, so a caller can do a batch
//! under one acquisition (the Python bindings also use [`Cache::try_lock`] to avoid blocking
//! on the mutex while attached to the interpreter).
//!
//! Fork: every way to the mutex passes the cache's fork gate (`fork.rs`), so that the
//! `pthread_atfork` handlers can hold the mutex across `fork()`, before any pool lock. Never
//! call `fork()` while holding a [`CacheGuard`].

use std::hash::{BuildHasher, RandomState};
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::MutexGuard;
use zspool_core::{OuterLock, Pool, ZsError};

use crate::compression::Compression;
use crate::dictionary::{DictSet, DictUsage, Dictionary};
use crate::entry::{Header, Key, OwnedKey, Pieces, Value, encode};
use crate::error::{CacheError, Result};
use crate::eviction::{Eviction, Queue};
use crate::fork::ForkSafeMutex;
use crate::index::{HASH_MASK, Index, NIL};
use crate::recompress::Recompression;
use crate::slots::{Slot, Slots};
use crate::stats::{CacheStats, Counters};
use crate::ttl::{Clock, Deadlines, Ttl, deadline};

/// How a cache is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The budget: bytes of stored entries (header + key + value after compression).
    pub max_bytes: u64,
    /// How values are compressed (only where it saves space).
    pub compression: Compression,
    /// Which entry goes when the budget is full.
    pub eviction: Eviction,
    /// The TTL of entries set with [`Ttl::Default`]; `None`: they never expire.
    pub default_ttl: Option<Duration>,
    /// A zstd dictionary (zstd only): none, trained from the values, or given.
    pub dictionary: Dictionary,
}

impl CacheConfig {
    /// A budget of `max_bytes`, no compression, SIEVE eviction, no TTL.
    pub fn new(max_bytes: u64) -> CacheConfig {
        CacheConfig {
            max_bytes,
            compression: Compression::None,
            eviction: Eviction::Sieve,
            default_ttl: None,
            dictionary: Dictionary::Off,
        }
    }
}

/// A key-value cache over a pool `P` (anything that derefs to a [`Pool`]: the pool itself,
/// an `Arc<Pool>`, or the bindings' handle on a Python-owned pool).
pub struct Cache<P> {
    pool: P,
    config: CacheConfig,
    clock: Clock,
    hasher: RandomState,
    closed: AtomicBool,
    /// The cache mutex; the fork handlers can hold it across `fork()` (see `fork.rs`).
    pub(crate) inner: ForkSafeMutex<Inner>,
    /// zstd dictionaries (`dictionary.rs`, `training.rs`).
    pub(crate) dicts: DictSet,
    /// The index's slots, also the pool's object owner (`slots.rs`).
    slots: Arc<Slots>,
}

pub(crate) struct Inner {
    pub(crate) index: Index,
    pub(crate) queue: Queue,
    pub(crate) deadlines: Deadlines,
    pub(crate) counters: Counters,
    /// Values per dictionary and dictionary events (`training.rs`).
    pub(crate) dict_usage: DictUsage,
    /// The recompression pass in progress and its totals (`recompress.rs`).
    pub(crate) recompression: Recompression,
}

impl Inner {
    pub(crate) fn empty(eviction: Eviction, slots: Arc<Slots>) -> Inner {
        Inner {
            index: Index::new(slots),
            queue: Queue::new(eviction),
            deadlines: Deadlines::new(),
            counters: Counters::default(),
            dict_usage: DictUsage::default(),
            recompression: Recompression::default(),
        }
    }
}

/// An entry encoded for the pool, made before the mutex is taken. It borrows the key and
/// (when stored raw) the value: the pool copies them straight into the object.
pub struct Encoded<'k> {
    key: Key<'k>,
    hash: u32,
    pieces: Pieces<'k>,
    /// Bytes of the pool object.
    stored: u64,
    /// Key + value bytes before compression.
    payload: u64,
}

/// One stored entry, as [`CacheGuard::peek_with`] found it: [`CacheGuard::remove_entry`]
/// removes it only if the key still holds that very entry (a two-step pop whose value is
/// deserialized between the steps, without the mutex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef {
    slot: u32,
    /// The slot's hash and version (`stamp`) when the entry was found.
    stamp: u64,
}

/// What tells a slot's entries apart over time: the key hash and the slot's version.
fn stamp(slot: &Slot) -> u64 {
    u64::from(slot.hash()) | u64::from(slot.version()) << 32
}

/// The cache mutex, held: every cache operation.
pub struct CacheGuard<'a, P: Deref<Target = Pool>> {
    pub(crate) cache: &'a Cache<P>,
    pub(crate) inner: MutexGuard<'a, Inner>,
}

/// How an entry left the cache.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Deleted,
    Evicted,
    Expired,
}

impl<P: Deref<Target = Pool>> Cache<P> {
    /// A cache over `pool` on the monotonic clock; `BadConfig` for a zero budget or a bad zstd level.
    pub fn new(pool: P, config: CacheConfig) -> Result<Cache<P>> {
        Cache::with_clock(pool, config, Clock::monotonic())
    }

    /// As [`Cache::new`], on `clock` (a manual one in tests).
    pub fn with_clock(pool: P, config: CacheConfig, clock: Clock) -> Result<Cache<P>> {
        if let Compression::Zstd(level) = config.compression
            && !(1..=22).contains(&level)
        {
            return Err(CacheError::BadConfig { what: "zstd level", value: level.to_string(), allowed: "1..=22" });
        }
        let Compression::Zstd(level) = config.compression else {
            if config.dictionary != Dictionary::Off {
                return Err(CacheError::BadConfig {
                    what: "dictionary",
                    value: "given".into(),
                    allowed: "only with compression='zstd'",
                });
            }
            return Cache::build(pool, config, clock, 0).attach();
        };
        let given = match &config.dictionary {
            Dictionary::Given(bytes) => Some(bytes.clone()),
            _ => None,
        };
        let cache = Cache::build(pool, config, clock, level);
        if let Some(bytes) = given {
            cache.install_dictionary(&bytes)?;
        }
        cache.attach()
    }

    fn build(pool: P, config: CacheConfig, clock: Clock, level: i32) -> Cache<P> {
        let slots = Arc::new(Slots::new());
        let inner = Inner::empty(config.eviction, slots.clone());
        let dicts = DictSet::new(config.dictionary.clone(), level);
        Cache {
            pool,
            config,
            clock,
            hasher: RandomState::new(),
            closed: AtomicBool::new(false),
            inner: ForkSafeMutex::new(inner),
            dicts,
            slots,
        }
    }

    /// Register the slots as the pool's object owner, the last step of a construction that
    /// can fail (the pool takes one owner for good): `PoolHasCache` if the pool already has
    /// one (another cache's entries live in it).
    fn attach(self) -> Result<Cache<P>> {
        self.pool.set_object_owner(self.slots.clone()).map_err(|_| CacheError::PoolHasCache)?;
        Ok(self)
    }

    /// The pool the entries live in.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The pool owner given to [`Cache::new`] (an `Arc`, a Python object, ...).
    pub fn pool_owner(&self) -> &P {
        &self.pool
    }

    /// How this cache was built.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The clock TTLs are measured on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Closed, or (in a forked child) lost in the fork: see [`CacheError::LostInFork`].
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.pool.is_closed() || self.inner.is_lost()
    }

    /// `Ok` while the cache can be used: the error every operation on a closed cache gives.
    pub fn check_open(&self) -> Result<()> {
        if self.inner.is_lost() {
            Err(CacheError::LostInFork)
        } else if self.is_closed() {
            Err(CacheError::Pool(ZsError::Closed))
        } else {
            Ok(())
        }
    }

    /// Take the cache mutex (after any fork being prepared is over).
    pub fn lock(&self) -> CacheGuard<'_, P> {
        CacheGuard { cache: self, inner: self.inner.lock() }
    }

    /// Take the cache mutex if it is free (and no fork is being prepared).
    pub fn try_lock(&self) -> Option<CacheGuard<'_, P>> {
        self.inner.try_lock().map(|inner| CacheGuard { cache: self, inner })
    }

    /// Block until the mutex is free (and let it go again): for a caller that must not block
    /// while holding something else, then retries [`Cache::try_lock`].
    pub fn wait_unlocked(&self) {
        drop(self.lock());
    }

    fn hash(&self, key: Key<'_>) -> u32 {
        let h = self.hasher.hash_one(key);
        ((h ^ (h >> 32)) as u32) & HASH_MASK
    }

    /// Encode an entry for [`CacheGuard::insert`]: compression happens here, without the
    /// mutex. `serialized` marks a serializer's output (given back as [`Value::serialized`]).
    pub fn encode<'k>(&self, key: Key<'k>, value: &'k [u8], serialized: bool) -> Result<Encoded<'k>> {
        let dict = self.dicts.current();
        if dict.is_none() && self.dicts.note_undictionaried(value.len()) {
            self.dicts.train_due.store(true, Ordering::Relaxed);
        }
        let pieces = encode(key, value, serialized, self.config.compression, dict)?;
        let stored = pieces.stored_len(key.bytes.len()) as u64;
        if stored > self.config.max_bytes {
            return Err(CacheError::TooLarge {
                key_len: key.bytes.len(),
                stored_bytes: stored,
                max_bytes: self.config.max_bytes,
            });
        }
        let payload = (key.bytes.len() + value.len()) as u64;
        Ok(Encoded { key, hash: self.hash(key), pieces, stored, payload })
    }

    // Convenience wrappers: one mutex acquisition each.

    /// The value stored under `key`, copied out, or `None` (one lock acquisition).
    pub fn get(&self, key: Key<'_>) -> Result<Option<Vec<u8>>> {
        self.lock().get_with(key, |v| v.to_vec())?.transpose()
    }

    /// Store `value` under `key`, evicting as needed (one lock acquisition).
    pub fn set(&self, key: Key<'_>, value: &[u8], ttl: Ttl) -> Result<()> {
        let encoded = self.encode(key, value, false)?;
        self.lock().insert(encoded, ttl)?;
        self.maybe_train();
        Ok(())
    }

    /// Remove `key`; whether it was there (one lock acquisition).
    pub fn remove(&self, key: Key<'_>) -> Result<bool> {
        self.lock().remove(key)
    }

    /// Live entries (expired ones are dropped first).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters and sizes, plus the pool's own stats (read after the mutex is dropped).
    pub fn stats(&self) -> Result<CacheStats> {
        self.check_open()?;
        let (c, entries, index_bytes) = {
            let g = self.lock();
            (g.inner.counters, g.inner.index.len(), g.inner.index.heap_bytes() + g.inner.deadlines.heap_bytes())
        };
        let compression_ratio = if c.stored_bytes == 0 { 1.0 } else { c.payload_bytes as f64 / c.stored_bytes as f64 };
        let dictionaries = self.dictionary_stats();
        Ok(CacheStats {
            hits: c.hits,
            misses: c.misses,
            evictions: c.evictions,
            expirations: c.expirations,
            sets: c.sets,
            deletes: c.deletes,
            entries,
            payload_bytes: c.payload_bytes,
            stored_bytes: c.stored_bytes,
            max_bytes: self.config.max_bytes,
            compressed_entries: c.compressed_entries,
            compression_ratio,
            index_bytes,
            eviction: self.config.eviction,
            dictionaries,
            pool: self.pool.stats(),
        })
    }

    /// Drop every entry and close the pool (its pages go back to the OS). Idempotent; later
    /// calls fail with the pool's `Closed` error.
    pub fn close(&self) {
        let mut g = self.lock();
        self.closed.store(true, Ordering::Release);
        g.inner.index.clear();
        g.inner.queue.clear();
        g.inner.deadlines.clear();
        g.inner.counters.payload_bytes = 0;
        g.inner.counters.stored_bytes = 0;
        g.inner.counters.compressed_entries = 0;
        g.inner.dict_usage.forget_values();
        self.dicts.clear();
        drop(g);
        self.pool.close();
    }
}

/// Make `fork()` safe for `cache`: every `fork()` in this process holds its mutex across the
/// fork, before the pools' locks, for as long as the cache is alive. Its pool must be
/// registered with [`zspool_core::register_for_fork`] too (every pool made from Python is).
pub fn register_for_fork<P: Deref<Target = Pool> + Send + Sync + 'static>(cache: &Arc<Cache<P>>) {
    zspool_core::register_outer_lock_for_fork(cache);
}

/// The cache's part of the core's fork protocol: its mutex, before any pool lock (`fork.rs`).
impl<P: Deref<Target = Pool> + Send + Sync> OuterLock for Cache<P> {
    fn fork_prepare(&self) -> bool {
        self.inner.fork_prepare()
    }

    fn fork_parent(&self) {
        self.inner.fork_parent();
    }

    fn fork_child(&self) {
        self.dicts.fork_child();
        self.inner.fork_child(|| Inner::empty(self.config.eviction, self.slots.clone()));
    }
}

/// A stored entry's object size, uncompressed key + value size, whether it is compressed,
/// and its dictionary with the value's sizes before and after compression.
pub(crate) struct EntryInfo {
    pub(crate) stored: u64,
    pub(crate) payload: u64,
    pub(crate) compressed: bool,
    pub(crate) dict: Option<u32>,
    pub(crate) value_before: u64,
    pub(crate) value_after: u64,
}

pub(crate) fn entry_info(object: &zspool_core::ObjectRef<'_>, header: &Header) -> Result<EntryInfo> {
    let (payload, compressed) = header.payload_len(object)?;
    let (before, after) = header.value_sizes(object)?;
    Ok(EntryInfo {
        stored: object.len() as u64,
        payload: payload as u64,
        compressed,
        dict: header.dict,
        value_before: before as u64,
        value_after: after as u64,
    })
}

impl<P: Deref<Target = Pool>> CacheGuard<'_, P> {
    pub(crate) fn pool(&self) -> &Pool {
        &self.cache.pool
    }

    /// The time, for expiry checks. A cache none of whose entries ever had a deadline skips
    /// the clock read (20-odd ns, twice per store) and answers 0: nothing is expired then.
    fn now(&self) -> u64 {
        if self.inner.deadlines.is_unused() { 0 } else { self.cache.clock.now() }
    }

    /// Find `key`'s slot (`hash` is `self.cache.hash(key)`) and run `read` on its object in
    /// the same pool call that confirms the key. An expired entry is removed (and counted)
    /// and reported as absent.
    fn lookup<R>(
        &mut self,
        key: Key<'_>,
        hash: u32,
        read: impl FnOnce(&zspool_core::ObjectRef<'_>, &Header) -> Result<R>,
    ) -> Result<Option<(u32, R)>> {
        self.cache.check_open()?;
        let now = self.now();
        let pool: &Pool = &self.cache.pool;
        let inner = &mut *self.inner;
        let (index, deadlines) = (&inner.index, &inner.deadlines);
        let mut read = Some(read);
        let mut out = None;
        let mut expired = false;
        let mut error = None;
        let found = index.find(hash, |id, slot| {
            if error.is_some() {
                return false;
            }
            let is_expired = deadlines.is_expired(id, now);
            let step = pool.read_owned(
                || slot.location(),
                |object| -> Result<bool> {
                    let header = Header::read(object)?;
                    if !header.key_is(object, key)? {
                        return Ok(false);
                    }
                    if !is_expired && let Some(read) = read.take() {
                        out = Some(read(object, &header)?);
                    }
                    Ok(true)
                },
            );
            match step.map_err(CacheError::from).and_then(|r| r) {
                Ok(true) => {
                    expired = is_expired;
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    error = Some(e);
                    false
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        match (found, out) {
            (Some(id), _) if expired => {
                self.remove_slot(id, Why::Expired)?;
                Ok(None)
            }
            (Some(id), Some(out)) => Ok(Some((id, out))),
            _ => Ok(None),
        }
    }

    /// Unlink a slot from queue, index and deadlines, free its object, fix the counters.
    fn remove_slot(&mut self, id: u32, why: Why) -> Result<()> {
        let slot = self.inner.index.slot(id);
        let info =
            self.pool().read_owned(|| slot.location(), |object| entry_info(object, &Header::read(object)?))??;
        self.remove_found(id, info, why)
    }

    /// [`CacheGuard::remove_slot`] for a caller that read the entry's `info` in the lookup
    /// that found it: one pool call (the free) instead of two.
    fn remove_found(&mut self, id: u32, info: EntryInfo, why: Why) -> Result<()> {
        let slot = self.inner.index.slot(id);
        self.cache.pool.free_owned(id, || slot.location())?;
        let inner = &mut *self.inner;
        inner.queue.unlink(&inner.index.slots, id);
        inner.index.remove(id);
        inner.deadlines.set(id, 0);
        let c = &mut inner.counters;
        c.stored_bytes -= info.stored;
        c.payload_bytes -= info.payload;
        c.compressed_entries -= u64::from(info.compressed);
        match why {
            Why::Deleted => c.deletes += 1,
            Why::Evicted => c.evictions += 1,
            Why::Expired => c.expirations += 1,
        }
        self.value_left(&info)
    }

    /// Run `f` on the value stored under `key` (a hit), or return `None` (a miss).
    pub fn get_with<R>(&mut self, key: Key<'_>, f: impl FnOnce(&Value<'_>) -> R) -> Result<Option<R>> {
        let hash = self.cache.hash(key);
        let dicts = &self.cache.dicts;
        match self.lookup(key, hash, |object, header| Ok(f(&header.value(object, dicts)?)))? {
            Some((id, out)) => {
                let inner = &mut *self.inner;
                inner.queue.touch(&inner.index.slots, id);
                inner.counters.hits += 1;
                Ok(Some(out))
            }
            None => {
                self.inner.counters.misses += 1;
                Ok(None)
            }
        }
    }

    /// [`CacheGuard::get_with`] for many keys: `f(i, value)` runs for each `keys[i]` that is
    /// a hit (in an order of the pool's choosing; a miss gets no call). Counters and
    /// recency are as for one `get_with` per key, in key order.
    ///
    /// Three passes instead of one lookup per key, so that the work is amortised and the
    /// cache misses of different keys overlap: (1) hash every key and probe the index with
    /// the index's `find_many` (buckets and slots prefetched a pass ahead); (2) one
    /// [`Pool::read_batch_owned`] over the candidates' slots confirms each key against the
    /// stored one and hands the value to `f`; (3) recency and counters. A key whose
    /// candidate is not confirmed (a 30-bit hash collision) or has expired takes the
    /// ordinary [`CacheGuard::get_with`] path. Keep batches modest (hundreds of keys).
    pub fn get_many_with(&mut self, keys: &[Key<'_>], mut f: impl FnMut(usize, &Value<'_>)) -> Result<()> {
        self.cache.check_open()?;
        let now = self.now();
        #[derive(Clone, Copy, PartialEq)]
        enum Step {
            /// No slot has the key's hash: a miss.
            Miss,
            /// This slot has the key's hash; its object is read in pass 2.
            Candidate(u32),
            Hit(u32),
            /// Expired, or the candidate holds another key: the ordinary path decides.
            Slow,
        }
        let hashes: Vec<u32> = keys.iter().map(|&key| self.cache.hash(key)).collect();
        let mut candidates = Vec::with_capacity(keys.len());
        let mut steps = Vec::with_capacity(keys.len());
        let mut ids = Vec::with_capacity(keys.len());
        let mut of_id = Vec::with_capacity(keys.len());
        {
            let inner = &*self.inner;
            inner.index.find_many(&hashes, &mut candidates);
            for (i, &id) in candidates.iter().enumerate() {
                steps.push(match id {
                    NIL => Step::Miss,
                    id if inner.deadlines.is_expired(id, now) => Step::Slow,
                    id => {
                        ids.push(id);
                        of_id.push(i);
                        Step::Candidate(id)
                    }
                });
            }
        }
        let mut error = None;
        let dicts = &self.cache.dicts;
        let slots = &*self.inner.index.slots;
        self.cache.pool.read_batch_owned(
            ids.len(),
            |j| slots.slot(ids[j]).location(),
            |j, object| {
                let i = of_id[j];
                let Step::Candidate(id) = steps[i] else { unreachable!("only candidates are read") };
                let step = object.map_err(CacheError::from).and_then(|object| -> Result<bool> {
                    let header = Header::read(object)?;
                    if !header.key_is(object, keys[i])? {
                        return Ok(false);
                    }
                    f(i, &header.value(object, dicts)?);
                    Ok(true)
                });
                match step {
                    Ok(true) => steps[i] = Step::Hit(id),
                    Ok(false) => steps[i] = Step::Slow,
                    Err(e) => {
                        error.get_or_insert(e);
                    }
                }
            },
        )?;
        if let Some(e) = error {
            return Err(e);
        }
        for (i, &step) in steps.iter().enumerate() {
            match step {
                Step::Hit(id) => {
                    let inner = &mut *self.inner;
                    inner.queue.touch(&inner.index.slots, id);
                    inner.counters.hits += 1;
                }
                Step::Miss => self.inner.counters.misses += 1,
                Step::Slow => {
                    self.get_with(keys[i], |v| f(i, v))?;
                }
                Step::Candidate(_) => unreachable!("every candidate was read"),
            }
        }
        Ok(())
    }

    /// Run `f` on the value stored under `key`, without counting a hit or a miss and without
    /// touching recency (the first step of a pop or a setdefault); `None` if absent.
    pub fn peek_with<R>(&mut self, key: Key<'_>, f: impl FnOnce(&Value<'_>) -> R) -> Result<Option<(EntryRef, R)>> {
        let hash = self.cache.hash(key);
        let dicts = &self.cache.dicts;
        Ok(self
            .lookup(key, hash, |object, header| Ok(f(&header.value(object, dicts)?)))?
            .map(|(slot, out)| (EntryRef { slot, stamp: stamp(self.inner.index.slot(slot)) }, out)))
    }

    /// Run `f` on the key and value of the entry the eviction algorithm would evict next,
    /// without removing it; `None` if the cache is empty. Expired entries met on the way are
    /// dropped.
    pub fn peek_victim_with<R>(&mut self, f: impl FnOnce(OwnedKey, &Value<'_>) -> R) -> Result<Option<(EntryRef, R)>> {
        self.cache.check_open()?;
        let now = self.now();
        loop {
            let inner = &mut *self.inner;
            let Some(slot) = inner.queue.victim(&inner.index.slots, NIL) else { return Ok(None) };
            if inner.deadlines.is_expired(slot, now) {
                self.remove_slot(slot, Why::Expired)?;
                continue;
            }
            let found = inner.index.slot(slot);
            let dicts = &self.cache.dicts;
            let out = self.cache.pool.read_owned(
                || found.location(),
                |object| -> Result<R> {
                    let header = Header::read(object)?;
                    Ok(f(header.key(object)?, &header.value(object, dicts)?))
                },
            )??;
            return Ok(Some((EntryRef { slot, stamp: stamp(found) }, out)));
        }
    }

    /// Delete the entry `entry` names, if it is still stored (not deleted, evicted, expired
    /// or overwritten meanwhile); whether it was.
    pub fn remove_entry(&mut self, entry: EntryRef) -> Result<bool> {
        self.cache.check_open()?;
        let same = self.inner.index.live_slot(entry.slot).is_some_and(|s| stamp(s) == entry.stamp);
        if same {
            self.remove_slot(entry.slot, Why::Deleted)?;
        }
        Ok(same)
    }

    /// Run `f(key, value, time left to live)` on every live entry, oldest first (the order of
    /// [`CacheGuard::keys`]): a consistent snapshot, under one hold of the mutex.
    pub fn for_each_entry(&mut self, mut f: impl FnMut(OwnedKey, &Value<'_>, Option<Duration>)) -> Result<()> {
        self.cache.check_open()?;
        self.len();
        let now = self.cache.clock.now();
        let inner = &*self.inner;
        let dicts = &self.cache.dicts;
        let mut p = inner.queue.tail();
        while p != NIL {
            let slot = inner.index.slot(p);
            let deadline = inner.deadlines.get(p);
            let left = (deadline != 0).then(|| Duration::from_nanos(deadline.saturating_sub(now)));
            self.cache.pool.read_owned(
                || slot.location(),
                |object| -> Result<()> {
                    let header = Header::read(object)?;
                    f(header.key(object)?, &header.value(object, dicts)?, left);
                    Ok(())
                },
            )??;
            p = slot.newer();
        }
        Ok(())
    }

    /// Whether `key` is present (and not expired). Neither a hit nor a miss; no recency.
    pub fn contains(&mut self, key: Key<'_>) -> Result<bool> {
        let hash = self.cache.hash(key);
        Ok(self.lookup(key, hash, |_, _| Ok(()))?.is_some())
    }

    /// Start loading the index buckets the next stores of `entries` will probe (a batch of
    /// stores prefetches its chunk first, so that their cache misses overlap).
    pub fn prefetch(&self, entries: &[Encoded<'_>]) {
        for entry in entries {
            self.inner.index.prefetch(entry.hash);
        }
    }

    /// Store an encoded entry, replacing any entry of the same key, evicting as needed.
    pub fn insert(&mut self, entry: Encoded<'_>, ttl: Ttl) -> Result<()> {
        // The old entry's size and payload are read in the same pool call that confirms its
        // key, so an overwrite costs one read, one store and one free.
        let existing = self.lookup(entry.key, entry.hash, entry_info)?;
        let stored = entry.stored;
        let max = self.cache.config.max_bytes;
        let keep = existing.as_ref().map_or(NIL, |&(id, _)| id);
        let old_stored = existing.as_ref().map_or(0, |(_, info)| info.stored);
        let now = self.now();
        while self.inner.counters.stored_bytes - old_stored + stored > max {
            let inner = &mut *self.inner;
            let Some(victim) = inner.queue.victim(&inner.index.slots, keep) else { break };
            let why = if inner.deadlines.is_expired(victim, now) { Why::Expired } else { Why::Evicted };
            self.remove_slot(victim, why)?;
        }
        // A new slot either way: on an overwrite the old object still names the old slot
        // until it is freed (see the module docs); a failed store leaves the old entry as it was.
        let id = self.inner.index.alloc(entry.hash);
        if let Err(e) = self.cache.pool.store_owned(id, &entry.pieces.parts(entry.key.bytes)) {
            self.inner.index.release(id);
            return Err(e.into());
        }
        let id = match existing {
            Some((old, old_info)) => {
                self.overwrite(old, id)?;
                let inner = &mut *self.inner;
                inner.queue.touch(&inner.index.slots, old);
                let c = &mut inner.counters;
                c.stored_bytes -= old_info.stored;
                c.payload_bytes -= old_info.payload;
                c.compressed_entries -= u64::from(old_info.compressed);
                self.value_left(&old_info)?;
                old
            }
            None => {
                let inner = &mut *self.inner;
                inner.index.link(id);
                inner.queue.push(&inner.index.slots, id);
                id
            }
        };
        let ttl = match ttl {
            Ttl::Default => self.cache.config.default_ttl,
            Ttl::Never => None,
            Ttl::For(d) => Some(d),
        };
        // `now` may be 0 (no deadlines yet): a new deadline reads the clock itself.
        let expires = match ttl {
            None => 0,
            Some(_) => deadline(self.cache.clock.now(), ttl),
        };
        let inner = &mut *self.inner;
        inner.deadlines.set(id, expires);
        let c = &mut inner.counters;
        c.stored_bytes += stored;
        c.payload_bytes += entry.payload;
        c.compressed_entries += u64::from(entry.pieces.is_compressed());
        c.sets += 1;
        let (before, after) = (entry.pieces.value_len as u64, entry.pieces.value.len() as u64);
        inner.dict_usage.add(entry.pieces.dict_id(), before, after);
        Ok(())
    }

    /// Make the entry in slot `old` the object just stored under the spare slot `new`: free
    /// the old object, give the slot a new version (an `EntryRef` of the old entry no longer
    /// matches), hand the new object that slot (`Pool::reown`), give the spare back. The
    /// entry keeps its slot, bucket, queue place and deadline. (Storing the new object under
    /// `old` directly would not do: until the old object is freed, compaction may move it
    /// and write its location into `old`.)
    pub(crate) fn overwrite(&mut self, old: u32, new: u32) -> Result<()> {
        let pool = &self.cache.pool;
        let index = &mut self.inner.index;
        let (old_slot, new_slot) = (index.slot(old), index.slot(new));
        pool.free_owned(old, || old_slot.location())?;
        old_slot.renew();
        pool.reown(new, old, || new_slot.location())?;
        index.release(new);
        Ok(())
    }

    /// Delete `key`; whether it was there.
    pub fn remove(&mut self, key: Key<'_>) -> Result<bool> {
        let hash = self.cache.hash(key);
        match self.lookup(key, hash, entry_info)? {
            Some((id, info)) => self.remove_found(id, info, Why::Deleted).map(|()| true),
            None => Ok(false),
        }
    }

    /// Delete `key` and run `f` on its value first; `None` if absent.
    pub fn pop_with<R>(&mut self, key: Key<'_>, f: impl FnOnce(&Value<'_>) -> R) -> Result<Option<R>> {
        let Some((entry, out)) = self.peek_with(key, f)? else { return Ok(None) };
        self.remove_entry(entry)?;
        Ok(Some(out))
    }

    /// Remove the entry the eviction algorithm would evict next and run `f` on its key and
    /// value; `None` if the cache is empty. Expired entries met on the way are dropped.
    pub fn popitem_with<R>(&mut self, f: impl FnOnce(OwnedKey, &Value<'_>) -> R) -> Result<Option<R>> {
        let Some((entry, out)) = self.peek_victim_with(f)? else { return Ok(None) };
        self.remove_entry(entry)?;
        Ok(Some(out))
    }

    /// Live entries (expired ones are dropped first when any may have expired).
    pub fn len(&mut self) -> usize {
        let now = self.now();
        if self.inner.deadlines.any_due(now) {
            let _ = self.expire();
        }
        self.inner.index.len()
    }

    /// Whether the cache holds no live entry.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Bytes of stored entries: what `max_bytes` budgets.
    pub fn currsize(&self) -> u64 {
        self.inner.counters.stored_bytes
    }

    /// Drop every expired entry now; returns how many.
    pub fn expire(&mut self) -> Result<usize> {
        self.cache.check_open()?;
        let now = self.now();
        let ids: Vec<u32> = self.inner.index.live_ids().collect();
        let mut removed = 0;
        let mut earliest = u64::MAX;
        for id in ids {
            let d = self.inner.deadlines.get(id);
            if d != 0 && d <= now {
                self.remove_slot(id, Why::Expired)?;
                removed += 1;
            } else if d != 0 {
                earliest = earliest.min(d);
            }
        }
        self.inner.deadlines.set_earliest(earliest);
        Ok(removed)
    }

    /// Every live key, oldest entry first (insertion order under SIEVE, where an overwrite
    /// keeps its place as in a dict; recency order under LRU).
    pub fn keys(&mut self) -> Result<Vec<OwnedKey>> {
        self.cache.check_open()?;
        self.len();
        let inner = &*self.inner;
        let mut keys = Vec::with_capacity(inner.index.len());
        let mut p = inner.queue.tail();
        while p != NIL {
            let slot = inner.index.slot(p);
            let key = self.cache.pool.read_owned(|| slot.location(), |object| Header::read(object)?.key(object))??;
            keys.push(key);
            p = slot.newer();
        }
        Ok(keys)
    }

    /// Remove every entry (their objects are freed; counters of past events are kept).
    pub fn clear(&mut self) -> Result<()> {
        self.cache.check_open()?;
        let ids: Vec<u32> = self.inner.index.live_ids().collect();
        for id in ids {
            let slot = self.inner.index.slot(id);
            self.cache.pool.free_owned(id, || slot.location())?;
        }
        let inner = &mut *self.inner;
        // SAFETY: every live slot's object was freed just above (dead slots own none).
        unsafe { inner.index.clear_and_release() };
        inner.queue.clear();
        inner.deadlines.clear();
        inner.counters.stored_bytes = 0;
        inner.counters.payload_bytes = 0;
        inner.counters.compressed_entries = 0;
        self.values_cleared()
    }
}
