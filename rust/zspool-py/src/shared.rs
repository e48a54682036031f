//! `zspool._core.SharedCache`: the `zspool-shared` crate's cache in a shared file, as a
//! subclassable pyclass (`zspool.SharedCache` adds the `MutableMapping` mixins, the argument
//! rules and the shrinker policy in Python). This file converts keys, values and errors,
//! applies the serializer and settles the configuration on open; every cache decision is the
//! crate's.
//!
//! Locks and the GIL: every crate call that may wait on a lock in the file (a shard, class or
//! allocator lock, possibly held by another process) runs detached (`py.detach`), except a
//! single get's first try (`try_get`, which never waits and says so), with the
//! key and value borrowed from their Python objects (immutable `str` and `bytes`, kept alive
//! by the caller's frame). Values come out into a Rust buffer and become `bytes` attached,
//! after the locks are let go; the serializer runs attached, outside any lock. Nothing here
//! holds a lock of the file across a Python call.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use zspool_cache::{Compression, Key, Ttl};
use zspool_shared::{OpenOptions, SerializerKind, SharedConfig, SharedError, ValueFlags};

use crate::cache::ttl_arg;
use crate::errors::Kind;
use crate::objects::{Int, item_pairs, key_arg, key_object};
use crate::pool::compact_options;
use crate::serializer::Serializer;
use crate::stats::{CompactionReport, SharedCacheStats};

/// Attempts at settling an open against concurrent creators and destroyers of the same path.
const OPEN_ATTEMPTS: usize = 8;

fn shared_err(py: Python<'_>, err: SharedError) -> PyErr {
    let message = err.to_string();
    match err {
        SharedError::NotOurs { .. } | SharedError::Version { .. } => Kind::SharedFile.err(py, message),
        SharedError::Mismatch { .. } | SharedError::InvalidConfig(_) => Kind::Config.err(py, message),
        SharedError::NotFound { path } => PyOSError::new_err((libc_enoent(), message, path.display().to_string())),
        // OSError(errno, ...) is the errno's subclass (PermissionError, ...), as open() raises.
        SharedError::Io { path, source } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, message, path.display().to_string())),
            None => PyOSError::new_err(message),
        },
        SharedError::Closed => Kind::PoolClosed.err(py, message),
        SharedError::TooLarge { .. } => Kind::ObjectSize.err(py, message),
    }
}

/// ENOENT, so that `OSError(ENOENT, ...)` is a `FileNotFoundError`.
fn libc_enoent() -> i32 {
    std::io::Error::from(std::io::ErrorKind::NotFound).raw_os_error().unwrap_or(2)
}

trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, SharedError> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| shared_err(py, e))
    }
}

/// The configuration fields an opener gave; `None` is "the file's (or the default on creation)".
struct Given {
    maxbytes: Option<u64>,
    compression: Option<Compression>,
    /// `Some(None)`: no default TTL.
    ttl: Option<Option<Duration>>,
    serializer: Option<SerializerKind>,
}

fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::None => "None",
        Compression::Lz4 => "'lz4'",
        Compression::Zstd(_) => "'zstd'",
    }
}

fn ttl_name(ttl: Option<Duration>) -> String {
    ttl.map_or_else(|| "None".into(), |d| format!("{}", d.as_secs_f64()))
}

fn serializer_name(s: SerializerKind) -> &'static str {
    match s {
        SerializerKind::None => "None",
        SerializerKind::Pickle => "'pickle'",
        SerializerKind::Custom => "a custom serializer",
    }
}

impl Given {
    /// The configuration to create a file with: the given fields, the crate's defaults for the rest.
    fn config(&self) -> SharedConfig {
        let default = SharedConfig::default();
        SharedConfig {
            maxbytes: self.maxbytes.unwrap_or(default.maxbytes),
            compression: self.compression.unwrap_or(default.compression),
            ttl: self.ttl.unwrap_or(default.ttl),
            serializer: self.serializer.unwrap_or(default.serializer),
        }
    }

