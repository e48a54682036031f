//! Compaction: move live objects out of sparse zspages into full ones and give the emptied
//! zspages' pages back to the OS, without stalling the allocators of the class.
//!
//! Per class, as the kernel's `__zs_compact` does since 6.4:
//!
//! ```text
//! while can_compact(class) > 0:
//!     dst = the zspage kept from last time if it still has room, else the fullest with room
//!     src = the emptiest zspage other than dst                  (none: stop)
//!     migrate live objects src -> dst until dst is full or src is empty
//!     src empty: unlink it, pages_freed += pages_per_zspage
//!     yield the class lock (see below); with it dropped, give the unlinked zspages' pages
//!     back to the OS once they make a batch (and all of them when the class is done)
//! ```
//!
//! `can_compact` (`floor((obj_allocated - obj_used) / objs_per_zspage) * pages_per_zspage`)
//! is the exact number of pages that compaction with no concurrent work frees: it stops the
//! moment no further zspage could be emptied, so no object is moved in vain.
//!
//! Yielding, the point of the 2015 thread: Minchan's objection to holding the class lock for
//! a whole class was the *maximum* allocation latency. With [`LockHold::Yielding`] the
//! compactor releases the class lock (fairly: a waiter gets it before we can re-take it):
//! - after every drained source zspage (as the kernel did in v4.1);
//! - after `slice_objects` migrated objects or `slice` of time, mid-zspage if need be;
//! - as soon as another thread is waiting on the lock.
//!
//! Between slices the class is consistent: every object is either wholly at its old place or
//! wholly at its new one, and its handle says which. Readers and writers take the same class
//! lock, so none sees an object half-moved. [`LockHold::WholeClass`] (the 2015 RFC's
//! behaviour) exists only so the latency benchmark can compare the two.
//!
//! Locks: one class lock at a time, in slices; the provider's locks inside it. One compaction
//! runs per pool at a time ([`CompactionState`]'s single-runner flag); a second caller returns at once.

use std::time::{Duration, Instant};

use crate::pool::Pool;
use crate::size_class::{ClassState, SizeClass};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, MutexGuard, Ordering, unlock_fair};
use crate::zspage::Zspage;

/// Pages compaction must free before the heap is trimmed: 64 MiB of zspages, whose metadata
/// (one allocation each: 8 bytes per page and 4 per object slot, so 12-520 bytes per page
/// from the largest class to the smallest) is then worth handing back.
const TRIM_AFTER_PAGES: usize = 16_384;

/// Pages of emptied zspages held back before they are given to the OS in one batch, at the
/// next lock yield (the rest when the class is done): 1 MiB. The kernel charges about 2 µs
/// per call before the first page (`os_pages.rs`); zspages freed one call each spent more
/// time on that than on the pages. Small enough that the pool's RSS still falls as it goes.
const RELEASE_BATCH_PAGES: usize = 256;

/// How long the compactor may keep a class lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockHold {
    /// Yield after every drained source zspage, every `slice_objects` migrated objects,
    /// every `slice` of wall time, and whenever another thread waits for the lock.
    Yielding {
        /// Objects migrated per slice at most.
        slice_objects: usize,
        /// Wall time per slice at most.
        slice: Duration,
    },
    /// Hold the class lock until the class is compacted (benchmark comparison only).
    WholeClass,
}

impl Default for LockHold {
    fn default() -> LockHold {
        LockHold::Yielding { slice_objects: 64, slice: Duration::from_micros(50) }
    }
}

/// Limits for one compaction run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactOptions {
    /// Stop once this many pages were freed.
    pub max_pages: Option<usize>,
    /// Stop once this much wall time has passed.
    pub time_budget: Option<Duration>,
    /// How long a class lock may be kept.
    pub lock_hold: LockHold,
}

/// Why a compaction run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Every class was compacted until no page could be freed.
    Done,
    /// Nothing was freeable when the run started.
    NothingFreeable,
    /// `max_pages` or `time_budget` was reached.
    BudgetReached,
    /// Another compaction of this pool was running; this call did nothing.
    AlreadyRunning,
    /// The pool was closed.
    Closed,
    /// The process is about to `fork()` (see `fork.rs`); the run stopped at a slice boundary.
    Interrupted,
}

