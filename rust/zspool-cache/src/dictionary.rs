//! Trained zstd dictionaries: their versions, their prepared contexts, and what each holds.
//!
//! Small values (JSON documents, rendered fragments, pickles of a few hundred bytes) barely
//! compress one by one: the compressor has seen nothing before the first byte. A
//! dictionary trained on a sample of them (zstd's `ZDICT` trainer, through
//! `zstd::dict::from_samples`) gives it that history, and per-value zstd goes from about
//! 0.8 of the raw size to about 0.4 on such values.
//!
//! **Versions.** Every dictionary gets an id (1, 2, ...) and every entry compressed with
//! one records that id in its header (`entry.rs`), so a retrained dictionary never makes
//! an old value unreadable: the old one stays until no value uses it, then its pool object
//! is freed ([`DictUsage`] counts the values of each; freeing happens under the cache
//! mutex when a count drops to zero). The newest dictionary is the *current* one: new
//! values and recompression (`recompress.rs`) use it.
//!
//! **Memory.** A dictionary's bytes are one object in the cache's pool and count in
//! `currsize` (the budget covers them). zstd also keeps each one *prepared*, digested once
//! into an encoder (`EncoderDictionary`, a `ZSTD_CDict`) and a decoder
//! (`DecoderDictionary`, a `ZSTD_DDict`) on the heap, so that no call loads a dictionary:
//! every compression and decompression references a prepared one.
//!
//! **Frames** and per-thread contexts: `zstd_frame.rs`.
//!
//! Locks and fork: the set of live dictionaries ([`DictSet`]) is an immutable `Vec` behind
//! an `ArcSwap`, so reading it takes no lock: a decode (inside a pool read, after a class
//! lock) or an encode (no lock) loads a snapshot. It is replaced whole (copy on write) and
//! only under the cache mutex, which also guards the usage counts (`Inner::dict_usage`).
//! That is what makes it fork-safe without a hook of its own: a lock read under a class lock
//! could not be taken in the cache's `fork_prepare` (before the pools' locks) without
//! deadlocking against such a reader, and a reader or writer caught by `fork()` would hold it
//! forever in the child. Here a thread caught mid-read leaves at most a leaked reference in
//! the child, and no writer can be mid-update at a fork, since the fork protocol holds the
//! cache mutex across it (`fork.rs`; when it could not be taken the child's cache is lost
//! anyway). The one piece of state a vanished thread could leave set, the `training` flag,
//! is cleared in the child (`DictSet::fork_child`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use crate::compression::MIN_COMPRESS_LEN;
use crate::error::{CacheError, Result};
use crate::zstd_frame::{self, With};

/// Bytes of a dictionary trained without an explicit size (the 16 KiB measured
/// best on 300-byte records).
pub const DEFAULT_DICTIONARY_SIZE: usize = 16 * 1024;
/// The smallest dictionary zstd's trainer makes.
pub const MIN_DICTIONARY_SIZE: usize = 256;
/// The largest dictionary accepted (trained or given).
pub const MAX_DICTIONARY_SIZE: usize = 1 << 20;
/// [`MIN_DICTIONARY_SIZE`]..=[`MAX_DICTIONARY_SIZE`] as the errors state it (a test checks
/// that the two agree).
pub const DICTIONARY_SIZES: &str = "256..=1048576 bytes";
/// `dictionary=True` trains once this many bytes of compressible values were stored...
pub const TRAIN_AFTER_BYTES: u64 = 2 << 20;
/// ... or this many compressible values, whichever comes first.
pub const TRAIN_AFTER_VALUES: u64 = 10_000;
/// A training sample holds at most this many values ...
pub const SAMPLE_MAX_VALUES: usize = 10_000;
/// ... and at most this many bytes (zstd advises about 100 times the dictionary size).
pub const SAMPLE_MAX_BYTES: usize = 2 << 20;
/// Training needs at least this many values of [`MIN_COMPRESS_LEN`] bytes or more.
pub const MIN_SAMPLE_VALUES: usize = 64;
/// Values of the sample compressed to judge a new dictionary against the current one.
const JUDGE_VALUES: usize = 1_000;
/// The magic number that opens a zstd dictionary (`ZSTD_MAGIC_DICTIONARY`).
const DICTIONARY_MAGIC: [u8; 4] = 0xEC30_A437u32.to_le_bytes();

/// Whether a cache compresses with a dictionary (zstd only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Dictionary {
    /// No dictionary: each value is compressed on its own.
    #[default]
    Off,
    /// Train one from the stored values once there are enough of them
    /// ([`TRAIN_AFTER_BYTES`], [`TRAIN_AFTER_VALUES`]).
    Train,
    /// Use this dictionary (trained by the user, e.g. with `zstd --train`).
    Given(Vec<u8>),
}

