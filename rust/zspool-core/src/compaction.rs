//! Compaction of the in-process pool: the run (budgets, one runner per pool, the report and
//! lifetime counters, trimming the heap) and the pool's size classes seen through the traits
//! of `compact_class.rs`, where the per-class loop (pair picking, migration slices, lock
//! yielding, batched release of dead zspages) is written once for every class storage.
//!
//! Locks: one class lock at a time, in slices; the provider's locks inside it. One compaction
//! runs per pool at a time ([`CompactionState`]'s single-runner flag); a second caller returns at once.

use std::time::{Duration, Instant};

use crate::compact_class::{CompactClass, LockedClass, compact_classes};
use crate::owned::ObjectOwner;
use crate::pool::Pool;
use crate::size_class::{ClassState, SizeClass};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, MutexGuard, Ordering, unlock_fair};
use crate::zspage::Zspage;

/// Pages compaction must free before the heap is trimmed: 64 MiB of zspages, whose metadata
/// (one allocation each: 8 bytes per page and 4 per object slot, so 12-520 bytes per page
/// from the largest class to the smallest) is then worth handing back.
const TRIM_AFTER_PAGES: usize = 16_384;

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StopReason {
    /// Every class was compacted until no page could be freed.
    #[default]
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

/// What one compaction run did (`Default`: nothing yet, stop reason `Done`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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

impl Pool {
    /// Pages a full compaction would free now: the kernel's `zs_can_compact` summed over the
    /// classes. O(classes), lock-free.
    pub fn can_compact(&self) -> usize {
        self.classes.iter().map(SizeClass::can_compact).sum()
    }

    /// Compact the pool, largest class first, within `options`' budgets.
    pub fn compact(&self, options: &CompactOptions) -> CompactionReport {
        let start = Instant::now();
        let mut report = CompactionReport::default();
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
            let classes = self.classes.iter().rev().map(|class| PoolClass { pool: self, class });
            compact_classes(classes, options, deadline, &mut report)
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
    /// being prepared. Checked before a run, before each class, before each step and after
    /// each object moved (it ends the slice).
    fn must_stop(&self) -> Option<StopReason> {
        if self.is_closed() {
            Some(StopReason::Closed)
        } else if self.fork.gate.is_pending() {
            Some(StopReason::Interrupted)
        } else {
            None
        }
    }
}

/// One class of the pool, as the compaction loop sees it from outside its lock.
struct PoolClass<'p> {
    pool: &'p Pool,
    class: &'p SizeClass,
}

/// A pool class's state under its lock, with the pool's object owner (read once per hold:
/// an owned object is stored under the class lock after the owner was set).
struct LockedPoolClass<'p> {
    state: MutexGuard<'p, ClassState>,
    owner: Option<&'p dyn ObjectOwner>,
}

impl CompactClass for PoolClass<'_> {
    type Locked<'a>
        = LockedPoolClass<'a>
    where
        Self: 'a;
    type Dead = Zspage;

    fn can_compact(&self) -> usize {
        self.class.can_compact()
    }

    fn lock(&self) -> LockedPoolClass<'_> {
        LockedPoolClass { state: self.class.lock(), owner: self.pool.object_owner() }
    }

    fn unlock_fair<'a>(&'a self, locked: LockedPoolClass<'a>) {
        unlock_fair(locked.state);
    }

    fn lock_is_contended(&self) -> bool {
        self.class.lock_is_contended()
    }

    fn publish<'a>(&'a self, locked: &LockedPoolClass<'a>) {
        self.class.publish(&locked.state);
    }

    fn release_dead(&self, dead: &[Zspage]) {
        self.pool.release_zspage_pages(dead);
    }

    fn must_stop(&self) -> Option<StopReason> {
        self.pool.must_stop()
    }
}

impl LockedClass for LockedPoolClass<'_> {
    type Dead = Zspage;

    fn pages_per_zspage(&self) -> usize {
        self.state.layout.pages_per_zspage
    }

    fn can_compact(&self) -> usize {
        self.state.can_compact()
    }

    fn zspage_exists(&self, zspage: u32) -> bool {
        self.state.zspage_exists(zspage)
    }

    fn is_full(&self, zspage: u32) -> bool {
        self.state.zspage(zspage).is_full()
    }

    fn inuse(&self, zspage: u32) -> usize {
        self.state.zspage(zspage).inuse()
    }

    fn fullest_with_room(&self, except: Option<u32>) -> Option<u32> {
        self.state.fullest_with_room(except)
    }

    fn emptiest(&self, except: Option<u32>) -> Option<u32> {
        self.state.emptiest(except)
    }

    fn find_alloced_obj(&self, zspage: u32, from: usize) -> Option<(u16, u32)> {
        self.state.zspage(zspage).find_alloced_obj(from)
    }

    fn prefetch_migration(&self, src: u32, obj: u16, owner: u32, dst: u32) {
        self.state.prefetch_migration(src, obj, owner, dst);
    }

    fn migrate_obj(&mut self, src: u32, obj: u16, owner: u32, dst: u32) -> usize {
        self.state.migrate_obj(src, obj, owner, dst, self.owner)
    }

    fn fix_fullness(&mut self, zspage: u32) {
        self.state.fix_fullness(zspage);
    }

    fn zero_moved(&mut self, zspage: u32, moved: &[(u16, usize)]) {
        self.state.zero_moved(zspage, moved);
    }

    fn remove_zspage(&mut self, zspage: u32) -> Zspage {
        self.state.remove_zspage(zspage)
    }
}