impl StopReason {
    /// The name Python sees (`"done"`, `"budget_reached"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Done => "done",
            StopReason::NothingFreeable => "nothing_freeable",
            StopReason::BudgetReached => "budget_reached",
            StopReason::AlreadyRunning => "already_running",
            StopReason::Closed => "closed",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// What one compaction run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Pages given back to the OS.
    pub pages_freed: usize,
    /// Objects moved.
    pub objects_migrated: u64,
    /// Bytes of the objects moved.
    pub bytes_migrated: u64,
    /// Classes that had freeable pages and were worked on.
    pub classes_scanned: usize,
    /// Times the class lock was released and re-taken mid-class.
    pub lock_yields: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// Why the run ended.
    pub stop_reason: StopReason,
}

/// Compaction's pool-wide state: the single-runner flag and the lifetime counters.
#[derive(Debug)]
pub(crate) struct CompactionState {
    running: AtomicBool,
    pub(crate) pages_compacted: AtomicU64,
    /// Pages compaction freed since the heap was last trimmed.
    freed_since_trim: AtomicUsize,
    pub(crate) objects_migrated: AtomicU64,
    pub(crate) compactions: AtomicU64,
}

impl CompactionState {
    pub(crate) fn new() -> CompactionState {
        CompactionState {
            running: AtomicBool::new(false),
            pages_compacted: AtomicU64::new(0),
            freed_since_trim: AtomicUsize::new(0),
            objects_migrated: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
        }
    }

    /// Whether a compaction holds the single-runner flag (the fork hooks wait for it).
    #[cfg(not(loom))]
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// In a child after `fork()`: the run that held the flag was in a thread that is gone.
    #[cfg(not(loom))]
    pub(crate) fn reset_in_child(&self) {
        self.running.store(false, Ordering::Release);
    }

    /// Take the single-runner flag, or `None` if another run holds it. SeqCst, with the
    /// SeqCst fork gate check that follows it in `compact`: pairs with `fork_prepare` (either
    /// it sees this run, or this run sees the fork and takes no lock).
    fn try_start(&self) -> Option<RunningFlag<'_>> {
        (!self.running.swap(true, Ordering::SeqCst)).then_some(RunningFlag(&self.running))
    }

    /// Count a finished run's work; `true` when enough pages were freed since the last trim
    /// that the heap is worth trimming now (which resets the count).
    fn record(&self, report: &CompactionReport, may_trim: bool) -> bool {
        self.pages_compacted.fetch_add(report.pages_freed as u64, Ordering::Relaxed);
        self.objects_migrated.fetch_add(report.objects_migrated, Ordering::Relaxed);
        let freed = self.freed_since_trim.fetch_add(report.pages_freed, Ordering::Relaxed) + report.pages_freed;
        let trim = freed >= TRIM_AFTER_PAGES && may_trim;
        if trim {
            self.freed_since_trim.store(0, Ordering::Relaxed);
        }
        trim
    }
}

/// Clears the single-runner flag however the run ends.
struct RunningFlag<'a>(&'a AtomicBool);

impl Drop for RunningFlag<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The state of one class compaction across lock slices.
struct ClassRun<'p> {
    pool: &'p Pool,
    class: &'p SizeClass,
    options: &'p CompactOptions,
    deadline: Option<Instant>,
    /// Zspages emptied under the lock, released in batches once it is dropped.
    dead: Vec<Zspage>,
    dead_pages: usize,
    /// The source slots (object index, size) the current `migrate_zspage` emptied: zeroed
    /// when it ends only if the source stays (an emptied one goes back to the OS unzeroed).
    moved: Vec<(u16, usize)>,
    slice_start: Instant,
    slice_objects: usize,
}

impl Pool {
    /// Pages a full compaction would free now: the kernel's `zs_can_compact` summed over the
    /// classes. O(classes), lock-free.
    pub fn can_compact(&self) -> usize {
        self.classes.iter().map(SizeClass::can_compact).sum()
    }

    /// Compact the pool, largest class first, within `options`' budgets.
    pub fn compact(&self, options: &CompactOptions) -> CompactionReport {
        let start = Instant::now();
        let mut report = CompactionReport {
            pages_freed: 0,
            objects_migrated: 0,
            bytes_migrated: 0,
            classes_scanned: 0,
            lock_yields: 0,
            duration: Duration::ZERO,
            stop_reason: StopReason::Done,
        };
        let Some(_running) = self.compaction.try_start() else {
            report.stop_reason = StopReason::AlreadyRunning;
            return report;
        };
        report.stop_reason = if let Some(stop) = self.must_stop() {
            stop
        } else if self.can_compact() == 0 {
            StopReason::NothingFreeable
        } else {
            self.compaction.compactions.fetch_add(1, Ordering::Relaxed);
            let deadline = options.time_budget.map(|budget| start + budget);
            self.compact_classes(options, deadline, &mut report)
        };
        // Trimming walks glibc's whole heap under its arena lock, so every other thread's
        // malloc waits for it: 0.1-0.5 ms after a million-object compaction in a small
        // process, tens of ms in one with a big fragmented heap (a test runner). It pays only
        // once compaction has freed a lot of zspage metadata, counted across runs (shrinkers
        // compact in small steps). A run with a time budget never trims, since the walk's
        // length cannot be bounded; the next run without one does.
        if self.compaction.record(&report, options.time_budget.is_none()) {
            crate::os_pages::trim_heap();
        }
        report.duration = start.elapsed();
        report
    }

