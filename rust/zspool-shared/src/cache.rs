//! `SharedCache`: the data path over an opened file (get, set, delete, eviction, TTL, scans,
//! close); opening is `open.rs`. Lock order and recovery: docs/SHARED.md; each step's lock is taken by the module
//! that owns what it guards (`shard.rs`, `class.rs`, `allocator.rs`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use zspool_cache::{Codec, Key, KeyKind, OwnedKey};
use zspool_core::{CompactOptions, CompactionReport};

use crate::N_SHARDS;
use crate::class::lock_class;
use crate::clock::monotonic_ns;
use crate::config::SharedConfig;
use crate::error::SharedError;
use crate::hash::key_hash;
use crate::header::Header;
use crate::in_flight::{Entered, InFlight};
use crate::location::Location;
use crate::object::{HEADER_LEN, MAX_VALUE_LEN, Record, encode, set_backref};
use crate::regions::Regions;
use crate::robust_mutex::LockError;
use crate::shard::{Found, ShardGuard, lock_shard, shard_of, try_lock_shard};
use crate::stats::SharedStats;
use crate::value_flags::ValueFlags;

/// Times `set` evicts and retries when its class cannot get a zspage (the page budget).
const ALLOC_RETRIES: usize = 16;

/// What [`SharedCache::store`] did.
enum Stored {
    Yes,
    /// Not stored: no room could be made.
    NoRoom,
    /// Not stored: the key has a live entry (`set_if_absent`), with these flags.
    Present(ValueFlags),
}