/// One dictionary version.
pub(crate) struct Dict {
    pub(crate) id: u32,
    /// The pool object holding the dictionary's bytes (counted in `currsize`).
    pub(crate) handle: u64,
    pub(crate) len: usize,
    /// Stored bytes per value byte measured on the training sample (0.5 for a given one):
    /// what the shrinker expects recompression to save.
    pub(crate) expected_ratio: f64,
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
}

impl Dict {
    /// Check and prepare `bytes` (a zstd dictionary) at compression `level`; `handle` is
    /// set when the dictionary is stored in the pool.
    pub(crate) fn prepare(id: u32, bytes: &[u8], level: i32) -> Result<Dict> {
        if bytes.len() < MIN_DICTIONARY_SIZE || bytes.len() > MAX_DICTIONARY_SIZE {
            return Err(CacheError::Dictionary(format!(
                "a dictionary of {} bytes is out of range: {DICTIONARY_SIZES}",
                bytes.len()
            )));
        }
        // zstd would take any other bytes as a "raw content" dictionary: that is never what
        // a caller who passes a file of the wrong kind meant.
        if bytes[..4] != DICTIONARY_MAGIC {
            return Err(CacheError::Dictionary(
                "not a zstd dictionary (it does not start with the dictionary magic number 0xEC30A437); \
                 train one with Cache.train_dictionary() or `zstd --train`"
                    .into(),
            ));
        }
        let corrupt = |e: std::io::Error| CacheError::Dictionary(format!("corrupt zstd dictionary: {e}"));
        let encoder = EncoderDictionary::try_copy(bytes, level).map_err(corrupt)?;
        let decoder = DecoderDictionary::try_copy(bytes).map_err(corrupt)?;
        let dict = Dict { id, handle: 0, len: bytes.len(), expected_ratio: 0.5, encoder, decoder };
        // zstd checks the header when digesting, not every entropy table: a round trip does.
        let probe = b"{\"id\": 12345, \"name\": \"probe\", \"email\": \"probe@example.com\", \"active\": true}";
        let packed = dict.compress_raw(probe)?;
        let mut out = vec![0u8; probe.len()];
        match dict.decompress(&packed, &mut out) {
            Ok(()) if out == probe => Ok(dict),
            _ => Err(CacheError::Dictionary("corrupt zstd dictionary: a round trip through it failed".into())),
        }
    }

    /// `value` compressed with this dictionary.
    fn compress_raw(&self, value: &[u8]) -> Result<Vec<u8>> {
        zstd_frame::compress(value, With::Dictionary(&self.encoder))
    }

    /// `value` compressed, or `None` when that does not save at least `MIN_SAVING` bytes
    /// (counting `prefix_len` header bytes).
    pub(crate) fn compress(&self, value: &[u8], prefix_len: usize) -> Option<Vec<u8>> {
        let packed = self.compress_raw(value).ok()?;
        (packed.len() + prefix_len + crate::compression::MIN_SAVING <= value.len()).then_some(packed)
    }

    /// Decompress `packed` into `out` (exactly the original length) with the prepared
    /// decoder: no dictionary is loaded per call.
    pub(crate) fn decompress(&self, packed: &[u8], out: &mut [u8]) -> Result<()> {
        zstd_frame::decompress(packed, out, Some(&self.decoder))
    }
}

/// Train a dictionary of at most `size` bytes on `samples` (zstd's trainer).
pub(crate) fn train(samples: &[Vec<u8>], size: usize) -> Result<Vec<u8>> {
    check_size(size)?;
    if samples.len() < MIN_SAMPLE_VALUES {
        return Err(CacheError::Dictionary(format!(
            "too few values to train a dictionary on: {} of {MIN_COMPRESS_LEN} bytes or more, need {MIN_SAMPLE_VALUES}",
            samples.len()
        )));
    }
    zstd::dict::from_samples(samples, size)
        .map_err(|e| CacheError::Dictionary(format!("zstd could not train a dictionary on these values: {e}")))
}

/// The error of a dictionary size out of [`DICTIONARY_SIZES`]; `size` as the caller gave it.
pub fn bad_size(size: impl std::fmt::Display) -> CacheError {
    CacheError::BadConfig { what: "dictionary size", value: size.to_string(), allowed: DICTIONARY_SIZES }
}

