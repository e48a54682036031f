//! Read-only snapshots handed to Python: `PoolStats`, `ClassStats`, `CompactionReport`,
//! `PoolActivity` and `SharedCacheStats`.
//!
//! Each is a frozen copy of the core's struct of the same name, taken when the method was
//! called; attribute names are the core's field names (kernel and zram vocabulary:
//! `pages_compacted`, `obj_used`, `freeable`, ...). `as_dict()` gives the same fields as a
//! plain dict for logging and JSON. No locks: these hold plain numbers.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use zspool_core::FULLNESS_GROUPS;

/// A frozen snapshot pyclass of a core (or shared) stats struct, from one list of its fields: the struct
/// (each field a read-only attribute), `From` the core struct (destructured whole, so a field
/// added to the core struct but not listed here fails to compile) and `as_dict()`, in the
/// listed order.
macro_rules! stats_snapshot {
    (
        $(#[doc = $doc:literal])*
        $name:ident from $krate:ident::$core:ident {
            $($(#[doc = $field_doc:literal])* $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[doc = $doc])*
        #[pyclass(frozen, module = "zspool", get_all)]
        pub struct $name {
            $($(#[doc = $field_doc])* $field: $ty,)*
        }

        impl From<$krate::$core> for $name {
            fn from(s: $krate::$core) -> $name {
                let $krate::$core { $($field),* } = s;
                $name { $($field),* }
            }
        }

        impl $name {
            /// The fields as a new dict.
            fn fields_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
                let d = PyDict::new(py);
                $(d.set_item(stringify!($field), &self.$field)?;)*
                Ok(d)
            }
        }
    };
}

stats_snapshot! {
    /// Pool totals (after zram's `mm_stat`), a snapshot taken by `Pool.stats()`.
    PoolStats from zspool_core::PoolStats {
        /// The pool's name, or None.
        name: Option<String>,
        /// Pages held for objects (zspages and large objects).
        pages_used: usize,
        /// `pages_used` in bytes.
        mem_used_bytes: u64,
        /// The most bytes of pages ever held at once.
        mem_used_max: u64,
        /// The pool's mem_limit in bytes, or None.
        mem_limit: Option<u64>,
        /// Live objects.
        objects: usize,
        /// Bytes of live objects (their requested sizes).
        payload_bytes: u64,
        /// Live objects with pages of their own (larger than MAX_CLASS_SIZE, or stored at mem_limit).
        large_objects: usize,
        /// Pages held by large objects.
        large_object_pages: usize,
        /// Pages a full compaction would free now.
        freeable_pages: usize,
        /// Heap bytes of bookkeeping, outside `mem_used_bytes`.
        metadata_bytes: usize,
        /// Pages freed by compaction, ever.
        pages_compacted: u64,
        /// Objects moved by compaction, ever.
        objects_migrated: u64,
        /// Compaction runs that had something to do.
        compactions: u64,
    }
}

#[pymethods]
impl PoolStats {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.fields_dict(py)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "PoolStats(name={}, objects={}, pages_used={}, payload_bytes={}, freeable_pages={}, pages_compacted={})",
            self.name.as_deref().into_pyobject(py)?.repr()?,
            self.objects,
            self.pages_used,
            self.payload_bytes,
            self.freeable_pages,
            self.pages_compacted
        ))
    }
}

/// One size class (a row of the kernel's debugfs `classes` table), from `Pool.class_stats()`.
#[pyclass(frozen, module = "zspool")]
pub struct ClassStats {
    /// The kernel's class index (the size slot the class was created for).
    #[pyo3(get)]
    index: usize,
    /// Object slot size in bytes.
    #[pyo3(get)]
    size: usize,
    /// Pages in each zspage of this class.
    #[pyo3(get)]
    pages_per_zspage: usize,
    /// Object slots in each zspage of this class.
    #[pyo3(get)]
    objs_per_zspage: usize,
    /// Zspages in this class.
    #[pyo3(get)]
    zspages: usize,
    /// Object slots in the class's zspages, used or not.
    #[pyo3(get)]
    obj_allocated: usize,
    /// Live objects.
    #[pyo3(get)]
    obj_used: usize,
    /// Pages held by the class.
    #[pyo3(get)]
    pages_used: usize,
    /// Pages compaction could free now (the kernel's `zs_can_compact`).
    #[pyo3(get)]
    freeable: usize,
    /// Bytes of live objects (their requested sizes).
    #[pyo3(get)]
    payload_bytes: u64,
    /// Exposed as a tuple by the `fullness` getter below.
    fullness: [usize; FULLNESS_GROUPS],
}

impl From<zspool_core::ClassStats> for ClassStats {
    fn from(s: zspool_core::ClassStats) -> ClassStats {
        ClassStats {
            index: s.index,
            size: s.size,
            pages_per_zspage: s.pages_per_zspage,
            objs_per_zspage: s.objs_per_zspage,
            zspages: s.zspages,
            obj_allocated: s.obj_allocated,
            obj_used: s.obj_used,
            pages_used: s.pages_used,
            freeable: s.freeable,
            payload_bytes: s.payload_bytes,
            fullness: s.fullness,
        }
    }
}

#[pymethods]
impl ClassStats {
    /// Zspages per fullness group, 12 ints: `[0]` empty, `[1]`..`[10]` up to 10 %, 20 %, ...
    /// 90 %, 99 % in use, `[11]` full.
    #[getter]
    fn fullness<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.fullness)
    }

    /// The fields as a new dict (`fullness` as a tuple).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("index", self.index)?;
        d.set_item("size", self.size)?;
        d.set_item("pages_per_zspage", self.pages_per_zspage)?;
        d.set_item("objs_per_zspage", self.objs_per_zspage)?;
        d.set_item("fullness", self.fullness(py)?)?;
        d.set_item("zspages", self.zspages)?;
        d.set_item("obj_allocated", self.obj_allocated)?;
        d.set_item("obj_used", self.obj_used)?;
        d.set_item("pages_used", self.pages_used)?;
        d.set_item("freeable", self.freeable)?;
        d.set_item("payload_bytes", self.payload_bytes)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "ClassStats(index={}, size={}, pages_per_zspage={}, zspages={}, obj_used={}/{}, freeable={})",
            self.index,
            self.size,
            self.pages_per_zspage,
            self.zspages,
            self.obj_used,
            self.obj_allocated,
            self.freeable
        )
    }
}

