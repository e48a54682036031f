//! `zspool.Pool`: the core's `Pool` behind a frozen pyclass. This file only converts
//! arguments, results and errors; every allocator decision is the core's.
//!
//! Locks and the GIL. The core's class and large-object locks are plain mutexes, taken by
//! threads that may or may not be attached to the interpreter. Three rules keep that free of
//! deadlocks:
//!
//! 1. **Never attach while holding a core lock.** A thread that holds a class lock and
//!    waits for the GIL deadlocks against a GIL holder waiting for that class lock. So the
//!    only Python work done under a core lock is allocating the result `bytes` of a small
//!    read (no Python code runs, the GIL is never released), and every exception is built
//!    after the lock is dropped.
//! 2. **Detach around long work**: `compact` and `close` always; copies of objects larger
//!    than [`DETACH_THRESHOLD`] when neither side is memory Python code could change meanwhile
//!    (a write from an immutable `bytes`, a read into a `bytes` not yet handed out). A copy
//!    into or out of a `bytearray` stays attached: another thread could resize it.
//! 3. **Fork**: The core's `pthread_atfork` handlers hold every pool lock across `fork()`,
//!    in the forking thread, which holds the GIL: they wait for the threads inside the pool
//!    without the GIL, which by rule 1 never need the GIL to get out.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyList, PyString};
use zspool_core::{
    CompactOptions, DEFAULT_MAX_PAGES_PER_ZSPAGE, LockHold, MAX_OBJECT_SIZE, PoolConfig, ZsError, check_bounds,
};

use crate::buffer::Buffer;
use crate::errors::{Kind, OrRaise, buffer_error, to_py, type_error, value_error};
use crate::objects::{Int, seconds_arg};
use crate::stats::{ClassStats, CompactionReport, PoolActivity, PoolStats};

/// Objects moved per lock hold by `compact` when the caller does not say.
const DEFAULT_SLICE_OBJECTS: usize = 64;
/// Microseconds of compaction between yields of the class lock, unless the caller says.
const DEFAULT_SLICE_US: f64 = 50.0;

/// Copies longer than this (bytes) release the GIL when that is safe (see the module doc).
const DETACH_THRESHOLD: usize = 64 * 1024;

/// The arguments of `compact()` (`Pool` and `SharedCache`), checked, as the core's options.
pub(crate) fn compact_options(
    py: Python<'_>,
    max_pages: Option<&Bound<'_, PyAny>>,
    time_budget: Option<&Bound<'_, PyAny>>,
    slice_objects: Option<&Bound<'_, PyAny>>,
    slice_us: Option<&Bound<'_, PyAny>>,
) -> PyResult<CompactOptions> {
    let time_budget = time_budget.filter(|obj| !obj.is_none()).map(seconds_arg).transpose()?;
    let slice_us = slice_us.filter(|obj| !obj.is_none()).map(seconds_arg).transpose()?.unwrap_or(DEFAULT_SLICE_US);
    let slice_objects = match slice_objects {
        None => DEFAULT_SLICE_OBJECTS,
        Some(obj) => u64_arg(obj, "slice_objects")?
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v >= 1)
            .ok_or_else(|| value_error(format!("slice_objects={obj} is out of range: allowed an int >= 1")))?,
    };
    let max_pages = max_pages
        .map(|obj| {
            u64_arg(obj, "max_pages")?
                .and_then(|v| usize::try_from(v).map_err(|_| v.to_string()))
                .map_err(|text| value_error(format!("max_pages={text} is out of range: allowed an int >= 0, or None")))
        })
        .transpose()?;
    let time_budget = match time_budget {
        None => None,
        Some(secs) if secs == f64::INFINITY => None,
        // A budget past the clock's range (or too long for Duration) is no budget.
        Some(secs) if secs > 0.0 && secs.is_finite() => Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|&budget| std::time::Instant::now().checked_add(budget).is_some()),
        Some(secs) => Some(Duration::try_from_secs_f64(secs).map_err(|_| {
            let shown = PyFloat::new(py, secs).repr().map(|r| r.to_string()).unwrap_or_else(|_| secs.to_string());
            value_error(format!("time_budget={shown} is out of range: allowed seconds >= 0, or None"))
        })?),
    };
    // A finite slice longer than Duration can hold is as good as no slice limit (the
    // object count and the time budget still end it).
    let slice = match Duration::try_from_secs_f64(slice_us / 1e6) {
        _ if !(slice_us.is_finite() && slice_us > 0.0) => {
            return Err(value_error(format!(
                "slice_us={slice_us} is out of range: allowed a finite slice_us > 0 (microseconds)"
            )));
        }
        Ok(slice) => slice,
        Err(_) => Duration::MAX,
    };
    let lock_hold = LockHold::Yielding { slice_objects, slice };
    Ok(CompactOptions { max_pages, time_budget, lock_hold })
}

