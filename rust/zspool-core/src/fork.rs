//! Fork safety: `fork_prepare` / `fork_parent` / `fork_child`, glibc malloc's atfork
//! protocol applied to a pool.
//!
//! `fork()` copies the whole address space but only the calling thread. A lock that another
//! thread held (or was queued on) at that instant stays held in the child forever, and a
//! page release or a compaction slice that thread was in the middle of never finishes
//! there. So, around `fork()`, the forking thread:
//!
//! ```text
//! fork_prepare: close the gate ([`ForkGate`])   running compactions stop at their next slice
//!                                              (Interrupted) and new ones do nothing; new
//!                                              calls wait at the gate (`Pool::enter`), holding
//!                                              and queueing on no lock, until the fork is over
//!               repeat:
//!                 take every lock of the pool, in the lock order: class locks by class index,
//!                 shard locks by shard index, then the provider's `alive` (write) and free list
//!                 quiescent? (no call in flight, no compaction running, no close or stats
//!                             call running, nobody waiting on any class or shard lock) -> done
//!                 else release them all, sleep 50 us, and try again (until a 1 s deadline)
//! fork()
//! fork_parent:  release every lock; open the gate
//! fork_child:   release every lock (the child's one thread is the forking thread, which
//!               holds them); zero the in-flight and waiter counters of the threads that are
//!               gone; clear compaction's single-runner flag; open the gate
//! ```
//!
//! Quiescence is what makes the child exact: no thread was inside the pool at fork time, so
//! no operation is half done there (every object, page and counter in the child is as the
//! parent had it), and no thread was parked on a pool lock (parking_lot keeps parked threads
//! in a process-wide queue; a dead thread's entry there could swallow a later wake-up in the
//! child). If quiescence is not reached within [`QUIESCE_DEADLINE`] (a thread kept calling
//! the pool without the GIL for a whole second), `fork_prepare` goes ahead with the locks
//! held anyway: no lock is held by another thread at fork time, so the child still cannot
//! deadlock on one, but an operation in flight elsewhere is lost in the child, and a thread
//! parked on a pool lock at fork time leaves a dead entry in parking_lot's wait queue there
//! (releasing the lock in the child then wakes that entry, which is harmless unless the
//! parked thread was inside parking_lot's own bucket lock at the instant of the fork).
//! `fork_prepare`'s return value says which case happened (the `pthread_atfork` handler
//! below has no caller to tell, and ignores it).
//!
//! Callers must not hold any guard of this pool (no `read_with` closure running) when they
//! call `fork_prepare`, and must call exactly one of `fork_parent` / `fork_child` after it.
//!
//! ## Who calls them: `pthread_atfork`, not Python's `os.register_at_fork`
//!
//! [`register_for_fork`] puts a pool in a process-wide registry (weak references) and, once,
//! installs `pthread_atfork` handlers that run the three hooks on every registered pool. They
//! run *inside* `fork()`, after every Python `before` hook and before every Python `after`
//! hook. That matters: Python hooks are bytecode, and the interpreter may hand the GIL to
//! another thread between any two bytecodes. If the pool locks were taken in a Python hook,
//! a thread could get the GIL meanwhile, call `pool.store` and block on a pool lock while
//! holding the GIL, and the forking thread could never get the GIL back to release it (we
//! saw exactly this deadlock with `os.register_at_fork`). Inside `fork()` no bytecode runs:
//! the forking thread keeps the GIL from `fork_prepare` to `fork_parent`/`fork_child`.
//!
//! The registry's own lock is the outermost lock of all: `prepare` takes it first and the
//! parent/child handlers release it last, so a pool registered or dropped by another thread
//! meanwhile cannot leave it held in the child, and two threads forking at once take turns.
//!
//! ## Locks outside the pools: [`OuterLock`]
//!
//! A layer above the pool may have its own lock that its threads hold *while* calling into a
//! pool (the `zspool-cache` cache mutex). The handlers must hold it across `fork()` as well,
//! and take it *before* any pool lock: a thread holding it may be about to enter a pool, and
//! once the gate is closed it would wait at the pool's gate, still holding it. Such a
//! layer registers with [`register_outer_lock_for_fork`], and the handlers run it in the
//! same `pthread_atfork` call as the pools, so the order is fixed here rather than left to
//! the order in which handlers happened to be installed:
//!
//! ```text
//! prepare: registry lock -> every outer lock (registration order) -> every pool (registration order)
//! parent / child: every pool (reverse order) -> every outer lock (reverse order) -> registry lock
//! ```

