//! The one error type of the core. The bindings map each variant to one Python exception
//! (see `rust/zspool-py/src/errors.rs`), so every message here is written for the user who
//! passed the bad value: it names the value and says what is allowed instead.

use std::fmt;

/// Why a handle was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleProblem {
    /// The handle does not decode to a slot this pool ever handed out.
    Unknown,
    /// The slot exists but holds a different object now (or none): the handle was freed,
    /// possibly twice, or belongs to another pool.
    Stale,
}

/// Why a pool call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZsError {
    /// A stale, freed, double-freed or forged handle.
    InvalidHandle {
        /// The handle given.
        handle: u64,
        /// Why it names no live object.
        problem: HandleProblem,
    },
    /// The allocation would take the pool past `mem_limit`, or the OS refused pages.
    PoolFull {
        /// The object size asked for, in bytes.
        requested_bytes: u64,
        /// Pages the pool held at the time.
        pages_used: u64,
        /// The pool's limit in bytes, if any.
        mem_limit: Option<u64>,
        /// The OS's errno, if it refused (ENOSPC: a size class or shard ran out of ids).
        os_error: Option<i32>,
    },
    /// The pool was closed; nothing in it can be reached any more.
    Closed,
    /// An object size outside `0..=max`.
    SizeOutOfRange {
        /// The size asked for, in bytes.
        size: u64,
        /// The largest allowed, in bytes.
        max: u64,
    },
    /// An access `[offset, offset + len)` that does not fit inside an object of `object_size` bytes.
    OutOfBounds {
        /// The object's handle.
        handle: u64,
        /// The first byte accessed.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// The object's size in bytes.
        object_size: u64,
    },
    /// A constructor argument outside its allowed range.
    BadConfig {
        /// The argument.
        what: &'static str,
        /// The value given.
        value: u64,
        /// What is allowed instead.
        allowed: &'static str,
    },
}

impl fmt::Display for ZsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZsError::InvalidHandle { handle, problem: HandleProblem::Unknown } => {
                write!(f, "handle {handle:#x} was never issued by this pool (forged, or from another pool)")
            }
            ZsError::InvalidHandle { handle, problem: HandleProblem::Stale } => write!(
                f,
                "handle {handle:#x} is stale: its object was freed (use after free or double free), \
                 or the handle belongs to another pool"
            ),
            ZsError::PoolFull { requested_bytes, pages_used, mem_limit: Some(limit), os_error: None } => write!(
                f,
                "allocating {requested_bytes} bytes would exceed mem_limit={limit} bytes \
                 (pool holds {pages_used} pages = {} bytes); free objects, compact, or raise mem_limit",
                pages_used * crate::PAGE_SIZE as u64
            ),
            ZsError::PoolFull { requested_bytes, os_error: Some(libc::ENOSPC), .. } => write!(
                f,
                "the size class (or large-object shard) for a {requested_bytes}-byte object is full: \
                 it holds {} zspages or has handed out all {} handle-table indices (retired ones \
                 included); the pool is unchanged; compact it (fewer zspages) or use another pool",
                u64::from(crate::size_class::MAX_ZSPAGE_ID) + 1,
                crate::handle::MAX_INDEX,
            ),
            ZsError::PoolFull { requested_bytes, os_error, .. } => write!(
                f,
                "the OS refused memory for a {requested_bytes}-byte allocation (errno {}); \
                 the pool is unchanged",
                os_error.unwrap_or(0)
            ),
            ZsError::Closed => write!(f, "the pool is closed; create a new Pool"),
            ZsError::SizeOutOfRange { size, max } => {
                write!(f, "object size {size} is out of range: sizes must be 0..={max} bytes")
            }
            ZsError::OutOfBounds { handle, offset, len, object_size } => write!(
                f,
                "access of {len} bytes at offset {offset} does not fit in object {handle:#x} \
                 of {object_size} bytes (offset + length must be <= {object_size})"
            ),
            ZsError::BadConfig { what, value, allowed } => {
                write!(f, "{what}={value} is out of range: allowed {allowed}")
            }
        }
    }
}

impl std::error::Error for ZsError {}

/// The result of a pool call.
pub type Result<T> = std::result::Result<T, ZsError>;
