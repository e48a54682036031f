//! The cache's errors. Pool errors pass through unchanged, so the bindings map them to the
//! same Python exceptions as the pool's own.

use std::fmt;

use zspool_core::ZsError;

/// The result of a cache call.
pub type Result<T> = std::result::Result<T, CacheError>;

/// Why a cache call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheError {
    /// One entry (header + key + value, after compression) does not fit the byte budget.
    TooLarge {
        /// The key's length in bytes.
        key_len: usize,
        /// The entry's size in the pool, in bytes.
        stored_bytes: u64,
        /// The cache's budget in bytes.
        max_bytes: u64,
    },
    /// Keys are at most [`crate::MAX_KEY_LEN`] bytes.
    KeyTooLong {
        /// The key's length in bytes.
        key_len: usize,
    },
    /// A configuration value out of range.
    BadConfig {
        /// The setting.
        what: &'static str,
        /// The value given.
        value: String,
        /// What is allowed instead.
        allowed: &'static str,
    },
    /// The pool already holds a cache's entries: a pool routes compaction's rewrites of
    /// moved entries to one cache's index, so each cache needs a pool of its own.
    PoolHasCache,
    /// An object failed to decode (a bug or memory corruption, never expected).
    Corrupt(&'static str),
    /// A dictionary that is not a zstd dictionary, is corrupt, or could not be trained.
    Dictionary(String),
    /// The pool refused (full, closed).
    Pool(ZsError),
    /// In a forked child: another thread held the cache mutex when the process forked (for
    /// longer than the fork handlers wait), so the child's copy of the index may be half
    /// updated. The cache is closed in the child; the parent's is unaffected.
    LostInFork,
}

impl From<ZsError> for CacheError {
    fn from(err: ZsError) -> CacheError {
        CacheError::Pool(err)
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::TooLarge { key_len, stored_bytes, max_bytes } => write!(
                f,
                "entry too large: key ({key_len} bytes) plus value take {stored_bytes} bytes stored, \
                 more than the cache's whole budget maxbytes={max_bytes}; raise maxbytes or store it elsewhere"
            ),
            CacheError::KeyTooLong { key_len } => {
                write!(f, "key of {key_len} bytes is too long: keys are at most {} bytes", crate::MAX_KEY_LEN)
            }
            CacheError::BadConfig { what, value, allowed } => {
                write!(f, "{what}={value} is out of range: allowed {allowed}")
            }
            CacheError::PoolHasCache => f.write_str(
                "this pool already holds a cache's entries (one cache per pool): give the new cache a pool of its own",
            ),
            CacheError::Corrupt(what) => write!(f, "cache object failed to decode ({what}): this is a bug"),
            CacheError::Dictionary(msg) => f.write_str(msg),
            CacheError::Pool(err) => err.fmt(f),
            CacheError::LostInFork => write!(
                f,
                "this cache is closed in this forked child: another thread was using it when the process \
                 forked, so its index may be half updated here; create a new cache in the child \
                 (the parent's cache is unaffected)"
            ),
        }
    }
}

impl std::error::Error for CacheError {}
