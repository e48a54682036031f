//! Compacting one size class, whatever stores it: the kernel's `__zs_compact` loop, written
//! once over two traits so that the in-process pool (`size_class.rs`, zspages in anonymous
//! memory) and the shared-file pool (`zspool-shared`, zspages in a `MAP_SHARED` file, locked
//! by robust process-shared mutexes) run the same algorithm. Generic, so monomorphized: the
//! per-object path has no virtual call.
//!
//! - [`CompactClass`]: a class with its lock, seen from outside it: lock, fair unlock,
//!   contention, publishing the counters read without the lock, giving dead zspages back
//!   with no lock held, and whether the whole run must stop.
//! - [`LockedClass`]: the class's state while its lock is held: the fullness lists, the
//!   zspages' counts and owner words, moving one object, unlinking a drained zspage.
//!
//! Per class ([`compact_class`]):
//!
//! ```text
//! while can_compact(class) > 0:
//!     dst = the zspage kept from last time if it still has room, else the fullest with room
//!     src = the emptiest zspage other than dst                  (none: stop)
//!     migrate live objects src -> dst until dst is full or src is empty or the slice ends
//!     re-list src and dst by fullness; zero the slots moved out of src unless src is empty
//!     src empty: unlink it, pages_freed += pages_per_zspage
//!     yield the class lock (see below); with it dropped, give the unlinked zspages' pages
//!     back once they make a batch (and all of them when the class is done)
//! ```
//!
//! [`can_compact`] (`floor((obj_allocated - obj_used) / objs_per_zspage) * pages_per_zspage`)
//! is the exact number of pages that compaction with no concurrent work frees: the loop stops
//! the moment no further zspage could be emptied, so no object is moved in vain.
//!
//! Yielding, the point of the 2015 thread: Minchan's objection to holding the class lock for
//! a whole class was the *maximum* allocation latency. With [`LockHold::Yielding`] the
//! compactor releases the class lock (fairly: a waiter gets it before we can re-take it):
//! - after every drained source zspage (as the kernel did in v4.1);
//! - after `slice_objects` migrated objects or `slice` of time, mid-zspage if need be;
//! - as soon as another thread is waiting on the lock, or the run must stop.
//!
//! Between slices the class is consistent: every object is either wholly at its old place or
//! wholly at its new one, and its owner's record says which. Readers and writers take the
//! same class lock, so none sees an object half-moved. [`LockHold::WholeClass`] (the 2015
//! RFC's behaviour) exists only so the latency benchmark can compare the two.
//!
//! Locks: the class lock of the class being compacted, in slices, and no other; dead zspages
//! are released only while it is dropped.

use std::time::Instant;

use crate::class_table::ClassLayout;
use crate::compaction::{CompactOptions, CompactionReport, LockHold, StopReason};

/// Pages of emptied zspages held back before they are given to the OS in one batch, at the
/// next lock yield (the rest when the class is done): 1 MiB. The kernel charges about 2 µs
/// per call before the first page (`os_pages.rs`); zspages freed one call each spent more
/// time on that than on the pages. Small enough that the pool's RSS still falls as it goes.
const RELEASE_BATCH_PAGES: usize = 256;

/// The kernel's `zs_can_compact`: pages compaction could free in a class of `layout` with
/// `obj_allocated` object slots in its zspages and `obj_used` of them live. Wasted slots, in
/// whole zspages, times pages per zspage.
pub fn can_compact(layout: &ClassLayout, obj_allocated: usize, obj_used: usize) -> usize {
    // Saturating: a shared file's counters are input (a scribbled one must not overflow).
    (obj_allocated.saturating_sub(obj_used) / layout.objs_per_zspage).saturating_mul(layout.pages_per_zspage)
}

