//! Time to live: a deadline per entry, kept in a flat array beside the index's slots and
//! allocated only once some entry has a TTL (a cache without TTLs pays nothing).
//!
//! Deadlines are nanoseconds on the cache's [`Clock`] (0: never expires). `earliest` is a
//! lower bound on every live deadline, so "has anything expired?" is one comparison; only
//! when it has passed does `len()` sweep the array (the sweep recomputes the bound exactly).
//! Expired entries are never returned: lookups check the deadline, and sweeps, lookups and
//! eviction remove them. Guarded by the cache mutex.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long an entry lives, when it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ttl {
    /// The cache's default TTL (which may be none).
    #[default]
    Default,
    /// Never expires, whatever the default.
    Never,
    /// Expires this long after it was set.
    For(Duration),
}

/// The time source: the monotonic clock, or a manual one for tests.
#[derive(Debug)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`, counted from this instant.
    Monotonic(Instant),
    /// A clock that moves only when told to (tests): nanoseconds.
    Manual(AtomicU64),
}

impl Clock {
    /// The monotonic clock, starting now.
    pub fn monotonic() -> Clock {
        Clock::Monotonic(Instant::now())
    }

    /// A clock that only moves when [`Clock::advance`] is called.
    pub fn manual() -> Clock {
        Clock::Manual(AtomicU64::new(1))
    }

    /// Nanoseconds since the clock was made (always >= 1).
    pub fn now(&self) -> u64 {
        match self {
            Clock::Monotonic(epoch) => u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1),
            Clock::Manual(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Move a manual clock forward (no effect on the monotonic one).
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(now) = self {
            now.fetch_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
    }
}

/// The deadline of an entry set at `now` that lives `ttl` (0: never).
pub(crate) fn deadline(now: u64, ttl: Option<Duration>) -> u64 {
    match ttl {
        None => 0,
        Some(ttl) => now.saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)).max(1),
    }
}

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// By slot id; empty until the first deadline is set.
    by_slot: Vec<u64>,
    /// No live deadline is earlier than this (u64::MAX: none set).
    earliest: u64,
}

impl Deadlines {
    pub(crate) fn new() -> Deadlines {
        Deadlines { by_slot: Vec::new(), earliest: u64::MAX }
    }

    pub(crate) fn set(&mut self, slot: u32, deadline: u64) {
        let i = slot as usize;
        if deadline == 0 && i >= self.by_slot.len() {
            return;
        }
        if i >= self.by_slot.len() {
            self.by_slot.resize(i + 1, 0);
        }
        self.by_slot[i] = deadline;
        if deadline != 0 {
            self.earliest = self.earliest.min(deadline);
        }
    }

    /// No entry has ever had a deadline (since the last clear): nothing can expire, and the
    /// clock need not be read.
    pub(crate) fn is_unused(&self) -> bool {
        self.by_slot.is_empty()
    }

    pub(crate) fn get(&self, slot: u32) -> u64 {
        self.by_slot.get(slot as usize).copied().unwrap_or(0)
    }

    pub(crate) fn is_expired(&self, slot: u32, now: u64) -> bool {
        let d = self.get(slot);
        d != 0 && d <= now
    }

    /// Whether some entry may have expired by `now`.
    pub(crate) fn any_due(&self, now: u64) -> bool {
        self.earliest <= now
    }

    /// After a sweep: the exact earliest live deadline.
    pub(crate) fn set_earliest(&mut self, earliest: u64) {
        self.earliest = earliest;
    }

    pub(crate) fn clear(&mut self) {
        *self = Deadlines::new();
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.by_slot.capacity() * size_of::<u64>()
    }
}
