//! The host's clock for expiry times and the reclaimer lease. No locks.

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the host, so expiry
/// times and leases written by one process mean the same to all (never 0).
pub(crate) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64).max(1)
}