    /// The first given field that differs from the file's: (field, the file's value, given).
    fn difference(&self, file: &SharedConfig) -> Option<(&'static str, String, String)> {
        if let Some(m) = self.maxbytes.filter(|&m| m != file.maxbytes) {
            return Some(("maxbytes", file.maxbytes.to_string(), m.to_string()));
        }
        // The zstd level is the file's business: "zstd" matches any.
        if let Some(c) = self.compression.filter(|&c| compression_name(c) != compression_name(file.compression)) {
            return Some(("compression", compression_name(file.compression).into(), compression_name(c).into()));
        }
        // The file keeps a TTL to its own resolution: equal within a microsecond is equal.
        let same_ttl = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (None, None) => true,
            (Some(a), Some(b)) => a.abs_diff(b) <= Duration::from_micros(1),
            _ => false,
        };
        if let Some(t) = self.ttl.filter(|&t| !same_ttl(t, file.ttl)) {
            return Some(("ttl", ttl_name(file.ttl), ttl_name(t)));
        }
        if let Some(s) = self.serializer.filter(|&s| s != file.serializer) {
            return Some(("serializer", serializer_name(file.serializer).into(), serializer_name(s).into()));
        }
        None
    }
}

fn mismatch(py: Python<'_>, path: &Path, (field, file, given): (&str, String, String)) -> PyErr {
    Kind::Config.err(
        py,
        format!(
            "shared cache {} was created with {field}={file}, but {field}={given} was given: leave {field} out \
             to use the file's, or destroy the file to create it anew",
            path.display()
        ),
    )
}

/// Open (or create) the file at `path` and settle its configuration with what was given.
fn open(py: Python<'_>, path: &Path, given: &Given, create: bool, mode: u32) -> PyResult<zspool_shared::SharedCache> {
    let existing = OpenOptions { create: false, mode };
    let creating = OpenOptions { create: true, mode };
    let config = given.config();
    for _ in 0..OPEN_ATTEMPTS {
        // An existing file first, taking its configuration: only the given fields must match.
        match py.detach(|| zspool_shared::SharedCache::open(path, None, &existing)) {
            Ok(cache) => {
                return match given.difference(&cache.config()) {
                    None => Ok(cache),
                    Some(diff) => {
                        py.detach(|| cache.close());
                        Err(mismatch(py, path, diff))
                    }
                };
            }
            Err(SharedError::NotFound { .. }) if create => {}
            Err(e) => return Err(shared_err(py, e)),
        }
        match py.detach(|| zspool_shared::SharedCache::open(path, Some(&config), &creating)) {
            Ok(cache) => return Ok(cache),
            // Another process created it meanwhile, with other values for fields not given
            // here (or destroyed it again): open what is there now.
            Err(SharedError::Mismatch { .. } | SharedError::NotFound { .. }) => continue,
            Err(e) => return Err(shared_err(py, e)),
        }
    }
    Err(PyOSError::new_err(format!(
        "shared cache {}: could not open it in {OPEN_ATTEMPTS} attempts (other processes keep creating and \
         destroying it)",
        path.display()
    )))
}

/// A cache in a shared file, used by many processes at once. See `_core.pyi`.
#[pyclass(frozen, subclass, module = "zspool")]
pub struct SharedCache {
    inner: zspool_shared::SharedCache,
    /// The file's configuration, read once at open (it never changes).
    config: SharedConfig,
    path: PathBuf,
    codec: Serializer,
    closed: AtomicBool,
}

impl SharedCache {
    fn lookup<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let k = key_arg(key)?;
        let mut out = Vec::new();
        let inner = &self.inner;
        // With the GIL held only if no lock must be waited for (the usual read); releasing
        // and re-taking the GIL costs a fifth of a get.
        let found = match inner.try_get(k, &mut out).or_raise(py)? {
            Some(found) => found,
            None => py.detach(|| inner.get(k, &mut out)).or_raise(py)?,
        };
        found.map(|flags| self.value(py, &out, flags)).transpose()
    }

    /// The Python value of stored bytes (deserialized if they were serialized).
    fn value<'py>(&self, py: Python<'py>, data: &[u8], flags: ValueFlags) -> PyResult<Bound<'py, PyAny>> {
        let bytes = PyBytes::new_with(py, data.len(), |buf| {
            buf.copy_from_slice(data);
            Ok(())
        })?;
        self.codec.value_object(py, bytes, flags.is_serialized())
    }

    fn set_impl(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>, ttl: Ttl) -> PyResult<()> {
        let k = key_arg(key)?;
        let value = self.codec.value_arg(value)?;
        let flags = if value.serialized { ValueFlags::SERIALIZED } else { ValueFlags::RAW };
        let data = value.bytes.as_bytes();
        let inner = &self.inner;
        // Ok(false), no room could be made, leaves the key absent: a cache may forget.
        py.detach(|| inner.set(k, data, flags, ttl_duration(ttl))).or_raise(py)?;
        Ok(())
    }
}

