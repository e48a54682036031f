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
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use zspool_cache::{
    CacheConfig, CacheError, CacheGuard, Compression, Dictionary, Eviction, Key, KeyKind, OwnedKey, Ttl, Value,
};

use crate::dictionary::{DictionaryReport, RecompressReport};
use crate::errors::{Kind, to_py};
use crate::pool::Pool;
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
    dumps: Option<Py<PyAny>>,
    loads: Option<Py<PyAny>>,
}

fn cache_err(py: Python<'_>, err: CacheError) -> PyErr {
    match err {
        CacheError::TooLarge { .. } => Kind::ObjectSize.err(py, err.to_string()),
        CacheError::KeyTooLong { .. } | CacheError::Dictionary(_) => PyValueError::new_err(err.to_string()),
        CacheError::BadConfig { .. } => Kind::Config.err(py, err.to_string()),
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

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A key argument: `str` (UTF-8) or `bytes`, borrowed from the Python object.
fn key_arg<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Key<'a>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::str(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Key::bytes(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!("cache keys must be str or bytes, not {}", type_name(obj))))
}

fn key_object<'py>(py: Python<'py>, key: &OwnedKey) -> PyResult<Bound<'py, PyAny>> {
    Ok(match key.kind {
        KeyKind::Str => {
            PyString::new(py, std::str::from_utf8(&key.bytes).map_err(|e| PyRuntimeError::new_err(e.to_string()))?)
                .into_any()
        }
        KeyKind::Bytes => PyBytes::new(py, &key.bytes).into_any(),
    })
}

/// A TTL argument in seconds: None (the cache's default), > 0, or math.inf (never).
fn ttl_arg(ttl: Option<f64>) -> PyResult<Ttl> {
    match ttl {
        None => Ok(Ttl::Default),
        Some(s) if s == f64::INFINITY => Ok(Ttl::Never),
        Some(s) if s > 0.0 && s.is_finite() => Ok(Ttl::For(Duration::from_secs_f64(s))),
        Some(s) => {
            Err(PyValueError::new_err(format!("ttl={s} is out of range: seconds > 0, math.inf (never), or None")))
        }
    }
}

/// A `dictionary` argument: None/False (none), True (train one), or a dictionary's bytes.
fn dictionary_arg(dictionary: Option<&Bound<'_, PyAny>>) -> PyResult<Dictionary> {
    let Some(d) = dictionary else { return Ok(Dictionary::Off) };
    if let Ok(b) = d.cast::<PyBytes>() {
        return Ok(Dictionary::Given(b.as_bytes().to_vec()));
    }
    match d.extract::<bool>() {
        Ok(true) if d.is_instance_of::<pyo3::types::PyBool>() => Ok(Dictionary::Train),
        Ok(false) if d.is_instance_of::<pyo3::types::PyBool>() => Ok(Dictionary::Off),
        _ => Err(PyTypeError::new_err(format!(
            "dictionary must be None, True (train one from the values) or bytes (a zstd dictionary), not {}",
            type_name(d)
        ))),
    }
}

/// A value copied out under the locks: a new `bytes`, and whether to deserialize it.
fn value_bytes<'py>(py: Python<'py>, v: &Value<'_>) -> (Bound<'py, PyBytes>, bool) {
    // Allocating a bytes object runs no Python code: allowed under the locks (rule 2).
    let bytes = PyBytes::new_with(py, v.len(), |buf| {
        v.copy_to(buf);
        Ok(())
    })
    .expect("allocating bytes");
    (bytes, v.serialized)
}

