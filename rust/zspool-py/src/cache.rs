//! `zspool._core.Cache`: the `zspool-cache` crate's cache over a Python-owned `Pool`, as a
//! subclassable pyclass (`zspool.Cache` adds the `MutableMapping` mixins and the shrinker
//! policy in Python). This file converts keys, values and errors and applies the
//! serializer; every cache decision is the crate's.
//!
//! Locks and the GIL (the rules of `pool.rs`, plus one for the cache mutex):
//!
//! 1. **No thread waits for the cache mutex while attached.** [`Cache::guard`] tries the
//!    mutex and, if it is taken, detaches until it is free, then tries again. So a holder of
//!    the mutex may attach (or already be attached) without deadlocking against a waiter.
//! 2. Under the mutex (and a pool class lock) the only Python work is allocating result
//!    `bytes`; serializer calls, exception objects and key objects are made after the guard
//!    is dropped.
//! 3. (Rule 2, for batches.) `get_many` runs attached: it builds each value's `bytes`
//!    straight from the pool object under the locks, with no intermediate buffer, and calls
//!    the deserializer after the guard of each chunk is dropped. `set_many` checks and
//!    encodes every item attached (compression detached), then stores detached.
//! 4. A batch takes the mutex once per chunk of [`BATCH_CHUNK`] keys, not once for the whole
//!    batch, so a large batch does not shut other threads out of the cache for its whole
//!    run; `get_many` also lets go of the GIL briefly every few chunks.
//! 5. **Fork**: every cache is registered with the core's `pthread_atfork` handlers
//!    (`rust/zspool-cache/src/fork.rs`), which take its mutex before any pool lock in the
//!    forking thread, with the GIL held. That waits only for holders that need neither the
//!    GIL nor Python to let go, which rules 1-3 guarantee: an attached holder keeps the GIL
//!    until it drops the guard (it allocates `bytes`, which are not tracked by the garbage
//!    collector, so no collection and no `__del__` can run; drops only `bytes`; calls no
//!    `__eq__`/`__hash__`, since keys are compared as bytes in Rust), so it cannot be holding
//!    the mutex while another thread forks; a detached holder (`set_many`'s stores, `stats`,
//!    `close`, `wait_unlocked`) makes only Rust and pool calls before it lets go. Keep it so:
//!    a Python call, an `attach` or a `detach` under a guard would break it.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyTuple};
use zspool_cache::{
    CacheConfig, CacheError, CacheGuard, Compression, Dictionary, EntryRef, Eviction, Key, Ttl, Value, bad_size,
};

use crate::dictionary::{DictionaryReport, RecompressReport};
use crate::errors::{Kind, to_py};
use crate::objects::{Int, item_pairs, key_arg, key_object, seconds_arg, type_name};
use crate::pool::Pool;
use crate::serializer::Serializer;
use crate::stats::PoolStats;

/// The cache's pool: a Python `Pool` object, borrowed without the GIL (it is frozen).
struct PoolRef(Py<Pool>);

impl Deref for PoolRef {
    type Target = zspool_core::Pool;
    fn deref(&self) -> &zspool_core::Pool {
        &self.0.get().inner
    }
}

type Inner = zspool_cache::Cache<PoolRef>;

/// Keys per mutex acquisition in `get_many` / `set_many` (rule 4): large enough to amortise
/// the acquisition, small enough that a waiting thread is served within tens of microseconds.
const BATCH_CHUNK: usize = 256;
/// `get_many` releases the GIL between chunks every this many chunks.
const CHUNKS_PER_GIL_RELEASE: usize = 16;

/// A byte-budgeted key-value cache whose entries live in a zspool pool. See `_core.pyi`.
#[pyclass(frozen, subclass, module = "zspool")]
pub struct Cache {
    /// Shared with the fork handlers' registry (a weak reference there).
    inner: Arc<Inner>,
    codec: Serializer,
    /// The default TTL as given, in seconds (the config keeps it in whole nanoseconds).
    ttl_s: Option<f64>,
}