    /// Why a run must stop now whatever its budgets say: the pool was closed, or a fork is
    /// being prepared. Checked before a run, before each class and before each step.
    fn must_stop(&self) -> Option<StopReason> {
        if self.is_closed() {
            Some(StopReason::Closed)
        } else if self.fork.gate.is_pending() {
            Some(StopReason::Interrupted)
        } else {
            None
        }
    }

    fn compact_classes(
        &self,
        options: &CompactOptions,
        deadline: Option<Instant>,
        report: &mut CompactionReport,
    ) -> StopReason {
        for class in self.classes.iter().rev() {
            // Checked before the class's freeable count: close() drains the classes, so a
            // class closed under a run reads as "nothing to compact", and the run, skipping
            // every class left, would report Done for a pool closed in its middle.
            if let Some(stop) = self.must_stop() {
                return stop;
            }
            if class.can_compact() == 0 {
                continue;
            }
            report.classes_scanned += 1;
            let mut run = ClassRun {
                pool: self,
                class,
                options,
                deadline,
                dead: Vec::new(),
                dead_pages: 0,
                moved: Vec::new(),
                slice_start: Instant::now(),
                slice_objects: 0,
            };
            if let Some(stop) = run.compact(report) {
                return stop;
            }
        }
        StopReason::Done
    }
}

impl<'p> ClassRun<'p> {
    /// Compact one class; `Some(reason)` if the whole run must stop.
    fn compact(&mut self, report: &mut CompactionReport) -> Option<StopReason> {
        let mut state = self.class.lock();
        let mut dst: Option<u32> = None;
        let stop = loop {
            if let Some(stop) = self.pool.must_stop() {
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
            if state.zspage(src).inuse() == 0 {
                self.dead.push(state.remove_zspage(src));
                self.dead_pages += self.class.layout.pages_per_zspage;
                report.pages_freed += self.class.layout.pages_per_zspage;
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
    fn migrate_zspage(&mut self, state: &mut ClassState, src: u32, dst: u32, report: &mut CompactionReport) -> bool {
        let mut next = state.zspage(src).find_alloced_obj(0);
        let mut slice_ended = false;
        while !state.zspage(dst).is_full() {
            let Some((obj, owner)) = next else { break };
            next = state.zspage(src).find_alloced_obj(usize::from(obj) + 1);
            if let Some((next_obj, next_owner)) = next {
                state.prefetch_migration(src, next_obj, next_owner, dst);
            }
            let size = state.migrate_obj(src, obj, owner, dst, self.pool.object_owner());
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
        if state.zspage(src).inuse() > 0 {
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
                    || self.pool.fork.gate.is_pending()
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
    fn yield_lock(
        &mut self,
        state: MutexGuard<'p, ClassState>,
        report: &mut CompactionReport,
    ) -> MutexGuard<'p, ClassState> {
        if self.options.lock_hold == LockHold::WholeClass {
            return state;
        }
        self.class.publish(&state);
        unlock_fair(state);
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
        self.pool.release_zspage_pages(&self.dead);
        self.dead.clear();
        self.dead_pages = 0;
    }
}

/// Choose (source, destination): the destination kept from the previous step while it still
/// has room and is at least as full as the source; otherwise the fullest zspage with room;
/// the source is the emptiest other zspage. `None` when there is no such pair.
fn pick_pair(state: &ClassState, kept_dst: Option<u32>) -> Option<(u32, u32)> {
    let kept = kept_dst.filter(|&d| state.zspage_exists(d) && !state.zspage(d).is_full());
    if let Some(dst) = kept
        && let Some(src) = state.emptiest(Some(dst))
        && state.zspage(src).inuse() <= state.zspage(dst).inuse()
    {
        return Some((src, dst));
    }
    let dst = state.fullest_with_room(None)?;
    let src = state.emptiest(Some(dst))?;
    Some((src, dst))
}
