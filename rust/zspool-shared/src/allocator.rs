//! The allocator: which 64 KiB chunks (zspage descriptors) are free, and how many pages the
//! zspages use. A stack of free descriptors threaded through `next_free`, plus `never_used`,
//! the first descriptor never handed out (descriptors above it are untouched zeros, so a new
//! file writes none of them). `pages_in_use` never exceeds `pages_max`: the budget of pages.
//!
//! Guarded by the allocator lock in the header, the innermost lock (shard -> class ->
//! allocator). A descriptor's `class` changes only under it, so after a holder dies the
//! stack and the page count are rebuilt from the descriptors (`recovery.rs`). The lock also
//! guards the reclaimer lease.

use std::sync::atomic::Ordering;

use crate::error::SharedError;
use crate::header::Header;
use crate::regions::Regions;
use crate::robust_mutex::Guard;
use crate::zspage::{FREE_CLASS, NONE};

/// Take the allocator lock, rebuilding what it guards if its holder died.
pub(crate) fn lock(r: &Regions) -> Result<Guard<'_>, SharedError> {
    let (mut guard, died) = r.header().alloc_lock.lock(&r.lock_file).map_err(crate::cache::corrupt)?;
    if died {
        crate::recovery::recover_allocator(r);
        guard.mark_consistent();
    }
    Ok(guard)
}

/// Hand a free descriptor to `class` for a zspage of `pages` pages; `None` if the pages would
/// exceed the budget or no descriptor is left.
pub(crate) fn alloc_desc(r: &Regions, class: u32, pages: usize) -> Result<Option<u32>, SharedError> {
    let _guard = lock(r)?;
    let h = r.header();
    if h.pages_in_use.load(Ordering::Relaxed).saturating_add(pages as u64) > r.layout.pages_max {
        return Ok(None);
    }
    let top = h.free_desc.load(Ordering::Relaxed);
    let desc = if (top as usize) < r.layout.n_chunks && r.desc(top).class.load(Ordering::Relaxed) == FREE_CLASS {
        h.free_desc.store(r.desc(top).next_free.load(Ordering::Relaxed), Ordering::Relaxed);
        top
    } else {
        if top != NONE {
            // A garbage stack top: drop the stack; `rebuild` after a death finds the rest.
            h.free_desc.store(NONE, Ordering::Relaxed);
        }
        let never = h.never_used.load(Ordering::Relaxed);
        if never as usize >= r.layout.n_chunks {
            return Ok(None);
        }
        h.never_used.store(never + 1, Ordering::Relaxed);
        never
    };
    let d = r.desc(desc);
    d.next_free.store(NONE, Ordering::Relaxed);
    d.class.store(class, Ordering::Relaxed);
    h.pages_in_use.fetch_add(pages as u64, Ordering::Relaxed);
    h.zspages.fetch_add(1, Ordering::Relaxed);
    Ok(Some(desc))
}

/// Take a descriptor back (its pages were punched out by the caller). Best effort when the
/// allocator lock is unusable (a corrupt file): the descriptor then stays owned.
pub(crate) fn free_desc(r: &Regions, desc: u32, pages: usize) {
    let Ok(_guard) = lock(r) else { return };
    let h = r.header();
    let d = r.desc(desc);
    d.class.store(FREE_CLASS, Ordering::Relaxed);
    d.next_free.store(h.free_desc.load(Ordering::Relaxed), Ordering::Relaxed);
    h.free_desc.store(desc, Ordering::Relaxed);
    Header::sub_saturating(&h.pages_in_use, pages as u64);
    Header::sub_saturating(&h.zspages, 1);
}

/// Take or renew the reclaimer lease for `holder` until `until` (monotonic ns).
pub(crate) fn try_lease(r: &Regions, holder: u32, now: u64, until: u64) -> bool {
    let Ok(_guard) = lock(r) else { return false };
    let h = r.header();
    let current = h.lease_holder.load(Ordering::Relaxed);
    if current != 0 && current != holder && h.lease_expiry.load(Ordering::Relaxed) > now {
        return false;
    }
    h.lease_holder.store(holder, Ordering::Relaxed);
    h.lease_expiry.store(until, Ordering::Relaxed);
    true
}

/// Give up the lease if `holder` has it.
pub(crate) fn release_lease(r: &Regions, holder: u32) {
    let Ok(_guard) = lock(r) else { return };
    let h = r.header();
    if h.lease_holder.load(Ordering::Relaxed) == holder {
        h.lease_holder.store(0, Ordering::Relaxed);
        h.lease_expiry.store(0, Ordering::Relaxed);
    }
}
