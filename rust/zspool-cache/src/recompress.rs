//! Recompression as reclaim (zram's `recompress`): rewrite the values stored without the
//! current dictionary, or with an older one, with the current dictionary, then compact so
//! that the space they gave up comes back as free pages.
//!
//! ```text
//! recompress(max_bytes, time_budget)
//!   -> a pass: the live slot ids, oldest (coldest under LRU) first, taken once per
//!      dictionary (4 bytes an entry while the pass lasts) and resumed by later calls
//!   -> slices of at most SLICE_VALUES values / SLICE_TIME under the cache mutex, which is
//!      let go between slices (stores and reads get in, as between compaction's slices):
//!      read the entry, skip it if it is on the current dictionary or too short, else
//!      decompress, recompress, and store the new object only if it is smaller, or (for a
//!      value on an older dictionary) grows by less than its share of that dictionary's
//!      bytes: once its last value moves, the dictionary is freed, so moving the last few
//!      pays even where the current dictionary fits them slightly worse
//!   -> the old object is freed; an old dictionary whose last value this was is freed
//!   -> Pool::compact with the rest of the time budget (a quarter of it, at least)
//! ```
//!
//! A pass that reaches the newest entry marks the dictionary *swept*: until a new
//! dictionary is installed, [`CacheGuard::recompressible_bytes`] is 0, so that values no
//! dictionary shrinks are not tried again on every idle tick.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zspool_core::{CompactOptions, Pool};

use crate::cache::{Cache, CacheGuard, entry_info};
use crate::compression::MIN_COMPRESS_LEN;
use crate::dictionary::Dict;
use crate::entry::{Header, Key, encode};
use crate::error::Result;
use crate::training::trim_heap;

/// Values rewritten per cache-mutex acquisition, at most ...
const SLICE_VALUES: usize = 64;
/// ... and wall time per acquisition (a few hundred 300-byte values' worth).
const SLICE_TIME: Duration = Duration::from_micros(500);

/// Why a recompression run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecompressStop {
    /// Every entry was visited (the pass is complete).
    Done,
    /// `max_bytes` of values were rewritten or tried.
    MaxBytes,
    /// `time_budget` ran out; the next call resumes the pass.
    TimeBudget,
    /// There is no dictionary to recompress with.
    NoDictionary,
}

impl RecompressStop {
    /// The name Python sees (`RecompressReport.stop_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            RecompressStop::Done => "done",
            RecompressStop::MaxBytes => "max_bytes",
            RecompressStop::TimeBudget => "budget_reached",
            RecompressStop::NoDictionary => "no_dictionary",
        }
    }
}

/// What one [`Cache::recompress`] call did.
#[derive(Debug, Clone)]
pub struct RecompressReport {
    /// Entries looked at.
    pub values_scanned: u64,
    /// Entries rewritten with the current dictionary.
    pub values_recompressed: u64,
    /// Entries tried but kept as they were (the new form was not smaller).
    pub values_kept: u64,
    /// Bytes of the rewritten entries' pool objects before ...
    pub bytes_before: u64,
    /// ... and after.
    pub bytes_after: u64,
    /// Old dictionaries freed because their last value was rewritten.
    pub dictionaries_freed: u64,
    /// Pages the pool holds fewer of after the call than before: zspages emptied by freeing
    /// the old objects, and those the compaction that followed gave back (net of pages
    /// other threads' stores took meanwhile).
    pub pages_freed: usize,
    /// Wall time of the call.
    pub elapsed: Duration,
    /// Why the call ended.
    pub stop_reason: RecompressStop,
}

/// Recompression work done over the cache's life (in the stats).
#[derive(Debug, Clone, Copy, Default)]
pub struct RecompressTotals {
    /// `recompress` calls.
    pub runs: u64,
    /// Entries rewritten with the current dictionary.
    pub values_recompressed: u64,
    /// Bytes of their pool objects before ...
    pub bytes_before: u64,
    /// ... and after.
    pub bytes_after: u64,
    /// Pages the calls gave back.
    pub pages_freed: u64,
    /// Wall time spent in them.
    pub time: Duration,
}