fn cache_err(py: Python<'_>, err: CacheError) -> PyErr {
    match err {
        CacheError::TooLarge { .. } => Kind::ObjectSize.err(py, err.to_string()),
        CacheError::KeyTooLong { .. } | CacheError::Dictionary(_) => PyValueError::new_err(err.to_string()),
        CacheError::BadConfig { .. } | CacheError::PoolHasCache => Kind::Config.err(py, err.to_string()),
        CacheError::Corrupt(_) => PyRuntimeError::new_err(err.to_string()),
        CacheError::Pool(e) => to_py(py, e),
        CacheError::LostInFork => Kind::PoolClosed.err(py, err.to_string()),
    }
}

trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, CacheError> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| cache_err(py, e))
    }
}

/// A TTL argument in seconds: None (the cache's default), a number > 0, or math.inf (never).
/// A bool is refused (`ttl=True` is a mistake, not one second); a TTL too long for the clock
/// never expires, and one shorter than its 1 ns resolution lives 1 ns.
pub(crate) fn ttl_arg(ttl: Option<&Bound<'_, PyAny>>) -> PyResult<Ttl> {
    let Some(obj) = ttl.filter(|obj| !obj.is_none()) else { return Ok(Ttl::Default) };
    if obj.is_instance_of::<PyBool>() || !(obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>()) {
        return Err(PyTypeError::new_err(format!(
            "ttl must be a number of seconds, math.inf or None, not {}",
            type_name(obj)
        )));
    }
    // An int too large for a float is as good as forever (if positive).
    let secs = obj.extract::<f64>().unwrap_or(if obj.gt(0)? { f64::INFINITY } else { f64::NEG_INFINITY });
    ttl_secs(secs).ok_or_else(|| {
        PyValueError::new_err(format!("ttl={obj} is out of range: seconds > 0, math.inf (never), or None"))
    })
}

fn ttl_secs(secs: f64) -> Option<Ttl> {
    if secs == f64::INFINITY {
        Some(Ttl::Never)
    } else if secs > 0.0 {
        let d = Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX);
        Some(Ttl::For(d.max(Duration::from_nanos(1))))
    } else {
        None // <= 0, nan, -inf
    }
}

/// A `dictionary` argument: None/False (none), True (train one), or a dictionary's bytes.
fn dictionary_arg(dictionary: Option<&Bound<'_, PyAny>>) -> PyResult<Dictionary> {
    let Some(d) = dictionary else { return Ok(Dictionary::Off) };
    if let Ok(b) = d.cast::<PyBytes>() {
        return Ok(Dictionary::Given(b.as_bytes().to_vec()));
    }
    match d.extract::<bool>() {
        Ok(true) if d.is_instance_of::<PyBool>() => Ok(Dictionary::Train),
        Ok(false) if d.is_instance_of::<PyBool>() => Ok(Dictionary::Off),
        _ => Err(PyTypeError::new_err(format!(
            "dictionary must be None, True (train one from the values) or bytes (a zstd dictionary), not {}",
            type_name(d)
        ))),
    }
}

/// A value copied out under the locks: a new `bytes`, and whether to deserialize it. Fails
/// with the `MemoryError` of an allocation that fails (a large value under `RLIMIT_AS`).
fn value_bytes<'py>(py: Python<'py>, v: &Value<'_>) -> PyResult<(Bound<'py, PyBytes>, bool)> {
    // Allocating a bytes object runs no Python code: allowed under the locks (rule 2).
    // A compressed value is decompressed straight into it.
    let bytes = PyBytes::new_with(py, v.len(), |buf| v.copy_to(buf).or_raise(py))?;
    Ok((bytes, v.serialized))
}

/// The KeyError of `popitem()` on an empty cache, with its context suppressed as
/// `MutableMapping.popitem`'s (`raise KeyError from None`) is.
fn empty_key_error(py: Python<'_>) -> PyErr {
    let err = PyKeyError::new_err("popitem(): cache is empty");
    let _ = err.value(py).setattr(intern!(py, "__suppress_context__"), true);
    err
}

