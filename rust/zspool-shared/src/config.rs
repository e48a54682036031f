//! What a shared cache is created with (recorded in the file's header, so every opener must
//! agree) and how a process opens it. No locks.

use std::time::Duration;

use zspool_cache::Compression;

/// What the bindings do with values: recorded in the header so that every process of a cache
/// decodes values the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializerKind {
    /// Values are bytes only.
    #[default]
    None,
    /// Non-bytes values are pickled.
    Pickle,
    /// A user-supplied serializer (its identity is the application's business).
    Custom,
}

impl SerializerKind {
    pub(crate) fn code(self) -> u32 {
        match self {
            SerializerKind::None => 0,
            SerializerKind::Pickle => 1,
            SerializerKind::Custom => 2,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<SerializerKind> {
        match code {
            0 => Some(SerializerKind::None),
            1 => Some(SerializerKind::Pickle),
            2 => Some(SerializerKind::Custom),
            _ => None,
        }
    }
}

/// The configuration of a shared cache file, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// Budget of stored entries in bytes (header, key and stored value of each), as
    /// `zspool.Cache` counts it. The file reserves about twice this (sparse) for its pages.
    pub maxbytes: u64,
    /// How values are compressed (kept only where it saves space).
    pub compression: Compression,
    /// Default time to live of an entry (`None`: entries never expire unless a set says so).
    pub ttl: Option<Duration>,
    /// What the bindings do with non-bytes values.
    pub serializer: SerializerKind,
}

impl Default for SharedConfig {
    fn default() -> SharedConfig {
        SharedConfig { maxbytes: 64 << 20, compression: Compression::None, ttl: None, serializer: SerializerKind::None }
    }
}

/// How a process opens a shared cache file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Create the file if it does not exist (needs a configuration).
    pub create: bool,
    /// Permission bits of a created file (0o600: only this user can read or change entries).
    pub mode: u32,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions { create: true, mode: 0o600 }
    }
}