/// A pass over the entries for one dictionary.
struct Pass {
    dict: u32,
    ids: Vec<u32>,
    next: usize,
}

/// The recompression state of a cache (a field of `Inner`, under the cache mutex).
#[derive(Default)]
pub(crate) struct Recompression {
    pass: Option<Pass>,
    /// The dictionary the last complete pass ran for.
    swept: Option<u32>,
    pub(crate) totals: RecompressTotals,
}

impl<P: Deref<Target = Pool>> Cache<P> {
    /// Rewrite values not on the current dictionary with it, oldest first, in slices that
    /// let other threads in; stop after `max_bytes` of stored values were rewritten or
    /// tried, or after `time_budget`; then compact. See the module doc.
    pub fn recompress(&self, max_bytes: Option<u64>, time_budget: Option<Duration>) -> Result<RecompressReport> {
        self.check_open()?;
        let start = Instant::now();
        let mut report = RecompressReport {
            values_scanned: 0,
            values_recompressed: 0,
            values_kept: 0,
            bytes_before: 0,
            bytes_after: 0,
            dictionaries_freed: 0,
            pages_freed: 0,
            elapsed: Duration::ZERO,
            stop_reason: RecompressStop::Done,
        };
        let Some(dict) = self.dicts.current() else {
            report.stop_reason = RecompressStop::NoDictionary;
            return Ok(report);
        };
        let pages_before = self.pool().stats().pages_used;
        // Three quarters of the budget rewrite; the rest (at least) compacts.
        let rewrite_until = time_budget.map(|b| start + b.mul_f64(0.75));
        let mut worked = 0u64;
        let mut swept = false;
        let mut g = self.lock();
        let freed_before = g.inner.dict_usage.freed;
        let mut pass = match g.inner.recompression.pass.take() {
            Some(pass) if pass.dict == dict.id => Some(pass),
            _ if g.inner.recompression.swept == Some(dict.id) => None,
            _ => Some(Pass { dict: dict.id, ids: g.ids_oldest_first(), next: 0 }),
        };
        while let Some(p) = pass.as_mut() {
            let slice_end = Instant::now() + SLICE_TIME;
            for _ in 0..SLICE_VALUES {
                let Some(&id) = p.ids.get(p.next) else { break };
                p.next += 1;
                worked += g.recompress_slot(id, &dict, &mut report)?;
                if Instant::now() >= slice_end {
                    break;
                }
            }
            if p.next == p.ids.len() {
                g.inner.recompression.swept = Some(dict.id);
                pass = None;
                swept = true;
                break;
            }
            if max_bytes.is_some_and(|m| worked >= m) {
                report.stop_reason = RecompressStop::MaxBytes;
                break;
            }
            if rewrite_until.is_some_and(|t| Instant::now() >= t) {
                report.stop_reason = RecompressStop::TimeBudget;
                break;
            }
            drop(g); // let stores and reads in between slices
            g = self.lock();
            if self.dicts.current_id() != Some(dict.id) {
                pass = None; // retrained meanwhile: the next call starts a pass for the new one
                break;
            }
        }
        g.inner.recompression.pass = pass;
        report.dictionaries_freed = g.inner.dict_usage.freed - freed_before;
        drop(g);
        if report.values_recompressed > 0 {
            let left = time_budget.map(|b| b.saturating_sub(start.elapsed()).max(b / 4));
            let compaction = self.pool().compact(&CompactOptions { time_budget: left, ..CompactOptions::default() });
            let net = pages_before.saturating_sub(self.pool().stats().pages_used);
            report.pages_freed = net.max(compaction.pages_freed);
        }
        if swept {
            trim_heap(); // the pass's id list and every rewritten value's buffers
        }
        report.elapsed = start.elapsed();
        let mut g = self.lock();
        let t = &mut g.inner.recompression.totals;
        t.runs += 1;
        t.values_recompressed += report.values_recompressed;
        t.bytes_before += report.bytes_before;
        t.bytes_after += report.bytes_after;
        t.pages_freed += report.pages_freed as u64;
        t.time += report.elapsed;
        Ok(report)
    }