/// A size class's state while its lock is held: what the compaction loop reads and changes.
///
/// Zspages are named by a `u32` id unique within the class while they are linked (an index
/// into the class's zspage records or the file's descriptors); objects by their `u16` index
/// in the zspage; a live object's *owner word* is a `u32` back-reference the storage gives
/// meaning to (a handle-table index, an outside owner's record, an index slot). The loop
/// passes only ids that [`LockedClass::fullest_with_room`] or [`LockedClass::emptiest`]
/// returned, or [`LockedClass::zspage_exists`] vouched for, under the same hold.
pub trait LockedClass {
    /// A zspage unlinked by [`LockedClass::remove_zspage`], given back by
    /// [`CompactClass::release_dead`] once the lock is dropped.
    type Dead;

    /// Pages in each zspage of the class.
    fn pages_per_zspage(&self) -> usize;
    /// Pages a compaction of this class could free now ([`can_compact`] of the live counts).
    fn can_compact(&self) -> usize;
    /// Whether `zspage` names a zspage linked in this class now (a destination kept across
    /// a lock yield may have been freed meanwhile).
    fn zspage_exists(&self, zspage: u32) -> bool;
    /// Whether every object slot of `zspage` is in use.
    fn is_full(&self, zspage: u32) -> bool;
    /// Live objects in `zspage`.
    fn inuse(&self, zspage: u32) -> usize;
    /// The head of the fullest partly used fullness group, skipping `except`: the
    /// destination ([`crate::Fullness::partly_used`], fullest first).
    fn fullest_with_room(&self, except: Option<u32>) -> Option<u32>;
    /// The head of the emptiest partly used fullness group, skipping `except`: the source.
    fn emptiest(&self, except: Option<u32>) -> Option<u32>;
    /// The first live object of `zspage` at object index `from` or above, with its owner word.
    fn find_alloced_obj(&self, zspage: u32, from: usize) -> Option<(u16, u32)>;
    /// Start loading what moving object `obj` (owner word `owner`) of `src` into `dst` will
    /// touch; called one object ahead so its cache misses overlap the move before. A hint.
    fn prefetch_migration(&self, src: u32, obj: u16, owner: u32, dst: u32) {
        let _ = (src, obj, owner, dst);
    }
    /// Move live object `obj` (owner word `owner`) of `src` into a free slot of `dst`, which
    /// has room, and point its owner's record at the new place; returns the object's bytes.
    /// The source slot is freed but not zeroed (see [`LockedClass::zero_moved`]); the
    /// fullness lists are fixed later ([`LockedClass::fix_fullness`]).
    fn migrate_obj(&mut self, src: u32, obj: u16, owner: u32, dst: u32) -> usize;
    /// Re-list `zspage` if its fullness group changed (`fix_fullness` in the kernel).
    fn fix_fullness(&mut self, zspage: u32);
    /// Zero the slots of `zspage` that objects were moved out of, each `(object, size)`,
    /// restoring "every free slot reads as zeros" before the lock is dropped.
    fn zero_moved(&mut self, zspage: u32, moved: &[(u16, usize)]);
    /// Unlink `zspage`, which holds no object any more, and hand it back for release.
    fn remove_zspage(&mut self, zspage: u32) -> Self::Dead;
}

/// A size class with its lock, seen by the compaction loop from outside the lock.
pub trait CompactClass {
    /// The locked state, as long as the guard lives; dropping it unlocks.
    type Locked<'a>: LockedClass<Dead = Self::Dead>
    where
        Self: 'a;
    /// A zspage unlinked under the lock and not yet given back.
    type Dead;

    /// Pages a compaction of this class could free, read without the lock (the counters
    /// last [`CompactClass::publish`]ed): the runner skips classes with none.
    fn can_compact(&self) -> usize;
    /// Take the class lock. A storage whose lock can be inherited from a dead holder repairs
    /// the class before it returns the guard.
    fn lock(&self) -> Self::Locked<'_>;
    /// Release the lock so that a waiter, if any, gets it before this thread can take it
    /// back (the slice boundary is then a real latency bound).
    fn unlock_fair<'a>(&'a self, locked: Self::Locked<'a>);
    /// Whether another thread or process is waiting for the lock right now.
    fn lock_is_contended(&self) -> bool;
    /// Copy the locked state's counters to where [`CompactClass::can_compact`] reads them.
    fn publish<'a>(&'a self, locked: &Self::Locked<'a>);
    /// Give dead zspages' memory back to the OS. Called with no lock held.
    fn release_dead(&self, dead: &[Self::Dead]);
    /// Why the whole run must stop now whatever its budgets say (the pool closed, a fork
    /// pending); checked before each class, before each step and at every object.
    fn must_stop(&self) -> Option<StopReason>;
}

