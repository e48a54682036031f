//! Recovery: what the next holder of a lock does when the previous one died holding it
//! (`EOWNERDEAD`). Each repair is idempotent: a repairer that dies too leaves the lock
//! owner-dead again and the next holder repeats the repair. See docs/SHARED.md.
//!
//! - class lock: bump the class epoch (every location naming the old epoch is now a miss),
//!   give back every zspage of the class, found by scanning the descriptors (the lists may be
//!   half-linked), reset the lists and counters;
//! - shard lock: recount the shard's entries and reset its SIEVE hand (every slot word is
//!   meaningful on its own: nothing is lost);
//! - allocator lock: rebuild the free stack and page counts (`allocator.rs`).

use std::sync::atomic::Ordering;

use crate::class::ClassGuard;
use crate::header::Header;
use crate::location::EPOCH_MASK;
use crate::regions::Regions;
use crate::shard::ShardShm;
use crate::zspage::NONE;

/// Discard class `class`'s entries (we hold its lock, returned owner-dead).
pub(crate) fn recover_class(class: &ClassGuard<'_>) {
    let (r, shm) = (class.r, class.shm);
    let h = r.header();
    shm.epoch.store((shm.epoch.load(Ordering::Relaxed).wrapping_add(1)) & EPOCH_MASK, Ordering::Relaxed);
    let never = (h.never_used.load(Ordering::Relaxed) as usize).min(r.layout.n_chunks) as u32;
    for desc in 0..never {
        if r.desc(desc).class.load(Ordering::Relaxed) == class.id {
            r.punch_zspage(desc, class.layout.pages_per_zspage);
            crate::allocator::free_desc(r, desc, class.layout.pages_per_zspage);
        }
    }
    for head in &shm.heads {
        head.store(NONE, Ordering::Relaxed);
    }
    let dropped = shm.obj_used.swap(0, Ordering::Relaxed);
    shm.obj_allocated.store(0, Ordering::Relaxed);
    Header::sub_saturating(&h.bytes, shm.bytes.swap(0, Ordering::Relaxed));
    h.dropped_on_recovery.fetch_add(dropped, Ordering::Relaxed);
    h.recoveries.fetch_add(1, Ordering::Relaxed);
}

/// Repair shard `shard` (we hold its lock, returned owner-dead).
pub(crate) fn recover_shard(r: &Regions, shard: usize, shm: &ShardShm) {
    let base = shard * r.layout.shard_slots;
    let live = (base..base + r.layout.shard_slots).filter(|&g| r.slot(g).loc.load(Ordering::Relaxed) != 0).count();
    shm.entries.store(live as u64, Ordering::Relaxed);
    shm.hand.store(0, Ordering::Relaxed);
    r.header().recoveries.fetch_add(1, Ordering::Relaxed);
}
