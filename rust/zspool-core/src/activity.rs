//! Pool activity: how busy the pool is, for policies that must not compact under load
//! (the `idle-only` shrinker policy; Sergey Senozhatsky's 2015 "idle vs busy" argument).
//!
//! Each class and large-object shard keeps two counters next to its lock: operations in
//! flight (entered, not yet returned) and the coarse monotonic time the last one finished.
//! They sit in the cache lines the operation touches anyway, so the cost is two uncontended
//! atomic adds, one store and a `CLOCK_MONOTONIC_COARSE` read (vDSO, a few ns) per call; no
//! pool-wide cache line is written on the data path. Compaction does not count as activity.

use std::time::Duration;

use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Nanoseconds on `CLOCK_MONOTONIC_COARSE` (jiffy resolution, 1-4 ms).
pub(crate) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

#[derive(Debug)]
pub(crate) struct ActivityCounters {
    in_flight: AtomicUsize,
    last_access_ns: AtomicU64,
}

/// Marks one operation in flight until dropped.
pub(crate) struct InFlight<'a>(&'a ActivityCounters);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.last_access_ns.store(coarse_now_ns(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ActivityCounters {
    pub(crate) fn new() -> ActivityCounters {
        ActivityCounters { in_flight: AtomicUsize::new(0), last_access_ns: AtomicU64::new(coarse_now_ns()) }
    }

    /// Count one operation in flight. SeqCst (on x86 the same `lock xadd` as Relaxed): it
    /// pairs with the fork gate in `Pool::enter` (see `fork.rs`).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// In a child after `fork()`: the operations counted in flight ran in threads that do
    /// not exist there.
    #[cfg(not(loom))]
    pub(crate) fn reset_in_flight(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
    }

    pub(crate) fn last_access_ns(&self) -> u64 {
        self.last_access_ns.load(Ordering::Relaxed)
    }
}

/// A snapshot of the pool's activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Calls inside the pool right now (malloc, store, read, write, free; not compaction).
    pub ops_in_flight: usize,
    /// Time since the last call finished (coarse clock: 1-4 ms resolution).
    pub idle: Duration,
}

impl Activity {
    pub(crate) fn from_counters<'a>(counters: impl Iterator<Item = &'a ActivityCounters>) -> Activity {
        let (mut in_flight, mut last) = (0, 0);
        for c in counters {
            in_flight += c.in_flight();
            last = last.max(c.last_access_ns());
        }
        Activity { ops_in_flight: in_flight, idle: Duration::from_nanos(coarse_now_ns().saturating_sub(last)) }
    }
}
