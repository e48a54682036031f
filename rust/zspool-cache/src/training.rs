//! A cache's dictionaries over their life: sampled and trained (or given), installed into
//! the pool, judged against the current one, and freed once no value uses them.
//!
//! ```text
//! train_dictionary(size) -> sample up to SAMPLE_MAX_VALUES values, evenly over the queue
//!                           (cache mutex in slices of SAMPLE_SLICE values)
//!                        -> zstd::dict::from_samples (no lock)
//!                        -> judge on the sample: kept only if it beats the current one
//!                           (or plain zstd when there is none)
//!                        -> install: its bytes become a pool object (counted in currsize),
//!                           it becomes current; old ones stay while values use them
//! a value leaves         -> its dictionary's count drops; at zero (and not current) the
//!                           dictionary's pool object is freed (DictUsage::freed)
//! ```
//!
//! `dictionary=True` trains the first time after [`TRAIN_AFTER_BYTES`] or
//! [`TRAIN_AFTER_VALUES`] of compressible values were stored without a dictionary, in the
//! thread whose store crossed the line ([`Cache::maybe_train`], run by `set` after the
//! store; the bindings run it with the GIL released). One training at a time; a training
//! that fails or is rejected doubles the wait before the next.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use zspool_core::Pool;

use crate::cache::{Cache, CacheGuard, EntryInfo};
use crate::compression::MIN_COMPRESS_LEN;
use crate::dictionary::{
    DEFAULT_DICTIONARY_SIZE, Dict, DictionaryReport, DictionaryStats, SAMPLE_MAX_BYTES, SAMPLE_MAX_VALUES, check_size,
    judge, judge_raw_bytes, train,
};
use crate::entry::Header;
use crate::error::{CacheError, Result};
use crate::index::NIL;

/// Values read per cache-mutex acquisition while sampling.
const SAMPLE_SLICE: usize = 256;

impl<P: Deref<Target = Pool>> Cache<P> {
    /// Train a new dictionary of at most `size` bytes ([`DEFAULT_DICTIONARY_SIZE`] if
    /// `None`) on a sample of the stored values and make it current, unless it compresses
    /// the sample no better than the current one (or plain zstd): then it is dropped and
    /// `None` is returned. Values stored before keep their dictionary until recompressed.
    pub fn train_dictionary(&self, size: Option<usize>) -> Result<Option<u32>> {
        self.check_open()?;
        if !self.dicts.enabled() && self.dicts.level == 0 {
            return Err(CacheError::BadConfig {
                what: "compression",
                value: "not zstd".into(),
                allowed: "compression='zstd' to train a dictionary",
            });
        }
        let size = size.unwrap_or(DEFAULT_DICTIONARY_SIZE);
        check_size(size)?;
        let samples = self.sample_values()?;
        let trained = train(&samples, size);
        let judged = trained.and_then(|bytes| self.judge_and_install(&samples, bytes));
        drop(samples);
        trim_heap();
        judged
    }

    /// Keep `bytes`, trained on `samples`, if it beats the current dictionary.
    fn judge_and_install(&self, samples: &[Vec<u8>], bytes: Vec<u8>) -> Result<Option<u32>> {
        let mut dict = Dict::prepare(0, &bytes, self.dicts.level)?;
        let sample_bytes = judge_raw_bytes(samples);
        let with_new = judge(samples, Some(&dict), self.dicts.level);
        let current = self.dicts.current();
        let with_current = judge(samples, current.as_deref(), self.dicts.level);
        if with_new >= with_current {
            self.lock().inner.dict_usage.rejected += 1;
            return Ok(None);
        }
        dict.expected_ratio = with_new as f64 / sample_bytes.max(1) as f64;
        let id = self.install(dict, &bytes)?;
        self.lock().inner.dict_usage.trained += 1;
        Ok(Some(id))
    }

    /// Check `bytes` (a zstd dictionary the user gives) and make it current.
    pub fn install_dictionary(&self, bytes: &[u8]) -> Result<u32> {
        self.check_open()?;
        let dict = Dict::prepare(0, bytes, self.dicts.level)?;
        self.install(dict, bytes)
    }

    fn install(&self, mut dict: Dict, bytes: &[u8]) -> Result<u32> {
        let max = self.config().max_bytes;
        if bytes.len() as u64 > max / 2 {
            return Err(CacheError::Dictionary(format!(
                "a dictionary of {} bytes would take more than half of maxsize={max}; \
                 use a smaller one or a larger cache",
                bytes.len()
            )));
        }
        let mut g = self.lock();
        dict.id = self.dicts.allocate_id();
        dict.handle = g.pool().store(bytes)?;
        let id = dict.id;
        // Over budget now and then: the next store evicts down to maxsize, as for any entry.
        g.inner.counters.stored_bytes += bytes.len() as u64;
        self.dicts.install(Arc::new(dict));
        g.retire_unused()?;
        Ok(id)
    }

    /// Train if `dictionary=True` and enough values have come in (see the module doc).
    /// Errors are not the storing caller's: a failed training only backs off.
    pub fn maybe_train(&self) {
        let dicts = &self.dicts;
        if !dicts.train_due.load(Ordering::Relaxed) || dicts.training.swap(true, Ordering::Acquire) {
            return;
        }
        if dicts.current_id().is_none() && !matches!(self.train_dictionary(None), Ok(Some(_))) {
            dicts.back_off();
        }
        dicts.train_due.store(false, Ordering::Relaxed);
        dicts.training.store(false, Ordering::Release);
    }

    /// Whether [`Cache::maybe_train`] has work to do (a cheap check for the bindings).
    pub fn training_due(&self) -> bool {
        self.dicts.train_due.load(Ordering::Relaxed)
    }

