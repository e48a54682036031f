//! The one mapping from the core's `ZsError` to Python exceptions.
//!
//! The exception classes live in Python (`python/zspool/errors.py`), where they can use
//! multiple inheritance (`PoolFullError` is also a `MemoryError`, `InvalidHandleError` a
//! `LookupError`) and read as documentation. This file imports that module once, lazily,
//! and keeps the classes in a `PyOnceLock`. Messages are the core's `Display` text, which
//! names the bad value and the allowed range.
//!
//! Argument errors that the core never sees (a handle that is not an int, a negative size,
//! a read-only buffer) are raised here too, with messages in the same style.

use pyo3::exceptions::{PyBufferError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;
use zspool_core::ZsError;

/// The exception classes of `zspool.errors`, imported on first use.
struct ErrorClasses {
    invalid_handle: Py<PyType>,
    pool_full: Py<PyType>,
    pool_closed: Py<PyType>,
    object_size: Py<PyType>,
    out_of_bounds: Py<PyType>,
    config: Py<PyType>,
    shared_file: Py<PyType>,
}

static ERROR_CLASSES: PyOnceLock<ErrorClasses> = PyOnceLock::new();

fn error_classes(py: Python<'_>) -> PyResult<&ErrorClasses> {
    ERROR_CLASSES.get_or_try_init(py, || {
        let module = py.import("zspool.errors")?;
        let class = |name: &str| -> PyResult<Py<PyType>> { Ok(module.getattr(name)?.cast_into::<PyType>()?.unbind()) };
        Ok(ErrorClasses {
            invalid_handle: class("InvalidHandleError")?,
            pool_full: class("PoolFullError")?,
            pool_closed: class("PoolClosedError")?,
            object_size: class("ObjectSizeError")?,
            out_of_bounds: class("OutOfBoundsError")?,
            config: class("ConfigError")?,
            shared_file: class("SharedFileError")?,
        })
    })
}

/// Which Python exception class an error becomes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    InvalidHandle,
    PoolFull,
    PoolClosed,
    ObjectSize,
    OutOfBounds,
    Config,
    SharedFile,
}

impl Kind {
    fn of(err: &ZsError) -> Kind {
        match err {
            ZsError::InvalidHandle { .. } => Kind::InvalidHandle,
            ZsError::PoolFull { .. } => Kind::PoolFull,
            ZsError::Closed => Kind::PoolClosed,
            ZsError::SizeOutOfRange { .. } => Kind::ObjectSize,
            ZsError::OutOfBounds { .. } => Kind::OutOfBounds,
            ZsError::BadConfig { .. } => Kind::Config,
        }
    }

    /// A `zspool.errors` exception of this kind carrying `message`.
    pub(crate) fn err(self, py: Python<'_>, message: String) -> PyErr {
        let classes = match error_classes(py) {
            Ok(classes) => classes,
            // `zspool.errors` could not be imported (the extension used without its
            // package): report that rather than hide the original error.
            Err(import_error) => return import_error,
        };
        let class = match self {
            Kind::InvalidHandle => &classes.invalid_handle,
            Kind::PoolFull => &classes.pool_full,
            Kind::PoolClosed => &classes.pool_closed,
            Kind::ObjectSize => &classes.object_size,
            Kind::OutOfBounds => &classes.out_of_bounds,
            Kind::Config => &classes.config,
            Kind::SharedFile => &classes.shared_file,
        };
        PyErr::from_type(class.bind(py).clone(), message)
    }
}

/// The core error as the matching `zspool.errors` exception.
pub(crate) fn to_py(py: Python<'_>, err: ZsError) -> PyErr {
    Kind::of(&err).err(py, err.to_string())
}

/// `?`-friendly conversion of core results: `pool.free(h).or_raise(py)?`.
pub(crate) trait OrRaise<T> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> OrRaise<T> for Result<T, ZsError> {
    fn or_raise(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|err| to_py(py, err))
    }
}

pub(crate) fn type_error(message: String) -> PyErr {
    PyTypeError::new_err(message)
}

pub(crate) fn value_error(message: String) -> PyErr {
    PyValueError::new_err(message)
}

pub(crate) fn buffer_error(message: String) -> PyErr {
    PyBufferError::new_err(message)
}