thread_local! {
    /// Scratch for a record being written or read (one per thread: no allocation per call).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Scratch for the old record a `set` replaces, read while `SCRATCH` holds the new one.
    static OLD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A cache whose pool and index live in one shared file. `Send + Sync`; owns the mapping
/// (unmapped on close or drop) and the file descriptor.
#[derive(Debug)]
pub struct SharedCache {
    r: Regions,
    path: PathBuf,
    config: SharedConfig,
    closed: AtomicBool,
    in_flight: InFlight,
}

/// A lock in the file that cannot be used: the file is corrupt. (The path is filled in by
/// `SharedCache::with_path` on the way out.)
pub(crate) fn corrupt(e: LockError) -> SharedError {
    let LockError::Corrupt(why) = e;
    SharedError::NotOurs { path: PathBuf::new(), reason: why.into() }
}

impl SharedCache {
    pub(crate) fn from_parts(r: Regions, path: &Path, config: SharedConfig) -> SharedCache {
        SharedCache { r, path: path.to_path_buf(), config, closed: AtomicBool::new(false), in_flight: InFlight::new() }
    }

    #[cfg(test)]
    pub(crate) fn regions(&self) -> &Regions {
        &self.r
    }

    fn enter(&self) -> Result<Entered<'_>, SharedError> {
        let entered = self.in_flight.enter();
        if self.closed.load(Ordering::SeqCst) {
            return Err(SharedError::Closed);
        }
        Ok(entered)
    }

    fn with_path(&self, e: SharedError) -> SharedError {
        match e {
            SharedError::NotOurs { path, reason } if path.as_os_str().is_empty() => {
                SharedError::NotOurs { path: self.path.clone(), reason }
            }
            e => e,
        }
    }

    /// The file's configuration.
    pub fn config(&self) -> SharedConfig {
        self.config.clone()
    }

    /// The path the cache was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Look `key` up: its decoded (decompressed) value into `out` (cleared first) and its
    /// flags, or `None` (missing, expired, or a record that failed its checks).
    pub fn get(&self, key: Key<'_>, out: &mut Vec<u8>) -> Result<Option<ValueFlags>, SharedError> {
        let _in = self.enter()?;
        out.clear();
        self.lookup(key, Some(out), true).map_err(|e| self.with_path(e))
    }

    /// [`SharedCache::get`] that never waits: `None` instead of waiting for a lock (another
    /// thread or process holds the key's shard, an object of its class is being moved, or the
    /// entry has expired and must be removed). A caller that holds a lock of its own while it
    /// asks, as the Python bindings hold the GIL, tries this first and calls `get` after
    /// releasing it only on `None`: the common read then costs no release and re-take.
    pub fn try_get(&self, key: Key<'_>, out: &mut Vec<u8>) -> Result<Option<Option<ValueFlags>>, SharedError> {
        let _in = self.enter()?;
        out.clear();
        let kind = kind_code(key.kind);
        let hash = key_hash(kind, key.bytes);
        SCRATCH.with_borrow_mut(|buf| {
            let Some(shard) = try_lock_shard(&self.r, shard_of(hash)) else { return Ok(None) };
            let Ok(found) = shard.find_nowait(hash, kind, key.bytes, buf) else { return Ok(None) };
            let Some((g, record)) = found else {
                shard.shm.misses.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(None));
            };
            if record.expired(monotonic_ns()) {
                return Ok(None);
            }
            shard.mark_visited(g);
            shard.shm.hits.fetch_add(1, Ordering::Relaxed);
            drop(shard);
            Ok(Some(self.decoded(&record, buf, out)))
        })
    }

    /// The flags of a checked record, with its value decoded into `out`; `None` (counted as
    /// corrupt) if the frame does not decode.
    fn decoded(&self, record: &Record, buf: &[u8], out: &mut Vec<u8>) -> Option<ValueFlags> {
        if decode(record, buf, out).is_none() {
            // The checksum matched but the frame does not decode: not ours to return.
            self.r.header().corrupt_dropped.fetch_add(1, Ordering::Relaxed);
            out.clear();
            return None;
        }
        Some(ValueFlags(record.flags & 1))
    }

    /// Whether `key` has a live entry.
    pub fn contains(&self, key: Key<'_>) -> Result<bool, SharedError> {
        let _in = self.enter()?;
        Ok(self.lookup(key, None, false).map_err(|e| self.with_path(e))?.is_some())
    }

    fn lookup(&self, key: Key<'_>, out: Option<&mut Vec<u8>>, count: bool) -> Result<Option<ValueFlags>, SharedError> {
        let kind = kind_code(key.kind);
        let hash = key_hash(kind, key.bytes);
        SCRATCH.with_borrow_mut(|buf| {
            let shard = lock_shard(&self.r, shard_of(hash))?;
            let Some((g, record)) = shard.find(hash, kind, key.bytes, buf)? else {
                if count {
                    shard.shm.misses.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(None);
            };
            if record.expired(monotonic_ns()) {
                shard.remove(g)?;
                shard.shm.expirations.fetch_add(1, Ordering::Relaxed);
                if count {
                    shard.shm.misses.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(None);
            }
            if count {
                shard.mark_visited(g);
                shard.shm.hits.fetch_add(1, Ordering::Relaxed);
            }
            drop(shard);
            match out {
                Some(out) => Ok(self.decoded(&record, buf, out)),
                None => Ok(Some(ValueFlags(record.flags & 1))),
            }
        })
    }

    /// Store `value` under `key` with `flags`; `ttl` `None` takes the configuration's default.
    /// `Ok(false)`: not stored (no room could be made). `TooLarge`: the entry can never fit.
    pub fn set(
        &self,
        key: Key<'_>,
        value: &[u8],
        flags: ValueFlags,
        ttl: Option<Duration>,
    ) -> Result<bool, SharedError> {
        let _in = self.enter()?;
        let stored = self.store(key, value, flags, ttl, None).map_err(|e| self.with_path(e))?;
        Ok(matches!(stored, Stored::Yes))
    }

    /// Store `value` under `key` unless it has a live entry, in one hold of the key's shard
    /// lock (so of all the processes that race to add a key, one stores and the others see
    /// its value): `Some(flags)` with the present value in `out`, or `None` (stored, or not
    /// stored for want of room: a cache may forget).
    pub fn set_if_absent(
        &self,
        key: Key<'_>,
        value: &[u8],
        flags: ValueFlags,
        ttl: Option<Duration>,
        out: &mut Vec<u8>,
    ) -> Result<Option<ValueFlags>, SharedError> {
        let _in = self.enter()?;
        out.clear();
        match self.store(key, value, flags, ttl, Some(out)).map_err(|e| self.with_path(e))? {
            Stored::Present(flags) => Ok(Some(flags)),
            Stored::Yes | Stored::NoRoom => Ok(None),
        }
    }

    /// Remove `key`'s entry and return its value (into `out`), in one hold of the key's shard
    /// lock: of the processes that race to take a key, one gets the value. `None`: absent (or
    /// expired, which this removes).
    pub fn take(&self, key: Key<'_>, out: &mut Vec<u8>) -> Result<Option<ValueFlags>, SharedError> {
        let _in = self.enter()?;
        out.clear();
        let kind = kind_code(key.kind);
        let hash = key_hash(kind, key.bytes);
        SCRATCH
            .with_borrow_mut(|buf| {
                let shard = lock_shard(&self.r, shard_of(hash))?;
                let Some((g, record)) = shard.find(hash, kind, key.bytes, buf)? else {
                    shard.shm.misses.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                };
                shard.remove(g)?;
                if record.expired(monotonic_ns()) {
                    shard.shm.expirations.fetch_add(1, Ordering::Relaxed);
                    shard.shm.misses.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
                shard.shm.hits.fetch_add(1, Ordering::Relaxed);
                Ok(self.decoded(&record, buf, out))
            })
            .map_err(|e| self.with_path(e))
    }

    fn max_entry(&self) -> usize {
        (crate::classes::MAX_OBJECT as u64).min(self.config.maxbytes) as usize
    }

    /// Store `key`'s entry; with `keep`, only if it has no live one, which is then decoded
    /// into `keep` instead.
    fn store(
        &self,
        key: Key<'_>,
        value: &[u8],
        flags: ValueFlags,
        ttl: Option<Duration>,
        keep: Option<&mut Vec<u8>>,
    ) -> Result<Stored, SharedError> {
        let kind = kind_code(key.kind);
        let max = self.max_entry();
        if key.bytes.len() > usize::from(u16::MAX) || value.len() > MAX_VALUE_LEN {
            return Err(SharedError::TooLarge { size: HEADER_LEN + key.bytes.len() + value.len(), max });
        }
        let ttl = ttl.or(self.config.ttl);
        let expiry = ttl.map_or(0, |t| monotonic_ns().saturating_add(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)));
        if expiry != 0 {
            self.r.header().ttl_used.store(1, Ordering::Relaxed);
        }
        let compressed = zspool_cache::compress(self.config.compression, value, 4);
        SCRATCH.with_borrow_mut(|record| {
            let len_prefix = (value.len() as u32).to_le_bytes();
            match &compressed {
                Some((codec, packed)) => {
                    let bits = flags.0 & 1 | (*codec as u8) << 1;
                    encode(record, kind, bits, key.bytes, &[&len_prefix, packed], expiry);
                }
                None => encode(record, kind, flags.0 & 1, key.bytes, &[value], expiry),
            }
            let size = record.len();
            if size > max {
                return Err(SharedError::TooLarge { size, max });
            }
            let class_id = self.r.table.class_for(size) as u32;
            let hash = key_hash(kind, key.bytes);
            let shard = lock_shard(&self.r, shard_of(hash))?;
            let existing = OLD.with_borrow_mut(|old| shard.find(hash, kind, key.bytes, old))?;
            if let Some((g, old)) = existing {
                if let Some(keep) = keep
                    && !old.expired(monotonic_ns())
                    && let Some(present) = OLD.with_borrow(|bytes| self.decoded(&old, bytes, keep))
                {
                    shard.mark_visited(g);
                    return Ok(Stored::Present(present));
                }
                if self.overwrite(&shard, g, class_id, record)? {
                    return Ok(Stored::Yes);
                }
                shard.remove(g)?;
            }
            let mut recounted = false;
            while self.r.header().bytes.load(Ordering::Relaxed).saturating_add(size as u64) > self.config.maxbytes {
                if !self.evict(&shard)? {
                    // Nothing left to evict yet over budget: the global count drifted (a
                    // death between a class's count and it, or a scribbled file). Recount
                    // once from the classes and look again.
                    if recounted {
                        return Ok(Stored::NoRoom);
                    }
                    recounted = true;
                    let total = (0..self.r.layout.n_classes)
                        .map(|id| self.r.class(id).bytes.load(Ordering::Relaxed))
                        .fold(0, u64::saturating_add);
                    self.r.header().bytes.store(total, Ordering::Relaxed);
                }
            }
            let g = shard.claim(hash)?;
            for _ in 0..ALLOC_RETRIES {
                {
                    let mut class = lock_class(&self.r, class_id)?;
                    if let Some((desc, obj)) = class.alloc() {
                        set_backref(record, g as u32);
                        class.write_object(desc, obj, record);
                        let loc = Location { class: class_id, epoch: class.epoch(), desc, obj };
                        shard.slot(g).loc.store(loc.pack(), Ordering::Release);
                        class.shm.bytes.fetch_add(size as u64, Ordering::Relaxed);
                        self.r.header().bytes.fetch_add(size as u64, Ordering::Relaxed);
                        drop(class);
                        shard.shm.entries.fetch_add(1, Ordering::Relaxed);
                        shard.shm.sets.fetch_add(1, Ordering::Relaxed);
                        return Ok(Stored::Yes);
                    }
                }
                // No page left in the budget: evict (the zspages' fragmentation is what a
                // compaction would fix) and try again.
                if !self.evict(&shard)? {
                    break;
                }
            }
            Ok(Stored::NoRoom)
        })
    }

    /// Write `record` over the entry in slot `g`, in place, when the old object is of the
    /// record's class and the budget needs no eviction: the common overwrite, one short hold
    /// of the class lock and no allocation, free or relisting (the general path takes the
    /// class lock twice and touches its lists, counters and the zspages' descriptors, which
    /// two processes setting through one class passed back and forth). Safe because every
    /// reader of the object goes through slot `g` and holds this shard's lock, as we do; the
    /// class lock keeps compaction from copying it half written; a death while writing is
    /// the class's recovery (its epoch goes, and every entry of the class with it). `false`:
    /// nothing done, take the general path.
    fn overwrite(
        &self,
        shard: &ShardGuard<'_>,
        g: usize,
        class_id: u32,
        record: &mut [u8],
    ) -> Result<bool, SharedError> {
        let slot = shard.slot(g);
        if Location::unpack(slot.loc.load(Ordering::Relaxed)).is_none_or(|old| old.class != class_id) {
            return Ok(false);
        }
        let size = record.len() as u64;
        let class = lock_class(&self.r, class_id)?;
        let Some(old) = Location::unpack(slot.loc.load(Ordering::Acquire)) else { return Ok(false) };
        if !class.names_live_object(&old) || class.backref(old.desc, old.obj) != g as u32 {
            return Ok(false);
        }
        let old_size = class.stored_len(old.desc, old.obj);
        let bytes = self.r.header().bytes.load(Ordering::Relaxed);
        if bytes.saturating_sub(old_size).saturating_add(size) > self.config.maxbytes {
            return Ok(false);
        }
        set_backref(record, g as u32);
        class.write_object(old.desc, old.obj, record);
        if size != old_size {
            class.shm.bytes.fetch_add(size, Ordering::Relaxed);
            Header::sub_saturating(&class.shm.bytes, old_size);
            self.r.header().bytes.fetch_add(size, Ordering::Relaxed);
            Header::sub_saturating(&self.r.header().bytes, old_size);
        }
        drop(class);
        shard.shm.sets.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Evict one entry: from `own` shard, else from the first other shard whose lock is free.
    fn evict(&self, own: &ShardGuard<'_>) -> Result<bool, SharedError> {
        if own.evict_one()? {
            return Ok(true);
        }
        for k in 1..N_SHARDS {
            if let Some(other) = try_lock_shard(&self.r, (own.index + k) % N_SHARDS)
                && other.evict_one()?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Remove `key`'s entry; whether there was one.
    pub fn delete(&self, key: Key<'_>) -> Result<bool, SharedError> {
        let _in = self.enter()?;
        let kind = kind_code(key.kind);
        let hash = key_hash(kind, key.bytes);
        SCRATCH
            .with_borrow_mut(|buf| {
                let shard = lock_shard(&self.r, shard_of(hash))?;
                let Some((g, record)) = shard.find(hash, kind, key.bytes, buf)? else { return Ok(false) };
                shard.remove(g)?;
                Ok(!record.expired(monotonic_ns()))
            })
            .map_err(|e| self.with_path(e))
    }

    /// Visit every live entry of every shard (under that shard's lock) with its record.
    fn scan(
        &self,
        mut visit: impl FnMut(&ShardGuard<'_>, usize, &Record, &[u8]) -> Result<(), SharedError>,
    ) -> Result<(), SharedError> {
        let mut buf = Vec::new();
        for i in 0..N_SHARDS {
            let shard = lock_shard(&self.r, i)?;
            for g in shard.all_slots() {
                if shard.slot(g).loc.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                if let Found::Entry(record) = shard.read(g, None, &mut buf)? {
                    visit(&shard, g, &record, &buf)?;
                }
            }
        }
        Ok(())
    }

    /// A snapshot of the keys (expired entries skipped), in no particular order.
    pub fn keys(&self) -> Result<Vec<OwnedKey>, SharedError> {
        let _in = self.enter()?;
        let now = monotonic_ns();
        let mut keys = Vec::new();
        self.scan(|_, _, record, bytes| {
            if !record.expired(now) {
                let kind = if record.kind == 1 { KeyKind::Str } else { KeyKind::Bytes };
                keys.push(OwnedKey { kind, bytes: record.key(bytes).to_vec() });
            }
            Ok(())
        })
        .map_err(|e| self.with_path(e))?;
        Ok(keys)
    }

    /// Live entries. The shards' counts, while no entry ever had a TTL and no recovery or
    /// check ever dropped one (counted entries are then exactly the live ones); otherwise a
    /// scan of every slot that skips expired and discarded entries (O(slots)).
    pub fn len(&self) -> Result<usize, SharedError> {
        let _in = self.enter()?;
        let h = self.r.header();
        let exact = h.ttl_used.load(Ordering::Relaxed) == 0
            && h.dropped_on_recovery.load(Ordering::Relaxed) == 0
            && h.corrupt_dropped.load(Ordering::Relaxed) == 0;
        if exact {
            return Ok((0..N_SHARDS)
                .map(|i| self.r.shard(i).entries.load(Ordering::Relaxed) as usize)
                .fold(0, usize::saturating_add));
        }
        let now = monotonic_ns();
        let mut n = 0;
        self.scan(|_, _, record, _| {
            n += usize::from(!record.expired(now));
            Ok(())
        })
        .map_err(|e| self.with_path(e))?;
        Ok(n)
    }

    /// Whether there is no live entry.
    pub fn is_empty(&self) -> Result<bool, SharedError> {
        Ok(self.len()? == 0)
    }

    /// Remove every entry.
    pub fn clear(&self) -> Result<(), SharedError> {
        let _in = self.enter()?;
        (|| {
            for i in 0..N_SHARDS {
                let shard = lock_shard(&self.r, i)?;
                for g in shard.all_slots() {
                    if shard.slot(g).loc.load(Ordering::Relaxed) != 0 {
                        shard.remove(g)?;
                    }
                }
                shard.reset();
            }
            Ok(())
        })()
        .map_err(|e| self.with_path(e))
    }

    /// Drop every expired entry; how many.
    pub fn expire(&self) -> Result<usize, SharedError> {
        let _in = self.enter()?;
        let now = monotonic_ns();
        let mut n = 0;
        self.scan(|shard, g, record, _| {
            if record.expired(now) {
                shard.remove(g)?;
                shard.shm.expirations.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok(())
        })
        .map_err(|e| self.with_path(e))?;
        Ok(n)
    }

    /// Stored bytes of the entries (the budget's measure); 0 once closed.
    pub fn currsize(&self) -> u64 {
        self.enter().map_or(0, |_in| self.r.header().bytes.load(Ordering::Relaxed))
    }

    /// The budget in bytes (`maxbytes`).
    pub fn maxsize(&self) -> u64 {
        self.config.maxbytes
    }

    /// Pages a full compaction would free now (the kernel's `zs_can_compact`, summed); 0 once
    /// closed.
    pub fn can_compact(&self) -> usize {
        self.enter().map_or(0, |_in| crate::compaction::can_compact(&self.r))
    }

    /// Compact every class within `options`' budgets, in yielding slices.
    pub fn compact(&self, options: &CompactOptions) -> Result<CompactionReport, SharedError> {
        let _in = self.enter()?;
        crate::compaction::compact(&self.r, options, &self.closed).map_err(|e| self.with_path(e))
    }

    /// The host-wide counters (all zero once closed).
    pub fn stats(&self) -> SharedStats {
        let Ok(_in) = self.enter() else { return SharedStats::default() };
        crate::stats::collect(&self.r)
    }

    /// Take or renew the reclaimer lease for `holder` (a pid) for `for_`; `false` if another
    /// holder has an unexpired lease (or the cache is closed).
    pub fn try_lease(&self, holder: u32, for_: Duration) -> bool {
        let Ok(_in) = self.enter() else { return false };
        let now = monotonic_ns();
        let until = now.saturating_add(u64::try_from(for_.as_nanos()).unwrap_or(u64::MAX));
        crate::allocator::try_lease(&self.r, holder, now, until)
    }

    /// Give the lease up if `holder` has it.
    pub fn release_lease(&self, holder: u32) {
        if let Ok(_in) = self.enter() {
            crate::allocator::release_lease(&self.r, holder);
        }
    }

    /// Close this process's use of the cache: later calls return `Closed`; the mapping is
    /// unmapped once calls in flight in other threads have returned.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        while self.in_flight.count() != 0 {
            std::thread::yield_now();
        }
        self.r.unmap();
    }
}

impl Drop for SharedCache {
    fn drop(&mut self) {
        self.close();
    }
}

fn kind_code(kind: KeyKind) -> u8 {
    match kind {
        KeyKind::Bytes => 0,
        KeyKind::Str => 1,
    }
}

/// Decode a checked record's value into `out`; `None` if its frame does not decode.
fn decode(record: &Record, bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let stored = record.value(bytes);
    let codec = Codec::from_bits((record.flags >> 1) & 3)?;
    if codec == Codec::Raw {
        out.extend_from_slice(stored);
        return Some(());
    }
    let (len, packed) = stored.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_VALUE_LEN {
        return None;
    }
    out.resize(len, 0);
    zspool_cache::decompress(codec, packed, out).ok()
}