/// A compacting pool of small objects, after Linux's zsmalloc. See `python/zspool/_core.pyi`.
///
/// Subclassable: a Python subclass may define `_direct_reclaim(requested_bytes) -> bool`,
/// which `malloc`/`store` call (attached, no core lock held) when an allocation would pass
/// `mem_limit`; if it returns true the allocation is retried once.
#[pyclass(frozen, subclass, module = "zspool")]
pub struct Pool {
    pub(crate) inner: Arc<zspool_core::Pool>,
}

// ---- argument conversion -------------------------------------------------------------

/// A short description of a bad argument for error messages: its type and its repr.
fn describe(obj: &Bound<'_, PyAny>) -> String {
    let type_name = obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let mut repr = obj.repr().map(|r| r.to_string()).unwrap_or_else(|_| "<unprintable>".into());
    if repr.chars().count() > 60 {
        repr = repr.chars().take(57).collect::<String>() + "...";
    }
    format!("{type_name} {repr}")
}

/// A Python int (not a bool; bools are ints but never meant as sizes or handles).
fn as_int<'a, 'py>(obj: &'a Bound<'py, PyAny>, what: &str) -> PyResult<&'a Bound<'py, PyInt>> {
    if obj.is_instance_of::<PyBool>() {
        return Err(type_error(format!("{what} must be an int, not {}", describe(obj))));
    }
    obj.cast::<PyInt>().map_err(|_| type_error(format!("{what} must be an int, not {}", describe(obj))))
}

/// An int argument that must lie in `0..2**64`: `Ok(Err(text))` holds the out-of-range value
/// as text, so the caller can raise the exception its parameter calls for.
fn u64_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Result<u64, String>> {
    let int = as_int(obj, what)?;
    Ok(int.extract::<u64>().map_err(|_| int.to_string()))
}

/// A handle: an int; one outside `0..2**64` cannot have been issued by any pool.
fn handle_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<u64> {
    u64_arg(obj, "handle")?.map_err(|text| {
        Kind::InvalidHandle.err(py, format!("handle {text} was never issued by any pool: handles are ints in 0..2**64"))
    })
}

/// An object size for malloc: out-of-range sizes are `ObjectSizeError`, worded as the core does.
fn size_arg(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    u64_arg(obj, "size")?.and_then(|v| usize::try_from(v).map_err(|_| v.to_string())).map_err(|text| {
        Kind::ObjectSize
            .err(py, format!("object size {text} is out of range: sizes must be 0..={MAX_OBJECT_SIZE} bytes"))
    })
}

/// A byte offset or length inside an object: out of range is `OutOfBoundsError`.
fn extent_arg(py: Python<'_>, obj: &Bound<'_, PyAny>, what: &str) -> PyResult<usize> {
    u64_arg(obj, what)?.and_then(|v| usize::try_from(v).map_err(|_| v.to_string())).map_err(|text| {
        Kind::OutOfBounds.err(py, format!("{what} {text} is out of range: it must be an int >= 0 within the object"))
    })
}

