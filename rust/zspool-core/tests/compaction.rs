//! Deterministic compaction tests on a realistically fragmented pool: ~200k objects with
//! Facebook-ETC sizes, 70 % freed at random. Checks that `can_compact` predicts exactly what
//! a full compaction frees, that the freed pages leave the process (RSS), that every object
//! survives the move, and the run's control surface: budgets, modes, single runner, close.
//!
//! Tests in this file share one process and measure its RSS, so they run one at a time
//! (`SERIAL`).

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Rng, etc_size, pattern};
use zspool_core::{CompactOptions, LockHold, PAGE_SIZE, Pool, PoolConfig, StopReason, process_rss_bytes};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A live object and the key its bytes were generated from.
#[derive(Debug, Clone, Copy)]
struct Obj {
    handle: u64,
    size: usize,
    key: u64,
}

/// Fill a pool with `n` objects (sizes from `size`), then free a random `free_frac` of them.
fn fragmented_pool(n: usize, free_frac: f64, seed: u64, mut size: impl FnMut(&mut Rng) -> usize) -> (Pool, Vec<Obj>) {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut rng = Rng::new(seed);
    let mut objs = Vec::with_capacity(n);
    for i in 0..n {
        let size = size(&mut rng);
        let key = seed.wrapping_mul(1_000_003) ^ i as u64;
        let handle = pool.store(&pattern(key, size)).unwrap();
        objs.push(Obj { handle, size, key });
    }
    let mut live = Vec::with_capacity(n);
    for obj in objs {
        if rng.chance(free_frac) {
            pool.free(obj.handle).unwrap();
        } else {
            live.push(obj);
        }
    }
    (pool, live)
}

fn verify_all(pool: &Pool, objs: &[Obj]) {
    for obj in objs {
        let bytes = pool.load(obj.handle).unwrap_or_else(|e| panic!("handle {:#x}: {e}", obj.handle));
        assert!(bytes == pattern(obj.key, obj.size), "object {:#x} ({} bytes) corrupted", obj.handle, obj.size);
    }
    assert_eq!(pool.len(), objs.len());
    assert_eq!(pool.stats().objects, objs.len());
    assert_eq!(pool.class_stats().iter().map(|c| c.obj_used).sum::<usize>(), objs.len());
}

fn yielding(slice_objects: usize) -> LockHold {
    LockHold::Yielding { slice_objects, slice: Duration::from_micros(50) }
}

#[test]
fn full_compaction_frees_exactly_the_predicted_pages() {
    let _serial = serial();
    let (pool, live) = fragmented_pool(200_000, 0.7, 1, etc_size);
    let predicted = pool.can_compact();
    let before = pool.stats();
    let before_classes = pool.class_stats();
    let rss_before = process_rss_bytes().unwrap();
    assert!(predicted > 1000, "the workload should fragment the pool: can_compact = {predicted}");
    assert_eq!(before.freeable_pages, predicted);
    assert_eq!(pool.class_stats().iter().map(|c| c.freeable).sum::<usize>(), predicted);

    let report = pool.compact(&CompactOptions::default());

    assert_eq!(report.stop_reason, StopReason::Done, "{report:?}");
    assert_eq!(report.pages_freed, predicted, "compaction freed other than can_compact predicted");
    assert_eq!(pool.can_compact(), 0);
    for class in pool.class_stats() {
        assert_eq!(class.freeable, 0, "class {} still freeable after a full compaction", class.size);
        assert_eq!(class.fullness[0], 0, "class {} kept an empty zspage", class.size);
    }
    let after = pool.stats();
    assert_eq!(after.pages_used, before.pages_used - predicted);
    assert_eq!(after.pages_compacted, before.pages_compacted + predicted as u64);
    assert_eq!(after.objects_migrated, before.objects_migrated + report.objects_migrated);
    assert_eq!(after.compactions, before.compactions + 1);
    assert!(report.objects_migrated > 0 && report.bytes_migrated > 0);
    assert!(report.lock_yields > 0, "yielding compaction never yielded: {report:?}");
    let freeable_classes = before_classes.iter().filter(|c| c.freeable > 0).count();
    assert_eq!(report.classes_scanned, freeable_classes, "every class with freeable pages, and only those");
    // The pages really left the process: MADV_DONTNEED drops the frames at once.
    let rss_after = process_rss_bytes().unwrap();
    eprintln!(
        "200k objects, 70% freed: can_compact {predicted} pages; {report:?}; RSS {rss_before} -> {rss_after} bytes"
    );
    let freed_bytes = (predicted * PAGE_SIZE) as u64;
    assert!(
        rss_before.saturating_sub(rss_after) >= freed_bytes / 2,
        "RSS fell by {} bytes, compaction freed {freed_bytes}",
        rss_before.saturating_sub(rss_after)
    );
    verify_all(&pool, &live);
    // A second run has nothing to do and moves nothing.
    let again = pool.compact(&CompactOptions::default());
    assert_eq!((again.stop_reason, again.objects_migrated, again.pages_freed), (StopReason::NothingFreeable, 0, 0));
    assert_eq!(pool.stats().compactions, after.compactions, "a run with nothing freeable is not counted");
}

