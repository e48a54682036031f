//! Compaction glue: the core's one compaction loop (`zspool-core/src/compact_class.rs`, the
//! kernel's `__zs_compact` with its yielding slices) run over the classes in the file, through
//! its two traits: [`SharedClass`] (a class and its robust lock) and [`LockedSharedClass`]
//! (the class while locked: fullness lists in the descriptors, objects in the data region).
//!
//! What differs from the in-process pool:
//! - moving an object rewrites the location in the index slot its back-reference names, an
//!   atomic store under the class lock (readers re-read it under the same lock); an object
//!   whose slot does not name it (the slot was dropped as corrupt) is freed, not moved;
//! - a drained zspage is punched out of the file and its descriptor given back *under* the
//!   class lock, not after it: a process killed between the two would otherwise leave a
//!   descriptor that no recovery finds (no lock was held by the dead process);
//! - taking the lock may recover the class (its holder died): the kept destination is then
//!   gone, which the loop's `zspage_exists` check sees;
//! - a lock that cannot be taken (corrupt file) ends the run with that error.
//!
//! Locks: one class lock at a time (and the allocator lock inside it).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use zspool_core::{ClassLayout, CompactClass, CompactOptions, CompactionReport, LockedClass, StopReason};

use crate::class::{ClassGuard, lock_class};
use crate::error::SharedError;
use crate::header::Header;
use crate::location::Location;
use crate::object::FREE_BIT;
use crate::regions::Regions;
use crate::shard::lock_shard;
use crate::zspage::NONE;

/// Compact every class, largest first, within `options`' budgets; stops early once `closed`.
pub(crate) fn compact(
    r: &Regions,
    options: &CompactOptions,
    closed: &AtomicBool,
) -> Result<CompactionReport, SharedError> {
    let start = Instant::now();
    let mut report = CompactionReport::default();
    let failed = RefCell::new(None);
    report.stop_reason = if can_compact(r) == 0 {
        StopReason::NothingFreeable
    } else {
        r.header().compactions.fetch_add(1, Ordering::Relaxed);
        let deadline = options.time_budget.map(|b| start + b);
        let classes = r.classes().iter().enumerate().rev().map(|(id, layout)| SharedClass {
            r,
            id: id as u32,
            layout: *layout,
            closed,
            failed: &failed,
        });
        zspool_core::compact_classes(classes, options, deadline, &mut report)
    };
    if failed.borrow().is_none()
        && let Err(e) = shrink_index(r, closed)
    {
        *failed.borrow_mut() = Some(e);
    }
    let h = r.header();
    h.pages_compacted.fetch_add(report.pages_freed as u64, Ordering::Relaxed);
    h.objects_migrated.fetch_add(report.objects_migrated, Ordering::Relaxed);
    report.duration = start.elapsed();
    match failed.into_inner() {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Halve every index table its entries fill at most 5/8 of (`shard.rs`), one shard at a
/// time, giving the slots' pages back; stops once `closed`.
fn shrink_index(r: &Regions, closed: &AtomicBool) -> Result<(), SharedError> {
    for i in 0..crate::N_SHARDS {
        if closed.load(Ordering::Relaxed) {
            break;
        }
        let shard = lock_shard(r, i)?;
        let target = shard.shrink_target();
        if target < shard.cap() {
            shard.resize(target)?;
        }
    }
    Ok(())
}

/// Pages a full compaction would free now.
pub(crate) fn can_compact(r: &Regions) -> usize {
    r.classes().iter().enumerate().map(|(id, layout)| r.class(id).can_compact(layout)).fold(0, usize::saturating_add)
}

/// A class of the file, seen by the compaction loop from outside its lock.
pub(crate) struct SharedClass<'r> {
    r: &'r Regions,
    id: u32,
    layout: ClassLayout,
    closed: &'r AtomicBool,
    /// The first lock that could not be taken (a corrupt file): the run stops and returns it.
    failed: &'r RefCell<Option<SharedError>>,
}

/// The class while its lock is held (`None`: the lock could not be taken; nothing to do).
pub(crate) struct LockedSharedClass<'a> {
    layout: ClassLayout,
    class: Option<ClassGuard<'a>>,
}

