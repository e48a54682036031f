//! Fork safety for the cache mutex: the cache's part of the core's `pthread_atfork` protocol
//! (`rust/zspool-core/src/fork.rs`, read that first).
//!
//! `fork()` copies only the calling thread. If another thread holds the cache mutex at that
//! instant, the child inherits it locked by a thread that does not exist there, and every
//! cache call in the child hangs. So the cache registers its mutex with the core as an
//! [`OuterLock`]: the core's handlers run these hooks before any pool's (the lock order is
//! cache mutex, then pool locks) and after every pool's on the way out:
//!
//! ```text
//! fork_prepare: pending = true             new lockers wait at the gate (`ForkGate::enter`),
//!                                          outside the mutex and not counted, until it is over
//!               repeat:
//!                 take the mutex, waiting at most until the deadline
//!                 nobody past the gate still waiting for it? -> keep it, done
//!                 else hand it to them (unlock_fair), sleep 50 us, try again
//! fork()
//! fork_parent:  release it; pending = false
//! fork_child:   release it (the child's one thread is the forking thread, which holds it);
//!               zero the count of waiting threads (they do not exist here); pending = false
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
//! it that long: a Rust user holding a [`crate::CacheGuard`] across something slow, or a bug
//! against the rule above), the fork goes ahead without it rather than stall the process.
//! The parent is unaffected. In the child the mutex is then held by a thread that no longer
//! exists, and the index, queue and counters it guards may be half updated, so the child
//! must not read them, and must not hang: `fork_child` marks the cache **lost**, overwrites
//! the half-updated state with an empty one without reading or dropping it (its heap memory
//! is leaked, and its entries' objects stay allocated in the pool until `close()`), and
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

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::MutexGuard;
use zspool_core::{OuterLock, Pool, QUIESCE_DEADLINE};

use crate::cache::{Cache, Inner};

/// What `fork_prepare` achieved, for the parent/child hook that follows it.
const NOT_PREPARED: u8 = 0;
/// The forking thread holds the mutex (guard forgotten).
const HELD: u8 = 1;
/// The mutex could not be taken within the deadline.
const MISSED: u8 = 2;

/// Make `fork()` safe for `cache`: every `fork()` in this process holds its mutex across the
/// fork, before the pools' locks, for as long as the cache is alive. Its pool must be
/// registered with [`zspool_core::register_for_fork`] too (every pool made from Python is).
pub fn register_for_fork<P: Deref<Target = Pool> + Send + Sync + 'static>(cache: &Arc<Cache<P>>) {
    zspool_core::register_outer_lock_for_fork(cache);
}

/// The gate in front of the cache mutex, and the fork state of one cache.
pub(crate) struct ForkGate {
    /// A fork is being prepared: new lockers wait at the gate until it is over.
    pending: AtomicBool,
    /// Threads past the gate that do not hold the mutex yet (and may be parked on it).
    waiting: AtomicUsize,
    /// `NOT_PREPARED`, `HELD` or `MISSED`.
    prepared: AtomicU8,
    /// In a child forked while another thread held the mutex: the cache is unusable.
    lost: AtomicBool,
}

