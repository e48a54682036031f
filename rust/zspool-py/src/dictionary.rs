//! The snapshots of zstd dictionaries and recompression handed to Python:
//! `DictionaryStats` (one dictionary), `DictionaryReport` (all of a cache's, in
//! `CacheStats.dictionary`) and `RecompressReport` (one `Cache.recompress()` call). Frozen
//! copies of the `zspool-cache` structs of the same names; no locks.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// One zstd dictionary of a cache (or, with id 0, the values stored without one).
#[pyclass(frozen, module = "zspool", get_all)]
pub struct DictionaryStats {
    /// 1, 2, ... in training order; 0 for "no dictionary".
    id: u32,
    /// Bytes of the dictionary (a pool object, counted in currsize).
    size: usize,
    /// New values are compressed with it.
    current: bool,
    /// Values stored with it (compressed, or tried and kept raw).
    values: u64,
    /// Those values' bytes before compression.
    bytes_before: u64,
    /// Those values' bytes as stored.
    bytes_after: u64,
}

impl DictionaryStats {
    fn new(id: u32, size: usize, current: bool, u: zspool_cache::Usage) -> DictionaryStats {
        DictionaryStats {
            id,
            size,
            current,
            values: u.values,
            bytes_before: u.bytes_before,
            bytes_after: u.bytes_after,
        }
    }
}

#[pymethods]
impl DictionaryStats {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("id", self.id)?;
        d.set_item("size", self.size)?;
        d.set_item("current", self.current)?;
        d.set_item("values", self.values)?;
        d.set_item("bytes_before", self.bytes_before)?;
        d.set_item("bytes_after", self.bytes_after)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "DictionaryStats(id={}, size={}, current={}, values={}, bytes_before={}, bytes_after={})",
            self.id,
            self.size,
            if self.current { "True" } else { "False" },
            self.values,
            self.bytes_before,
            self.bytes_after
        )
    }
}

/// A cache's zstd dictionaries and recompression work, as `Cache.stats().dictionary`.
#[pyclass(frozen, module = "zspool", get_all)]
pub struct DictionaryReport {
    /// The id of the dictionary new values use, or None.
    current: Option<u32>,
    /// Every live dictionary, oldest first (list of DictionaryStats).
    dictionaries: Py<PyList>,
    /// Values of 64 bytes or more stored without a dictionary (id 0).
    without_dictionary: Py<DictionaryStats>,
    /// Bytes of all live dictionaries (in currsize).
    bytes: u64,
    /// Value bytes before compression, over every dictionary and none.
    value_bytes_before: u64,
    /// Value bytes as stored, over every dictionary and none.
    value_bytes_after: u64,
    /// Dictionaries trained and made current.
    trained: u64,
    /// Dictionaries trained but dropped: they did not beat the current one.
    rejected: u64,
    /// Dictionaries freed once their last value left.
    freed: u64,
    /// Stored value bytes recompress() would rewrite now.
    recompressible_bytes: u64,
    /// recompress() calls.
    recompress_runs: u64,
    /// Values rewritten by recompress().
    values_recompressed: u64,
    /// Stored bytes of those values before ...
    recompressed_bytes_before: u64,
    /// ... and after.
    recompressed_bytes_after: u64,
    /// Pages freed by the compactions recompress() ran.
    recompress_pages_freed: u64,
    /// Seconds spent in recompress().
    recompress_time_s: f64,
}

impl DictionaryReport {
    pub(crate) fn new(py: Python<'_>, r: zspool_cache::DictionaryReport) -> PyResult<Py<DictionaryReport>> {
        let items = r
            .dictionaries
            .iter()
            .map(|d| Py::new(py, DictionaryStats::new(d.id, d.size, d.current, d.usage)))
            .collect::<PyResult<Vec<_>>>()?;
        let all = r.dictionaries.iter().map(|d| d.usage).chain([r.without_dictionary]);
        let (before, after) = all.fold((0, 0), |(b, a), u| (b + u.bytes_before, a + u.bytes_after));
        let t = r.recompression;
        Py::new(
            py,
            DictionaryReport {
                current: r.current,
                dictionaries: PyList::new(py, items)?.unbind(),
                without_dictionary: Py::new(py, DictionaryStats::new(0, 0, false, r.without_dictionary))?,
                bytes: r.bytes,
                value_bytes_before: before,
                value_bytes_after: after,
                trained: r.trained,
                rejected: r.rejected,
                freed: r.freed,
                recompressible_bytes: r.recompressible_bytes,
                recompress_runs: t.runs,
                values_recompressed: t.values_recompressed,
                recompressed_bytes_before: t.bytes_before,
                recompressed_bytes_after: t.bytes_after,
                recompress_pages_freed: t.pages_freed,
                recompress_time_s: t.time.as_secs_f64(),
            },
        )
    }
}