/// What the locked step of a pop found: a raw value already removed (`None`), or the entry
/// to remove once its serialized value has been deserialized without the mutex.
type Popped<'py> = (Option<EntryRef>, PyResult<(Bound<'py, PyBytes>, bool)>);

/// Under the guard: remove an entry whose raw value was copied out, keep the entry otherwise
/// (a serialized value is removed after `loads` succeeds; a failed copy removes nothing).
fn settle<'py>(
    g: &mut CacheGuard<'_, PoolRef>,
    entry: EntryRef,
    value: PyResult<(Bound<'py, PyBytes>, bool)>,
) -> Result<Popped<'py>, CacheError> {
    match value {
        Ok((bytes, false)) => g.remove_entry(entry).map(|_| (None, Ok((bytes, false)))),
        other => Ok((Some(entry), other)),
    }
}

impl Cache {
    /// The cache mutex, taken without ever waiting for it while attached (rule 1).
    fn guard(&self, py: Python<'_>) -> CacheGuard<'_, PoolRef> {
        loop {
            if let Some(g) = self.inner.try_lock() {
                return g;
            }
            let inner = &self.inner;
            py.detach(|| inner.wait_unlocked());
        }
    }

    fn set_impl(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Ttl) -> PyResult<()> {
        let key = key_arg(key)?;
        let value = self.codec.value_arg(value)?;
        let encoded = self.inner.encode(key, value.bytes.as_bytes(), value.serialized).or_raise(py)?;
        let result = self.guard(py).insert(encoded, ttl);
        result.or_raise(py)?;
        self.maybe_train(py);
        Ok(())
    }

    /// `dictionary=True`: train once enough values came in (GIL released; see the crate's
    /// `training.rs`).
    fn maybe_train(&self, py: Python<'_>) {
        if self.inner.training_due() {
            let inner = &self.inner;
            py.detach(|| inner.maybe_train());
        }
    }

    fn lookup<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let k = key_arg(key)?;
        let found = self.guard(py).get_with(k, |v| value_bytes(py, v));
        match found.or_raise(py)?.transpose()? {
            Some((bytes, serialized)) => Ok(Some(self.codec.value_object(py, bytes, serialized)?)),
            None => Ok(None),
        }
    }

    /// The second step of a pop: the Python value, then (only if that worked) the removal.
    fn finish_pop<'py>(&self, py: Python<'py>, popped: Popped<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (entry, value) = popped;
        let (bytes, serialized) = value?;
        let value = self.codec.value_object(py, bytes, serialized)?;
        if let Some(entry) = entry {
            let removed = self.guard(py).remove_entry(entry);
            removed.or_raise(py)?;
        }
        Ok(value)
    }
}

#[pymethods]
impl Cache {
    #[new]
    #[pyo3(signature = (maxbytes, *, pool, compression = None, compression_level = None, ttl = None, eviction = "sieve", dumps = None, loads = None, dictionary = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        maxbytes: u64,
        pool: Bound<'_, Pool>,
        compression: Option<&str>,
        compression_level: Option<i32>,
        ttl: Option<&Bound<'_, PyAny>>,
        eviction: &str,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
        dictionary: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Cache> {
        let dictionary = dictionary_arg(dictionary)?;
        if dictionary != Dictionary::Off && compression != Some("zstd") {
            return Err(PyValueError::new_err("dictionary applies to compression='zstd' only"));
        }
        let compression = match (compression, compression_level) {
            (None, None) => Compression::None,
            (Some("lz4"), None) => Compression::Lz4,
            (Some("zstd"), level) => Compression::Zstd(level.unwrap_or(3)),
            (None | Some("lz4"), Some(_)) => {
                return Err(PyValueError::new_err("compression_level applies to compression='zstd' only"));
            }
            (Some(other), _) => {
                return Err(PyValueError::new_err(format!(
                    "compression={other:?} is unknown: use None, 'lz4' or 'zstd'"
                )));
            }
        };
        let eviction = match eviction {
            "sieve" => Eviction::Sieve,
            "lru" => Eviction::Lru,
            other => return Err(PyValueError::new_err(format!("eviction={other:?} is unknown: use 'sieve' or 'lru'"))),
        };
        let (default_ttl, ttl_s) = match ttl_arg(ttl)? {
            Ttl::For(d) => (Some(d), ttl.and_then(|t| t.extract::<f64>().ok())),
            _ => (None, None),
        };
        if dumps.is_some() != loads.is_some() {
            return Err(PyValueError::new_err("give both dumps and loads, or neither"));
        }
        let config = CacheConfig { max_bytes: maxbytes, compression, eviction, default_ttl, dictionary };
        let pool = PoolRef(pool.unbind());
        let inner = Arc::new(py.detach(|| zspool_cache::Cache::new(pool, config)).or_raise(py)?);
        // Fork-safe, like its pool: the core's pthread_atfork handlers hold the cache mutex
        // across fork(), before the pool's locks (rule 5).
        zspool_cache::register_for_fork(&inner);
        Ok(Cache { inner, codec: Serializer { dumps, loads }, ttl_s })
    }