/// A value to store: borrowed bytes, or the serializer's output.
struct ValueArg<'py> {
    bytes: Bound<'py, PyBytes>,
    serialized: bool,
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

    fn value_arg<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<ValueArg<'py>> {
        if let Ok(b) = value.cast::<PyBytes>() {
            return Ok(ValueArg { bytes: b.clone(), serialized: false });
        }
        match &self.dumps {
            Some(dumps) => {
                let out = dumps.bind(value.py()).call1((value,))?;
                let bytes = out.cast_into::<PyBytes>().map_err(|e| {
                    PyTypeError::new_err(format!(
                        "the serializer's dumps() must return bytes, not {}",
                        type_name(e.into_inner().as_any())
                    ))
                })?;
                Ok(ValueArg { bytes, serialized: true })
            }
            None => Err(PyTypeError::new_err(format!(
                "cache values must be bytes, not {} (pass serializer='pickle' to store other objects)",
                type_name(value)
            ))),
        }
    }

    /// The Python object for a stored value (deserialized if it was serialized).
    fn value_object<'py>(
        &self,
        py: Python<'py>,
        bytes: Bound<'py, PyBytes>,
        serialized: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if !serialized {
            return Ok(bytes.into_any());
        }
        match &self.loads {
            Some(loads) => loads.bind(py).call1((bytes,)),
            None => Err(PyTypeError::new_err("this entry was stored through a serializer, but the cache has none")),
        }
    }

    fn set_impl(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Ttl) -> PyResult<()> {
        let key = key_arg(key)?;
        let value = self.value_arg(value)?;
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
        match found.or_raise(py)? {
            Some((bytes, serialized)) => Ok(Some(self.value_object(py, bytes, serialized)?)),
            None => Ok(None),
        }
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
        ttl: Option<f64>,
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
        let default_ttl = match ttl_arg(ttl)? {
            Ttl::For(d) => Some(d),
            _ => None,
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
        Ok(Cache { inner, dumps, loads })
    }

    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.lookup(py, key)?.ok_or_else(|| PyKeyError::new_err(key.clone().unbind()))
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

    fn __len__(&self, py: Python<'_>) -> usize {
        self.guard(py).len()
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
    fn set(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
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
        let found = self.guard(py).pop_with(k, |v| value_bytes(py, v));
        match found.or_raise(py)? {
            Some((bytes, serialized)) => self.value_object(py, bytes, serialized),
            None => default.get_item(0).map_err(|_| PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// Remove and return the (key, value) the eviction algorithm would evict next.
    fn popitem<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let found = self.guard(py).popitem_with(|k, v| (k, value_bytes(py, v)));
        match found.or_raise(py)? {
            Some((k, (bytes, serialized))) => {
                let value = self.value_object(py, bytes, serialized)?;
                PyTuple::new(py, [key_object(py, &k)?, value])
            }
            None => Err(PyKeyError::new_err("popitem(): cache is empty")),
        }
    }

    #[pyo3(signature = (key, default = None))]
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let k = key_arg(key)?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let value = self.value_arg(&default)?;
        let encoded = self.inner.encode(k, value.bytes.as_bytes(), value.serialized).or_raise(py)?;
        let found = {
            let mut g = self.guard(py);
            match g.get_with(k, |v| value_bytes(py, v)) {
                Ok(None) => g.insert(encoded, Ttl::Default).map(|()| None),
                other => other,
            }
        };
        match found.or_raise(py)? {
            Some((bytes, serialized)) => self.value_object(py, bytes, serialized),
            None => Ok(default),
        }
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let done = self.guard(py).clear();
        done.or_raise(py)
    }

    /// Drop every expired entry now; returns how many.
    fn expire(&self, py: Python<'_>) -> PyResult<usize> {
        let done = self.guard(py).expire();
        done.or_raise(py)
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
                out.push(match item {
                    Some((bytes, serialized)) => self.value_object(py, bytes, serialized)?,
                    None => default.clone(),
                });
            }
        }
        PyList::new(py, out)
    }

    /// Store every (key, value) of `items` (a mapping or an iterable of pairs) in one call
    /// into Rust. Every item is checked (and encoded) before any is stored; the stores run
    /// detached, in chunks of [`BATCH_CHUNK`] under one mutex acquisition each (rule 4).
    #[pyo3(signature = (items, ttl = None))]
    fn set_many(&self, py: Python<'_>, items: &Bound<'_, PyAny>, ttl: Option<f64>) -> PyResult<()> {
        let ttl = ttl_arg(ttl)?;
        let pairs = match items.cast::<PyDict>() {
            Ok(d) => d.items().into_any(),
            Err(_) => items.clone(),
        };
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for pair in pairs.try_iter()? {
            let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?
                .extract()
                .map_err(|_| PyTypeError::new_err("set_many() takes a mapping or an iterable of (key, value) pairs"))?;
            values.push(self.value_arg(&v)?);
            keys.push(k);
        }
        let ks = keys.iter().map(key_arg).collect::<PyResult<Vec<Key<'_>>>>()?;
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
    fn train_dictionary(&self, py: Python<'_>, size: Option<usize>) -> PyResult<Option<u32>> {
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
        max_bytes: Option<u64>,
        time_budget: Option<f64>,
    ) -> PyResult<RecompressReport> {
        let budget = match time_budget {
            None => None,
            Some(s) if s >= 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
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
        Ok(CacheStats::from(s))
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
    fn maxsize(&self) -> u64 {
        self.inner.config().max_bytes
    }

    /// Bytes of stored entries now (what `maxsize` budgets).
    #[getter]
    fn currsize(&self, py: Python<'_>) -> u64 {
        self.guard(py).currsize()
    }

    /// The pool holding the entries.
    #[getter]
    fn pool(&self, py: Python<'_>) -> Py<Pool> {
        self.inner.pool_owner().0.clone_ref(py)
    }

    /// The default TTL in seconds, or None.
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.inner.config().default_ttl.map(|d| d.as_secs_f64())
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
        visit.call(&self.dumps)?;
        visit.call(&self.loads)?;
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
    fn from(s: zspool_cache::CacheStats) -> CacheStats {
        let hit_ratio = s.hit_ratio();
        Python::attach(|py| CacheStats {
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
            dictionary: DictionaryReport::new(py, s.dictionaries).expect("allocating DictionaryReport"),
            pool: Py::new(py, PoolStats::from(s.pool)).expect("allocating PoolStats"),
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
