//! `SharedCache`: the data path over the shared file (get, set, delete, eviction, TTL).

use std::path::Path;
use std::time::Duration;

use zspool_cache::{Key, OwnedKey};
use zspool_core::{CompactOptions, CompactionReport};

use crate::config::{OpenOptions, SharedConfig};
use crate::error::SharedError;
use crate::stats::SharedStats;
use crate::value_flags::ValueFlags;

/// A cache whose pool and index live in one shared file. `Send + Sync`; owns the mapping
/// (unmapped on drop) and the file descriptor.
#[derive(Debug)]
pub struct SharedCache {
    _private: (),
}

impl SharedCache {
    /// Open the cache at `path`. `config` `None`: take the file's configuration (`NotFound` if
    /// there is no file); `Some`: create the file with it if absent and `options.create`, else
    /// it must equal the file's (`Mismatch` names the first field that differs).
    pub fn open(path: &Path, config: Option<&SharedConfig>, options: &OpenOptions) -> Result<SharedCache, SharedError> {
        let _ = (path, config, options);
        unimplemented!()
    }

    /// The file's configuration.
    pub fn config(&self) -> SharedConfig {
        unimplemented!()
    }

    /// The path the cache was opened at.
    pub fn path(&self) -> &Path {
        unimplemented!()
    }

    /// Unlink the file at `path` (`false` if there was none). Processes that map it keep
    /// using it until they close.
    pub fn destroy(path: &Path) -> Result<bool, SharedError> {
        let _ = path;
        unimplemented!()
    }

    /// Look `key` up: its decoded (decompressed) value into `out` (cleared first) and its
    /// flags, or `None` (missing, expired, or a record that failed its checks).
    pub fn get(&self, key: Key<'_>, out: &mut Vec<u8>) -> Result<Option<ValueFlags>, SharedError> {
        let _ = (key, out);
        unimplemented!()
    }

    /// Whether `key` has a live entry.
    pub fn contains(&self, key: Key<'_>) -> Result<bool, SharedError> {
        let _ = key;
        unimplemented!()
    }

    /// Store `value` under `key` with `flags`; `ttl` `None` takes the configuration's default.
    /// `Ok(false)`: not stored (no room could be made). `TooLarge`: the entry can never fit.
    pub fn set(
        &self,
        key: Key<'_>,
        value: &[u8],
        flags: ValueFlags,
        ttl: Option<Duration>,
    ) -> Result<bool, SharedError> {
        let _ = (key, value, flags, ttl);
        unimplemented!()
    }

    /// Remove `key`'s entry; whether there was one.
    pub fn delete(&self, key: Key<'_>) -> Result<bool, SharedError> {
        let _ = key;
        unimplemented!()
    }

    /// A snapshot of the keys (expired entries skipped), in no particular order.
    pub fn keys(&self) -> Result<Vec<OwnedKey>, SharedError> {
        unimplemented!()
    }

    /// Live entries.
    pub fn len(&self) -> Result<usize, SharedError> {
        unimplemented!()
    }

    /// Whether there is no live entry.
    pub fn is_empty(&self) -> Result<bool, SharedError> {
        Ok(self.len()? == 0)
    }

    /// Remove every entry.
    pub fn clear(&self) -> Result<(), SharedError> {
        unimplemented!()
    }

    /// Drop every expired entry; how many.
    pub fn expire(&self) -> Result<usize, SharedError> {
        unimplemented!()
    }

    /// Stored bytes of the entries (the budget's measure).
    pub fn currsize(&self) -> u64 {
        unimplemented!()
    }

    /// The budget in bytes (`maxbytes`).
    pub fn maxsize(&self) -> u64 {
        unimplemented!()
    }

    /// Pages a full compaction would free now (the kernel's `zs_can_compact`, summed).
    pub fn can_compact(&self) -> usize {
        unimplemented!()
    }

    /// Compact every class within `options`' budgets, in yielding slices.
    pub fn compact(&self, options: &CompactOptions) -> Result<CompactionReport, SharedError> {
        let _ = options;
        unimplemented!()
    }

    /// The host-wide counters.
    pub fn stats(&self) -> SharedStats {
        unimplemented!()
    }

    /// Take or renew the reclaimer lease for `holder` (a pid) for `for_`; `false` if another
    /// holder has an unexpired lease.
    pub fn try_lease(&self, holder: u32, for_: Duration) -> bool {
        let _ = (holder, for_);
        unimplemented!()
    }

    /// Give the lease up if `holder` has it.
    pub fn release_lease(&self, holder: u32) {
        let _ = holder;
        unimplemented!()
    }

    /// Close this process's use of the cache: later calls return `Closed`; the mapping is
    /// unmapped once calls in flight in other threads have returned.
    pub fn close(&self) {
        unimplemented!()
    }
}