/// A borrowed class is a class: a storage that keeps its classes in an array hands
/// [`compact_classes`] `classes.iter()`.
impl<C: CompactClass> CompactClass for &C {
    type Locked<'a>
        = C::Locked<'a>
    where
        Self: 'a;
    type Dead = C::Dead;

    fn can_compact(&self) -> usize {
        (**self).can_compact()
    }

    fn lock(&self) -> Self::Locked<'_> {
        (**self).lock()
    }

    fn unlock_fair<'a>(&'a self, locked: Self::Locked<'a>) {
        (**self).unlock_fair(locked);
    }

    fn lock_is_contended(&self) -> bool {
        (**self).lock_is_contended()
    }

    fn publish<'a>(&'a self, locked: &Self::Locked<'a>) {
        (**self).publish(locked);
    }

    fn release_dead(&self, dead: &[Self::Dead]) {
        (**self).release_dead(dead);
    }

    fn must_stop(&self) -> Option<StopReason> {
        (**self).must_stop()
    }
}

/// Compact `classes` in the order given within `options`' budgets and `deadline`, adding
/// to `report` (`classes_scanned` counts those with pages to free). Returns why it ended.
pub fn compact_classes<C: CompactClass>(
    classes: impl IntoIterator<Item = C>,
    options: &CompactOptions,
    deadline: Option<Instant>,
    report: &mut CompactionReport,
) -> StopReason {
    for class in classes {
        // Checked before the class's freeable count: a pool closed under a run may read
        // as "nothing to compact", and the run, skipping every class left, would report Done
        // for a pool closed in its middle.
        if let Some(stop) = class.must_stop() {
            return stop;
        }
        if class.can_compact() == 0 {
            continue;
        }
        report.classes_scanned += 1;
        if let Some(stop) = compact_class(&class, options, deadline, report) {
            return stop;
        }
    }
    StopReason::Done
}

/// Compact one class within `options`' budgets and `deadline`, adding to `report`;
/// `Some(reason)` if the whole run must stop (budget reached, [`CompactClass::must_stop`]),
/// `None` once the class has nothing more to free.
pub fn compact_class<C: CompactClass>(
    class: &C,
    options: &CompactOptions,
    deadline: Option<Instant>,
    report: &mut CompactionReport,
) -> Option<StopReason> {
    ClassRun {
        class,
        options,
        deadline,
        dead: Vec::new(),
        dead_pages: 0,
        moved: Vec::new(),
        slice_start: Instant::now(),
        slice_objects: 0,
    }
    .compact(report)
}

/// The state of one class compaction across lock slices.
struct ClassRun<'p, C: CompactClass> {
    class: &'p C,
    options: &'p CompactOptions,
    deadline: Option<Instant>,
    /// Zspages emptied under the lock, released in batches once it is dropped.
    dead: Vec<C::Dead>,
    dead_pages: usize,
    /// The source slots (object index, size) the current `migrate_zspage` emptied: zeroed
    /// when it ends only if the source stays (an emptied one goes back to the OS unzeroed).
    moved: Vec<(u16, usize)>,
    slice_start: Instant,
    slice_objects: usize,
}

impl<'p, C: CompactClass> ClassRun<'p, C> {
    fn compact(&mut self, report: &mut CompactionReport) -> Option<StopReason> {
        let mut state = self.class.lock();
        let mut dst: Option<u32> = None;
        let stop = loop {
            if let Some(stop) = self.class.must_stop() {
                break Some(stop);
            }
            if state.can_compact() == 0 {
                break None;
            }
            if self.over_budget(report) {
                break Some(StopReason::BudgetReached);
            }
            let Some((src, d)) = pick_pair(&state, dst) else { break None };
            dst = Some(d);
            let slice_ended = self.migrate_zspage(&mut state, src, d, report);
            if state.inuse(src) == 0 {
                let pages = state.pages_per_zspage();
                self.dead.push(state.remove_zspage(src));
                self.dead_pages += pages;
                report.pages_freed += pages;
                // A drained source always ends the slice (the v4.1 per-zspage yield).
                state = self.yield_lock(state, report);
            } else if slice_ended {
                state = self.yield_lock(state, report);
            }
        };
        self.class.publish(&state);
        drop(state);
        self.release_dead();
        stop
    }

