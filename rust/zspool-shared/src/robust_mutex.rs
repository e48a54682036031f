//! A `pthread_mutex_t` that lives in the shared file: `PTHREAD_PROCESS_SHARED` (any process
//! that maps the file may take it) and `PTHREAD_MUTEX_ROBUST` (when its holder dies, even by
//! SIGKILL, the kernel's robust-list walk hands it to the next locker with `EOWNERDEAD`).
//!
//! [`RobustMutex::lock`] returns the guard and whether the previous holder died. The caller
//! repairs what the lock guards, and the guard then marks the mutex consistent
//! (`pthread_mutex_consistent`) before anyone else can take it. Every repair must be
//! idempotent: if the repairer dies too, the next locker is told again and repeats it.
//!
//! The mutex bytes are in a file any process may have scribbled on, so a lock never waits
//! blindly: it waits in timed slices and, between them, checks that the owner the lock word
//! names is a live thread. A lock word naming no thread, or a mutex whose kind is not the one
//! it was created with, is reported as a corrupt file instead of a hang.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// How long one wait lasts before the owner is checked again.
const WAIT_SLICE: Duration = Duration::from_millis(100);
/// Looks at a busy lock word before sleeping on it. A holder keeps a shard or class lock for
/// well under a microsecond on the paths that matter (a set, a read's slow path), while a
/// futex sleep costs the waiter a system call and a wake-up and the unlocker a `FUTEX_WAKE`:
/// two processes setting through one class lock spent more time in those than in the lock.
/// Bounded (about a microsecond or two), so that a waiter behind a long holder still sleeps
/// and becomes visible to it (`has_waiters`: the compactor yields to sleepers).
const SPINS: u32 = 64;
/// glibc's `pthread_mutex_t` on Linux: the lock word (owner TID and flag bits) at offset 0,
/// the kind at offset 16.
const KIND_OFFSET: usize = 16;
const TID_MASK: i32 = 0x3fff_ffff;
const FUTEX_WAITERS: u32 = 0x8000_0000;

/// A robust process-shared mutex in the mapping. Created by [`RobustMutex::init`] (once, by the
/// file's creator, before anyone else can see it).
#[repr(C)]
pub(crate) struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: the mutex is designed to be shared between threads and processes; all access to
// `raw` goes through the pthread functions, which synchronize.
unsafe impl Sync for RobustMutex {}

/// What every lock of one file is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LockFile {
    /// glibc's kind word of the file's mutexes, as created.
    pub(crate) kind: i32,
    /// The file's inode (a lock holder maps it).
    pub(crate) inode: u64,
}

/// Why a lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// The mutex bytes are not a mutex we made (corrupt file).
    Corrupt(&'static str),
}

/// Holds the mutex; unlocks on drop (marking it consistent first if a repair was pending).
pub(crate) struct Guard<'a> {
    mutex: &'a RobustMutex,
    inconsistent: bool,
}