pub(crate) fn check_size(size: usize) -> Result<()> {
    if (MIN_DICTIONARY_SIZE..=MAX_DICTIONARY_SIZE).contains(&size) { Ok(()) } else { Err(bad_size(size)) }
}

/// Bytes of `samples` ([`JUDGE_VALUES`] of them, evenly spread) once compressed with `dict`, or with
/// plain zstd at `level` when `dict` is `None`. Values that would not shrink count raw, as
/// they would be stored.
pub(crate) fn judge(samples: &[Vec<u8>], dict: Option<&Dict>, level: i32) -> u64 {
    samples
        .iter()
        .step_by((samples.len() / JUDGE_VALUES).max(1))
        .map(|v| {
            let packed = match dict {
                Some(d) => d.compress_raw(v).ok(),
                None => zstd_frame::compress(v, With::Level(level)).ok(),
            };
            packed.map_or(v.len(), |p| p.len().min(v.len())) as u64
        })
        .sum()
}

/// Bytes of the values [`judge`] compresses, before compression.
pub(crate) fn judge_raw_bytes(samples: &[Vec<u8>]) -> u64 {
    samples.iter().step_by((samples.len() / JUDGE_VALUES).max(1)).map(|v| v.len() as u64).sum()
}

/// The live dictionaries of one cache (the newest is current), and the auto-training state.
pub(crate) struct DictSet {
    pub(crate) mode: Dictionary,
    pub(crate) level: i32,
    /// Oldest first. Replaced whole, under the cache mutex (see the module doc).
    live: ArcSwap<Vec<Arc<Dict>>>,
    /// Compressible values (and their bytes) stored while there was no dictionary: what
    /// `dictionary=True` waits for.
    seen_values: AtomicU64,
    seen_bytes: AtomicU64,
    /// Bytes of compressible values to wait for before the next automatic training (grows
    /// after a failed or rejected one, so that a cache whose values do not train well does
    /// not retry on every store).
    train_at_bytes: AtomicU64,
    /// Enough values came in for an automatic training.
    pub(crate) train_due: AtomicBool,
    /// An automatic training is running (one at a time).
    pub(crate) training: AtomicBool,
    next_id: AtomicU64,
}

impl DictSet {
    pub(crate) fn new(mode: Dictionary, level: i32) -> DictSet {
        DictSet {
            mode,
            level,
            live: ArcSwap::from_pointee(Vec::new()),
            seen_values: AtomicU64::new(0),
            seen_bytes: AtomicU64::new(0),
            train_at_bytes: AtomicU64::new(TRAIN_AFTER_BYTES),
            train_due: AtomicBool::new(false),
            training: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.mode != Dictionary::Off
    }

    /// The dictionary new values are compressed with.
    pub(crate) fn current(&self) -> Option<Arc<Dict>> {
        self.live.load().last().cloned()
    }

    pub(crate) fn current_id(&self) -> Option<u32> {
        self.live.load().last().map(|d| d.id)
    }

    /// Dictionary `id` (`None` if no such dictionary is live: a corrupt entry). The snapshot
    /// is held only to find it (arc-swap's guards are for short reads); the caller keeps the
    /// dictionary's own `Arc` for as long as it decompresses with it.
    pub(crate) fn get(&self, id: u32) -> Option<Arc<Dict>> {
        self.live.load().iter().find(|d| d.id == id).cloned()
    }

    pub(crate) fn allocate_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed) as u32
    }

    /// Make `dict` current (under the cache mutex).
    pub(crate) fn install(&self, dict: Arc<Dict>) {
        let mut live = Vec::clone(&self.live.load());
        live.push(dict);
        self.live.store(Arc::new(live));
    }

    /// Take dictionary `id` out of the live set if nothing but the set holds it (under the
    /// cache mutex, once no value uses it and it is not current); returns it for freeing.
    pub(crate) fn retire(&self, id: u32) -> Option<Arc<Dict>> {
        let live = self.live.load();
        let pos = live.iter().position(|d| d.id == id)?;
        // The current one stays; so does one an encoded-but-not-yet-stored entry (or a decode
        // running now) still holds: it is freed by a later `retire_unused`.
        if pos + 1 == live.len() || Arc::strong_count(&live[pos]) > 1 {
            return None;
        }
        let mut rest = Vec::clone(&live);
        let dict = rest.remove(pos);
        drop(live);
        self.live.store(Arc::new(rest));
        Some(dict)
    }

    /// Every live dictionary, oldest first (for stats and sweeps).
    pub(crate) fn all(&self) -> Vec<Arc<Dict>> {
        Vec::clone(&self.live.load())
    }

    /// Drop every dictionary (the cache is closing; the pool frees their objects).
    pub(crate) fn clear(&self) {
        self.live.store(Arc::new(Vec::new()));
    }

    /// In a forked child: an automatic training that was running in the parent ran on a
    /// thread the child does not have, so it will never clear the flag; clear it so the
    /// child can train (the child's one thread is the forking one, not training).
    pub(crate) fn fork_child(&self) {
        self.training.store(false, Ordering::Release);
    }

    /// A compressible value was stored with no dictionary yet; whether it is time to train.
    pub(crate) fn note_undictionaried(&self, len: usize) -> bool {
        if self.mode != Dictionary::Train || len < MIN_COMPRESS_LEN {
            return false;
        }
        let values = self.seen_values.fetch_add(1, Ordering::Relaxed) + 1;
        let bytes = self.seen_bytes.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
        let at = self.train_at_bytes.load(Ordering::Relaxed);
        bytes >= at || values >= TRAIN_AFTER_VALUES * at / TRAIN_AFTER_BYTES
    }

    /// An automatic training failed or was rejected: wait for twice as many values.
    pub(crate) fn back_off(&self) {
        let seen = self.seen_bytes.load(Ordering::Relaxed);
        self.train_at_bytes.store(seen.max(TRAIN_AFTER_BYTES) * 2, Ordering::Relaxed);
    }
}

