//! The shared file and its mapping: created at its final size (sparse) under a temporary name
//! and linked into place (so no process ever sees it half-built), mapped whole `MAP_SHARED`,
//! never resized or remapped. Pages of emptied zspages leave the file by hole punching.
//! No locks: the mapping is immutable; what is inside it is guarded by the locks in it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::error::SharedError;

/// A whole-file `MAP_SHARED` mapping and the file it maps.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
    file: File,
    unmapped: std::sync::atomic::AtomicBool,
}

// SAFETY: the mapping is plain shared memory; every access to its contents goes through
// atomics or under the locks that live in it.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `file` whole (its current size).
    pub(crate) fn map(file: File, path: &Path) -> Result<Mapping, SharedError> {
        let len = file.metadata().map_err(|e| SharedError::io(path, e))?.len();
        let len = usize::try_from(len).map_err(|_| SharedError::not_ours(path, "file too large"))?;
        if len == 0 {
            return Err(SharedError::not_ours(path, "empty file"));
        }
        // SAFETY: a fresh mapping of a file we hold open; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(SharedError::io(path, std::io::Error::last_os_error()));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| SharedError::not_ours(path, "mapped at null"))?;
        Ok(Mapping { base, len, file, unmapped: std::sync::atomic::AtomicBool::new(false) })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The address of byte `offset`; the callers' offsets come from a layout validated
    /// against `len` when the file was opened.
    pub(crate) fn ptr(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: offset is within the mapping (see above), so the result stays in it.
        unsafe { self.base.as_ptr().add(offset.min(self.len)) }
    }

    /// Give `len` bytes at `offset` back to the OS: the file keeps its size, the pages leave
    /// tmpfs (`Shmem`, `st_blocks`, the memory cgroup). Best effort: a file system without
    /// hole punching just keeps the pages.
    pub(crate) fn punch_hole(&self, offset: usize, len: usize) {
        // SAFETY: fallocate on our own fd; it never touches process memory.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            );
        }
    }

    /// The file's inode number.
    pub(crate) fn inode(&self) -> u64 {
        self.file.metadata().map(|m| m.ino()).unwrap_or(0)
    }

    /// Bytes the file really occupies (`st_blocks * 512`).
    pub(crate) fn allocated_bytes(&self) -> u64 {
        self.file.metadata().map(|m| m.blocks() * 512).unwrap_or(0)
    }
}

impl Mapping {
    /// Unmap (once). The caller guarantees that no reference into the mapping is used again:
    /// `SharedCache::close` calls it once its in-flight count is zero and no call can start.
    pub(crate) fn unmap(&self) {
        if !self.unmapped.swap(true, std::sync::atomic::Ordering::AcqRel) {
            // SAFETY: the mapping was made by `map` with this length; see above for its users.
            unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        self.unmap();
    }
}

/// Bytes free for an unprivileged user on the file system that holds `path`'s directory
/// (`None` if it cannot be asked).
pub(crate) fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = zeroed_statvfs();
    // SAFETY: statvfs writes the struct it is given; the path is a valid C string.
    let rc = unsafe { libc::statvfs(c_dir.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail.saturating_mul(st.f_frsize))
}

fn zeroed_statvfs() -> libc::statvfs {
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Open an existing file read-write.
pub(crate) fn open_existing(path: &Path) -> Result<Option<File>, SharedError> {
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SharedError::io(path, e)),
    }
}

/// Create a file of `len` bytes (sparse) with `mode` under a temporary name next to `path`,
/// let `build` fill its mapping, and link it to `path`. `Ok(None)`: another process linked
/// `path` first (open theirs).
pub(crate) fn create_linked(
    path: &Path,
    len: usize,
    mode: u32,
    build: impl FnOnce(&Mapping),
) -> Result<Option<Mapping>, SharedError> {
    let tmp = temp_name(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| SharedError::io(&tmp, e))?;
    let result = (|| {
        // The umask must not narrow or widen what the caller asked for.
        file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| SharedError::io(&tmp, e))?;
        file.set_len(len as u64).map_err(|e| SharedError::io(&tmp, e))?;
        let mapping = Mapping::map(file, &tmp)?;
        build(&mapping);
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(Some(mapping)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(SharedError::io(path, e)),
        }
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}

const CREATING: &str = ".creating.";

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    let nonce = crate::clock::monotonic_ns();
    name.push(format!("{CREATING}{}.{nonce:x}", std::process::id()));
    path.with_file_name(name)
}

/// Remove the temporary files of creators of `path` that died before linking theirs
/// (`NAME.creating.PID.NONCE` whose PID is gone). Best effort.
pub(crate) fn remove_dead_creators(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let prefix = format!("{}{CREATING}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else { continue };
        let Some(pid) = rest.split('.').next().and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
