//! # zspool-py: the Python face of zspool-core
//!
//! A thin bindings crate: it converts Python arguments to core calls and core results and
//! errors back, and decides nothing about allocation. One concept per file:
//!
//! - `pool.rs`: the `Pool` pyclass, argument conversion, and the GIL/lock rules;
//! - `stats.rs`: the `PoolStats`, `ClassStats`, `CompactionReport` and `PoolActivity` snapshots;
//! - `cache.rs`: the `Cache` pyclass over `zspool-cache`, and its `CacheStats` snapshot;
//! - `shared.rs`: the `SharedCache` pyclass over `zspool-shared` (its `SharedCacheStats` is in `stats.rs`);
//! - `dictionary.rs`: the `DictionaryStats`, `DictionaryReport` and `RecompressReport` snapshots;
//! - `errors.rs`: the one mapping from `ZsError` to the exceptions of `zspool.errors`;
//! - `buffer.rs`: the buffer protocol (any C-contiguous exporter, ctypes included);
//! - `serializer.rs`: the `dumps`/`loads` pair of `Cache` and `SharedCache`;
//! - `objects.rs`: ints, keys and bytes for Python, made fallibly (no panic on a failed allocation).
//!
//! The extension is `zspool._core`; the public namespace is built in `python/zspool/__init__.py`.

mod buffer;
mod cache;
mod dictionary;
mod errors;
mod objects;
mod pool;
mod serializer;
mod shared;
mod stats;

pub use cache::{Cache, CacheStats};
pub use dictionary::{DictionaryReport, DictionaryStats, RecompressReport};
pub use pool::Pool;
pub use shared::SharedCache;
pub use stats::{ClassStats, CompactionReport, PoolActivity, PoolStats, SharedCacheStats};

/// The native half of `zspool`: import from `zspool`, not from here.
#[pyo3::pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::{
        Cache, CacheStats, ClassStats, CompactionReport, DictionaryReport, DictionaryStats, Pool, PoolActivity,
        PoolStats, RecompressReport, SharedCache, SharedCacheStats,
    };

    /// Bytes per OS page: the unit of `pages_used`, `can_compact()` and `pages_freed`.
    #[pymodule_export]
    const PAGE_SIZE: usize = zspool_core::PAGE_SIZE;

    /// The largest object packed into a size class, in bytes (8192: two pages). Bigger ones
    /// take whole pages of their own and are never moved by compaction.
    #[pymodule_export]
    const MAX_CLASS_SIZE: usize = zspool_core::MAX_CLASS_SIZE;

    /// A pool's `max_pages_per_zspage` when none is given (8, as the kernel's default).
    #[pymodule_export]
    const DEFAULT_MAX_PAGES_PER_ZSPAGE: usize = zspool_core::DEFAULT_MAX_PAGES_PER_ZSPAGE;

    /// The largest object a pool accepts, in bytes (1 GiB).
    #[pymodule_export]
    const MAX_OBJECT_SIZE: usize = zspool_core::MAX_OBJECT_SIZE;

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        // The package version, from Cargo (maturin gives the wheel the same one).
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
