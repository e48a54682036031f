//! The error type of a shared cache: what was wrong with the file, the configuration or the
//! call. No locks.

use std::fmt;
use std::path::PathBuf;

/// Why a shared-cache operation failed.
#[derive(Debug)]
pub enum SharedError {
    /// The file is not a zspool shared cache: wrong magic, garbage, truncated, or sizes that do
    /// not add up.
    NotOurs {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file was written by another layout version of this crate.
    Version {
        /// The file's layout version.
        found: u32,
        /// This build's [`crate::LAYOUT_VERSION`].
        expected: u32,
    },
    /// A second opener's configuration differs from the file's.
    Mismatch {
        /// The configuration field that differs (`"maxbytes"`, `"compression"`, ...).
        field: &'static str,
        /// The file's value.
        file: String,
        /// The value the opener gave.
        given: String,
    },
    /// No file at the path (and `create` was false, or no configuration was given to create it).
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A system call on the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The cache was closed in this process.
    Closed,
    /// The entry (header, key and value, after compression) does not fit the budget or the
    /// largest size class.
    TooLarge {
        /// The entry's stored size in bytes.
        size: usize,
        /// The most that can be stored, in bytes.
        max: usize,
    },
    /// The configuration given to create a file is unusable.
    InvalidConfig(String),
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedError::NotOurs { path, reason } => {
                write!(f, "{} is not a zspool shared cache file: {reason}", path.display())
            }
            SharedError::Version { found, expected } => write!(
                f,
                "shared cache file has layout version {found}, this zspool reads version {expected}: \
                 destroy it (SharedCache.destroy) or open it with the zspool that made it"
            ),
            SharedError::Mismatch { field, file, given } => write!(
                f,
                "shared cache file was created with {field}={file}, this opener asked for {field}={given}: \
                 open it with the file's configuration (or none)"
            ),
            SharedError::NotFound { path } => write!(f, "no shared cache file at {}", path.display()),
            SharedError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SharedError::Closed => write!(f, "the shared cache is closed"),
            SharedError::TooLarge { size, max } => {
                write!(f, "entry of {size} bytes (stored) exceeds the largest storable entry of {max} bytes")
            }
            SharedError::InvalidConfig(why) => write!(f, "invalid shared cache configuration: {why}"),
        }
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SharedError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl SharedError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> SharedError {
        SharedError::Io { path: path.to_path_buf(), source }
    }

    pub(crate) fn not_ours(path: &std::path::Path, reason: impl Into<String>) -> SharedError {
        SharedError::NotOurs { path: path.to_path_buf(), reason: reason.into() }
    }
}