/// A thread counted as waiting for the mutex, until it holds it (then drop this).
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ForkGate {
    pub(crate) fn new() -> ForkGate {
        ForkGate {
            pending: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            prepared: AtomicU8::new(NOT_PREPARED),
            lost: AtomicBool::new(false),
        }
    }

    /// Pass the gate on the way to the mutex: wait out a fork being prepared, then count this
    /// thread as waiting. The SeqCst increment and load pair with `fork_prepare`'s store and
    /// load (as in the pool's gate): either this thread sees `pending` and steps back out, or
    /// `fork_prepare` sees it waiting and lets it have the mutex first.
    pub(crate) fn enter(&self) -> Waiting<'_> {
        loop {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let waiting = Waiting(&self.waiting);
            if !self.pending.load(Ordering::SeqCst) {
                return waiting;
            }
            drop(waiting);
            while self.pending.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// A fork is being prepared (a `try_lock` then fails, so its caller goes through `enter`).
    pub(crate) fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl<P: Deref<Target = Pool> + Send + Sync> OuterLock for Cache<P> {
    /// Before `fork()`: close the gate and take the mutex while no other thread waits for it.
    /// Returns whether that happened within the deadline (see the module comment).
    fn fork_prepare(&self) -> bool {
        let gate = &self.fork_gate;
        if gate.prepared.load(Ordering::Acquire) != NOT_PREPARED {
            return true; // prepared already; stay idempotent as the pool is
        }
        gate.pending.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + QUIESCE_DEADLINE;
        loop {
            let Some(guard) = self.inner.try_lock_until(deadline) else {
                gate.prepared.store(MISSED, Ordering::Release);
                return false;
            };
            let quiet = gate.waiting.load(Ordering::SeqCst) == 0;
            if quiet || Instant::now() >= deadline {
                std::mem::forget(guard); // released by fork_parent / fork_child
                gate.prepared.store(HELD, Ordering::Release);
                return quiet;
            }
            // Someone passed the gate before it closed: hand the mutex over, so that it does
            // its one operation and is gone from the wait queue, then try again.
            MutexGuard::unlock_fair(guard);
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// After `fork()`, in the parent: release what `fork_prepare` took, open the gate.
    fn fork_parent(&self) {
        let gate = &self.fork_gate;
        let prepared = gate.prepared.swap(NOT_PREPARED, Ordering::AcqRel);
        if prepared == HELD {
            // SAFETY: `HELD` says this thread (the forking thread) took the mutex in
            // `fork_prepare` and forgot the guard.
            unsafe { self.inner.force_unlock() };
        }
        if prepared != NOT_PREPARED {
            gate.pending.store(false, Ordering::SeqCst);
        }
    }

    /// After `fork()`, in the child: the mutex released (or the cache marked lost, if another
    /// thread held it at fork time), the waiting threads that do not exist here forgotten.
    fn fork_child(&self) {
        let gate = &self.fork_gate;
        match gate.prepared.swap(NOT_PREPARED, Ordering::AcqRel) {
            NOT_PREPARED => return,
            // SAFETY: as in `fork_parent`; the child's one thread is the forking thread.
            HELD => unsafe { self.inner.force_unlock() },
            // Missed, but the holder let go before `fork()`: nobody was inside, so the state
            // is whole and the mutex free.
            _ if !self.inner.is_locked() => {}
            _ => self.abandon_state_of_vanished_holder(),
        }
        gate.waiting.store(0, Ordering::SeqCst);
        gate.pending.store(false, Ordering::SeqCst);
    }
}

impl<P: Deref<Target = Pool>> Cache<P> {
    /// In a child forked while another thread held the mutex: mark the cache lost, replace
    /// the state that thread may have left half updated with an empty one (without reading
    /// or dropping it), and release the mutex, so later calls fail instead of hanging.
    fn abandon_state_of_vanished_holder(&self) {
        self.fork_gate.lost.store(true, Ordering::Release);
        // SAFETY: the child has one thread, this one; the mutex's holder existed only in the
        // parent and will never run, read the state or release the mutex here, so nothing
        // else can touch the state while it is overwritten. `ptr::write` does not read or drop
        // the old value (a half-updated hash table or vector could not be dropped safely);
        // its memory is leaked. The mutex is then released on that holder's behalf: its guard
        // can never be dropped in this process.
        unsafe {
            std::ptr::write(self.inner.data_ptr(), Inner::empty(self.config().eviction));
            self.inner.force_unlock();
        }
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
        assert!(c.inner.is_locked() && c.fork_gate.is_pending());
        assert!(c.try_lock().is_none(), "the gate is closed while a fork is prepared");
        c.fork_parent();
        assert!(!c.inner.is_locked() && !c.fork_gate.is_pending());
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
        c.fork_gate.waiting.store(3, Ordering::SeqCst); // threads that do not exist in a child
        c.fork_child();
        assert_eq!(c.fork_gate.waiting.load(Ordering::SeqCst), 0);
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
            while c.fork_gate.waiting.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let started = Instant::now();
            assert!(c.fork_prepare(), "quiet once the holder and the waiter are done");
            assert!(started.elapsed() < QUIESCE_DEADLINE);
            assert!(waiter.is_finished() || c.fork_gate.waiting.load(Ordering::SeqCst) == 0);
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
            assert_eq!(c.fork_gate.waiting.load(Ordering::SeqCst), 0, "and is not counted meanwhile");
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
        c.fork_gate.pending.store(true, Ordering::SeqCst);
        c.fork_gate.prepared.store(super::MISSED, Ordering::SeqCst);
        c.fork_child();
        assert!(!c.is_closed());
        assert_eq!(c.get(Key::str("a")).unwrap().unwrap(), b"1");
    }
}