/// Reword the TypeError of an object without the buffer protocol; keep any other error
/// (a released memoryview, say) as the exporter raised it.
fn not_a_buffer(obj: &Bound<'_, PyAny>, err: PyErr, expected: &str) -> PyErr {
    if err.is_instance_of::<PyTypeError>(obj.py()) {
        type_error(format!("{expected}, not {}", describe(obj)))
    } else {
        err
    }
}

/// A read-only view of a bytes-like argument (anything with the buffer protocol).
struct Source {
    buf: Buffer,
    /// The exporter is an exact `bytes`, whose contents no Python code can change.
    immutable: bool,
}

impl Source {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Source> {
        let buf = Buffer::get(obj).map_err(|err| {
            not_a_buffer(obj, err, "data must be a bytes-like object (bytes, bytearray, memoryview, array.array, ...)")
        })?;
        if !buf.is_c_contiguous() {
            return Err(buffer_error(format!(
                "data must be a C-contiguous buffer; got a non-contiguous {} (copy it with bytes(data))",
                describe(obj)
            )));
        }
        Ok(Source { buf, immutable: obj.is_exact_instance_of::<PyBytes>() })
    }

    fn bytes(&self) -> &[u8] {
        let len = self.buf.len_bytes();
        if len == 0 {
            return &[];
        }
        // SAFETY: the buffer is C-contiguous (checked in `get`), so `buf_ptr()` points at
        // `len_bytes()` initialised bytes, kept alive until `self.buf` is released on drop,
        // which the borrow of `self` outlives this slice. The bytes are not written while the
        // slice lives: either the exporter is an immutable `bytes`, or the caller stays
        // attached and calls no Python code while using the slice (the GIL keeps other
        // Python threads from writing a `bytearray`; on a free-threaded build a concurrent
        // writer of the same buffer is a data race the caller has asked for).
        unsafe { std::slice::from_raw_parts(self.buf.buf_ptr().cast::<u8>(), len) }
    }

    /// Whether copying out of this buffer may release the GIL.
    fn may_detach(&self) -> bool {
        self.immutable && self.buf.len_bytes() > DETACH_THRESHOLD
    }
}

/// A writable buffer for `read_into`.
struct Destination {
    buf: Buffer,
}

impl Destination {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Destination> {
        let buf = Buffer::get(obj).map_err(|err| {
            not_a_buffer(
                obj,
                err,
                "buffer must be a writable bytes-like object (bytearray, memoryview, array.array, ...)",
            )
        })?;
        if buf.readonly() {
            return Err(type_error(format!(
                "buffer must be writable; {} is read-only (pass a bytearray or a memoryview of one)",
                describe(obj)
            )));
        }
        if !buf.is_c_contiguous() {
            return Err(buffer_error(format!(
                "buffer must be a C-contiguous buffer; got a non-contiguous {}",
                describe(obj)
            )));
        }
        Ok(Destination { buf })
    }

    /// The buffer's bytes. Use while attached, calling no Python code.
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.buf.len_bytes();
        if len == 0 {
            return &mut [];
        }
        // SAFETY: the buffer is writable and C-contiguous (checked in `get`): `buf_ptr()`
        // points at `len_bytes()` bytes the exporter lets us write, alive until `self.buf` is
        // released on drop. `&mut self` makes this the only slice we hand out; the caller stays
        // attached and runs no Python code while using it, so no Python thread touches the
        // bytes meanwhile (on a free-threaded build, a concurrent user of the same buffer is a
        // data race the caller has asked for). Pool memory is never exported, so it cannot
        // alias the source of the copy.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr().cast::<u8>(), len) }
    }
}

/// Outcome of the locked part of a read.
enum ReadStep<'py> {
    /// Small enough: copied under the lock into this new `bytes`.
    Done(PyResult<Bound<'py, PyBytes>>),
    /// Large: `len` bytes to copy detached, after the lock is dropped.
    Large { len: usize },
}