/// Values using one dictionary (or none), and their bytes before and after compression.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Values stored with it.
    pub values: u64,
    /// Value bytes before compression.
    pub bytes_before: u64,
    /// Value bytes as stored (compressed, or raw where the dictionary did not shrink them).
    pub bytes_after: u64,
}

impl Usage {
    fn add(&mut self, before: u64, after: u64) {
        self.values += 1;
        self.bytes_before += before;
        self.bytes_after += after;
    }

    fn sub(&mut self, before: u64, after: u64) {
        self.values -= 1;
        self.bytes_before -= before;
        self.bytes_after -= after;
    }
}

/// Per-dictionary usage, guarded by the cache mutex (a field of `Inner`).
#[derive(Debug, Default)]
pub(crate) struct DictUsage {
    /// Values stored with dictionary `id` (compressed, or tried and kept raw).
    pub(crate) by_dict: BTreeMap<u32, Usage>,
    /// Values of [`MIN_COMPRESS_LEN`] bytes or more stored with no dictionary: what
    /// recompression can rewrite once there is one.
    pub(crate) none: Usage,
    pub(crate) trained: u64,
    pub(crate) rejected: u64,
    pub(crate) freed: u64,
}

impl DictUsage {
    /// An entry with these value sizes joined (`dict`: its dictionary id).
    pub(crate) fn add(&mut self, dict: Option<u32>, before: u64, after: u64) {
        match dict {
            Some(id) => self.by_dict.entry(id).or_default().add(before, after),
            None if before >= MIN_COMPRESS_LEN as u64 => self.none.add(before, after),
            None => {}
        }
    }

    /// An entry left; returns the dictionary id if that was its last value.
    pub(crate) fn sub(&mut self, dict: Option<u32>, before: u64, after: u64) -> Option<u32> {
        match dict {
            Some(id) => {
                let usage = self.by_dict.get_mut(&id)?;
                usage.sub(before, after);
                (usage.values == 0).then_some(id)
            }
            None if before >= MIN_COMPRESS_LEN as u64 => {
                self.none.sub(before, after);
                None
            }
            None => None,
        }
    }

    /// Every value left (`clear`): the counts, not the history.
    pub(crate) fn forget_values(&mut self) {
        self.by_dict.clear();
        self.none = Usage::default();
    }

    /// Stored value bytes not on dictionary `current`: what recompression may rewrite.
    pub(crate) fn stale_bytes(&self, current: Option<u32>) -> u64 {
        let Some(current) = current else { return 0 };
        self.none.bytes_after
            + self.by_dict.iter().filter(|(id, _)| **id != current).map(|(_, u)| u.bytes_after).sum::<u64>()
    }
}

/// A dictionary as `Cache::stats` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DictionaryStats {
    /// 1, 2, ... in the order the dictionaries were made.
    pub id: u32,
    /// Bytes of the dictionary (a pool object, counted in `currsize`).
    pub size: usize,
    /// New values are compressed with it.
    pub current: bool,
    /// The values stored with it.
    pub usage: Usage,
}