/// A TTL for the crate: `None` is the file's default; "never" is the longest duration.
fn ttl_duration(ttl: Ttl) -> Option<Duration> {
    match ttl {
        Ttl::Default => None,
        Ttl::Never => Some(Duration::MAX),
        Ttl::For(d) => Some(d),
    }
}

#[pymethods]
impl SharedCache {
    #[new]
    #[pyo3(signature = (path, *, maxbytes = None, compression = None, ttl = None, serializer = None, create = true, mode = 0o600, dumps = None, loads = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        maxbytes: Option<u64>,
        compression: Option<&str>,
        ttl: Option<f64>,
        serializer: Option<&str>,
        create: bool,
        mode: u32,
        dumps: Option<Py<PyAny>>,
        loads: Option<Py<PyAny>>,
    ) -> PyResult<SharedCache> {
        let compression = match compression {
            None => None,
            Some("none") => Some(Compression::None),
            Some("lz4") => Some(Compression::Lz4),
            Some("zstd") => Some(Compression::Zstd(3)),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "compression={other:?} is unknown: use 'none', 'lz4' or 'zstd' (None: the file's)"
                )));
            }
        };
        let ttl = match ttl {
            None => None,
            Some(secs) if secs == f64::INFINITY => Some(None),
            Some(secs) if secs > 0.0 && secs.is_finite() => {
                Some(Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)))
            }
            Some(secs) => {
                return Err(PyValueError::new_err(format!(
                    "ttl={secs} is out of range: seconds > 0, math.inf (no default TTL), or None (the file's)"
                )));
            }
        };
        let serializer = match serializer {
            None => None,
            Some("none") => Some(SerializerKind::None),
            Some("pickle") => Some(SerializerKind::Pickle),
            Some("custom") => Some(SerializerKind::Custom),
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "serializer={other:?} is unknown: use 'none', 'pickle' or 'custom' (None: the file's)"
                )));
            }
        };
        if mode > 0o777 {
            return Err(PyValueError::new_err(format!("mode={mode:#o} is out of range: permission bits 0o000..0o777")));
        }
        if dumps.is_some() != loads.is_some() {
            return Err(PyValueError::new_err("give both dumps and loads, or neither"));
        }
        let given = Given { maxbytes, compression, ttl, serializer };
        let inner = open(py, &path, &given, create, mode)?;
        let config = inner.config();
        let codec = match config.serializer {
            SerializerKind::None => Serializer { dumps: None, loads: None },
            SerializerKind::Pickle => Serializer { dumps, loads },
            SerializerKind::Custom if serializer == Some(SerializerKind::Custom) => Serializer { dumps, loads },
            SerializerKind::Custom => {
                py.detach(|| inner.close());
                return Err(Kind::Config.err(
                    py,
                    format!(
                        "shared cache {} stores values through a custom serializer: pass it as serializer=",
                        path.display()
                    ),
                ));
            }
        };
        Ok(SharedCache { inner, config, path, codec, closed: AtomicBool::new(false) })
    }

    /// The value of `key`; KeyError if absent.
    fn __getitem__<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.lookup(py, key)? {
            Some(value) => Ok(value),
            None => Err(PyKeyError::new_err(key.clone().unbind())),
        }
    }

    fn __setitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        self.set_impl(py, key, value, Ttl::Default)
    }

    fn __delitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<()> {
        let k = key_arg(key)?;
        let inner = &self.inner;
        if py.detach(|| inner.delete(k)).or_raise(py)? {
            Ok(())
        } else {
            Err(PyKeyError::new_err(key.clone().unbind()))
        }
    }

    fn __contains__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(k) = key_arg(key) else { return Ok(false) };
        let inner = &self.inner;
        py.detach(|| inner.contains(k)).or_raise(py)
    }

    /// Live entries; PoolClosedError after close().
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        let inner = &self.inner;
        py.detach(|| inner.len()).or_raise(py)
    }

    /// A snapshot of the keys: later changes do not affect the iteration.
    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inner = &self.inner;
        let keys = py.detach(|| inner.keys()).or_raise(py)?;
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

    /// Remove `key` and return its value; `default` (or KeyError) if absent. Atomic across
    /// processes: of those that race to pop a key, one gets the value.
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
        let mut out = Vec::new();
        let inner = &self.inner;
        match py.detach(|| inner.take(k, &mut out)).or_raise(py)? {
            Some(flags) => self.value(py, &out, flags),
            None => default.get_item(0).map_err(|_| PyKeyError::new_err(key.clone().unbind())),
        }
    }

    /// The value of `key`; if absent, store `default` and return it. Atomic across
    /// processes: of those that race to add a key, one stores and all return its value.
    #[pyo3(signature = (key, default = None))]
    fn setdefault<'py>(
        &self,
        py: Python<'py>,
        key: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // As dict.setdefault: an existing value is returned as it is, and the default is
        // checked and encoded only if it may be stored.
        if let Some(value) = self.lookup(py, key)? {
            return Ok(value);
        }
        let k = key_arg(key)?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let value = self.codec.value_arg(&default)?;
        let flags = if value.serialized { ValueFlags::SERIALIZED } else { ValueFlags::RAW };
        let data = value.bytes.as_bytes();
        let (inner, mut out) = (&self.inner, Vec::new());
        match py.detach(|| inner.set_if_absent(k, data, flags, None, &mut out)).or_raise(py)? {
            // Another process stored it since the lookup: theirs.
            Some(flags) => self.value(py, &out, flags),
            None => Ok(default),
        }
    }

    /// Remove every entry.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        py.detach(|| inner.clear()).or_raise(py)
    }

    /// Drop every expired entry now; returns how many.
    fn expire(&self, py: Python<'_>) -> PyResult<Int> {
        let inner = &self.inner;
        py.detach(|| inner.expire()).map(Int::from).or_raise(py)
    }

    /// Values of `keys` (`default` for each one missing): one detached call for the batch.
    #[pyo3(signature = (keys, default = None))]
    fn get_many<'py>(
        &self,
        py: Python<'py>,
        keys: &Bound<'py, PyAny>,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let objects: Vec<Bound<'py, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let ks = objects.iter().map(key_arg).collect::<PyResult<Vec<Key<'_>>>>()?;
        let inner = &self.inner;
        let found = py
            .detach(|| {
                ks.iter()
                    .map(|&k| {
                        let mut out = Vec::new();
                        Ok(inner.get(k, &mut out)?.map(|flags| (out, flags)))
                    })
                    .collect::<Result<Vec<_>, SharedError>>()
            })
            .or_raise(py)?;
        let default = default.unwrap_or_else(|| py.None().into_bound(py));
        let values = found
            .into_iter()
            .map(|item| match item {
                Some((data, flags)) => self.value(py, &data, flags),
                None => Ok(default.clone()),
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, values)
    }

    /// Store every (key, value) of `items` (a mapping or an iterable of pairs): every item is
    /// checked (and serialized) first, then all are stored in one detached call.
    #[pyo3(signature = (items, ttl = None))]
    fn set_many(&self, py: Python<'_>, items: &Bound<'_, PyAny>, ttl: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let ttl = ttl_duration(ttl_arg(ttl)?);
        let pairs = item_pairs(items)?;
        let values = pairs.iter().map(|(_, v)| self.codec.value_arg(v)).collect::<PyResult<Vec<_>>>()?;
        let ks = pairs.iter().map(|(k, _)| key_arg(k)).collect::<PyResult<Vec<Key<'_>>>>()?;
        let vs: Vec<(&[u8], ValueFlags)> = values
            .iter()
            .map(|v| (v.bytes.as_bytes(), if v.serialized { ValueFlags::SERIALIZED } else { ValueFlags::RAW }))
            .collect();
        let inner = &self.inner;
        py.detach(|| ks.iter().zip(&vs).try_for_each(|(&k, &(v, flags))| inner.set(k, v, flags, ttl).map(drop)))
            .or_raise(py)
    }

    /// Delete every key of `keys` present (absent ones are skipped); returns how many were.
    fn delete_many(&self, py: Python<'_>, keys: &Bound<'_, PyAny>) -> PyResult<usize> {
        let objects: Vec<Bound<'_, PyAny>> = keys.try_iter()?.collect::<PyResult<_>>()?;
        let ks = objects.iter().map(key_arg).collect::<PyResult<Vec<Key<'_>>>>()?;
        let inner = &self.inner;
        py.detach(|| ks.iter().try_fold(0, |n, &k| inner.delete(k).map(|removed| n + usize::from(removed))))
            .or_raise(py)
    }

    /// The host-wide counters now.
    fn stats(&self, py: Python<'_>) -> PyResult<SharedCacheStats> {
        self.check_open(py)?;
        let inner = &self.inner;
        Ok(py.detach(|| inner.stats()).into())
    }

    /// Pages a full compaction would free now.
    fn can_compact(&self, py: Python<'_>) -> PyResult<Int> {
        self.check_open(py)?;
        let inner = &self.inner;
        Ok(Int::from(py.detach(|| inner.can_compact())))
    }

    /// Move entries out of sparse zspages and punch the emptied pages out of the file.
    #[pyo3(
        signature = (max_pages = None, time_budget = None, *, slice_objects = None, slice_us = None),
        text_signature = "(self, max_pages=None, time_budget=None, *, slice_objects=64, slice_us=50.0)"
    )]
    fn compact(
        &self,
        py: Python<'_>,
        max_pages: Option<&Bound<'_, PyAny>>,
        time_budget: Option<&Bound<'_, PyAny>>,
        slice_objects: Option<&Bound<'_, PyAny>>,
        slice_us: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CompactionReport> {
        let options = compact_options(py, max_pages, time_budget, slice_objects, slice_us)?;
        let inner = &self.inner;
        py.detach(|| inner.compact(&options)).map(CompactionReport::from).or_raise(py)
    }

    /// Take or renew the reclaimer lease for `pid` for `seconds`; False if another holder has it.
    fn try_lease(&self, py: Python<'_>, pid: u32, seconds: f64) -> PyResult<bool> {
        self.check_open(py)?;
        if !(seconds > 0.0 && seconds.is_finite()) {
            return Err(PyValueError::new_err(format!("seconds={seconds} must be finite and > 0")));
        }
        let lease = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX);
        let inner = &self.inner;
        Ok(py.detach(|| inner.try_lease(pid, lease)))
    }

    /// Give the reclaimer lease up if `pid` holds it.
    fn release_lease(&self, py: Python<'_>, pid: u32) -> PyResult<()> {
        self.check_open(py)?;
        let inner = &self.inner;
        py.detach(|| inner.release_lease(pid));
        Ok(())
    }

    /// Unmap the file in this process (the entries stay in it); later calls raise PoolClosedError.
    fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Release);
        let inner = &self.inner;
        py.detach(|| inner.close());
    }

    /// Remove the file at `path`; False if there was none.
    #[staticmethod]
    fn destroy(py: Python<'_>, path: PathBuf) -> PyResult<bool> {
        py.detach(|| zspool_shared::SharedCache::destroy(&path)).or_raise(py)
    }

    #[getter]
    fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The file.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    /// The budget in bytes of stored entries (the file's `maxbytes`).
    #[getter]
    fn maxsize(&self) -> Int {
        Int(self.config.maxbytes)
    }

    /// Bytes of stored entries now, all processes' (what `maxsize` budgets).
    #[getter]
    fn currsize(&self, py: Python<'_>) -> PyResult<Int> {
        self.check_open(py)?;
        let inner = &self.inner;
        Ok(Int(py.detach(|| inner.currsize())))
    }

    /// None, 'lz4' or 'zstd' (the file's).
    #[getter]
    fn compression(&self) -> Option<&'static str> {
        match self.config.compression {
            Compression::None => None,
            Compression::Lz4 => Some("lz4"),
            Compression::Zstd(_) => Some("zstd"),
        }
    }

    /// The default TTL in seconds, or None (the file's).
    #[getter]
    fn ttl(&self) -> Option<f64> {
        self.config.ttl.map(|d| d.as_secs_f64())
    }

    /// 'sieve': the only eviction a shared cache has.
    #[getter]
    fn eviction(&self) -> &'static str {
        "sieve"
    }

    /// What the file's entries go through: None, 'pickle' or 'custom'.
    #[getter]
    fn serializer_kind(&self) -> Option<&'static str> {
        match self.config.serializer {
            SerializerKind::None => None,
            SerializerKind::Pickle => Some("pickle"),
            SerializerKind::Custom => Some("custom"),
        }
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        self.codec.traverse(&visit)
    }
}

impl SharedCache {
    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(shared_err(py, SharedError::Closed));
        }
        Ok(())
    }
}