impl RobustMutex {
    /// Initialize a mutex in freshly created (zeroed, not yet shared) memory; returns the
    /// glibc kind value every later lock checks.
    pub(crate) fn init(&self) -> i32 {
        // SAFETY: the attribute object is initialized before use and destroyed after; the
        // mutex is in memory no other thread or process can see yet (the file is not linked).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            libc::pthread_mutexattr_init(&mut attr);
            libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED);
            libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST);
            libc::pthread_mutex_init(self.raw.get(), &attr);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        self.kind()
    }

    fn word(&self, offset: usize) -> &AtomicI32 {
        // SAFETY: `pthread_mutex_t` is 40 bytes, 4-aligned ints at 0 and 16; other processes
        // change these words concurrently, so they are read as atomics, never as plain ints.
        unsafe { &*(self.raw.get().cast::<u8>().add(offset).cast::<AtomicI32>()) }
    }

    fn kind(&self) -> i32 {
        self.word(KIND_OFFSET).load(Ordering::Relaxed)
    }

    /// Take the mutex, waiting as long as its owner lives. `Ok((guard, true))`: the previous
    /// owner died holding it; repair what it guards, then drop the guard.
    pub(crate) fn lock(&self, file: &LockFile) -> Result<(Guard<'_>, bool), LockError> {
        for _ in 0..SPINS {
            // Test before test-and-set: a try on a busy lock would take its line away from
            // the holder for nothing.
            if self.word(0).load(Ordering::Relaxed) & TID_MASK == 0
                && let Some(locked) = self.try_lock(file)
            {
                return Ok(locked);
            }
            std::hint::spin_loop();
        }
        loop {
            if self.kind() != file.kind {
                return Err(LockError::Corrupt("a lock in the file is not the mutex it was created as"));
            }
            let deadline = realtime_after(WAIT_SLICE);
            // SAFETY: the mutex was initialized by `init` in the file's creator (the kind
            // check above catches bytes that were overwritten since).
            let rc = unsafe { libc::pthread_mutex_timedlock(self.raw.get(), &deadline) };
            match rc {
                0 => return Ok((Guard { mutex: self, inconsistent: false }, false)),
                libc::EOWNERDEAD => return Ok((Guard { mutex: self, inconsistent: true }, true)),
                libc::ETIMEDOUT => {
                    let owner = self.word(0).load(Ordering::Relaxed) & TID_MASK;
                    if owner != 0 && !maps_file(owner, file.inode) {
                        return Err(LockError::Corrupt("a lock in the file is held by no thread that maps it"));
                    }
                }
                libc::EINTR | libc::EAGAIN => {}
                _ => return Err(LockError::Corrupt("a lock in the file cannot be taken")),
            }
        }
    }

    /// Whether some thread or process is waiting for the mutex (glibc's `FUTEX_WAITERS` bit
    /// in the lock word): the compactor's cue to yield.
    pub(crate) fn has_waiters(&self) -> bool {
        self.word(0).load(Ordering::Relaxed) as u32 & FUTEX_WAITERS != 0
    }

    /// Take the mutex only if it is free now (eviction from another shard never waits).
    /// `None` when it is busy or unusable.
    pub(crate) fn try_lock(&self, file: &LockFile) -> Option<(Guard<'_>, bool)> {
        if self.kind() != file.kind {
            return None;
        }
        // SAFETY: as in `lock`.
        match unsafe { libc::pthread_mutex_trylock(self.raw.get()) } {
            0 => Some((Guard { mutex: self, inconsistent: false }, false)),
            libc::EOWNERDEAD => Some((Guard { mutex: self, inconsistent: true }, true)),
            _ => None,
        }
    }
}

impl Guard<'_> {
    /// The repair is done: the mutex is consistent again (also done on drop).
    pub(crate) fn mark_consistent(&mut self) {
        if self.inconsistent {
            // SAFETY: we hold the mutex, which was returned with EOWNERDEAD.
            unsafe { libc::pthread_mutex_consistent(self.mutex.raw.get()) };
            self.inconsistent = false;
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.mark_consistent();
        // SAFETY: this guard holds the mutex.
        unsafe { libc::pthread_mutex_unlock(self.mutex.raw.get()) };
    }
}

fn realtime_after(d: Duration) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    let nanos = now.tv_nsec as u64 + u64::from(d.subsec_nanos());
    libc::timespec {
        tv_sec: now.tv_sec + d.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

/// Whether thread `tid` may hold one of the file's locks: it exists and maps the file with
/// this inode (a lock word naming any other thread is garbage). A thread whose maps we may
/// not read (another user's, with a file shared by mode) is given the benefit of the doubt.
fn maps_file(tid: i32, inode: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{tid}/maps")) {
        Ok(maps) => {
            let inode = inode.to_string();
            maps.lines().any(|line| line.split_whitespace().nth(4) == Some(inode.as_str()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(_) => std::path::Path::new(&format!("/proc/{tid}")).exists(),
    }
}