/// What one `Pool.compact()` call did.
#[pyclass(frozen, module = "zspool", get_all)]
pub struct CompactionReport {
    /// Pages given back to the OS.
    pages_freed: usize,
    /// Objects moved to another zspage.
    objects_migrated: u64,
    /// Bytes copied by those moves.
    bytes_migrated: u64,
    /// Classes that had freeable pages and were worked on.
    classes_scanned: usize,
    /// Times a class lock was released and re-taken mid-class.
    lock_yields: u64,
    /// Wall time of the run in seconds.
    duration_s: f64,
    /// Why the run ended: "done", "nothing_freeable", "budget_reached", "already_running" or "closed".
    stop_reason: &'static str,
}

impl From<zspool_core::CompactionReport> for CompactionReport {
    fn from(r: zspool_core::CompactionReport) -> CompactionReport {
        CompactionReport {
            pages_freed: r.pages_freed,
            objects_migrated: r.objects_migrated,
            bytes_migrated: r.bytes_migrated,
            classes_scanned: r.classes_scanned,
            lock_yields: r.lock_yields,
            duration_s: r.duration.as_secs_f64(),
            stop_reason: r.stop_reason.as_str(),
        }
    }
}

#[pymethods]
impl CompactionReport {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("pages_freed", self.pages_freed)?;
        d.set_item("objects_migrated", self.objects_migrated)?;
        d.set_item("bytes_migrated", self.bytes_migrated)?;
        d.set_item("classes_scanned", self.classes_scanned)?;
        d.set_item("lock_yields", self.lock_yields)?;
        d.set_item("duration_s", self.duration_s)?;
        d.set_item("stop_reason", self.stop_reason)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "CompactionReport(pages_freed={}, objects_migrated={}, duration_s={:.6}, stop_reason='{}')",
            self.pages_freed, self.objects_migrated, self.duration_s, self.stop_reason
        )
    }
}