    /// Move objects from `src` to `dst` until `dst` is full, `src` is empty, or the slice (or
    /// the run's time budget) ends. Returns whether the slice ended.
    fn migrate_zspage(&mut self, state: &mut C::Locked<'p>, src: u32, dst: u32, report: &mut CompactionReport) -> bool {
        let mut next = state.find_alloced_obj(src, 0);
        let mut slice_ended = false;
        while !state.is_full(dst) {
            let Some((obj, owner)) = next else { break };
            next = state.find_alloced_obj(src, usize::from(obj) + 1);
            if let Some((next_obj, next_owner)) = next {
                state.prefetch_migration(src, next_obj, next_owner, dst);
            }
            let size = state.migrate_obj(src, obj, owner, dst);
            self.moved.push((obj, size));
            report.bytes_migrated += size as u64;
            report.objects_migrated += 1;
            self.slice_objects += 1;
            if self.slice_ended() {
                slice_ended = true;
                break;
            }
        }
        state.fix_fullness(src);
        state.fix_fullness(dst);
        if state.inuse(src) > 0 {
            state.zero_moved(src, &self.moved);
        }
        self.moved.clear();
        slice_ended
    }

    fn slice_ended(&self) -> bool {
        match self.options.lock_hold {
            LockHold::Yielding { slice_objects, slice } => {
                self.slice_objects >= slice_objects
                    || self.class.lock_is_contended()
                    // Reading the clock costs ~20 ns; do it every 8th object.
                    || (self.slice_objects.is_multiple_of(8)
                        && (self.slice_start.elapsed() >= slice || self.deadline_passed()))
                    || self.class.must_stop().is_some()
            }
            LockHold::WholeClass => self.slice_objects.is_multiple_of(8) && self.deadline_passed(),
        }
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn over_budget(&self, report: &CompactionReport) -> bool {
        let pages_done = self.options.max_pages.is_some_and(|max| report.pages_freed >= max);
        pages_done || self.deadline_passed()
    }

    /// Release the class lock (handing it to a waiter, if any), give emptied zspages back to
    /// the OS while no lock is held, and take the lock again.
    fn yield_lock(&mut self, state: C::Locked<'p>, report: &mut CompactionReport) -> C::Locked<'p> {
        if self.options.lock_hold == LockHold::WholeClass {
            return state;
        }
        self.class.publish(&state);
        self.class.unlock_fair(state);
        if self.dead_pages >= RELEASE_BATCH_PAGES {
            self.release_dead();
        }
        report.lock_yields += 1;
        self.slice_start = Instant::now();
        self.slice_objects = 0;
        self.class.lock()
    }

    /// Give the emptied zspages back to the OS; call with no lock held.
    fn release_dead(&mut self) {
        if !self.dead.is_empty() {
            self.class.release_dead(&self.dead);
            self.dead.clear();
        }
        self.dead_pages = 0;
    }
}

/// Choose (source, destination): the destination kept from the previous step while it still
/// has room and is at least as full as the source; otherwise the fullest zspage with room;
/// the source is the emptiest other zspage. `None` when there is no such pair.
fn pick_pair<S: LockedClass>(state: &S, kept_dst: Option<u32>) -> Option<(u32, u32)> {
    let kept = kept_dst.filter(|&d| state.zspage_exists(d) && !state.is_full(d));
    if let Some(dst) = kept
        && let Some(src) = state.emptiest(Some(dst))
        && state.inuse(src) <= state.inuse(dst)
    {
        return Some((src, dst));
    }
    let dst = state.fullest_with_room(None)?;
    let src = state.emptiest(Some(dst))?;
    Some((src, dst))
}