impl CompactClass for SharedClass<'_> {
    type Locked<'a>
        = LockedSharedClass<'a>
    where
        Self: 'a;
    type Dead = ();

    fn can_compact(&self) -> usize {
        self.r.class(self.id as usize).can_compact(&self.layout)
    }

    fn lock(&self) -> LockedSharedClass<'_> {
        let class = match lock_class(self.r, self.id) {
            Ok(class) => Some(class),
            Err(e) => {
                self.failed.borrow_mut().get_or_insert(e);
                None
            }
        };
        LockedSharedClass { layout: self.layout, class }
    }

    fn unlock_fair(&self, locked: LockedSharedClass<'_>) {
        drop(locked);
        // pthread mutexes have no hand-off: give a woken waiter the chance to run first.
        std::thread::yield_now();
    }

    fn lock_is_contended(&self) -> bool {
        self.r.class(self.id as usize).lock.has_waiters()
    }

    fn publish(&self, _locked: &LockedSharedClass<'_>) {
        // The counters live in the file and are updated as they change.
    }

    fn release_dead(&self, _dead: &[()]) {
        // Drained zspages were given back under the lock (see the module comment).
    }

    fn must_stop(&self) -> Option<StopReason> {
        (self.closed.load(Ordering::Relaxed) || self.failed.borrow().is_some()).then_some(StopReason::Closed)
    }
}

impl LockedClass for LockedSharedClass<'_> {
    type Dead = ();

    fn pages_per_zspage(&self) -> usize {
        self.layout.pages_per_zspage
    }

    fn can_compact(&self) -> usize {
        self.class.as_ref().map_or(0, |c| c.shm.can_compact(&self.layout))
    }

    fn zspage_exists(&self, zspage: u32) -> bool {
        self.class
            .as_ref()
            .is_some_and(|c| c.names_zspage(zspage) && c.r.desc(zspage).group.load(Ordering::Relaxed) != NONE)
    }

    fn is_full(&self, zspage: u32) -> bool {
        self.class.as_ref().is_none_or(|c| c.is_full(zspage))
    }

    fn inuse(&self, zspage: u32) -> usize {
        self.class.as_ref().map_or(0, |c| c.inuse(zspage) as usize)
    }

    fn fullest_with_room(&self, except: Option<u32>) -> Option<u32> {
        self.class.as_ref()?.fullest_with_room(except, false)
    }

    fn emptiest(&self, except: Option<u32>) -> Option<u32> {
        self.class.as_ref()?.emptiest(except)
    }

    fn find_alloced_obj(&self, zspage: u32, from: usize) -> Option<(u16, u32)> {
        let c = self.class.as_ref()?;
        let found = (from..self.layout.objs_per_zspage).find_map(|obj| {
            let word = c.backref(zspage, obj as u32);
            (word & FREE_BIT == 0).then_some((obj as u16, word))
        });
        if found.is_none() && from == 0 && c.inuse(zspage) != 0 {
            // A count that its objects contradict (a scribbled file): the objects are the
            // truth, and an empty source must read as empty or the loop would pick it forever.
            c.r.desc(zspage).inuse.store(0, Ordering::Relaxed);
            c.r.header().corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    fn migrate_obj(&mut self, src: u32, obj: u16, owner: u32, dst: u32) -> usize {
        let Some(c) = self.class.as_mut() else { return 0 };
        c.begin_move();
        let size = migrate(c, src, u32::from(obj), owner, dst, self.layout.size);
        c.end_move();
        size
    }

    fn fix_fullness(&mut self, zspage: u32) {
        if let Some(c) = self.class.as_mut() {
            c.fix_fullness(zspage);
        }
    }

    fn zero_moved(&mut self, _zspage: u32, _moved: &[(u16, usize)]) {
        // A free slot is read only for its free-list word, which `release_obj` wrote.
    }

    fn remove_zspage(&mut self, zspage: u32) {
        if let Some(c) = self.class.as_mut() {
            c.remove_zspage(zspage);
        }
    }
}

/// Move live object `obj` of `src` (back-reference `owner`) into a free slot of `dst` and
/// point its slot at it; an object no slot names is freed instead. Returns the bytes moved.
fn migrate(c: &mut ClassGuard<'_>, src: u32, obj: u32, owner: u32, dst: u32, size: usize) -> usize {
    let here = Location { class: c.id, epoch: c.epoch(), desc: src, obj }.pack();
    let slot = ((owner as usize) < c.r.total_slots()).then(|| c.r.slot(owner as usize));
    let Some(slot) = slot.filter(|s| s.loc.load(Ordering::Relaxed) == here) else {
        // No slot names it (its slot was dropped): free it instead of moving it.
        let len = c.stored_len(src, obj);
        Header::sub_saturating(&c.shm.bytes, len);
        Header::sub_saturating(&c.r.header().bytes, len);
        c.release_obj(src, obj);
        return 0;
    };
    let Some(new) = c.pop_free(dst) else { return 0 };
    c.copy_object(src, obj, dst, new);
    slot.loc.store(Location { class: c.id, epoch: c.epoch(), desc: dst, obj: new }.pack(), Ordering::Release);
    c.release_obj(src, obj);
    size
}