#[test]
fn whole_class_and_yielding_free_the_same_pages() {
    let _serial = serial();
    let mut freed = Vec::new();
    for lock_hold in [LockHold::WholeClass, LockHold::default(), yielding(1)] {
        let (pool, live) = fragmented_pool(40_000, 0.7, 2, etc_size);
        let predicted = pool.can_compact();
        let report = pool.compact(&CompactOptions { lock_hold, ..CompactOptions::default() });
        assert_eq!(report.stop_reason, StopReason::Done);
        assert_eq!(report.pages_freed, predicted, "{lock_hold:?}");
        if lock_hold == LockHold::WholeClass {
            assert_eq!(report.lock_yields, 0, "WholeClass must not yield");
        } else {
            assert!(report.lock_yields > 0);
        }
        verify_all(&pool, &live);
        freed.push(report.pages_freed);
    }
    assert!(freed.iter().all(|&f| f == freed[0]), "modes freed different page counts: {freed:?}");
}

#[test]
fn no_object_is_migrated_in_vain() {
    let _serial = serial();
    // One class, 200-byte objects: free fewer objects than fit in one zspage, spread over
    // many zspages, so no zspage can be emptied: can_compact is 0.
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let table = pool.class_table();
    let layout = table.classes()[table.class_for(200)];
    let handles: Vec<u64> =
        (0..layout.objs_per_zspage * 20).map(|i| pool.store(&pattern(i as u64, 200)).unwrap()).collect();
    let mut live = Vec::new();
    for (i, &h) in handles.iter().enumerate() {
        if i % 20 == 0 && i / 20 < layout.objs_per_zspage - 1 {
            pool.free(h).unwrap();
        } else {
            live.push(Obj { handle: h, size: 200, key: i as u64 });
        }
    }
    assert_eq!(pool.can_compact(), 0);
    let row = |pool: &Pool| pool.class_stats().into_iter().find(|c| c.index == layout.index).unwrap();
    let class_before = row(&pool);
    assert!(class_before.obj_used < class_before.obj_allocated, "the class has holes");
    let stats_before = pool.stats();
    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.stop_reason, StopReason::NothingFreeable);
    assert_eq!((report.objects_migrated, report.pages_freed, report.classes_scanned), (0, 0, 0));
    assert_eq!(pool.stats().objects_migrated, stats_before.objects_migrated);
    assert_eq!(pool.stats().compactions, stats_before.compactions);

    // Now make another class freeable: compaction works there and leaves this one alone.
    let other: Vec<u64> = (0..2000).map(|i| pool.store(&pattern(1 << 40 | i, 1000)).unwrap()).collect();
    for (i, &h) in other.iter().enumerate() {
        if i % 2 == 0 {
            pool.free(h).unwrap();
        } else {
            live.push(Obj { handle: h, size: 1000, key: 1 << 40 | i as u64 });
        }
    }
    let predicted = pool.can_compact();
    assert!(predicted > 0);
    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.pages_freed, predicted);
    assert_eq!(report.classes_scanned, 1, "only the freeable class is worked on");
    assert_eq!(row(&pool), class_before, "the class with can_compact == 0 was touched");
    verify_all(&pool, &live);
}

