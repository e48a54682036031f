//! Python objects made from Rust values, fallibly.
//!
//! pyo3's conversions of integers and strings assume the allocation succeeds and panic when
//! it does not (`PyLong_FromUnsignedLongLong` returning NULL under `RLIMIT_AS`, say), which
//! reaches Python as `PanicException`, a `BaseException` that `except Exception` misses. Every
//! integer, key and buffer this crate hands to Python is made here instead, and a failed
//! allocation is the `MemoryError` Python raised.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::{IntoPyObject, ffi};
use zspool_cache::{Key, KeyKind, OwnedKey};

/// A non-negative integer result (a handle, a size, a count) for Python.
pub(crate) struct Int(pub u64);

impl<'py> IntoPyObject<'py> for Int {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: PyLong_FromUnsignedLongLong returns a new reference, or NULL with an
        // exception set, which from_owned_ptr_or_err turns into the error.
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyLong_FromUnsignedLongLong(self.0)) }
    }
}

impl From<usize> for Int {
    fn from(n: usize) -> Int {
        Int(n as u64) // usize is 64 bits on every target this crate builds for
    }
}

/// A new `str` from UTF-8 bytes (a `UnicodeDecodeError` if they are not UTF-8).
pub(crate) fn str_object<'py>(py: Python<'py>, utf8: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // A slice is at most isize::MAX bytes long, so its length fits a Py_ssize_t.
    let len = utf8.len() as ffi::Py_ssize_t;
    // SAFETY: the pointer and length describe `utf8`, alive for the call; the result is a new
    // reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyUnicode_DecodeUTF8(utf8.as_ptr().cast(), len, std::ptr::null())) }
}

/// A new `bytes` copy of `data`.
pub(crate) fn bytes_object<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let len = data.len() as ffi::Py_ssize_t;
    // SAFETY: as in `str_object`.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(data.as_ptr().cast(), len)) }
}

/// A number of seconds (or microseconds) passed from Python, as `f64`: what pyo3's `f64`
/// extraction gives, except that an int too large for a float is the infinity of its sign
/// (pyo3 raises `OverflowError` there, an error no caller documents) and the range check is
/// left to the caller, which knows what the number means.
pub(crate) fn seconds_arg(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    match obj.extract::<f64>() {
        Ok(secs) => Ok(secs),
        Err(err) if err.is_instance_of::<pyo3::exceptions::PyOverflowError>(obj.py()) => {
            Ok(if obj.gt(0)? { f64::INFINITY } else { f64::NEG_INFINITY })
        }
        Err(err) => Err(err),
    }
}

/// The name of an argument's type, for error messages.
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// A key argument: `str` (UTF-8) or `bytes`, borrowed from the Python object.
pub(crate) fn key_arg<'a>(obj: &'a Bound<'_, PyAny>) -> PyResult<Key<'a>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Key::str(s.to_str()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Key::bytes(b.as_bytes()));
    }
    Err(PyTypeError::new_err(format!("cache keys must be str or bytes, not {}", type_name(obj))))
}

pub(crate) fn key_object<'py>(py: Python<'py>, key: &OwnedKey) -> PyResult<Bound<'py, PyAny>> {
    match key.kind {
        KeyKind::Str => str_object(py, &key.bytes),
        KeyKind::Bytes => bytes_object(py, &key.bytes),
    }
}

/// The (key, value) pairs of a `set_many` argument: a mapping, or an iterable of pairs.
pub(crate) type Pairs<'py> = Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>;

pub(crate) fn item_pairs<'py>(items: &Bound<'py, PyAny>) -> PyResult<Pairs<'py>> {
    let pairs = match items.cast::<PyDict>() {
        Ok(d) => d.items().into_any(),
        Err(_) => items.clone(),
    };
    pairs
        .try_iter()?
        .map(|pair| {
            pair?
                .extract()
                .map_err(|_| PyTypeError::new_err("set_many() takes a mapping or an iterable of (key, value) pairs"))
        })
        .collect()
}
