//! Fork safety for the cache mutex: the cache's part of the core's `pthread_atfork` protocol
//! (`rust/zspool-core/src/fork.rs`, read that first).
//!
//! `fork()` copies only the calling thread. If another thread holds the cache mutex at that
//! instant, the child inherits it locked by a thread that does not exist there, and every
//! cache call in the child hangs. So the cache mutex is a [`ForkSafeMutex`], registered with
//! the core as an `OuterLock` (`cache.rs`): the core's handlers run its hooks before any
//! pool's (the lock order is cache mutex, then pool locks) and after every pool's on the way
//! out:
//!
//! ```text
//! fork_prepare: close the gate             new lockers wait at the gate (core's `ForkGate`),
//!                                          outside the mutex and not counted, until it is over
//!               repeat:
//!                 take the mutex, waiting at most until the deadline
//!                 nobody past the gate still waiting for it? -> keep it, done
//!                 else hand it to them (unlock_fair), sleep 50 us, try again
//! fork()
//! fork_parent:  release it; open the gate
//! fork_child:   release it (the child's one thread is the forking thread, which holds it);
//!               zero the count of waiting threads (they do not exist here); open the gate
//! ```
//!
//! Why waiting for the mutex with the GIL held cannot deadlock (the forking thread holds the
//! GIL from `fork_prepare` to `fork_parent`/`fork_child`): no thread holds the cache mutex and
//! then waits for the GIL or runs Python code (the bindings' rules, `rust/zspool-py/src/cache.rs`),
//! and while the mutex is being taken no pool's gate is closed yet (the pools come after), so
//! a holder's pool calls finish. A holder therefore always lets go soon: the longest hold is
//! one `set_many` chunk, stored without the GIL.
//!
//! **The deadline.** If the mutex cannot be taken within [`QUIESCE_DEADLINE`] (a thread kept
//! it that long: a Rust user holding a `CacheGuard` across something slow, or a bug
//! against the rule above), the fork goes ahead without it rather than stall the process.
//! The parent is unaffected. In the child the mutex is then held by a thread that no longer
//! exists, and the index, queue and counters it guards may be half updated, so the child
//! must not read them, and must not hang: `fork_child` marks the mutex (and so the cache)
//! **lost**, overwrites the half-updated state with an empty one without reading or dropping
//! it (its heap memory is leaked, and its entries' objects stay allocated in the pool until `close()`), and
//! releases the mutex. Every later call fails with [`CacheError::LostInFork`], which the
//! bindings raise as `PoolClosedError`: the child sees a closed cache with a message saying
//! why, and creates a new one. (Emptying the cache and carrying on would also be a valid
//! cache, but silently so, and the counters would lie; a clear error was preferred.)
//!
//! As with the pools, a thread still queued on the mutex when the deadline passes (the
//! mutex was taken, but not quietly) leaves a dead entry in parking_lot's wait queue in the
//! child; releasing the mutex there wakes that entry, which is harmless.
//!
//! [`CacheError::LostInFork`]: crate::CacheError::LostInFork

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use zspool_core::{ForkGate, QUIESCE_DEADLINE};

/// What `fork_prepare` achieved, for the parent/child hook that follows it.
const NOT_PREPARED: u8 = 0;
/// The forking thread holds the mutex (guard forgotten).
const HELD: u8 = 1;
/// The mutex could not be taken within the deadline.
const MISSED: u8 = 2;

/// A mutex that can be held across `fork()`: every locker passes a [`ForkGate`] first, and
/// the three fork hooks follow the protocol above. The cache's `OuterLock` hooks are these.
pub(crate) struct ForkSafeMutex<T> {
    mutex: Mutex<T>,
    /// Closed while a fork is being prepared: new lockers wait there until it is over.
    gate: ForkGate,
    /// Threads past the gate that do not hold the mutex yet (and may be parked on it).
    waiting: AtomicUsize,
    /// `NOT_PREPARED`, `HELD` or `MISSED`.
    prepared: AtomicU8,
    /// In a child forked while another thread held the mutex: the value is unusable.
    lost: AtomicBool,
}

impl<T> ForkSafeMutex<T> {
    pub(crate) fn new(value: T) -> ForkSafeMutex<T> {
        ForkSafeMutex {
            mutex: Mutex::new(value),
            gate: ForkGate::new(),
            waiting: AtomicUsize::new(0),
            prepared: AtomicU8::new(NOT_PREPARED),
            lost: AtomicBool::new(false),
        }
    }