impl Pool {
    fn check_open(&self, py: Python<'_>) -> PyResult<()> {
        if self.inner.is_closed() { Err(to_py(py, ZsError::Closed)) } else { Ok(()) }
    }

    /// Read `size` bytes (None: to the end) at `offset` into a new `bytes`.
    fn read_bytes<'py>(
        &self,
        py: Python<'py>,
        handle: u64,
        offset: usize,
        size: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let step = self
            .inner
            .read_with(handle, |object| {
                let object_size = object.len();
                let len = size.unwrap_or_else(|| object_size.saturating_sub(offset));
                // The core's error, built without Python, so it can be made under a core lock.
                check_bounds(handle, offset, len, object_size)?;
                if len > DETACH_THRESHOLD {
                    return Ok(ReadStep::Large { len });
                }
                // Allocating a `bytes` runs no Python code and keeps the GIL: allowed under
                // the class lock (rule 1). The extent was checked, so `read` cannot fail.
                Ok(ReadStep::Done(PyBytes::new_with(py, len, |buf| {
                    object.read(offset, buf).map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))
                })))
            })
            .and_then(|step| step)
            .or_raise(py)?;
        match step {
            ReadStep::Done(bytes) => bytes,
            // Objects never change size, so `len` still fits unless the object was freed
            // meanwhile, which the core reports as an invalid handle.
            ReadStep::Large { len } => PyBytes::new_with(py, len, |buf| {
                let pool = &self.inner;
                py.detach(|| pool.read(handle, offset, buf)).or_raise(py)
            }),
        }
    }
}

/// A new handle as a Python int. Should making the int fail (no memory), the object is freed
/// and the `MemoryError` raised: nobody could ever free an object whose handle was lost.
fn handle_object<'py>(py: Python<'py>, pool: &zspool_core::Pool, handle: u64) -> PyResult<Bound<'py, PyAny>> {
    Int(handle).into_pyobject(py).inspect_err(|_| {
        let _ = pool.free(handle);
    })
}

/// Run an allocation; if it fails only because of `mem_limit` and `slf` is a Python subclass
/// with a `_direct_reclaim(requested_bytes)` method, call that (no core lock is held here)
/// and, if it reports pages freed, retry once. The base class never calls into Python.
fn with_direct_reclaim(slf: &Bound<'_, Pool>, alloc: impl Fn() -> Result<u64, ZsError>) -> PyResult<u64> {
    let py = slf.py();
    match alloc() {
        Err(err @ ZsError::PoolFull { requested_bytes, os_error: None, .. }) if !slf.is_exact_instance_of::<Pool>() => {
            let Ok(reclaim) = slf.getattr(intern!(py, "_direct_reclaim")) else {
                return Err(to_py(py, err));
            };
            if reclaim.call1((requested_bytes,))?.is_truthy()? { alloc().or_raise(py) } else { Err(to_py(py, err)) }
        }
        result => result.or_raise(py),
    }
}

// ---- the Python API --------------------------------------------------------------------