    /// The current dictionary's bytes (read back from the pool), to reuse elsewhere.
    pub fn dictionary(&self) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        let Some(dict) = self.dicts.current() else { return Ok(None) };
        let mut bytes = vec![0u8; dict.len];
        self.pool().read_with(dict.handle, |object| object.read(0, &mut bytes))??;
        Ok(Some(bytes))
    }

    /// Up to [`SAMPLE_MAX_VALUES`] values ([`SAMPLE_MAX_BYTES`] in all) of at least
    /// [`MIN_COMPRESS_LEN`] bytes, taken evenly over the queue (oldest to newest).
    fn sample_values(&self) -> Result<Vec<Vec<u8>>> {
        let ids = self.lock().ids_oldest_first();
        let stride = (ids.len() / SAMPLE_MAX_VALUES).max(1);
        let picks: Vec<u32> = ids.into_iter().step_by(stride).collect();
        let mut samples = Vec::with_capacity(picks.len());
        let mut bytes = 0;
        for chunk in picks.chunks(SAMPLE_SLICE) {
            let g = self.lock();
            for &id in chunk {
                let Some(value) = g.value_of(id)? else { continue };
                if value.len() < MIN_COMPRESS_LEN {
                    continue;
                }
                bytes += value.len();
                samples.push(value);
                if bytes >= SAMPLE_MAX_BYTES {
                    return Ok(samples);
                }
            }
        }
        Ok(samples)
    }

    /// Every dictionary with its usage, and the totals.
    pub fn dictionary_stats(&self) -> DictionaryReport {
        let g = self.lock();
        let usage = &g.inner.dict_usage;
        let current = self.dicts.current_id();
        let dictionaries: Vec<DictionaryStats> = self
            .dicts
            .all()
            .iter()
            .map(|d| DictionaryStats {
                id: d.id,
                size: d.len,
                current: Some(d.id) == current,
                usage: usage.by_dict.get(&d.id).copied().unwrap_or_default(),
            })
            .collect();
        DictionaryReport {
            current,
            bytes: dictionaries.iter().map(|d| d.size as u64).sum(),
            without_dictionary: usage.none,
            trained: usage.trained,
            rejected: usage.rejected,
            freed: usage.freed,
            recompressible_bytes: g.recompressible_bytes(),
            recompression: g.inner.recompression.totals,
            dictionaries,
        }
    }
}

/// Hand freed heap back to the OS. A training's sample is megabytes of small allocations;
/// glibc keeps freed memory in its arenas, so without this they would stay in the process's
/// RSS (0.61 instead of 0.47 bytes per payload byte on 100,000 records). Rare (after a
/// training or a complete recompression pass) and a few milliseconds at most.
pub(crate) fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas; it takes no pointer from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl<P: Deref<Target = Pool>> CacheGuard<'_, P> {
    /// Live slot ids, oldest entry first (coldest first under LRU).
    pub(crate) fn ids_oldest_first(&self) -> Vec<u32> {
        let inner = &*self.inner;
        let mut ids = Vec::with_capacity(inner.index.len());
        let mut p = inner.queue.tail();
        while p != NIL {
            ids.push(p);
            p = inner.index.slot(p).newer();
        }
        ids
    }

    /// The value in slot `id`, decompressed (`None` if the slot is no longer live).
    fn value_of(&self, id: u32) -> Result<Option<Vec<u8>>> {
        let Some(slot) = self.inner.index.live_slot(id) else { return Ok(None) };
        let dicts = &self.cache.dicts;
        let value = self.pool().read_owned(
            || slot.location(),
            |object| -> Result<Vec<u8>> { Header::read(object)?.value(object, dicts)?.to_vec() },
        )??;
        Ok(Some(value))
    }

    /// An entry left the cache (removed, or replaced by a new object): its dictionary loses
    /// a value, and is freed if that was its last and it is no longer current.
    pub(crate) fn value_left(&mut self, info: &EntryInfo) -> Result<()> {
        match self.inner.dict_usage.sub(info.dict, info.value_before, info.value_after) {
            Some(id) => self.free_dictionary(id),
            None => Ok(()),
        }
    }

    /// Free dictionary `id` if it is not current and nothing holds it.
    fn free_dictionary(&mut self, id: u32) -> Result<()> {
        let Some(dict) = self.cache.dicts.retire(id) else { return Ok(()) };
        self.pool().free(dict.handle)?;
        let inner = &mut *self.inner;
        inner.counters.stored_bytes -= dict.len as u64;
        inner.dict_usage.by_dict.remove(&id);
        inner.dict_usage.freed += 1;
        Ok(())
    }

    /// Free every old dictionary no value uses (after a new one is installed, after
    /// `clear`, and for one an encoded entry held while its last value left).
    pub(crate) fn retire_unused(&mut self) -> Result<()> {
        let unused: Vec<u32> = self
            .cache
            .dicts
            .all()
            .iter()
            .map(|d| d.id)
            .filter(|id| self.inner.dict_usage.by_dict.get(id).is_none_or(|u| u.values == 0))
            .collect();
        for id in unused {
            self.free_dictionary(id)?;
        }
        Ok(())
    }

    /// Every value is gone (`clear`): counts restart, old dictionaries are freed, the
    /// current one stays (in `currsize`).
    pub(crate) fn values_cleared(&mut self) -> Result<()> {
        self.inner.dict_usage.forget_values();
        self.retire_unused()?;
        self.inner.counters.stored_bytes = self.cache.dicts.all().iter().map(|d| d.len as u64).sum();
        Ok(())
    }
}
