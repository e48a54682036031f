//! The synchronisation shim: `parking_lot` and `std` atomics in normal builds, `loom`'s
//! model-checked equivalents under `--cfg loom` (the sharded-slab / crossbeam pattern).
//!
//! Everything in the core that takes a lock or touches a shared atomic goes through this
//! file, so `RUSTFLAGS="--cfg loom" cargo test -p zspool-core --test loom` explores every
//! interleaving of the real lock protocol, not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
mod imp {
    pub(crate) type Mutex<T> = parking_lot::Mutex<T>;
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    pub(crate) fn new_mutex<T>(value: T) -> Mutex<T> {
        parking_lot::Mutex::new(value)
    }

    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock()
    }

    pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
        mutex.try_lock()
    }

    /// Release the lock and, if a thread is parked on it, hand it over directly: the
    /// releasing thread cannot barge back in before the waiter has run. This is what
    /// makes a compaction slice boundary a real latency bound for allocators.
    pub(crate) fn unlock_fair<T>(guard: MutexGuard<'_, T>) {
        parking_lot::MutexGuard::unlock_fair(guard);
    }

    pub(crate) type RwLock<T> = parking_lot::RwLock<T>;

    pub(crate) fn new_rwlock<T>(value: T) -> RwLock<T> {
        parking_lot::RwLock::new(value)
    }

    pub(crate) fn read<T>(lock: &RwLock<T>) -> parking_lot::RwLockReadGuard<'_, T> {
        lock.read()
    }

    pub(crate) fn write<T>(lock: &RwLock<T>) -> parking_lot::RwLockWriteGuard<'_, T> {
        lock.write()
    }
}

#[cfg(loom)]
mod imp {
    pub(crate) type Mutex<T> = loom::sync::Mutex<T>;
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    pub(crate) fn new_mutex<T>(value: T) -> Mutex<T> {
        loom::sync::Mutex::new(value)
    }

    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().expect("a loom mutex is never poisoned in these models")
    }

    pub(crate) fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
        mutex.try_lock().ok()
    }

    pub(crate) fn unlock_fair<T>(guard: MutexGuard<'_, T>) {
        drop(guard);
        loom::thread::yield_now();
    }

    pub(crate) type RwLock<T> = loom::sync::RwLock<T>;

    pub(crate) fn new_rwlock<T>(value: T) -> RwLock<T> {
        loom::sync::RwLock::new(value)
    }

    pub(crate) fn read<T>(lock: &RwLock<T>) -> loom::sync::RwLockReadGuard<'_, T> {
        lock.read().expect("a loom rwlock is never poisoned in these models")
    }

    pub(crate) fn write<T>(lock: &RwLock<T>) -> loom::sync::RwLockWriteGuard<'_, T> {
        lock.write().expect("a loom rwlock is never poisoned in these models")
    }
}

pub(crate) use imp::{Mutex, MutexGuard, RwLock, lock, new_mutex, new_rwlock, read, try_lock, unlock_fair, write};

/// A mutex that knows whether anyone is waiting for it.
///
/// The compactor asks [`WaitedMutex::has_waiters`] at every object it moves and hands the
/// lock over (fairly) as soon as the answer is yes: the kernel's `spin_is_contended` test,
/// applied to the class lock itself. The uncontended path is one `try_lock`; the counter is
/// touched only by threads that were about to block anyway.
#[derive(Debug)]
pub(crate) struct WaitedMutex<T> {
    waiters: AtomicUsize,
    mutex: Mutex<T>,
}

impl<T> WaitedMutex<T> {
    pub(crate) fn new(value: T) -> WaitedMutex<T> {
        WaitedMutex { waiters: AtomicUsize::new(0), mutex: new_mutex(value) }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        if let Some(guard) = try_lock(&self.mutex) {
            return guard;
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
        let guard = lock(&self.mutex);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        guard
    }

    pub(crate) fn has_waiters(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }
}

/// Fork support (`fork.rs`): take a lock and keep it past the end of the call, then release
/// it in the parent or in the child. Not modelled under loom: loom has no
/// fork, and these bypass guards on purpose.
#[cfg(not(loom))]
impl<T> WaitedMutex<T> {
    /// Lock and forget the guard: the lock stays held until [`Self::fork_unlock_parent`] or
    /// [`Self::fork_unlock_child`].
    pub(crate) fn fork_lock(&self) {
        std::mem::forget(self.lock());
    }

    /// Release a lock taken by [`Self::fork_lock`], in the parent after `fork()`.
    ///
    /// # Safety
    /// The calling thread must hold the lock through `fork_lock`, with no guard alive.
    pub(crate) unsafe fn fork_unlock_parent(&self) {
        // SAFETY: the caller guarantees the lock is held by this thread with its guard
        // forgotten, which is exactly `force_unlock`'s contract.
        unsafe { self.mutex.force_unlock() }
    }

    /// In the child after `fork()`: release the lock the forking thread took in
    /// `fork_lock` and forget the waiters (threads that do not exist in the child).
    ///
    /// The lock word is released, not rewritten (Rust gives no sound way to overwrite a
    /// parking_lot lock in place). That is exact when `fork_prepare` reached quiescence: no
    /// thread was parked on the lock, so its word is plain "locked" and the unlock is one
    /// atomic store. See `fork.rs` for the case where it did not.
    ///
    /// # Safety
    /// As [`Self::fork_unlock_parent`], in a single-threaded child right after `fork()`.
    pub(crate) unsafe fn fork_unlock_child(&self) {
        // SAFETY: the forking thread, which is the child's only thread, holds the lock
        // through `fork_lock` with its guard forgotten: force_unlock's contract.
        unsafe { self.mutex.force_unlock() };
        self.waiters.store(0, Ordering::Relaxed);
    }
}

/// Fork support for the provider's plain locks; see [`WaitedMutex::fork_lock`].
#[cfg(not(loom))]
pub(crate) mod fork {
    use super::{Mutex, RwLock};

    pub(crate) fn lock_mutex<T>(mutex: &Mutex<T>) {
        std::mem::forget(mutex.lock());
    }

    pub(crate) fn lock_rwlock_write<T>(lock: &RwLock<T>) {
        std::mem::forget(lock.write());
    }

    /// # Safety
    /// The caller holds `mutex` through [`lock_mutex`], with no guard alive.
    pub(crate) unsafe fn unlock_mutex<T>(mutex: &Mutex<T>) {
        // SAFETY: the caller's guarantee is force_unlock's contract.
        unsafe { mutex.force_unlock() }
    }

    /// # Safety
    /// The caller holds `lock` for writing through [`lock_rwlock_write`], with no guard alive.
    pub(crate) unsafe fn unlock_rwlock_write<T>(lock: &RwLock<T>) {
        // SAFETY: the caller's guarantee is force_unlock_write's contract.
        unsafe { lock.force_unlock_write() }
    }
}