    /// Take the mutex, after any fork being prepared is over. Counted as waiting from the
    /// gate until it holds the mutex, so `fork_prepare` lets it in first.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        let waiting = self.gate.pass_counted(&self.waiting);
        let guard = self.mutex.lock();
        drop(waiting);
        guard
    }

    /// Take the mutex if it is free and no fork is being prepared.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        if self.gate.is_pending() {
            return None;
        }
        self.mutex.try_lock()
    }

    /// In a child forked while another thread held the mutex: the value was abandoned.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Before `fork()`: close the gate and take the mutex while no other thread waits for it.
    /// Returns whether that happened within the deadline (see the module comment).
    pub(crate) fn fork_prepare(&self) -> bool {
        if self.prepared.load(Ordering::Acquire) != NOT_PREPARED {
            return true; // prepared already; stay idempotent as the pool is
        }
        self.gate.close();
        let deadline = Instant::now() + QUIESCE_DEADLINE;
        loop {
            let Some(guard) = self.mutex.try_lock_until(deadline) else {
                self.prepared.store(MISSED, Ordering::Release);
                return false;
            };
            let quiet = self.waiting.load(Ordering::SeqCst) == 0;
            if quiet || Instant::now() >= deadline {
                std::mem::forget(guard); // released by fork_parent / fork_child
                self.prepared.store(HELD, Ordering::Release);
                return quiet;
            }
            // Someone passed the gate before it closed: hand the mutex over, so that it does
            // its one operation and is gone from the wait queue, then try again.
            MutexGuard::unlock_fair(guard);
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// After `fork()`, in the parent: release what `fork_prepare` took, open the gate.
    pub(crate) fn fork_parent(&self) {
        let prepared = self.prepared.swap(NOT_PREPARED, Ordering::AcqRel);
        if prepared == HELD {
            // SAFETY: `HELD` says this thread (the forking thread) took the mutex in
            // `fork_prepare` and forgot the guard.
            unsafe { self.mutex.force_unlock() };
        }
        if prepared != NOT_PREPARED {
            self.gate.open();
        }
    }

    /// After `fork()`, in the child: the mutex released (or, if another thread held it at
    /// fork time, the value marked lost and replaced by `empty()`), the waiting threads that
    /// do not exist here forgotten.
    pub(crate) fn fork_child(&self, empty: impl FnOnce() -> T) {
        match self.prepared.swap(NOT_PREPARED, Ordering::AcqRel) {
            NOT_PREPARED => return,
            // SAFETY: as in `fork_parent`; the child's one thread is the forking thread.
            HELD => unsafe { self.mutex.force_unlock() },
            // Missed, but the holder let go before `fork()`: nobody was inside, so the value
            // is whole and the mutex free.
            _ if !self.mutex.is_locked() => {}
            _ => self.abandon_value_of_vanished_holder(empty()),
        }
        self.waiting.store(0, Ordering::SeqCst);
        self.gate.open();
    }

    /// In a child forked while another thread held the mutex: mark the value lost, replace
    /// what that thread may have left half updated with `empty` (without reading or dropping
    /// it), and release the mutex, so later calls fail instead of hanging.
    fn abandon_value_of_vanished_holder(&self, empty: T) {
        self.lost.store(true, Ordering::Release);
        // SAFETY: the child has one thread, this one; the mutex's holder existed only in the
        // parent and will never run, read the value or release the mutex here, so nothing
        // else can touch the value while it is overwritten. `ptr::write` does not read or drop
        // the old value (a half-updated hash table or vector could not be dropped safely);
        // its memory is leaked. The mutex is then released on that holder's behalf: its guard
        // can never be dropped in this process.
        unsafe {
            std::ptr::write(self.mutex.data_ptr(), empty);
            self.mutex.force_unlock();
        }
    }

    /// Whether some thread holds the mutex (tests).
    #[cfg(test)]
    pub(crate) fn is_locked(&self) -> bool {
        self.mutex.is_locked()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use zspool_core::{OuterLock, Pool, PoolConfig, QUIESCE_DEADLINE};

    use crate::{Cache, CacheConfig, CacheError, Key, Ttl};

    fn cache() -> Cache<Arc<Pool>> {
        Cache::new(Arc::new(Pool::new(PoolConfig::default()).unwrap()), CacheConfig::new(1 << 20)).unwrap()
    }

    #[test]
    fn prepare_then_parent_leaves_the_cache_working() {
        let c = cache();
        c.set(Key::str("a"), b"1", Ttl::Default).unwrap();
        assert!(c.fork_prepare(), "an idle cache is quiet at once");
        assert!(c.inner.is_locked() && c.inner.gate.is_pending());
        assert!(c.try_lock().is_none(), "the gate is closed while a fork is prepared");
        c.fork_parent();
        assert!(!c.inner.is_locked() && !c.inner.gate.is_pending());
        assert_eq!(c.get(Key::str("a")).unwrap().unwrap(), b"1");
        c.set(Key::str("b"), b"2", Ttl::Default).unwrap();
        assert_eq!(c.len(), 2);
        c.fork_parent(); // without a prepare: nothing to release
        c.fork_child();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn child_hook_after_prepare_unlocks_and_forgets_the_waiters() {
        let c = cache();
        c.set(Key::str("kept"), b"v", Ttl::Default).unwrap();
        c.fork_prepare();
        c.inner.waiting.store(3, Ordering::SeqCst); // threads that do not exist in a child
        c.fork_child();
        assert_eq!(c.inner.waiting.load(Ordering::SeqCst), 0);
        assert!(!c.is_closed());
        assert_eq!(c.get(Key::str("kept")).unwrap().unwrap(), b"v");
        assert!(c.try_lock().is_some());
    }

    #[test]
    fn prepare_waits_for_a_holder_and_lets_a_waiter_in_first() {
        let c = &cache();
        std::thread::scope(|s| {
            let (held, rx) = std::sync::mpsc::channel();
            let holder = s.spawn(move || {
                let guard = c.lock();
                held.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                drop(guard);
            });
            rx.recv().unwrap();
            // A thread already past the gate, queued on the mutex, when the fork starts.
            let waiter = s.spawn(move || c.set(Key::str("waiter"), b"w", Ttl::Default));
            while c.inner.waiting.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let started = Instant::now();
            assert!(c.fork_prepare(), "quiet once the holder and the waiter are done");
            assert!(started.elapsed() < QUIESCE_DEADLINE);
            assert!(waiter.is_finished() || c.inner.waiting.load(Ordering::SeqCst) == 0);
            c.fork_parent();
            holder.join().unwrap();
            waiter.join().unwrap().unwrap();
        });
        assert_eq!(c.get(Key::str("waiter")).unwrap().unwrap(), b"w");
    }

    #[test]
    fn a_thread_arriving_during_the_fork_waits_at_the_gate() {
        let c = cache();
        c.fork_prepare();
        std::thread::scope(|s| {
            let late = s.spawn(|| c.set(Key::str("late"), b"l", Ttl::Default));
            std::thread::sleep(Duration::from_millis(20));
            assert!(!late.is_finished(), "the late caller waits for the fork to be over");
            assert_eq!(c.inner.waiting.load(Ordering::SeqCst), 0, "and is not counted meanwhile");
            c.fork_parent();
            late.join().unwrap().unwrap();
        });
        assert_eq!(c.get(Key::str("late")).unwrap().unwrap(), b"l");
    }

    #[test]
    fn a_mutex_held_past_the_deadline_leaves_the_cache_lost_in_the_child() {
        let c = cache();
        c.set(Key::str("a"), &[7; 3000], Ttl::Default).unwrap();
        // A thread that took the mutex and never lets go: in a child, a thread that is gone.
        std::thread::scope(|s| s.spawn(|| std::mem::forget(c.lock())).join().unwrap());
        let started = Instant::now();
        assert!(!c.fork_prepare(), "the mutex could not be taken");
        assert!(started.elapsed() >= QUIESCE_DEADLINE);
        c.fork_child();
        assert!(c.is_closed());
        assert!(matches!(c.get(Key::str("a")), Err(CacheError::LostInFork)));
        assert!(matches!(c.set(Key::str("b"), b"x", Ttl::Default), Err(CacheError::LostInFork)));
        assert!(matches!(c.stats(), Err(CacheError::LostInFork)));
        assert_eq!(c.len(), 0, "the abandoned index is not read");
        assert!(CacheError::LostInFork.to_string().contains("create a new cache"));
        c.close(); // frees the pool, including the abandoned entry's object
        assert!(c.pool().is_closed());
    }

    #[test]
    fn a_mutex_missed_but_free_at_fork_time_stays_usable() {
        let c = cache();
        c.set(Key::str("a"), b"1", Ttl::Default).unwrap();
        // What fork_prepare records when the deadline passes, for a holder that then let go
        // before fork() itself.
        c.inner.gate.close();
        c.inner.prepared.store(super::MISSED, Ordering::SeqCst);
        c.fork_child();
        assert!(!c.is_closed());
        assert_eq!(c.get(Key::str("a")).unwrap().unwrap(), b"1");
    }
}
