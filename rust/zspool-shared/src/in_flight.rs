//! The calls in progress in this process, which `close` waits for before unmapping; counted
//! so that a child of `fork()` never waits for its parent's. The child inherits the count but
//! not the threads that made it (a thread of the parent in `get` or `compact` at the moment of
//! the fork), so the count carries the process's fork generation, which a `pthread_atfork`
//! child handler bumps: a count of an older generation counts nothing. No locks.

use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Forks this process descends from: bumped in every child, before `fork()` returns there.
static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);
static REGISTER: Once = Once::new();

extern "C" fn bump_generation() {
    // Async-signal-safe, as a fork handler must be: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

fn generation() -> u64 {
    u64::from(FORK_GENERATION.load(Ordering::SeqCst)) << 32
}

const COUNT: u64 = u32::MAX as u64;

/// `fork generation << 32 | calls in progress`.
#[derive(Debug)]
pub(crate) struct InFlight(AtomicU64);

/// A call in progress: counted until dropped.
pub(crate) struct Entered<'a>(&'a AtomicU64);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        // The generation cannot have changed under a call in progress: it changes only in a
        // child, where the thread that made this call does not exist.
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl InFlight {
    pub(crate) fn new() -> InFlight {
        REGISTER.call_once(|| {
            // SAFETY: the handler is a plain function that only does an atomic add;
            // pthread_atfork stores its address. It fails only without memory (ENOMEM), and
            // then a child's close waits for calls its parent had in progress, as before.
            let _ = unsafe { libc::pthread_atfork(None, None, Some(bump_generation)) };
        });
        InFlight(AtomicU64::new(generation()))
    }

    /// Count a call in (a count inherited through `fork()` starts over at this one).
    pub(crate) fn enter(&self) -> Entered<'_> {
        let generation = generation();
        let mut current = self.0.load(Ordering::SeqCst);
        loop {
            let next = if current & !COUNT == generation { current + 1 } else { generation | 1 };
            match self.0.compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Entered(&self.0),
                Err(now) => current = now,
            }
        }
    }

    /// Calls in progress in this process.
    pub(crate) fn count(&self) -> u64 {
        let current = self.0.load(Ordering::SeqCst);
        if current & !COUNT == generation() { current & COUNT } else { 0 }
    }
}