/// The dictionaries of a cache and what they hold, as `Cache::stats` reports them.
#[derive(Debug, Clone, Default)]
pub struct DictionaryReport {
    /// The id of the dictionary new values use.
    pub current: Option<u32>,
    /// Every live dictionary, oldest first.
    pub dictionaries: Vec<DictionaryStats>,
    /// Bytes of all live dictionaries (pool objects, counted in `currsize`).
    pub bytes: u64,
    /// Values of 64 bytes or more stored without a dictionary.
    pub without_dictionary: Usage,
    /// Dictionaries trained and made current.
    pub trained: u64,
    /// Trained dictionaries dropped because they did not beat the current one.
    pub rejected: u64,
    /// Dictionaries freed once their last value left.
    pub freed: u64,
    /// Stored value bytes that recompression would rewrite now.
    pub recompressible_bytes: u64,
    /// Recompression work done so far.
    pub recompression: crate::recompress::RecompressTotals,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JSON-ish records that share field names and vocabularies, as cached values do.
    pub(crate) fn records(n: usize) -> Vec<Vec<u8>> {
        let names = ["Alice", "Bob", "Carol", "Dmitri", "Eve", "Fatima", "Gustavo", "Hana"];
        let cities = ["Lyon", "Osaka", "Toronto", "Lagos", "Quito", "Perth"];
        (0..n)
            .map(|i| {
                format!(
                    "{{\"id\": {i}, \"name\": \"{} {}\", \"email\": \"{}{}@example.org\", \"city\": \"{}\", \
                     \"active\": {}, \"created\": \"2026-{:02}-{:02}T{:02}:14:07Z\", \"score\": {}}}",
                    names[i % 8],
                    names[(i / 8) % 8],
                    names[i % 8].to_lowercase(),
                    i * 7919 % 1000,
                    cities[i % 6],
                    i.is_multiple_of(3),
                    1 + i % 12,
                    1 + i % 28,
                    i % 24,
                    i * 31 % 997
                )
                .into_bytes()
            })
            .collect()
    }

    #[test]
    fn a_trained_dictionary_round_trips_and_beats_plain_zstd() {
        let samples = records(2_000);
        let bytes = train(&samples, 4096).unwrap();
        let dict = Dict::prepare(1, &bytes, 3).unwrap();
        for v in samples.iter().take(100) {
            let packed = dict.compress(v, 2).expect("a record shrinks with the dictionary");
            let mut out = vec![0; v.len()];
            dict.decompress(&packed, &mut out).unwrap();
            assert_eq!(&out, v);
        }
        assert!(judge(&samples, Some(&dict), 3) * 2 < judge(&samples, None, 3));
    }

    #[test]
    fn the_stated_size_range_is_the_checked_one() {
        assert_eq!(DICTIONARY_SIZES, format!("{MIN_DICTIONARY_SIZE}..={MAX_DICTIONARY_SIZE} bytes"));
    }

    #[test]
    fn bad_dictionaries_are_errors() {
        let err = |bytes: &[u8]| match Dict::prepare(1, bytes, 3) {
            Err(CacheError::Dictionary(msg)) => msg,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted a bad dictionary"),
        };
        assert!(err(&[0u8; 1000]).contains("not a zstd dictionary"));
        assert!(err(&[1, 2, 3]).contains("out of range"));
        let mut broken = train(&records(1_000), 2048).unwrap();
        for b in &mut broken[8..200] {
            *b = 0xff;
        }
        assert!(err(&broken).contains("corrupt"));
    }

    #[test]
    fn too_few_samples_is_an_error() {
        assert!(matches!(train(&records(10), 4096), Err(CacheError::Dictionary(_))));
        assert!(matches!(train(&records(1000), 10), Err(CacheError::BadConfig { .. })));
    }

    #[test]
    fn a_forked_child_can_train_after_a_training_thread_vanished() {
        let dicts = DictSet::new(Dictionary::Train, 3);
        assert!(!dicts.training.swap(true, Ordering::Acquire)); // a thread starts training ...
        dicts.fork_child(); // ... and does not exist in the child
        assert!(!dicts.training.swap(true, Ordering::Acquire), "the child may train");
    }

    #[test]
    fn usage_reports_a_dictionary_once_its_last_value_leaves() {
        let mut usage = DictUsage::default();
        usage.add(Some(1), 300, 120);
        usage.add(Some(1), 300, 300);
        usage.add(None, 300, 250);
        usage.add(None, 10, 10); // too short to matter
        assert_eq!(usage.stale_bytes(Some(2)), 120 + 300 + 250);
        assert_eq!(usage.stale_bytes(Some(1)), 250);
        assert_eq!(usage.sub(Some(1), 300, 120), None);
        assert_eq!(usage.sub(Some(1), 300, 300), Some(1));
    }
}
