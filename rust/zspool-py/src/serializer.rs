//! The serializer of `Cache` and `SharedCache`: `bytes` values are stored as they are, any
//! other value through the Python `dumps` (and read back through `loads`) with the entry
//! marked serialized. Both callables are Python objects: call them only attached, and never
//! under a cache or pool lock (rule 2 of `cache.rs`).

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::objects::type_name;

/// `dumps(obj) -> bytes` and `loads(bytes) -> obj`, or neither (values must be `bytes`).
pub(crate) struct Serializer {
    pub dumps: Option<Py<PyAny>>,
    pub loads: Option<Py<PyAny>>,
}

/// A value to store: borrowed bytes, or the serializer's output.
pub(crate) struct ValueArg<'py> {
    pub bytes: Bound<'py, PyBytes>,
    pub serialized: bool,
}

impl Serializer {
    /// The bytes to store for `value`, and whether they went through `dumps`.
    pub(crate) fn value_arg<'py>(&self, value: &Bound<'py, PyAny>) -> PyResult<ValueArg<'py>> {
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
    pub(crate) fn value_object<'py>(
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

    /// The garbage collector's visit of the two callables.
    pub(crate) fn traverse(&self, visit: &pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.dumps)?;
        visit.call(&self.loads)
    }
}