/// How busy a pool is, from `Pool.activity()` (for policies that must not compact under load).
#[pyclass(frozen, module = "zspool", get_all)]
pub struct PoolActivity {
    /// Calls inside the pool right now (malloc, store, read, write, free; not compaction).
    ops_in_flight: usize,
    /// Seconds since the last call finished (coarse clock: 1-4 ms resolution).
    idle_s: f64,
}

impl From<zspool_core::Activity> for PoolActivity {
    fn from(a: zspool_core::Activity) -> PoolActivity {
        PoolActivity { ops_in_flight: a.ops_in_flight, idle_s: a.idle.as_secs_f64() }
    }
}

#[pymethods]
impl PoolActivity {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("ops_in_flight", self.ops_in_flight)?;
        d.set_item("idle_s", self.idle_s)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!("PoolActivity(ops_in_flight={}, idle_s={:.3})", self.ops_in_flight, self.idle_s)
    }
}

stats_snapshot! {
    /// A shared cache's counters, the whole host's (every process's calls), taken by
    /// `SharedCache.stats()`. Fields are attributes, and items: `stats()["recoveries"]`.
    SharedCacheStats from zspool_shared::SharedStats {
        /// Live entries (expired ones not yet dropped included).
        entries: u64,
        /// Stored bytes of the entries (`currsize`).
        bytes: u64,
        /// The budget (`maxsize`), bytes.
        maxbytes: u64,
        /// Lookups that found a live entry.
        hits: u64,
        /// Lookups that did not.
        misses: u64,
        /// Entries stored.
        sets: u64,
        /// Entries evicted to make room.
        evictions: u64,
        /// Entries dropped because their TTL had passed.
        expirations: u64,
        /// Locks recovered after their holder died.
        recoveries: u64,
        /// Entries lost because what they lived in was discarded by a recovery.
        entries_dropped_on_recovery: u64,
        /// Records that failed their checks (key, checksum, bounds) and were dropped.
        corrupt_dropped: u64,
        /// Pages of zspages in use.
        pages_in_use: u64,
        /// Pages of zspages the file has room for.
        pages_max: u64,
        /// Bytes the file really occupies (`st_blocks * 512`).
        file_bytes_allocated: u64,
        /// Zspages in use.
        zspages: u64,
        /// Index slots the shards' tables use now (16 bytes each; they grow with the entries
        /// and compaction shrinks them).
        index_slots: u64,
        /// Pages freed by compaction, ever.
        pages_compacted: u64,
        /// Objects moved by compaction, ever.
        objects_migrated: u64,
        /// Compaction runs that found work.
        compactions: u64,
    }
}

#[pymethods]
impl SharedCacheStats {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.fields_dict(py)
    }

    /// A field by name: `stats()["recoveries"]` is `stats().recoveries`; KeyError for others.
    fn __getitem__<'py>(&self, py: Python<'py>, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match self.fields_dict(py)?.get_item(name)? {
            Some(value) => Ok(value),
            None => Err(pyo3::exceptions::PyKeyError::new_err(name.clone().unbind())),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "<zspool.SharedCacheStats entries={} bytes={} hits={} misses={} evictions={} recoveries={}>",
            self.entries, self.bytes, self.hits, self.misses, self.evictions, self.recoveries
        )
    }
}