    /// The value of `key`; on a miss, a subclass's `__missing__(key)` if it has one (as for
    /// dict), else KeyError.
    fn __getitem__<'py>(slf: &Bound<'py, Self>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        if let Some(value) = slf.get().lookup(py, key)? {
            return Ok(value);
        }
        if !slf.is_exact_instance_of::<Self>()
            && let Some(missing) = slf.get_type().getattr(intern!(py, "__missing__")).ok()
        {
            return missing.call1((slf, key));
        }
        Err(PyKeyError::new_err(key.clone().unbind()))
    }

    fn __setitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_impl(py, key, value, Ttl::Default)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = key_arg(key)?;
        let removed = self.guard(py).remove(k);
        if removed.or_raise(py)? { Ok(()) } else { Err(PyKeyError::new_err(key.clone().unbind())) }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(k) = key_arg(key) else { return Ok(false) };
        let found = self.guard(py).contains(k);
        found.or_raise(py)
    }

    /// Live entries; PoolClosedError after close().
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.inner.check_open().or_raise(py)?;
        Ok(self.guard(py).len())
    }

    /// A snapshot of the keys, oldest first: later changes do not affect the iteration.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let keys = self.guard(py).keys().or_raise(py)?;
        let list = PyList::new(py, keys.iter().map(|k| key_object(py, k)).collect::<PyResult<Vec<_>>>()?)?;
        list.try_iter().map(Bound::into_any)
    }

    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        Ok(self.lookup(py, key)?.or(default))
    }

    #[pyo3(signature = (key, value, ttl = None))]
    fn set(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        ttl: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        self.set_impl(py, key, value, ttl_arg(ttl)?)
    }

    #[pyo3(signature = (key, *default))]
    fn pop<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if default.len() > 1 {
            return Err(PyTypeError::new_err(format!("pop expected at most 2 arguments, got {}", 1 + default.len())));
        }
        let k = key_arg(key)?;
        // Never half done: the entry goes only once its value is in hand (copied, and
        // deserialized if it was serialized); a failure on the way leaves it stored.
        let found = {
            let mut g = self.guard(py);
            match g.peek_with(k, |v| value_bytes(py, v)) {
                Ok(Some((entry, value))) => settle(&mut g, entry, value).map(Some),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match found.or_raise(py)? {
            Some(popped) => self.finish_pop(py, popped),
            None => default.get_item(0).map_err(|_| PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Remove and return the (key, value) the eviction algorithm would evict next.
    /// As `pop`, never half done.
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let found = {
            let mut g = self.guard(py);
            match g.peek_victim_with(|k, v| (k, value_bytes(py, v))) {
                Ok(Some((entry, (k, value)))) => settle(&mut g, entry, value).map(|popped| Some((k, popped))),
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            }
        };
        match found.or_raise(py)? {
            Some((k, popped)) => {
                let key = key_object(py, &k)?;
                let value = self.finish_pop(py, popped)?;
                PyTuple::new(py, [key, value])
            }
            None => Err(empty_key_error(py)),
        }
    }

    #[pyo3(signature = (key, default = None))]
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // As dict.setdefault: an existing value is returned as it is, and the default is
        // neither checked nor encoded (nor pickled) unless it is stored.
        if let Some(value) = self.lookup(py, key)? {
            return Ok(value);
        }
        let k = key_arg(key)?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let value = self.codec.value_arg(&default)?;
        let encoded = self.inner.encode(k, value.bytes.as_bytes(), value.serialized).or_raise(py)?;
        // Another thread may have stored the key while the default was encoded: keep theirs.
        let found = {
            let mut g = self.guard(py);
            match g.peek_with(k, |v| value_bytes(py, v)) {
                Ok(None) => g.insert(encoded, Ttl::Default).map(|()| None),
                Ok(Some((_, value))) => Ok(Some(value)),
                Err(e) => Err(e),
            }
        };
        match found.or_raise(py)? {
            Some(value) => {
                let (bytes, serialized) = value?;
                self.codec.value_object(py, bytes, serialized)
            }
            None => Ok(default),
        }
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.guard(py).clear();
        done.or_raise(py)
    }

    /// Drop every expired entry now; returns how many.
    fn expire(&self, py: Python<'_>) -> PyResult<Int> {
        let done = self.guard(py).expire();
        done.map(Int::from).or_raise(py)
    }

    /// `(key, value)` of every entry, oldest first: one consistent snapshot (one hold of the
    /// mutex), deserialized after it is let go. `items()` and `values()` iterate this.
    fn _items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut raw = Vec::new();
        let done = self.guard(py).for_each_entry(|k, v, _| raw.push((k, value_bytes(py, v))));
        done.or_raise(py)?;
        let mut out = Vec::with_capacity(raw.len());
        for (k, value) in raw {
            let (bytes, serialized) = value?;
            out.push(PyTuple::new(py, [key_object(py, &k)?, self.codec.value_object(py, bytes, serialized)?])?);
        }
        PyList::new(py, out)
    }

    /// `(key, stored bytes, serialized, seconds left to live or None)` of every entry, oldest
    /// first, in one consistent snapshot: what copies and pickles are made of (`_restore`).
    fn _entries<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut raw = Vec::new();
        let done = self.guard(py).for_each_entry(|k, v, left| raw.push((k, value_bytes(py, v), left)));
        done.or_raise(py)?;
        let mut out = Vec::with_capacity(raw.len());
        for (k, value, left) in raw {
            let (bytes, serialized) = value?;
            let left = left.map(|d| d.as_secs_f64());
            out.push((key_object(py, &k)?, bytes, serialized, left).into_pyobject(py)?);
        }
        PyList::new(py, out)
    }

    /// Store entries as `_entries()` gives them (their bytes as they are, serialized or not),
    /// oldest first, each with its time left to live.
    fn _restore(&self, py: Python<'_>, entries: &Bound<'_, PyAny>) -> PyResult<()> {
        for entry in entries.try_iter()? {
            let (key, data, serialized, left): (Bound<'_, PyAny>, Bound<'_, PyBytes>, bool, Option<f64>) =
                entry?.extract()?;
            let ttl = match left {
                None => Ttl::Never,
                Some(secs) => ttl_secs(secs).unwrap_or(Ttl::For(Duration::from_nanos(1))),
            };
            let k = key_arg(&key)?;
            let encoded = self.inner.encode(k, data.as_bytes(), serialized).or_raise(py)?;
            let done = self.guard(py).insert(encoded, ttl);
            done.or_raise(py)?;
        }
        Ok(())
    }

    /// Values of `keys` (``default`` for each one missing), in one call into Rust.
    ///
    /// Attached, in chunks of [`BATCH_CHUNK`] keys under one mutex acquisition each (rule 4):
    /// every value is copied once, from the pool's pages into its new `bytes`.
    #[pyo3(signature = (keys, default = None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let objects: Vec<Bound<'py, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let ks = objects.iter().map(key_arg).collect::<PyResult<Vec<Key<'_>>>>()?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let mut out: Vec<Bound<'py, PyAny>> = Vec::with_capacity(ks.len());
        let mut found = Vec::with_capacity(BATCH_CHUNK.min(ks.len()));
        for (n, chunk) in ks.chunks(BATCH_CHUNK).enumerate() {
            if n > 0 && n % CHUNKS_PER_GIL_RELEASE == 0 {
                py.detach(|| ()); // let other threads have the GIL now and then
            }
            found.clear();
            found.resize_with(chunk.len(), || None);
            let done = self.guard(py).get_many_with(chunk, |i, v| found[i] = Some(value_bytes(py, v)));
            done.or_raise(py)?;
            for item in found.drain(..) {
                out.push(match item.transpose()? {
                    Some((bytes, serialized)) => self.codec.value_object(py, bytes, serialized)?,
                    None => default.clone(),
                });
            }
        }
        PyList::new(py, out)
    }

    /// Delete every key of `keys` present (absent ones are skipped) in one call into Rust;
    /// returns how many were deleted. Chunks of [`BATCH_CHUNK`] keys under one mutex
    /// acquisition each (rule 4); no Python runs under the guard.
    fn delete_many(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let objects: Vec<Bound<'_, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let ks = objects.iter().map(key_arg).collect::<PyResult<Vec<Key<'_>>>>()?;
        let mut deleted = 0;
        for chunk in ks.chunks(BATCH_CHUNK) {
            // The error becomes a Python exception after the guard is dropped (rule 2).
            let done = {
                let mut g = self.guard(py);
                chunk.iter().try_fold(0, |n, &k| g.remove(k).map(|removed| n + usize::from(removed)))
            };
            deleted += done.or_raise(py)?;
        }
        Ok(deleted)
    }

    /// Store every (key, value) of `items` (a mapping or an iterable of pairs) in one call
    /// into Rust. Every item is checked (and encoded) before any is stored; the stores run
    /// detached, in chunks of [`BATCH_CHUNK`] under one mutex acquisition each (rule 4).
    #[pyo3(signature = (items, ttl = None))]
    fn set_many(&self, py: Python<'_>, items: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let ttl = ttl_arg(ttl)?;
        let pairs = item_pairs(items)?;
        let values = pairs.iter().map(|(_, v)| self.codec.value_arg(v)).collect::<PyResult<Vec<_>>>()?;
        let ks = pairs.iter().map(|(k, _)| key_arg(k)).collect::<PyResult<Vec<Key<'_>>>>()?;
        let vs: Vec<(&[u8], bool)> = values.iter().map(|v| (v.bytes.as_bytes(), v.serialized)).collect();
        let inner = &self.inner;
        let encode_all =
            || ks.iter().zip(&vs).map(|(&k, &(v, ser))| inner.encode(k, v, ser)).collect::<Result<Vec<_>, _>>();
        // A raw entry's encoding is a few header bytes and the key's hash (the value is
        // borrowed, not copied), not worth a detach; compression is, so it runs detached.
        let encoded =
            if inner.config().compression == Compression::None { encode_all() } else { py.detach(encode_all) };
        let mut encoded = encoded.or_raise(py)?.into_iter();
        let done = py.detach(|| {
            while encoded.len() > 0 {
                let mut g = inner.lock();
                g.prefetch(&encoded.as_slice()[..encoded.len().min(BATCH_CHUNK)]);
                encoded.by_ref().take(BATCH_CHUNK).try_for_each(|e| g.insert(e, ttl))?;
            }
            Ok(())
        });
        done.or_raise(py)?;
        self.maybe_train(py);
        Ok(())
    }

    /// Train a zstd dictionary of at most `size` bytes (None: the default, 16 KiB) on a sample
    /// of the stored values and make it current; its id, or None if it did not beat the
    /// current one (GIL released).
    #[pyo3(signature = (size = None))]
    fn train_dictionary(&self, py: Python<'_>, size: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u32>> {
        let size = match size.filter(|obj| !obj.is_none()) {
            None => None,
            Some(obj) if obj.is_instance_of::<PyBool>() || !obj.is_instance_of::<PyInt>() => {
                return Err(PyTypeError::new_err(format!(
                    "size must be an int (bytes) or None, not {}",
                    type_name(obj)
                )));
            }
            // A negative size, or one past usize, is out of the range like any other (pyo3
            // would raise OverflowError, which no caller documents).
            Some(obj) => Some(obj.extract::<usize>().map_err(|_| cache_err(py, bad_size(obj)))?),
        };
        let inner = &self.inner;
        py.detach(|| inner.train_dictionary(size)).or_raise(py)
    }

    /// Rewrite values not on the current dictionary with it, oldest first, in yielding
    /// slices, then compact (GIL released). `max_bytes`: stop after this many stored bytes
    /// were rewritten or tried; `time_budget`: seconds.
    #[pyo3(signature = (max_bytes = None, time_budget = None))]
    fn recompress(
        &self,
        py: Python<'_>,
        max_bytes: Option<&Bound<'_, PyAny>>,
        time_budget: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<RecompressReport> {
        let max_bytes = match max_bytes.filter(|obj| !obj.is_none()) {
            None => None,
            // More bytes than a u64 holds is no limit; a negative count is a mistake.
            Some(obj) => match obj.extract::<u64>() {
                Ok(n) => Some(n),
                Err(_) if obj.is_instance_of::<PyInt>() && obj.gt(0)? => None,
                Err(_) if obj.is_instance_of::<PyInt>() => {
                    return Err(PyValueError::new_err(format!("max_bytes={obj} must be >= 0 bytes, or None")));
                }
                Err(_) => {
                    return Err(PyTypeError::new_err(format!(
                        "max_bytes must be an int (bytes) or None, not {}",
                        type_name(obj)
                    )));
                }
            },
        };
        let budget = match time_budget.filter(|obj| !obj.is_none()).map(seconds_arg).transpose()? {
            None => None,
            // A budget too long for a Duration is no budget.
            Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s).ok(),
            Some(s) => return Err(PyValueError::new_err(format!("time_budget={s} must be >= 0 seconds, or None"))),
        };
        let inner = &self.inner;
        let report = py.detach(|| inner.recompress(max_bytes, budget)).or_raise(py)?;
        Ok(RecompressReport::from(report))
    }

    /// Pages recompress() is expected to free now (0 without a dictionary, or once every
    /// value is on the current one): what a shrinker policy counts.
    fn recompressible_pages(&self, py: Python<'_>) -> usize {
        let inner = &self.inner;
        py.detach(|| inner.recompressible_pages())
    }

    /// The current zstd dictionary's bytes (to pass as `dictionary=` elsewhere), or None.
    #[getter]
    fn dictionary<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let inner = &self.inner;
        let bytes = py.detach(|| inner.dictionary()).or_raise(py)?;
        Ok(bytes.map(|b| PyBytes::new(py, &b)))
    }

    /// Hits, misses, evictions, expirations, sizes and the pool's own stats.
    fn stats(&self, py: Python<'_>) -> PyResult<CacheStats> {
        let inner = &self.inner;
        let s = py.detach(|| inner.stats()).or_raise(py)?;
        CacheStats::new(py, s)
    }

    /// Drop every entry and close the pool; later calls raise PoolClosedError.
    fn close(&self, py: Python<'_>) {
        let inner = &self.inner;
        py.detach(|| inner.close());
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The budget in bytes of stored entries (header + key + value after compression).
    #[getter]
    fn maxsize(&self) -> Int {
        Int(self.inner.config().max_bytes)
    }

    /// Bytes of stored entries now (what `maxsize` budgets).
    #[getter]
    fn currsize(&self, py: Python<'_>) -> PyResult<Int> {
        self.inner.check_open().or_raise(py)?;
        Ok(Int(self.guard(py).currsize()))
    }

    /// The pool holding the entries.
    #[getter]
    fn pool(&self, py: Python<'_>) -> Py<Pool> {
        self.inner.pool_owner().0.clone_ref(py)
    }

    /// The default TTL in seconds, or None.
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.ttl_s
    }

    /// 'sieve' or 'lru'.
    #[getter]
    fn eviction(&self) -> &'static str {
        match self.inner.config().eviction {
            Eviction::Sieve => "sieve",
            Eviction::Lru => "lru",
        }
    }

    /// None, 'lz4' or 'zstd'.
    #[getter]
    fn compression(&self) -> Option<&'static str> {
        match self.inner.config().compression {
            Compression::None => None,
            Compression::Lz4 => Some("lz4"),
            Compression::Zstd(_) => Some("zstd"),
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        self.codec.traverse(&visit)?;
        visit.call(&self.inner.pool_owner().0)
    }
}

