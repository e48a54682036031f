//! Opening a shared cache: create the file (sparse, built under a temporary name, linked into
//! place; a creator that loses the race opens the winner's), or check an existing one's
//! header against this build and the caller's configuration. A file is never trusted: every
//! field is checked before use. No locks (a file is shared only once it is complete).

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::cache::SharedCache;
use crate::class::ClassShm;
use crate::config::{OpenOptions, SharedConfig};
use crate::error::SharedError;
use crate::header::{Header, Layout, MAGIC, class_digest, class_table, validate};
use crate::mapping::{Mapping, create_linked, free_bytes, open_existing, remove_dead_creators};
use crate::regions::Regions;
use crate::robust_mutex::RobustMutex;
use crate::shard::ShardShm;
use crate::{LAYOUT_VERSION, N_SHARDS};

fn mismatch(field: &'static str, file: impl std::fmt::Debug, given: impl std::fmt::Debug) -> SharedError {
    SharedError::Mismatch { field, file: format!("{file:?}"), given: format!("{given:?}") }
}

/// The kind of mutex this process's glibc makes with our attributes.
fn our_mutex_kind() -> i32 {
    let probe = std::mem::MaybeUninit::<RobustMutex>::zeroed();
    // SAFETY: a zeroed pthread_mutex_t is valid storage for pthread_mutex_init; the probe
    // stays in this frame and is never locked.
    unsafe { probe.assume_init_ref() }.init()
}

impl SharedCache {
    /// Open the cache at `path`. `config` `None`: take the file's configuration (`NotFound` if
    /// there is no file); `Some`: create the file with it if absent and `options.create`, else
    /// it must equal the file's (`Mismatch` names the first field that differs).
    pub fn open(path: &Path, config: Option<&SharedConfig>, options: &OpenOptions) -> Result<SharedCache, SharedError> {
        if let Some(config) = config {
            validate(config).map_err(SharedError::InvalidConfig)?;
        }
        // Two rounds: a creator that loses the link race opens the winner's file.
        for _ in 0..2 {
            if let Some(file) = open_existing(path)? {
                return SharedCache::attach(Mapping::map(file, path)?, path, config);
            }
            let Some(config) = config.filter(|_| options.create) else {
                return Err(SharedError::NotFound { path: path.to_path_buf() });
            };
            let table = class_table();
            let layout = Layout::compute(config.maxbytes, table.classes().len());
            // Pages of a sparse file are allocated when first written; on a full tmpfs that
            // write is a SIGBUS. Refuse a budget the file system cannot hold now (the
            // entries, the metadata, and the index at one 16-byte slot per 128 stored bytes;
            // fragmentation beyond that is what compaction is for).
            let need = layout.slot_off as u64
                + config.maxbytes / 8
                + (layout.data_off - layout.desc_off) as u64
                + config.maxbytes;
            if let Some(free) = free_bytes(path)
                && free < need
            {
                return Err(SharedError::InvalidConfig(format!(
                    "maxbytes={} needs about {need} bytes on the file system of {}, which has {free} free",
                    config.maxbytes,
                    path.display()
                )));
            }
            remove_dead_creators(path);
            let build = |m: &Mapping| {
                // SAFETY: the file is new and not yet linked: this is the only reference.
                let header = unsafe { &mut *m.ptr(0).cast::<Header>() };
                header.init(config, &layout, class_digest(table.classes()));
                for id in 0..layout.n_classes {
                    let offset = layout.class_off + id * size_of::<ClassShm>();
                    // SAFETY: inside the new file's class region (the layout sized it).
                    unsafe { &*m.ptr(offset).cast::<ClassShm>() }.init();
                }
                for i in 0..N_SHARDS {
                    let offset = layout.shard_off + i * size_of::<ShardShm>();
                    // SAFETY: inside the new file's shard region (the layout sized it).
                    unsafe { &*m.ptr(offset).cast::<ShardShm>() }.init();
                }
                header.free_desc.store(crate::zspage::NONE, Ordering::Relaxed);
            };
            if let Some(mapping) = create_linked(path, layout.file_len, options.mode, build)? {
                return SharedCache::attach(mapping, path, Some(config));
            }
        }
        Err(SharedError::NotFound { path: path.to_path_buf() })
    }

    /// Check a mapped file's header and wrap it.
    fn attach(map: Mapping, path: &Path, config: Option<&SharedConfig>) -> Result<SharedCache, SharedError> {
        if map.len() < zspool_core::PAGE_SIZE {
            return Err(SharedError::not_ours(path, format!("{} bytes: shorter than a header", map.len())));
        }
        // SAFETY: the mapping is at least a page; the header is plain old data read as is
        // (every field is checked below before it is used).
        let header = unsafe { &*map.ptr(0).cast::<Header>() };
        if header.magic != MAGIC {
            return Err(SharedError::not_ours(path, "no zspool shared cache magic"));
        }
        if header.version != LAYOUT_VERSION {
            return Err(SharedError::Version { found: header.version, expected: LAYOUT_VERSION });
        }
        if header.page_size as usize != zspool_core::PAGE_SIZE {
            return Err(SharedError::not_ours(path, format!("page size {}", header.page_size)));
        }
        let table = class_table();
        if header.class_digest != class_digest(table.classes()) {
            return Err(SharedError::not_ours(path, "made with another size-class table"));
        }
        let file_config = header.config().map_err(|why| SharedError::not_ours(path, why))?;
        let layout = Layout::compute(file_config.maxbytes, table.classes().len());
        if !header.layout_matches(&layout) || layout.file_len != map.len() {
            return Err(SharedError::not_ours(path, "region sizes do not match its configuration (truncated?)"));
        }
        if header.mutex_kind != our_mutex_kind() {
            return Err(SharedError::not_ours(path, "its locks are not this C library's robust shared mutexes"));
        }
        if let Some(given) = config {
            if given.maxbytes != file_config.maxbytes {
                return Err(mismatch("maxbytes", file_config.maxbytes, given.maxbytes));
            }
            if given.compression != file_config.compression {
                return Err(mismatch("compression", file_config.compression, given.compression));
            }
            if given.ttl != file_config.ttl {
                return Err(mismatch("ttl", file_config.ttl, given.ttl));
            }
            if given.serializer != file_config.serializer {
                return Err(mismatch("serializer", file_config.serializer, given.serializer));
            }
        }
        let kind = header.mutex_kind;
        Ok(SharedCache::from_parts(Regions::new(map, layout, table, kind), path, file_config))
    }

    /// Unlink the file at `path` (`false` if there was none). Processes that map it keep
    /// using it until they close. A file that does not start with a shared cache's magic is
    /// `NotOurs` and stays: a mistyped path never deletes someone else's file.
    pub fn destroy(path: &Path) -> Result<bool, SharedError> {
        let mut magic = [0u8; MAGIC.len()];
        match std::fs::File::open(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(SharedError::io(path, e)),
            Ok(mut file) => {
                if std::io::Read::read_exact(&mut file, &mut magic).is_err() || magic != MAGIC {
                    return Err(SharedError::not_ours(path, "it does not start with the magic; not removed"));
                }
            }
        }
        match std::fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(SharedError::io(path, e)),
        }
    }
}
