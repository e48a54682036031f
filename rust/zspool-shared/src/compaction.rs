//! Compaction glue: the core's algorithm (`zspool-core/src/compaction.rs`, the kernel's
//! `__zs_compact`) over the classes in the file. Per class, while `can_compact` > 0: the
//! destination is the zspage kept from the last step if it still has room, else the fullest
//! with room; the source the emptiest other; live objects move until the destination is full
//! or the source empty (an emptied source is punched out of the file); the class lock is
//! yielded after each drained source and each slice (objects or time).
//!
//! Moving an object rewrites the location in the slot its back-reference names, an atomic
//! store under the class lock (readers re-read it under the same lock). An object whose slot
//! does not name it (its slot was dropped as corrupt) is freed instead of moved.
//!
//! Locks: one class lock at a time (and the allocator lock inside it).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use zspool_core::{CompactOptions, CompactionReport, LockHold, StopReason};

use crate::class::{ClassGuard, lock_class};
use crate::error::SharedError;
use crate::header::Header;
use crate::location::Location;
use crate::object::FREE_BIT;
use crate::regions::Regions;

/// Compact every class, largest first, within `options`' budgets.
pub(crate) fn compact(r: &Regions, options: &CompactOptions) -> Result<CompactionReport, SharedError> {
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
    let deadline = options.time_budget.map(|b| start + b);
    if can_compact(r) == 0 {
        report.stop_reason = StopReason::NothingFreeable;
    } else {
        r.header().compactions.fetch_add(1, Ordering::Relaxed);
        for id in (0..r.layout.n_classes as u32).rev() {
            if r.class(id as usize).can_compact(&r.classes()[id as usize]) == 0 {
                continue;
            }
            report.classes_scanned += 1;
            if !compact_class(r, id, options, deadline, &mut report)? {
                report.stop_reason = StopReason::BudgetReached;
                break;
            }
        }
    }
    let h = r.header();
    h.pages_compacted.fetch_add(report.pages_freed as u64, Ordering::Relaxed);
    h.objects_migrated.fetch_add(report.objects_migrated, Ordering::Relaxed);
    report.duration = start.elapsed();
    Ok(report)
}

/// Pages a full compaction would free now.
pub(crate) fn can_compact(r: &Regions) -> usize {
    r.classes().iter().enumerate().map(|(id, layout)| r.class(id).can_compact(layout)).sum()
}

fn over_budget(options: &CompactOptions, deadline: Option<Instant>, report: &CompactionReport) -> bool {
    options.max_pages.is_some_and(|max| report.pages_freed >= max) || deadline.is_some_and(|d| Instant::now() >= d)
}

/// Compact one class; `false` if the run's budget ran out.
fn compact_class(
    r: &Regions,
    id: u32,
    options: &CompactOptions,
    deadline: Option<Instant>,
    report: &mut CompactionReport,
) -> Result<bool, SharedError> {
    let (slice_objects, slice) = match options.lock_hold {
        LockHold::Yielding { slice_objects, slice } => (slice_objects.max(1), slice),
        LockHold::WholeClass => (usize::MAX, Duration::MAX),
    };
    let mut class = lock_class(r, id)?;
    let mut dst: Option<u32> = None;
    let mut moved = 0usize;
    let mut slice_start = Instant::now();
    // Each step frees a slot in src or fills dst, so this bounds a garbage-fed loop.
    let mut steps = r.layout.n_chunks.saturating_mul(class.layout.objs_per_zspage) + 1;
    loop {
        if class.shm.can_compact(&class.layout) == 0 {
            return Ok(true);
        }
        if over_budget(options, deadline, report) {
            return Ok(false);
        }
        let Some((src, d)) = pick_pair(&class, dst) else { return Ok(true) };
        dst = Some(d);
        let pages = class.layout.pages_per_zspage;
        let mut src_freed = false;
        for obj in 0..class.layout.objs_per_zspage as u32 {
            steps = steps.saturating_sub(1);
            if class.is_full(d) || steps == 0 {
                break;
            }
            let (migrated, freed) = migrate_obj(&mut class, src, obj, d);
            report.objects_migrated += u64::from(migrated);
            report.bytes_migrated += if migrated { class.layout.size as u64 } else { 0 };
            moved += usize::from(migrated);
            if freed {
                src_freed = true;
                report.pages_freed += pages;
                break;
            }
            if moved >= slice_objects || (moved.is_multiple_of(8) && slice_start.elapsed() >= slice) {
                break;
            }
        }
        if steps == 0 {
            return Ok(true);
        }
        if src_freed || moved >= slice_objects || slice_start.elapsed() >= slice {
            if options.lock_hold != LockHold::WholeClass {
                drop(class);
                report.lock_yields += 1;
                class = lock_class(r, id)?;
                dst = dst.filter(|&d| class.names_zspage(d));
            }
            moved = 0;
            slice_start = Instant::now();
        }
    }
}

/// (source, destination): the kept destination while it has room and is at least as full as
/// the source, else the fullest zspage with room; the source is the emptiest other one.
fn pick_pair(class: &ClassGuard<'_>, kept: Option<u32>) -> Option<(u32, u32)> {
    if let Some(d) = kept.filter(|&d| class.names_zspage(d) && !class.is_full(d))
        && let Some(src) = class.emptiest(Some(d))
        && class.inuse(src) <= class.inuse(d)
    {
        return Some((src, d));
    }
    let dst = class.fullest_with_room(None, false)?;
    let src = class.emptiest(Some(dst))?;
    Some((src, dst))
}

/// Move object `obj` of `src` (if live) to `dst`: (moved, src was freed).
fn migrate_obj(class: &mut ClassGuard<'_>, src: u32, obj: u32, dst: u32) -> (bool, bool) {
    let backref = class.backref(src, obj);
    if backref & FREE_BIT != 0 {
        return (false, false);
    }
    let here = Location { class: class.id, epoch: class.epoch(), desc: src, obj }.pack();
    let named = (backref as usize) < class.r.total_slots()
        && class.r.slot(backref as usize).loc.load(Ordering::Relaxed) == here;
    if !named {
        // No slot names it (its slot was dropped): free it instead of moving it.
        let len = class.stored_len(src, obj);
        Header::sub_saturating(&class.shm.bytes, len);
        Header::sub_saturating(&class.r.header().bytes, len);
        return (false, class.free(src, obj));
    }
    let Some(new) = class.pop_free(dst) else { return (false, false) };
    let size = class.layout.size;
    // SAFETY: both slots are inside the mapping (`Regions::object` clamps), distinct (two
    // zspages, or two objects of one), and guarded by the class lock we hold.
    unsafe { std::ptr::copy_nonoverlapping(class.object_ptr(src, obj), class.object_ptr(dst, new), size) };
    let there = Location { class: class.id, epoch: class.epoch(), desc: dst, obj: new }.pack();
    class.r.slot(backref as usize).loc.store(there, Ordering::Release);
    (true, class.free(src, obj))
}