/// A snapshot of a cache's counters and sizes, taken by `Cache.stats()`.
#[pyclass(frozen, module = "zspool", get_all)]
pub struct CacheStats {
    /// Lookups that found a live entry.
    hits: u64,
    /// Lookups that found none (or an expired one).
    misses: u64,
    /// Entries removed to stay within maxsize.
    evictions: u64,
    /// Entries removed because their TTL had passed.
    expirations: u64,
    /// Entries stored (new or overwritten).
    sets: u64,
    /// Entries deleted by the user (del, pop, popitem).
    deletes: u64,
    /// Live entries.
    entries: usize,
    /// Key + value bytes of live entries, before compression.
    payload_bytes: u64,
    /// Bytes of the live entries' pool objects: what maxsize budgets (currsize).
    stored_bytes: u64,
    /// The budget, bytes.
    maxsize: u64,
    /// Live entries stored compressed.
    compressed_entries: u64,
    /// payload_bytes / stored_bytes.
    compression_ratio: f64,
    /// hits / (hits + misses).
    hit_ratio: f64,
    /// Heap bytes of the Rust index (outside the pool).
    index_bytes: usize,
    /// 'sieve' or 'lru'.
    eviction: &'static str,
    /// zstd dictionaries and recompression work.
    dictionary: Py<DictionaryReport>,
    /// The pool's own stats.
    pool: Py<PoolStats>,
}