#[pymethods]
impl DictionaryReport {
    /// The fields as a new dict (dictionaries as a list of dicts).
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("current", self.current)?;
        let dicts =
            self.dictionaries.bind(py).iter().map(|x| x.call_method0("as_dict")).collect::<PyResult<Vec<_>>>()?;
        d.set_item("dictionaries", dicts)?;
        d.set_item("without_dictionary", self.without_dictionary.bind(py).call_method0("as_dict")?)?;
        d.set_item("bytes", self.bytes)?;
        d.set_item("value_bytes_before", self.value_bytes_before)?;
        d.set_item("value_bytes_after", self.value_bytes_after)?;
        d.set_item("trained", self.trained)?;
        d.set_item("rejected", self.rejected)?;
        d.set_item("freed", self.freed)?;
        d.set_item("recompressible_bytes", self.recompressible_bytes)?;
        d.set_item("recompress_runs", self.recompress_runs)?;
        d.set_item("values_recompressed", self.values_recompressed)?;
        d.set_item("recompressed_bytes_before", self.recompressed_bytes_before)?;
        d.set_item("recompressed_bytes_after", self.recompressed_bytes_after)?;
        d.set_item("recompress_pages_freed", self.recompress_pages_freed)?;
        d.set_item("recompress_time_s", self.recompress_time_s)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "DictionaryReport(current={:?}, dictionaries={}, trained={}, freed={}, values_recompressed={})",
            self.current,
            self.dictionaries.bind(py).len(),
            self.trained,
            self.freed,
            self.values_recompressed
        )
    }
}

/// What one `Cache.recompress()` call did.
#[pyclass(frozen, module = "zspool", get_all)]
pub struct RecompressReport {
    /// Entries looked at.
    values_scanned: u64,
    /// Entries rewritten with the current dictionary.
    values_recompressed: u64,
    /// Entries tried but kept as they were (the new form was not smaller).
    values_kept: u64,
    /// Stored bytes of the rewritten entries before ...
    bytes_before: u64,
    /// ... and after.
    bytes_after: u64,
    /// Old dictionaries freed because their last value was rewritten.
    dictionaries_freed: u64,
    /// Pages the pool holds fewer of afterwards (emptied zspages and the compaction that followed).
    pages_freed: usize,
    /// Wall time of the call in seconds.
    duration_s: f64,
    /// Why it ended: "done", "max_bytes", "budget_reached" or "no_dictionary".
    stop_reason: &'static str,
}

impl From<zspool_cache::RecompressReport> for RecompressReport {
    fn from(r: zspool_cache::RecompressReport) -> RecompressReport {
        RecompressReport {
            values_scanned: r.values_scanned,
            values_recompressed: r.values_recompressed,
            values_kept: r.values_kept,
            bytes_before: r.bytes_before,
            bytes_after: r.bytes_after,
            dictionaries_freed: r.dictionaries_freed,
            pages_freed: r.pages_freed,
            duration_s: r.elapsed.as_secs_f64(),
            stop_reason: r.stop_reason.as_str(),
        }
    }
}

#[pymethods]
impl RecompressReport {
    /// The fields as a new dict.
    fn as_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("values_scanned", self.values_scanned)?;
        d.set_item("values_recompressed", self.values_recompressed)?;
        d.set_item("values_kept", self.values_kept)?;
        d.set_item("bytes_before", self.bytes_before)?;
        d.set_item("bytes_after", self.bytes_after)?;
        d.set_item("dictionaries_freed", self.dictionaries_freed)?;
        d.set_item("pages_freed", self.pages_freed)?;
        d.set_item("duration_s", self.duration_s)?;
        d.set_item("stop_reason", self.stop_reason)?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "RecompressReport(values_recompressed={}, bytes_before={}, bytes_after={}, pages_freed={}, \
             duration_s={:.6}, stop_reason='{}')",
            self.values_recompressed,
            self.bytes_before,
            self.bytes_after,
            self.pages_freed,
            self.duration_s,
            self.stop_reason
        )
    }
}
