//! Recovery: what the next holder of a lock does when the previous one died holding it
//! (`EOWNERDEAD`). Each repair is idempotent: a repairer that dies too leaves the lock
//! owner-dead again and the next holder repeats the repair. See docs/SHARED.md.
//!
//! - class lock: bump the class epoch (every location naming the old epoch is now a miss),
//!   give back every zspage of the class, found by scanning the descriptors (the lists may be
//!   half-linked), reset the lists and counters;
//! - shard lock: recount the shard's entries and reset its SIEVE hand (every slot word is
//!   meaningful on its own: nothing is lost); unless the holder died resizing the table,
//!   which is then half rehashed: empty it (the resizer held the class lock of every entry
//!   it had, so those classes' own recoveries discard and count them);
//! - allocator lock: rebuild the free stack and page counts from the descriptors (whose
//!   `class` changes only under that lock).

use std::sync::atomic::Ordering;

use crate::class::ClassGuard;
use crate::header::Header;
use crate::location::EPOCH_MASK;
use crate::regions::Regions;
use crate::shard::{ShardShm, checked_cap};
use crate::zspage::{FREE_CLASS, NONE};

/// Discard class `class`'s entries (we hold its lock, returned owner-dead).
pub(crate) fn recover_class(class: &ClassGuard<'_>) {
    let (r, shm) = (class.r, class.shm);
    let h = r.header();
    class.begin_move();
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
    class.end_move();
}

/// Repair shard `shard` (we hold its lock, returned owner-dead).
pub(crate) fn recover_shard(r: &Regions, shard: usize, shm: &ShardShm) {
    let reserve = r.layout.shard_slots;
    let base = shard * reserve;
    let cap = checked_cap(shm.cap.load(Ordering::Relaxed), reserve);
    let resize_to = shm.resize_to.load(Ordering::Relaxed);
    if resize_to != 0 {
        let to = checked_cap(resize_to, reserve);
        for g in base..base + cap.max(to) {
            r.slot(g).loc.store(0, Ordering::Relaxed);
            r.slot(g).hash.store(0, Ordering::Relaxed);
        }
        shm.cap.store(to as u64, Ordering::Relaxed);
        shm.resize_to.store(0, Ordering::Relaxed);
    }
    let live = (base..base + cap).filter(|&g| r.slot(g).loc.load(Ordering::Relaxed) != 0).count();
    shm.entries.store(live as u64, Ordering::Relaxed);
    shm.hand.store(0, Ordering::Relaxed);
    r.header().recoveries.fetch_add(1, Ordering::Relaxed);
}