impl CacheStats {
    fn new(py: Python<'_>, s: zspool_cache::CacheStats) -> PyResult<CacheStats> {
        let hit_ratio = s.hit_ratio();
        Ok(CacheStats {
            hits: s.hits,
            misses: s.misses,
            evictions: s.evictions,
            expirations: s.expirations,
            sets: s.sets,
            deletes: s.deletes,
            entries: s.entries,
            payload_bytes: s.payload_bytes,
            stored_bytes: s.stored_bytes,
            maxsize: s.max_bytes,
            compressed_entries: s.compressed_entries,
            compression_ratio: s.compression_ratio,
            hit_ratio,
            index_bytes: s.index_bytes,
            eviction: if s.eviction == Eviction::Sieve { "sieve" } else { "lru" },
            dictionary: DictionaryReport::new(py, s.dictionaries)?,
            pool: Py::new(py, PoolStats::from(s.pool))?,
        })
    }
}

#[pymethods]
impl CacheStats {
    /// The fields as a new dict (the pool's stats as a nested dict under "pool").
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("hits", self.hits)?;
        d.set_item("misses", self.misses)?;
        d.set_item("evictions", self.evictions)?;
        d.set_item("expirations", self.expirations)?;
        d.set_item("sets", self.sets)?;
        d.set_item("deletes", self.deletes)?;
        d.set_item("entries", self.entries)?;
        d.set_item("payload_bytes", self.payload_bytes)?;
        d.set_item("stored_bytes", self.stored_bytes)?;
        d.set_item("maxsize", self.maxsize)?;
        d.set_item("compressed_entries", self.compressed_entries)?;
        d.set_item("compression_ratio", self.compression_ratio)?;
        d.set_item("hit_ratio", self.hit_ratio)?;
        d.set_item("index_bytes", self.index_bytes)?;
        d.set_item("eviction", self.eviction)?;
        d.set_item("dictionary", self.dictionary.bind(py).call_method0("as_dict")?)?;
        d.set_item("pool", self.pool.bind(py).call_method0("as_dict")?)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "<zspool.CacheStats entries={} hits={} misses={} evictions={} stored_bytes={}>",
            self.entries, self.hits, self.misses, self.evictions, self.stored_bytes
        )
    }
}