#[cfg(not(loom))]
use std::sync::{Arc, Once, Weak};
use std::time::Duration;
#[cfg(not(loom))]
use std::time::Instant;

#[cfg(not(loom))]
use crate::pool::Pool;
use crate::sync::{AtomicBool, AtomicUsize, Ordering};

/// The gate every call passes on its way into a pool (or into a layer above one, such as
/// the cache mutex of `zspool-cache`): open, except while a fork is being prepared. A caller
/// counts itself in, then looks at the gate; if it is closed, the caller counts itself out
/// again (so `fork_prepare` sees everything quiet) and waits, holding and queueing on no
/// lock, until it opens. The SeqCst count and the SeqCst look pair with `fork_prepare`'s
/// SeqCst close and its SeqCst reads of the counts: either the caller sees the gate closed,
/// or `fork_prepare` sees the caller counted.
#[derive(Debug)]
pub struct ForkGate {
    pending: AtomicBool,
}

impl Default for ForkGate {
    fn default() -> ForkGate {
        ForkGate::new()
    }
}

impl ForkGate {
    /// An open gate.
    pub fn new() -> ForkGate {
        ForkGate { pending: AtomicBool::new(false) }
    }

    /// Pass the gate: `count_in` counts this caller in (SeqCst) and returns a guard that
    /// counts it out when dropped; it runs again after each wait for a fork.
    #[inline]
    pub fn pass<G>(&self, mut count_in: impl FnMut() -> G) -> G {
        loop {
            let counted = count_in();
            if !self.pending.load(Ordering::SeqCst) {
                return counted;
            }
            drop(counted);
            while self.pending.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }

    /// [`Self::pass`], counting this caller in `count` until the returned guard is dropped.
    #[inline]
    pub fn pass_counted<'a>(&self, count: &'a AtomicUsize) -> Counted<'a> {
        self.pass(|| {
            count.fetch_add(1, Ordering::SeqCst);
            Counted(count)
        })
    }

    /// Whether a fork is being prepared (the gate is closed).
    #[inline]
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Close the gate: `fork_prepare` is starting.
    pub fn close(&self) {
        self.pending.store(true, Ordering::SeqCst);
    }

    /// Open the gate: the fork is over.
    pub fn open(&self) {
        self.pending.store(false, Ordering::SeqCst);
    }
}

/// A caller counted past a [`ForkGate`] by [`ForkGate::pass_counted`]; counted out on drop.
#[derive(Debug)]
pub struct Counted<'a>(&'a AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A pool's fork state: its gate, whether `fork_prepare` holds its locks, and the calls in
/// flight that no activity counter sees.
#[derive(Debug)]
pub(crate) struct ForkState {
    /// Closed by `fork_prepare` until the fork is over: compaction stops at its next slice.
    pub(crate) gate: ForkGate,
    /// `fork_prepare` holds every lock of this pool (no fork hooks under loom).
    #[cfg_attr(loom, allow(dead_code))]
    held: AtomicBool,
    /// Calls in flight that are not counted in an `ActivityCounters` (close, stats): the
    /// fork hooks wait for these too, without making the pool look busy to policies.
    others_in_flight: AtomicUsize,
}

impl ForkState {
    pub(crate) fn new() -> ForkState {
        ForkState { gate: ForkGate::new(), held: AtomicBool::new(false), others_in_flight: AtomicUsize::new(0) }
    }

    /// Count a close or stats call in flight, through the gate.
    pub(crate) fn enter_other(&self) -> Counted<'_> {
        self.gate.pass_counted(&self.others_in_flight)
    }
}

#[cfg(not(loom))]
/// A lock outside every pool that its users take *before* any pool lock (and may hold while
/// calling a pool), which must be held across `fork()` like the pools' own locks. The three
/// hooks follow the pool's protocol: `fork_prepare` takes the lock, waiting for it within a
/// deadline, and returns whether it got it with no other thread inside or queued;
/// exactly one of `fork_parent` / `fork_child` follows and lets it go.
pub trait OuterLock: Send + Sync {
    /// Before `fork()`: take the lock within the deadline; whether nobody else was inside or queued.
    fn fork_prepare(&self) -> bool;
    /// After `fork()`, in the parent: let the lock go.
    fn fork_parent(&self);
    /// After `fork()`, in the child (one thread): let the lock go, forget vanished threads.
    fn fork_child(&self);
}

