//! The buffer protocol, for the data `store`/`write` copy in and the buffer `read_into`
//! copies out to: a view of any exporter whose bytes are C-contiguous.
//!
//! pyo3's `PyUntypedBuffer` asks for `PyBUF_FULL_RO` and refuses a view without `strides`,
//! but NULL strides is how an exporter says "C-contiguous" (ctypes arrays and scalars always
//! do): so this asks for the same view and decides contiguity with CPython's own
//! `PyBuffer_IsContiguous`, which understands NULL strides.

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;

/// A buffer view, released (with the GIL) on drop.
pub(crate) struct Buffer {
    /// Boxed so the view never moves while the exporter may point into it.
    view: Box<ffi::Py_buffer>,
}

impl Buffer {
    /// The view of `obj`'s buffer; the exporter's error (a `TypeError` for an object without
    /// the buffer protocol) if it has none.
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<Buffer> {
        let mut view = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // SAFETY: `view` is writable storage for one Py_buffer, which PyObject_GetBuffer fills
        // in when it returns 0 (and leaves unowned when it fails).
        let status = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_FULL_RO) };
        if status != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: initialised by the successful PyObject_GetBuffer above.
        let view = unsafe { Box::from_raw(Box::into_raw(view).cast::<ffi::Py_buffer>()) };
        Ok(Buffer { view })
    }

    pub(crate) fn len_bytes(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0)
    }

    pub(crate) fn readonly(&self) -> bool {
        self.view.readonly != 0
    }

    pub(crate) fn is_c_contiguous(&self) -> bool {
        // SAFETY: the view is a valid, unreleased Py_buffer.
        unsafe { ffi::PyBuffer_IsContiguous(&*self.view, b'C' as std::ffi::c_char) != 0 }
    }

    /// The first byte (valid for `len_bytes()` bytes when the view is C-contiguous).
    pub(crate) fn buf_ptr(&self) -> *mut u8 {
        self.view.buf.cast()
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled in by PyObject_GetBuffer and is released exactly once,
        // here, attached to the interpreter as PyBuffer_Release requires.
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.view) });
    }
}