#[pymethods]
impl Pool {
    #[new]
    #[pyo3(
        signature = (*, max_pages_per_zspage = None, mem_limit = None, name = None),
        // The 8 is `DEFAULT_MAX_PAGES_PER_ZSPAGE` (a text signature must be a literal).
        text_signature = "(*, max_pages_per_zspage=8, mem_limit=None, name=None)"
    )]
    fn new(
        py: Python<'_>,
        max_pages_per_zspage: Option<&Bound<'_, PyAny>>,
        mem_limit: Option<&Bound<'_, PyAny>>,
        name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Pool> {
        let name = match name {
            None => None,
            Some(obj) => Some(
                obj.cast::<PyString>()
                    .map_err(|_| type_error(format!("name must be a str or None, not {}", describe(obj))))?
                    .to_str()?
                    .to_owned(),
            ),
        };
        let config_error = |what: &str, text: String, allowed: &str| {
            Kind::Config.err(py, format!("{what}={text} is out of range: allowed {allowed}"))
        };
        let max_pages_per_zspage = match max_pages_per_zspage {
            None => DEFAULT_MAX_PAGES_PER_ZSPAGE,
            Some(obj) => u64_arg(obj, "max_pages_per_zspage")?
                .and_then(|v| usize::try_from(v).map_err(|_| v.to_string()))
                .map_err(|text| config_error("max_pages_per_zspage", text, PoolConfig::MAX_PAGES_ALLOWED))?,
        };
        let mem_limit = match mem_limit {
            None => None,
            Some(obj) => Some(
                u64_arg(obj, "mem_limit")?
                    .map_err(|text| config_error("mem_limit", text, PoolConfig::MEM_LIMIT_ALLOWED))?,
            ),
        };
        let inner =
            Arc::new(zspool_core::Pool::new(PoolConfig { max_pages_per_zspage, mem_limit, name }).or_raise(py)?);
        // Every pool made from Python is fork-safe: the core's pthread_atfork handlers lock
        // it across fork() (see rust/zspool-core/src/fork.rs for why not os.register_at_fork).
        zspool_core::register_for_fork(&inner);
        Ok(Pool { inner })
    }

    /// Allocate a zero-filled object of `size` bytes; return its handle.
    fn malloc<'py>(slf: &Bound<'py, Self>, size: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let size = size_arg(py, size)?;
        let pool = &slf.get().inner;
        let handle = with_direct_reclaim(slf, || pool.malloc(size))?;
        handle_object(py, pool, handle)
    }

    /// Allocate an object holding a copy of `data`; return its handle.
    fn store<'py>(slf: &Bound<'py, Self>, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let source = Source::get(data)?;
        let pool = &slf.get().inner;
        let handle = if source.may_detach() {
            let bytes = source.bytes();
            with_direct_reclaim(slf, || py.detach(|| pool.store(bytes)))
        } else {
            with_direct_reclaim(slf, || pool.store(source.bytes()))
        }?;
        handle_object(py, pool, handle)
    }

    /// Copy `data` into the object at byte `offset`.
    #[pyo3(signature = (handle, data, offset = None), text_signature = "(self, handle, data, offset=0)")]
    fn write(
        &self,
        py: Python<'_>,
        handle: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        offset: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let handle = handle_arg(py, handle)?;
        let source = Source::get(data)?;
        let offset = offset.map(|o| extent_arg(py, o, "offset")).transpose()?.unwrap_or(0);
        let pool = &self.inner;
        if source.may_detach() {
            let bytes = source.bytes();
            py.detach(|| pool.write(handle, offset, bytes)).or_raise(py)
        } else {
            pool.write(handle, offset, source.bytes()).or_raise(py)
        }
    }

    /// `size` bytes (None: to the end) from byte `offset` of the object, as new bytes.
    #[pyo3(signature = (handle, offset = None, size = None), text_signature = "(self, handle, offset=0, size=None)")]
    fn read<'py>(
        &self,
        py: Python<'py>,
        handle: &Bound<'py, PyAny>,
        offset: Option<&Bound<'py, PyAny>>,
        size: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let handle = handle_arg(py, handle)?;
        let offset = offset.map(|o| extent_arg(py, o, "offset")).transpose()?.unwrap_or(0);
        let size = size.map(|s| extent_arg(py, s, "size")).transpose()?;
        self.read_bytes(py, handle, offset, size)
    }

    /// Copy bytes from `offset` into `buffer`; return how many: min(len(buffer), size - offset).
    #[pyo3(signature = (handle, buffer, offset = None), text_signature = "(self, handle, buffer, offset=0)")]
    fn read_into(
        &self,
        py: Python<'_>,
        handle: &Bound<'_, PyAny>,
        buffer: &Bound<'_, PyAny>,
        offset: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Int> {
        let handle = handle_arg(py, handle)?;
        let mut destination = Destination::get(buffer)?;
        let offset = offset.map(|o| extent_arg(py, o, "offset")).transpose()?.unwrap_or(0);
        let dst = destination.bytes_mut();
        self.inner
            .read_with(handle, |object| {
                let object_size = object.len();
                check_bounds(handle, offset, 0, object_size)?;
                let n = dst.len().min(object_size - offset);
                object.read(offset, &mut dst[..n]).map(|()| n)
            })
            .and_then(|copied| copied)
            .map(Int::from)
            .or_raise(py)
    }

    /// The whole object as new bytes.
    fn load<'py>(&self, py: Python<'py>, handle: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let handle = handle_arg(py, handle)?;
        self.read_bytes(py, handle, 0, None)
    }

    /// The object's size in bytes.
    fn size_of(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<Int> {
        let handle = handle_arg(py, handle)?;
        self.inner.size_of(handle).map(Int::from).or_raise(py)
    }

    /// Free the object; its handle becomes invalid.
    fn free(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let handle = handle_arg(py, handle)?;
        self.inner.free(handle).or_raise(py)
    }

    /// Pool totals.
    fn stats(&self, py: Python<'_>) -> PyResult<PoolStats> {
        self.check_open(py)?;
        Ok(self.inner.stats().into())
    }

    /// One row per size class, smallest first.
    fn class_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.check_open(py)?;
        let rows = self.inner.class_stats();
        PyList::new(py, rows.into_iter().map(ClassStats::from))
    }

    /// How busy the pool is now (for policies that avoid compacting under load).
    fn activity(&self, py: Python<'_>) -> PyResult<PoolActivity> {
        self.check_open(py)?;
        Ok(self.inner.activity().into())
    }

    /// Pages a full compaction would free now.
    fn can_compact(&self, py: Python<'_>) -> PyResult<Int> {
        self.check_open(py)?;
        Ok(Int::from(self.inner.can_compact()))
    }

    /// Move objects out of sparse zspages and give emptied pages back to the OS.
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
        self.check_open(py)?;
        let options = compact_options(py, max_pages, time_budget, slice_objects, slice_us)?;
        let pool = &self.inner;
        let report = py.detach(|| pool.compact(&options));
        Ok(report.into())
    }

    /// Free every object and give all pages back; later calls raise PoolClosedError.
    fn close(&self, py: Python<'_>) {
        let pool = &self.inner;
        py.detach(|| pool.close());
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// The name given to the constructor, or None.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.inner.config().name.as_deref()
    }

    /// The most bytes of pages the pool may hold, or None for no limit.
    #[getter]
    fn mem_limit(&self) -> Option<Int> {
        self.inner.config().mem_limit.map(Int)
    }

    /// The longest page chain a zspage may use.
    #[getter]
    fn max_pages_per_zspage(&self) -> usize {
        self.inner.config().max_pages_per_zspage
    }

    /// Live objects; PoolClosedError after close().
    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.check_open(py)?;
        Ok(self.inner.len())
    }

    /// Whether `handle` names a live object (False for anything that is not a handle);
    /// PoolClosedError after close().
    fn __contains__(&self, py: Python<'_>, handle: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.check_open(py)?;
        Ok(match u64_arg(handle, "handle") {
            Ok(Ok(handle)) => self.inner.contains(handle),
            _ => false,
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (exc_type, exc_value, traceback))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: &Bound<'_, PyAny>,
        exc_value: &Bound<'_, PyAny>,
        traceback: &Bound<'_, PyAny>,
    ) -> bool {
        let _ = (exc_type, exc_value, traceback);
        self.close(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let name = self.name().into_pyobject(py)?.repr()?;
        if self.inner.is_closed() {
            return Ok(format!("<zspool.Pool name={name} closed>"));
        }
        let pages = self.inner.stats().pages_used;
        Ok(format!("<zspool.Pool name={name} objects={} pages_used={pages}>", self.inner.len()))
    }
}
