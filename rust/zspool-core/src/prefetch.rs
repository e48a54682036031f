//! The CPU's prefetch hint, in one place: its `unsafe` and its per-architecture `cfg`.
//!
//! Compaction knows the addresses of the next object's bytes, handle-table entry and
//! destination slot one move ahead; hinting them lets their cache misses overlap the current
//! move instead of following it.

/// Hint the CPU to start loading the cache line holding `ptr` (for reading, into every cache
/// level). Never faults and never reads anything the program can observe.
#[inline(always)]
pub(crate) fn prefetch_line<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is only a hint: it never dereferences the pointer, so any
    // address, even a dangling one, is fine.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