    /// Stored value bytes a recompression would rewrite now (0 without a dictionary, or
    /// once a pass for the current one is complete).
    pub fn recompressible_bytes(&self) -> u64 {
        self.lock().recompressible_bytes()
    }

    /// Pages a recompression is expected to free now: the recompressible bytes times what
    /// the current dictionary saved on its training sample.
    pub fn recompressible_pages(&self) -> usize {
        let bytes = self.recompressible_bytes();
        let ratio = self.dicts.current().map_or(1.0, |d| d.expected_ratio);
        ((bytes as f64 * (1.0 - ratio).max(0.0)) as usize) / zspool_core::PAGE_SIZE
    }
}

impl<P: Deref<Target = Pool>> CacheGuard<'_, P> {
    pub(crate) fn recompressible_bytes(&self) -> u64 {
        let current = self.cache.dicts.current_id();
        if current.is_some() && self.inner.recompression.swept == current {
            return 0;
        }
        self.inner.dict_usage.stale_bytes(current)
    }

    /// An old dictionary's bytes divided among the values still on it (0 for no dictionary).
    fn share_of_dictionary(&self, dict: Option<u32>) -> u64 {
        let Some(id) = dict else { return 0 };
        let len = self.cache.dicts.get(id).map_or(0, |d| d.len as u64);
        let values = self.inner.dict_usage.by_dict.get(&id).map_or(1, |u| u.values.max(1));
        len / values
    }

    /// Rewrite the entry in slot `id` with `dict` if it is not on it and gets smaller;
    /// returns the stored bytes worked on (0 if the entry was skipped).
    fn recompress_slot(&mut self, id: u32, dict: &Arc<Dict>, report: &mut RecompressReport) -> Result<u64> {
        let Some(slot) = self.inner.index.live_slot(id) else { return Ok(0) };
        let hash = slot.hash();
        report.values_scanned += 1;
        let dicts = &self.cache.dicts;
        let found = self.pool().read_owned(
            || slot.location(),
            |object| -> Result<_> {
                let header = Header::read(object)?;
                let old = entry_info(object, &header)?;
                if header.dict == Some(dict.id) || old.value_before < MIN_COMPRESS_LEN as u64 {
                    return Ok(None);
                }
                let value = header.value(object, dicts)?.to_vec()?;
                Ok(Some((header.key(object)?, header.serialized(), value, old)))
            },
        )??;
        let Some((key, serialized, value, old)) = found else { return Ok(0) };
        let key = Key { kind: key.kind, bytes: &key.bytes };
        let pieces = encode(key, &value, serialized, self.cache.config().compression, Some(dict.clone()))?;
        let stored = pieces.stored_len(key.bytes.len()) as u64;
        if stored >= old.stored + self.share_of_dictionary(old.dict) {
            report.values_kept += 1;
            return Ok(old.stored);
        }
        // Stored under a spare slot, then handed this one, as an overwrite is (`cache.rs`).
        let new = self.inner.index.alloc(hash);
        if let Err(e) = self.cache.pool().store_owned(new, &pieces.parts(key.bytes)) {
            self.inner.index.release(new);
            return Err(e.into());
        }
        self.overwrite(id, new)?;
        let inner = &mut *self.inner;
        let c = &mut inner.counters;
        c.stored_bytes = c.stored_bytes - old.stored + stored;
        c.compressed_entries = c.compressed_entries - u64::from(old.compressed) + u64::from(pieces.is_compressed());
        inner.dict_usage.add(Some(dict.id), value.len() as u64, pieces.value.len() as u64);
        report.values_recompressed += 1;
        report.bytes_before += old.stored;
        report.bytes_after += stored;
        self.value_left(&old)?;
        Ok(old.stored)
    }
}