#[cfg(not(loom))]
/// What the `pthread_atfork` handlers manage, held only as weak references.
struct Registry {
    outer_locks: Vec<Weak<dyn OuterLock>>,
    pools: Vec<Weak<Pool>>,
}

#[cfg(not(loom))]
/// What `prepare` locked, kept alive until `parent`/`child` unlocks it.
struct Prepared {
    outer_locks: Vec<Arc<dyn OuterLock>>,
    pools: Vec<Arc<Pool>>,
}

#[cfg(not(loom))]
static REGISTRY: parking_lot::Mutex<Registry> =
    parking_lot::Mutex::new(Registry { outer_locks: Vec::new(), pools: Vec::new() });
#[cfg(not(loom))]
/// Only touched by the handlers, with `REGISTRY` held.
static PREPARED: parking_lot::Mutex<Prepared> =
    parking_lot::Mutex::new(Prepared { outer_locks: Vec::new(), pools: Vec::new() });
#[cfg(not(loom))]
static INSTALL: Once = Once::new();

#[cfg(not(loom))]
fn install_handlers() {
    INSTALL.call_once(|| {
        // SAFETY: the three handlers are `extern "C"` functions that live for the whole
        // process; pthread_atfork only stores their addresses.
        let rc = unsafe { libc::pthread_atfork(Some(atfork_prepare), Some(atfork_parent), Some(atfork_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

#[cfg(not(loom))]
/// Make `fork()` safe for `pool`: from now on every `fork()` in this process (Python's
/// `os.fork`, multiprocessing, a C library's) runs `fork_prepare` before it and
/// `fork_parent`/`fork_child` after it on this pool, for as long as the pool is alive.
pub fn register_for_fork(pool: &Arc<Pool>) {
    install_handlers();
    let mut registry = REGISTRY.lock();
    registry.pools.retain(|weak| weak.strong_count() > 0);
    registry.pools.push(Arc::downgrade(pool));
}

#[cfg(not(loom))]
/// Hold `lock` across every `fork()` in this process, for as long as it is alive: its
/// `fork_prepare` runs before any pool's, its `fork_parent`/`fork_child` after every pool's
/// (see the module comment).
pub fn register_outer_lock_for_fork<L: OuterLock + 'static>(lock: &Arc<L>) {
    install_handlers();
    let mut registry = REGISTRY.lock();
    registry.outer_locks.retain(|weak| weak.strong_count() > 0);
    let weak: Weak<L> = Arc::downgrade(lock);
    registry.outer_locks.push(weak);
}

#[cfg(not(loom))]
extern "C" fn atfork_prepare() {
    let registry = REGISTRY.lock();
    let prepared = Prepared {
        outer_locks: registry.outer_locks.iter().filter_map(Weak::upgrade).collect(),
        pools: registry.pools.iter().filter_map(Weak::upgrade).collect(),
    };
    std::mem::forget(registry); // held until atfork_parent / atfork_child
    for lock in &prepared.outer_locks {
        lock.fork_prepare();
    }
    for pool in &prepared.pools {
        pool.fork_prepare();
    }
    *PREPARED.lock() = prepared;
}

#[cfg(not(loom))]
fn take_prepared() -> Prepared {
    std::mem::replace(&mut *PREPARED.lock(), Prepared { outer_locks: Vec::new(), pools: Vec::new() })
}

#[cfg(not(loom))]
extern "C" fn atfork_parent() {
    let prepared = take_prepared();
    for pool in prepared.pools.iter().rev() {
        pool.fork_parent();
    }
    for lock in prepared.outer_locks.iter().rev() {
        lock.fork_parent();
    }
    drop(prepared);
    // SAFETY: atfork_prepare locked REGISTRY in this thread (the forking thread) and forgot
    // the guard; the parent handler runs once per prepare.
    unsafe { REGISTRY.force_unlock() };
}

#[cfg(not(loom))]
extern "C" fn atfork_child() {
    let prepared = take_prepared();
    for pool in prepared.pools.iter().rev() {
        pool.fork_child();
    }
    for lock in prepared.outer_locks.iter().rev() {
        lock.fork_child();
    }
    drop(prepared);
    // SAFETY: as in atfork_parent; the child's one thread is the forking thread.
    unsafe { REGISTRY.force_unlock() };
}

#[cfg(not(loom))]
/// How long `fork_prepare` waits for the pool to go quiet before forking anyway.
pub const QUIESCE_DEADLINE: Duration = Duration::from_secs(1);

#[cfg(not(loom))]
impl Pool {
    /// Before `fork()`: stop compaction and take every lock of the pool while no other thread
    /// is inside it. Returns whether the pool was quiescent (see the module comment).
    pub fn fork_prepare(&self) -> bool {
        if self.fork.held.load(Ordering::Acquire) {
            return true; // prepared already (a second hook registration); stay idempotent
        }
        self.fork.gate.close();
        let deadline = Instant::now() + QUIESCE_DEADLINE;
        let quiescent = loop {
            self.lock_all();
            if self.quiescent() {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            // SAFETY: this thread took every lock just above, through `lock_all`.
            unsafe { self.unlock_all() };
            std::thread::sleep(Duration::from_micros(50));
        };
        self.fork.held.store(true, Ordering::Release);
        quiescent
    }

    /// After `fork()`, in the parent: release what `fork_prepare` took. A no-op without it.
    pub fn fork_parent(&self) {
        if !self.fork.held.swap(false, Ordering::AcqRel) {
            return;
        }
        // SAFETY: `fork.held` was set by `fork_prepare` in this thread (the forking thread),
        // which holds every lock with no guard alive.
        unsafe { self.unlock_all() };
        self.fork.gate.open();
    }

    /// After `fork()`, in the child: every lock unlocked, every counter of threads that do
    /// not exist here zeroed. Call before the child starts any thread. A no-op without a
    /// preceding `fork_prepare`.
    pub fn fork_child(&self) {
        if !self.fork.held.swap(false, Ordering::AcqRel) {
            return;
        }
        for class in self.classes.iter() {
            // SAFETY: `fork.held` says this thread (the forking thread, now the child's only
            // thread) holds every lock through `fork_prepare`, with no guard alive.
            unsafe { class.lock_for_fork().fork_unlock_child() };
            class.activity.reset_in_flight();
        }
        for shard in self.large.iter() {
            // SAFETY: as above.
            unsafe { shard.lock_for_fork().fork_unlock_child() };
            shard.activity.reset_in_flight();
        }
        // SAFETY: as above; nobody else can have queued on the provider's locks (every
        // user of the provider is a call in flight or a compaction, and there were none).
        unsafe { self.provider.fork_unlock() };
        self.compaction.reset_in_child();
        self.fork.others_in_flight.store(0, Ordering::Release);
        self.fork.gate.open();
    }

    /// Take every lock of the pool in the lock order and keep them (guards forgotten).
    fn lock_all(&self) {
        for class in self.classes.iter() {
            class.lock_for_fork().fork_lock();
        }
        for shard in self.large.iter() {
            shard.lock_for_fork().fork_lock();
        }
        self.provider.fork_lock();
    }

    /// Release every lock taken by `lock_all`, in reverse order.
    ///
    /// # Safety
    /// This thread holds every lock through `lock_all`, with no guard alive.
    unsafe fn unlock_all(&self) {
        // SAFETY: the caller's guarantee covers each lock released here.
        unsafe {
            self.provider.fork_unlock();
            for shard in self.large.iter().rev() {
                shard.lock_for_fork().fork_unlock_parent();
            }
            for class in self.classes.iter().rev() {
                class.lock_for_fork().fork_unlock_parent();
            }
        }
    }

    /// No other thread is inside the pool or queued on one of its locks. Called with every
    /// lock held, so nothing can start meanwhile without being counted first (a call
    /// counts itself in flight before it takes its lock).
    fn quiescent(&self) -> bool {
        let idle = |a: &crate::activity::ActivityCounters| a.in_flight() == 0;
        self.classes.iter().all(|c| idle(&c.activity) && !c.lock_for_fork().has_waiters())
            && self.large.iter().all(|s| idle(&s.activity) && !s.lock_for_fork().has_waiters())
            && !self.compaction.is_running()
            && self.fork.others_in_flight.load(Ordering::SeqCst) == 0
    }
}

#[cfg(not(loom))]
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{OuterLock, atfork_child, atfork_parent, atfork_prepare, register_outer_lock_for_fork};
    use crate::sync::Ordering;
    use crate::{Pool, PoolConfig, register_for_fork};

    /// An outer lock that records, at each hook, whether the pool was already being forked
    /// (its gate closed) and whether it held its locks (`fork.held`).
    struct Recorder {
        pool: Arc<Pool>,
        events: parking_lot::Mutex<Vec<(&'static str, bool, bool)>>,
    }

    impl Recorder {
        fn record(&self, hook: &'static str) {
            let pool = &self.pool;
            self.events.lock().push((hook, pool.fork.gate.is_pending(), pool.fork.held.load(Ordering::SeqCst)));
        }
    }

    impl OuterLock for Recorder {
        fn fork_prepare(&self) -> bool {
            self.record("prepare");
            true
        }
        fn fork_parent(&self) {
            self.record("parent");
        }
        fn fork_child(&self) {
            self.record("child");
        }
    }

    #[test]
    fn the_handlers_run_outer_locks_before_every_pool_and_release_them_after() {
        let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
        register_for_fork(&pool);
        // Registered after the pool (as a cache is): the order must not depend on that.
        let outer = Arc::new(Recorder { pool: Arc::clone(&pool), events: parking_lot::Mutex::new(Vec::new()) });
        register_outer_lock_for_fork(&outer);
        atfork_prepare();
        assert!(pool.fork.held.load(Ordering::SeqCst), "the pool is locked after prepare");
        atfork_parent();
        atfork_prepare();
        atfork_child();
        let untouched = (false, false);
        let seen: Vec<_> = outer.events.lock().iter().map(|&(hook, pending, held)| (hook, (pending, held))).collect();
        assert_eq!(
            seen,
            [("prepare", untouched), ("parent", untouched), ("prepare", untouched), ("child", untouched)],
            "the outer lock is taken before the pool's gate closes and released after its locks are"
        );
        drop(outer);
        atfork_prepare(); // a dropped outer lock is skipped
        atfork_parent();
        let h = pool.store(b"still works").unwrap();
        assert_eq!(pool.load(h).unwrap(), b"still works");
        pool.close();
    }

    #[test]
    fn prepare_then_parent_leaves_the_pool_working() {
        let pool = Pool::new(PoolConfig::default()).unwrap();
        let h = pool.store(b"before").unwrap();
        assert!(pool.fork_prepare(), "an idle pool is quiescent at once");
        pool.fork_parent();
        assert_eq!(pool.load(h).unwrap(), b"before");
        let h2 = pool.store(&[7; 5000]).unwrap();
        pool.free(h).unwrap();
        pool.free(h2).unwrap();
        assert_eq!(pool.len(), 0);
        pool.fork_parent(); // without a prepare: nothing to release
        pool.close();
    }

    #[test]
    fn child_hook_after_prepare_unlocks_everything() {
        // What the child does, minus the fork: every lock is held, then released.
        let pool = Pool::new(PoolConfig::default()).unwrap();
        let h = pool.store(b"kept").unwrap();
        pool.fork_prepare();
        pool.fork_child();
        assert_eq!(pool.load(h).unwrap(), b"kept");
        let big = pool.store(&[1; 9000]).unwrap();
        assert_eq!(pool.size_of(big).unwrap(), 9000);
        assert_eq!(pool.compact(&Default::default()).stop_reason.as_str(), "nothing_freeable");
        pool.close();
    }

    #[test]
    fn a_compaction_in_another_thread_is_interrupted_and_the_fork_waits_for_it() {
        let pool = Pool::new(PoolConfig::default()).unwrap();
        let handles: Vec<u64> = (0..60_000).map(|i| pool.store(&[i as u8; 200]).unwrap()).collect();
        for h in handles.iter().step_by(3).chain(handles.iter().skip(1).step_by(3)) {
            pool.free(*h).unwrap();
        }
        std::thread::scope(|s| {
            let compactor = s.spawn(|| pool.compact(&Default::default()));
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert!(pool.fork_prepare());
            assert!(!pool.compaction.is_running());
            pool.fork_parent();
            let report = compactor.join().unwrap();
            assert!(["interrupted", "done"].contains(&report.stop_reason.as_str()));
        });
        for h in handles.iter().skip(2).step_by(3) {
            assert_eq!(pool.load(*h).unwrap().len(), 200);
        }
        pool.close();
    }
}
