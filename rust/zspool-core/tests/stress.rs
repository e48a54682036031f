//! Multi-threaded stress: workers malloc / write / read / free their own objects with
//! checksummed contents while a compactor loops and a stats reader polls the class table.
//! Every read is checked against the pattern for (handle, version), so an object moved
//! half-way, moved twice, lost, or aliased by another thread's object is caught at once.
//!
//! Sizes are bounded (`OPS`) so that a debug build finishes in a few seconds on 2 cores.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Rng, etc_size, mix, pattern};
use zspool_core::{CompactOptions, MAX_CLASS_SIZE, Pool, PoolConfig, StopReason, ZsError};

const WORKERS: usize = 4;
const OPS: usize = 150_000;

/// Operations per worker: `OPS`, or `ZSPOOL_STRESS_OPS` where each one is slow (`make valgrind`).
fn ops() -> usize {
    std::env::var("ZSPOOL_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(OPS)
}
/// Live objects per worker before it only churns.
const CAP: usize = 3_000;

#[derive(Debug, Clone, Copy)]
struct Obj {
    handle: u64,
    size: usize,
    version: u64,
}

fn key(handle: u64, version: u64) -> u64 {
    mix(handle ^ version.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn check(pool: &Pool, obj: &Obj) {
    let bytes = pool.load(obj.handle).unwrap_or_else(|e| panic!("handle {:#x}: {e}", obj.handle));
    assert!(
        bytes.len() == obj.size && bytes == pattern(key(obj.handle, obj.version), obj.size),
        "object {obj:?} corrupted"
    );
}

/// How long workers keep churning past their quota while the compactor has moved nothing
/// yet. Under valgrind (one thread runs at a time, in long slices) the workers can finish
/// their quota before the compactor is first scheduled; churning on until it has moved
/// objects keeps the test about concurrent migration there too.
const WAIT_FOR_MIGRATION: Duration = Duration::from_secs(60);

/// One worker's life: grow to `CAP` objects, then churn, for `ops` operations and then for
/// as long as `migrated` is still 0 (at most `WAIT_FOR_MIGRATION`). Returns the survivors.
fn worker(
    pool: &Pool,
    seed: u64,
    ops: usize,
    migrated: &AtomicU64,
    mut size: impl FnMut(&mut Rng) -> usize,
) -> Vec<Obj> {
    let mut rng = Rng::new(seed);
    let mut live: Vec<Obj> = Vec::new();
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < ops || (migrated.load(Ordering::Relaxed) == 0 && started.elapsed() < WAIT_FOR_MIGRATION) {
        done += 1;
        let r = rng.unit();
        let grow = if live.len() < CAP { 0.55 } else { 0.3 };
        if live.is_empty() || r < grow {
            let size = size(&mut rng);
            let handle = pool.malloc(size).unwrap();
            let obj = Obj { handle, size, version: 1 };
            assert!(pool.load(handle).unwrap().iter().all(|&b| b == 0), "a new object is not zero-filled");
            pool.write(handle, 0, &pattern(key(handle, 1), size)).unwrap();
            live.push(obj);
            continue;
        }
        let i = rng.below(live.len());
        if r < grow + 0.3 {
            let obj = live.swap_remove(i);
            check(pool, &obj);
            pool.free(obj.handle).unwrap();
            assert!(matches!(pool.free(obj.handle), Err(ZsError::InvalidHandle { .. })), "double free accepted");
        } else if r < grow + 0.55 {
            check(pool, &live[i]);
        } else {
            // Rewrite under a new version, in two writes so the object is torn in between:
            // only its owner looks, but the compactor may move it mid-way.
            let obj = &mut live[i];
            obj.version += 1;
            let bytes = pattern(key(obj.handle, obj.version), obj.size);
            let half = obj.size / 2;
            pool.write(obj.handle, half, &bytes[half..]).unwrap();
            pool.write(obj.handle, 0, &bytes[..half]).unwrap();
            check(pool, obj);
        }
    }
    live
}

/// Loop compactions until `stop`, publishing the objects migrated so far in `progress`;
/// returns (runs that freed pages, objects migrated).
fn compactor(pool: &Pool, stop: &AtomicBool, progress: &AtomicU64) -> (u64, u64) {
    let (mut runs, mut migrated) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        let report = pool.compact(&CompactOptions::default());
        assert!(
            matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable),
            "unexpected stop: {report:?}"
        );
        if report.pages_freed > 0 {
            runs += 1;
        }
        migrated += report.objects_migrated;
        progress.store(migrated, Ordering::Relaxed);
        if report.stop_reason == StopReason::NothingFreeable {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    (runs, migrated)
}

/// Poll the stats until `stop`, checking what must hold in any consistent class row.
fn stats_reader(pool: &Pool, stop: &AtomicBool) -> u64 {
    let mut polls = 0;
    while !stop.load(Ordering::Relaxed) {
        let stats = pool.stats();
        assert!(stats.pages_used as u64 * 4096 <= stats.mem_used_max);
        for c in pool.class_stats() {
            assert!(c.obj_used <= c.obj_allocated, "{c:?}");
            assert_eq!(c.obj_allocated, c.zspages * c.objs_per_zspage, "{c:?}");
            assert_eq!(c.fullness.iter().sum::<usize>(), c.zspages, "{c:?}");
            assert_eq!(c.fullness[0], 0, "an empty zspage was left listed: {c:?}");
            assert_eq!(c.freeable, (c.obj_allocated - c.obj_used) / c.objs_per_zspage * c.pages_per_zspage);
        }
        let _ = pool.can_compact();
        polls += 1;
        std::thread::sleep(Duration::from_micros(500));
    }
    polls
}

/// Run the workers with a compactor and a stats reader alongside; check the end state.
fn run(pool: &Pool, size: impl Fn(&mut Rng) -> usize + Sync) {
    let stop = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let (survivors, (runs, migrated), polls) = std::thread::scope(|s| {
        let compactor = s.spawn(|| compactor(pool, &stop, &progress));
        let reader = s.spawn(|| stats_reader(pool, &stop));
        let workers: Vec<_> = {
            let size = &size;
            let progress = &progress;
            (0..WORKERS).map(|t| s.spawn(move || worker(pool, 0x5EED + t as u64, ops(), progress, size))).collect()
        };
        let survivors: Vec<Obj> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        (survivors, compactor.join().unwrap(), reader.join().unwrap())
    });
    eprintln!(
        "{} survivors; compactor: {runs} productive runs, {migrated} objects migrated; {polls} stats polls",
        survivors.len()
    );
    assert!(migrated > 0, "the compactor never moved anything: the test did not exercise migration");
    for obj in &survivors {
        check(pool, obj);
    }
    assert_eq!(pool.len(), survivors.len());
    assert_eq!(pool.stats().objects, survivors.len());
    let large = survivors.iter().filter(|o| o.size > MAX_CLASS_SIZE).count();
    assert_eq!(pool.stats().large_objects, large);
    assert_eq!(pool.class_stats().iter().map(|c| c.obj_used).sum::<usize>(), survivors.len() - large);
    // Quiescent now: a full compaction frees exactly what it predicts, and freeing
    // everything gives every page back.
    let predicted = pool.can_compact();
    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.pages_freed, predicted);
    for obj in &survivors {
        check(pool, obj);
        pool.free(obj.handle).unwrap();
    }
    assert_eq!(pool.stats().pages_used, 0);
    assert!(pool.is_empty());
}

#[test]
fn mixed_sizes_with_concurrent_compaction() {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    // 2 % above a page: half in the classes up to 8192 bytes, half on the large path.
    run(&pool, |rng| if rng.chance(0.02) { 4097 + rng.below(8_192) } else { etc_size(rng) });
}

#[test]
fn one_class_with_concurrent_compaction() {
    // Every operation and the compactor fight over the same class lock.
    let pool = Pool::new(PoolConfig::default()).unwrap();
    run(&pool, |_| 200);
}

#[test]
fn close_while_busy() {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let closed_seen = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..WORKERS {
            let (pool, closed_seen) = (&pool, &closed_seen);
            s.spawn(move || {
                let mut rng = Rng::new(0xC105E + t as u64);
                let mut live: Vec<Obj> = Vec::new();
                let mut closed_streak = 0;
                // Until every kind of call has failed with Closed a few times in a row.
                while closed_streak < 50 {
                    let r = rng.unit();
                    let result = if live.is_empty() || r < 0.45 {
                        let size = if rng.chance(0.05) { 5000 } else { etc_size(&mut rng) };
                        pool.malloc(size).and_then(|handle| {
                            live.push(Obj { handle, size, version: 1 });
                            pool.write(handle, 0, &pattern(key(handle, 1), size))
                        })
                    } else {
                        let i = rng.below(live.len());
                        let obj = live[i];
                        if r < 0.7 {
                            live.swap_remove(i);
                            pool.free(obj.handle)
                        } else {
                            pool.load(obj.handle).map(|bytes| {
                                // A read that succeeds sees the object whole. (If the write
                                // after malloc failed, the pool is closed and so is this read.)
                                assert!(bytes == pattern(key(obj.handle, 1), obj.size), "torn object {obj:?}");
                            })
                        }
                    };
                    match result {
                        Ok(()) => closed_streak = 0,
                        Err(ZsError::Closed) => closed_streak += 1,
                        Err(e) => panic!("an operation failed with other than Closed: {e}"),
                    }
                }
                closed_seen.fetch_add(1, Ordering::Relaxed);
            });
        }
        let pool = &pool;
        s.spawn(move || {
            // Until a run reports the close: a run that ends any other way ended before it.
            loop {
                match pool.compact(&CompactOptions::default()).stop_reason {
                    StopReason::Closed => break,
                    StopReason::Done | StopReason::NothingFreeable => {}
                    other => panic!("compaction stopped with {other:?}"),
                }
            }
        });
        s.spawn(move || {
            while !pool.is_closed() {
                let _ = (pool.stats(), pool.class_stats());
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        pool.close();
    });
    assert_eq!(closed_seen.load(Ordering::Relaxed), WORKERS as u64);
    assert!(pool.is_closed());
    assert_eq!(pool.len(), 0);
    assert_eq!(pool.stats().pages_used, 0, "pages still accounted after close");
    assert_eq!(pool.mapped_bytes(), 0, "arenas still mapped after close");
    assert_eq!(pool.malloc(10), Err(ZsError::Closed));
    assert_eq!(pool.compact(&CompactOptions::default()).stop_reason, StopReason::Closed);
}

/// Store `count` objects of `size` bytes (byte `i` for the `i`th) and free two in three;
/// returns the survivors with their bytes, and the pages compacting their class would free.
fn fragmented_class(pool: &Pool, size: usize, count: usize) -> (Vec<(u64, Vec<u8>)>, usize) {
    let before = pool.can_compact();
    let stored: Vec<(u64, Vec<u8>)> = (0..count)
        .map(|i| {
            let bytes = vec![i as u8; size];
            (pool.store(&bytes).unwrap(), bytes)
        })
        .collect();
    let mut survivors = Vec::new();
    for (i, object) in stored.into_iter().enumerate() {
        if i % 3 == 2 { survivors.push(object) } else { pool.free(object.0).unwrap() }
    }
    (survivors, pool.can_compact() - before)
}

#[test]
fn close_in_the_middle_of_a_compaction_stops_it_with_closed() {
    // Deterministic: this thread holds the small class's lock (inside `read_with`), so the
    // compactor drains the big class (largest class first) and then waits for the small one;
    // the pool is closed while it waits, in the middle of its run.
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let (_, big_freeable) = fragmented_class(&pool, 1000, 9_000);
    let (small, small_freeable) = fragmented_class(&pool, 200, 9_000);
    assert!(big_freeable > 0 && small_freeable > 0);
    let spin_until = |what: &str, condition: &dyn Fn() -> bool| {
        // A hang guard, not a timing: under valgrind (one thread at a time, ~50x slower) with
        // the other stress tests running beside it, the big class took over 30 s once.
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::yield_now();
        }
    };
    std::thread::scope(|s| {
        let (compactor, closer) = pool
            .read_with(small[0].0, |object| {
                let mut bytes = vec![0; object.len()];
                object.read(0, &mut bytes).unwrap();
                assert_eq!(bytes, small[0].1);
                let compactor = s.spawn(|| pool.compact(&CompactOptions::default()));
                spin_until("the big class is compacted", &|| pool.can_compact() == small_freeable);
                let closer = s.spawn(|| pool.close());
                spin_until("the pool is closed", &|| pool.is_closed());
                (compactor, closer)
            })
            .unwrap();
        closer.join().unwrap();
        let report = compactor.join().unwrap();
        assert_eq!(report.stop_reason, StopReason::Closed, "{report:?}");
        assert_eq!(report.pages_freed, big_freeable, "stopped after the big class, before the small");
        assert!(report.objects_migrated > 0);
    });
    assert_eq!((pool.len(), pool.stats().pages_used, pool.mapped_bytes()), (0, 0, 0));
}