#[test]
fn budgets_stop_the_run() {
    let _serial = serial();
    let (pool, live) = fragmented_pool(60_000, 0.7, 3, etc_size);
    let predicted = pool.can_compact();
    let max_chain = pool.class_table().classes().iter().map(|c| c.pages_per_zspage).max().unwrap();
    assert!(predicted > 100 + max_chain);

    // Page budget: stops at the first zspage that reaches it.
    let report = pool.compact(&CompactOptions { max_pages: Some(100), ..CompactOptions::default() });
    assert_eq!(report.stop_reason, StopReason::BudgetReached);
    assert!((100..100 + max_chain).contains(&report.pages_freed), "{report:?}");
    assert_eq!(pool.can_compact(), predicted - report.pages_freed);
    verify_all(&pool, &live);

    // A zero time budget does nothing; a short one stops early, well short of the whole job.
    let report = pool.compact(&CompactOptions { time_budget: Some(Duration::ZERO), ..CompactOptions::default() });
    assert_eq!((report.stop_reason, report.pages_freed, report.objects_migrated), (StopReason::BudgetReached, 0, 0));
    let remaining = pool.can_compact();
    let budget = Duration::from_micros(300);
    let report = pool.compact(&CompactOptions { time_budget: Some(budget), ..CompactOptions::default() });
    assert_eq!(report.stop_reason, StopReason::BudgetReached, "{report:?}");
    assert!(report.pages_freed < remaining, "{report:?}");
    assert!(report.duration < budget + Duration::from_millis(200), "overran its time budget: {report:?}");
    assert_eq!(pool.can_compact(), remaining - report.pages_freed);
    verify_all(&pool, &live);

    // The rest, in one go.
    let remaining = pool.can_compact();
    let report = pool.compact(&CompactOptions::default());
    assert_eq!((report.stop_reason, report.pages_freed), (StopReason::Done, remaining));
    verify_all(&pool, &live);
}

#[test]
fn a_second_compaction_returns_already_running() {
    let _serial = serial();
    let (pool, live) = fragmented_pool(100_000, 0.7, 4, etc_size);
    let predicted = pool.can_compact();
    let done = AtomicBool::new(false);
    let mut observed = false;
    let first = std::thread::scope(|s| {
        let first = s.spawn(|| {
            // Small slices: the run is long and yields often, so the main thread gets in.
            let report = pool.compact(&CompactOptions { lock_hold: yielding(1), ..CompactOptions::default() });
            done.store(true, Ordering::SeqCst);
            report
        });
        // `compactions` is bumped after the single-runner flag is taken.
        while pool.stats().compactions == 0 && !done.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        while !done.load(Ordering::SeqCst) {
            let second = pool.compact(&CompactOptions::default());
            if !done.load(Ordering::SeqCst) {
                // The first run held the flag from before our call until after it returned.
                assert_eq!(second.stop_reason, StopReason::AlreadyRunning, "{second:?}");
                assert_eq!((second.pages_freed, second.objects_migrated), (0, 0));
                observed = true;
                break;
            }
        }
        first.join().unwrap()
    });
    assert!(observed, "the first compaction finished before a second one could be tried");
    assert_eq!(first.pages_freed, predicted);
    assert_eq!(pool.stats().compactions, 1, "the refused run is not counted");
    verify_all(&pool, &live);
}

#[test]
fn compaction_after_close_returns_closed() {
    let _serial = serial();
    let (pool, _live) = fragmented_pool(5_000, 0.7, 5, etc_size);
    assert!(pool.can_compact() > 0);
    pool.close();
    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.stop_reason, StopReason::Closed);
    assert_eq!((report.pages_freed, report.objects_migrated), (0, 0));
    assert_eq!(pool.can_compact(), 0);
    assert_eq!(pool.stats().pages_used, 0);
}