/// Recompute the allocator's free stack, `pages_in_use` and `zspages` from the descriptors
/// (we hold the allocator lock, returned owner-dead). Idempotent.
pub(crate) fn recover_allocator(r: &Regions) {
    let h = r.header();
    let never = (h.never_used.load(Ordering::Relaxed) as usize).min(r.layout.n_chunks);
    h.never_used.store(never as u32, Ordering::Relaxed);
    let (mut top, mut pages, mut zspages) = (NONE, 0u64, 0u64);
    for desc in 0..never as u32 {
        let d = r.desc(desc);
        match r.classes().get(d.class.load(Ordering::Relaxed) as usize) {
            Some(layout) => {
                pages += layout.pages_per_zspage as u64;
                zspages += 1;
            }
            None => {
                d.class.store(FREE_CLASS, Ordering::Relaxed);
                d.next_free.store(top, Ordering::Relaxed);
                top = desc;
            }
        }
    }
    h.free_desc.store(top, Ordering::Relaxed);
    h.pages_in_use.store(pages, Ordering::Relaxed);
    h.zspages.store(zspages, Ordering::Relaxed);
    h.recoveries.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zspool_cache::Key;

    use crate::class::lock_class;
    use crate::hash::key_hash;
    use crate::shard::{lock_shard, shard_of};
    use crate::{OpenOptions, SharedCache, SharedConfig, ValueFlags};

    fn cache(tag: &str) -> (std::path::PathBuf, SharedCache) {
        let path = std::path::PathBuf::from(format!("/dev/shm/zspool-recovery-{tag}-{}", std::process::id()));
        let _ = SharedCache::destroy(&path);
        let config = SharedConfig { maxbytes: 4 << 20, ..SharedConfig::default() };
        let cache = SharedCache::open(&path, Some(&config), &OpenOptions::default()).unwrap();
        (path, cache)
    }

    /// Run `hold` in a child process that then exits without unlocking: the kernel's robust
    /// list walk marks the lock owner-dead.
    fn die_holding(hold: impl FnOnce()) {
        // SAFETY: the child only takes a lock in the mapping and `_exit`s.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            hold();
            // SAFETY: leave at once, holding the lock.
            unsafe { libc::_exit(0) };
        }
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }

    fn fill(cache: &SharedCache) {
        for k in 0..200u32 {
            let value = vec![k as u8; 50 + (k as usize % 4) * 1000];
            assert!(cache.set(Key::bytes(&k.to_le_bytes()), &value, ValueFlags::RAW, None).unwrap());
        }
    }

    fn present(cache: &SharedCache) -> Vec<bool> {
        let mut out = Vec::new();
        (0..200u32)
            .map(|k| {
                let found = cache.get(Key::bytes(&k.to_le_bytes()), &mut out).unwrap().is_some();
                assert!(!found || out == vec![k as u8; 50 + (k as usize % 4) * 1000], "key {k}: a wrong value");
                found
            })
            .collect()
    }

    #[test]
    fn a_dead_class_holder_costs_that_class_only_and_is_counted() {
        let (path, cache) = cache("class");
        fill(&cache);
        let r = cache.regions();
        let class = r.table.class_for(24 + 4 + 1050) as u32;
        let before = cache.stats();
        die_holding(|| std::mem::forget(lock_class(r, class).unwrap()));
        // Lock-free reads do not notice a dead holder; the next locker of the class does.
        let trigger = Key::bytes(b"trigger");
        assert!(cache.set(trigger, &[0; 1050], ValueFlags::RAW, None).unwrap());
        assert!(cache.delete(trigger).unwrap());
        let found = present(&cache);
        for (k, found) in found.iter().enumerate() {
            assert_eq!(*found, k % 4 != 1, "key {k}: only the dead holder's class is dropped");
        }
        let after = cache.stats();
        assert_eq!(after.recoveries, before.recoveries + 1);
        assert_eq!(after.entries_dropped_on_recovery, 50);
        assert!(after.pages_in_use < before.pages_in_use && after.bytes < before.bytes);
        assert_eq!(cache.len().unwrap(), 150);
        fill(&cache);
        assert!(present(&cache).iter().all(|&f| f), "the class works again");
        // A second death in the same class is recovered the same way (idempotent repair).
        die_holding(|| std::mem::forget(lock_class(r, class).unwrap()));
        die_holding(|| std::mem::forget(lock_class(r, class).unwrap()));
        assert!(cache.set(trigger, &[0; 1050], ValueFlags::RAW, None).unwrap());
        assert!(cache.delete(trigger).unwrap());
        assert_eq!(present(&cache).iter().filter(|&&f| f).count(), 150);
        assert_eq!(cache.stats().recoveries, before.recoveries + 3);
        // A compactor that died mid-move left the move sequence odd: the recovery ends it
        // even, so lock-free reads of the class resume.
        die_holding(|| {
            let guard = lock_class(r, class).unwrap();
            guard.begin_move();
            std::mem::forget(guard);
        });
        assert!(cache.set(trigger, &[0; 1050], ValueFlags::RAW, None).unwrap());
        assert_eq!(r.class(class as usize).seq.load(std::sync::atomic::Ordering::Relaxed) & 1, 0);
        SharedCache::destroy(&path).unwrap();
    }

    #[test]
    fn a_resizer_that_died_half_way_costs_its_shard_and_its_classes_and_lies_about_nothing() {
        let (path, cache) = cache("resize");
        fill(&cache);
        let r = cache.regions();
        let shard = shard_of(key_hash(0, &7u32.to_le_bytes()));
        die_holding(|| {
            // What a resizer holds when it dies half way: the shard, every class its entries
            // name, and a table part old, part new (here: half its slots moved one place on).
            let guard = lock_shard(r, shard).unwrap();
            let classes = (0..r.layout.n_classes as u32).map(|c| lock_class(r, c).unwrap()).collect::<Vec<_>>();
            let cap = guard.cap();
            guard.shm.resize_to.store(cap as u64 * 2, std::sync::atomic::Ordering::Relaxed);
            for g in guard.all_slots().take(cap / 2).rev() {
                let (from, to) = (guard.slot(g), guard.slot(g + 1));
                to.hash
                    .store(from.hash.load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
                to.loc.store(from.loc.load(std::sync::atomic::Ordering::Relaxed), std::sync::atomic::Ordering::Relaxed);
            }
            std::mem::forget(classes);
            std::mem::forget(guard);
        });
        // `present` checks every value it finds: none is wrong.
        let found = present(&cache);
        for k in (0..200u32).filter(|k| shard_of(key_hash(0, &k.to_le_bytes())) == shard) {
            assert!(!found[k as usize], "key {k}: its shard's table was emptied");
        }
        assert_eq!(lock_shard(r, shard).unwrap().shm.resize_to.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(cache.stats().recoveries, 1, "the shard (lock-free reads take no class lock)");
        fill(&cache);
        let used: std::collections::BTreeSet<_> = (0..4).map(|i| r.table.class_for(24 + 4 + 50 + i * 1000)).collect();
        assert_eq!(cache.stats().recoveries, 1 + used.len() as u64, "and each class `fill` uses, when next locked");
        assert!(present(&cache).iter().all(|&f| f), "the shard and the classes work again");
        assert_eq!(cache.len().unwrap(), 200);
        SharedCache::destroy(&path).unwrap();
    }

    #[test]
    fn a_dead_shard_holder_loses_no_entry() {
        let (path, cache) = cache("shard");
        fill(&cache);
        let r = cache.regions();
        let shard = shard_of(key_hash(0, &7u32.to_le_bytes()));
        die_holding(|| std::mem::forget(lock_shard(r, shard).unwrap()));
        assert!(present(&cache).iter().all(|&f| f));
        assert_eq!(cache.stats().recoveries, 1);
        assert_eq!(cache.stats().entries, 200, "the shard's count was recounted, not lost");
        SharedCache::destroy(&path).unwrap();
    }

    #[test]
    fn a_dead_allocator_holder_is_rebuilt_from_the_descriptors() {
        let (path, cache) = cache("alloc");
        fill(&cache);
        let r = cache.regions();
        let before = cache.stats();
        die_holding(|| std::mem::forget(crate::allocator::lock(r).unwrap()));
        assert!(cache.try_lease(1, Duration::from_secs(1)), "the lease works after the rebuild");
        let after = cache.stats();
        assert_eq!(after.recoveries, 1);
        assert_eq!((after.pages_in_use, after.zspages), (before.pages_in_use, before.zspages));
        cache.clear().unwrap();
        assert_eq!(cache.stats().pages_in_use, 0);
        fill(&cache);
        assert!(present(&cache).iter().all(|&f| f));
        SharedCache::destroy(&path).unwrap();
    }
}
