//! Loom model of the migration protocol: a yielding compaction racing a free, a read and a
//! write of the very objects it moves. Loom runs each model under every interleaving of the
//! lock and atomic operations (within `LOOM_MAX_PREEMPTIONS`), using the core's real locks
//! through `src/sync.rs`.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=/work/target-loom \
//!     cargo test -p zspool-core --test loom --release
//! ```
//!
//! The pool: `max_pages_per_zspage = 1`, 1000-byte objects (the 1024-byte class, 4 objects
//! per one-page zspage), fragmented into three zspages holding 2, 3 and 3 objects: 4 wasted
//! slots, so `can_compact() == 1`. Compaction then picks a 75 % zspage as destination and
//! the 50 % one (A) as source, moves A's first object (filling the destination), yields
//! (`slice_objects: 1`), takes the other 75 % zspage as the next destination, moves A's second
//! object and frees A. Each racing operation targets A's objects.
//!
//! The `owned_` models run the same pool with *owned* objects (`src/owned.rs`, the cache's
//! entries): no handles; their locations live in an outside index of loom atomics, which
//! compaction rewrites under the class lock while a reader reads them without it (the
//! reader's first read may be stale; the one under the class lock must not be).
//!
//! Adaptations, all outside the core:
//! - the pool is built inside each `loom::model` run (loom's atomics and locks must be
//!   created there), so setup is repeated per interleaving; it is single-threaded and cheap;
//! - page memory is real `mmap`ed memory, invisible to loom. That is sound for this model:
//!   every byte access to a zspage happens under its class lock, which loom does model, so
//!   the ordering of byte accesses is exactly the ordering of lock hand-offs loom explores;
//! - `close()` racing compaction is *not* modelled here: close locks every class and shard
//!   and republishes every class's counters, which compaction's lock-free `can_compact` scans
//!   read, so the state space did not finish in 3 minutes even with one preemption. It is
//!   exercised by `tests/stress.rs` instead (`close_while_busy`, and
//!   `close_in_the_middle_of_a_compaction_stops_it_with_closed`, which closes deterministically
//!   mid-run);
//! - `slice` is set to an hour, so slices end by object count only and the explored
//!   schedules do not depend on the wall clock (`Instant::now()` is still called).
#![cfg(loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering::Relaxed};
use zspool_core::{CompactOptions, Location, LockHold, ObjectOwner, Pool, PoolConfig, StopReason, ZsError};

const SIZE: usize = 1000;

fn bytes(tag: u8) -> Vec<u8> {
    (0..SIZE).map(|i| tag ^ (i as u8).wrapping_mul(13) ^ (i >> 8) as u8).collect()
}

/// The fragmented pool and its live objects `(handle, contents)`; `a` are the source
/// zspage's two objects.
struct Setup {
    pool: Arc<Pool>,
    live: Vec<(u64, Vec<u8>)>,
    a: [u64; 2],
}

fn setup() -> Setup {
    let pool = Pool::new(PoolConfig { max_pages_per_zspage: 1, mem_limit: None, name: None }).unwrap();
    let table = pool.class_table();
    let layout = table.classes()[table.class_for(SIZE)];
    assert_eq!((layout.pages_per_zspage, layout.objs_per_zspage), (1, 4), "the model assumes 4 objects per zspage");
    let handles: Vec<u64> = (0..12u8).map(|i| pool.store(&bytes(i)).unwrap()).collect();
    // Zspage A = objects 0..4 keeps 2; B = 4..8 and C = 8..12 keep 3 each.
    let mut live = Vec::new();
    for (i, &h) in handles.iter().enumerate() {
        if [2, 3, 7, 11].contains(&i) {
            pool.free(h).unwrap();
        } else {
            live.push((h, bytes(i as u8)));
        }
    }
    assert_eq!(pool.can_compact(), 1);
    Setup { pool: Arc::new(pool), live, a: [handles[0], handles[1]] }
}

fn options() -> CompactOptions {
    CompactOptions {
        max_pages: None,
        time_budget: None,
        lock_hold: LockHold::Yielding { slice_objects: 1, slice: Duration::from_secs(3600) },
    }
}

fn spawn_compaction(pool: &Arc<Pool>) -> loom::thread::JoinHandle<zspool_core::CompactionReport> {
    let pool = Arc::clone(pool);
    loom::thread::spawn(move || pool.compact(&options()))
}

/// Everything that must hold once the threads are joined.
fn check_quiescent(pool: &Pool, live: &[(u64, Vec<u8>)]) {
    for (h, expected) in live {
        assert_eq!(&pool.load(*h).unwrap(), expected, "object {h:#x} lost its bytes");
    }
    assert_eq!(pool.len(), live.len());
    let stats = pool.stats();
    let classes = pool.class_stats();
    assert_eq!(stats.objects, live.len());
    assert_eq!(stats.payload_bytes, (live.len() * SIZE) as u64);
    assert_eq!(classes.iter().map(|c| c.obj_used).sum::<usize>(), live.len());
    assert_eq!(stats.pages_used, classes.iter().map(|c| c.pages_used).sum::<usize>());
    for c in &classes {
        assert!(c.obj_used <= c.obj_allocated);
        assert_eq!(c.fullness.iter().sum::<usize>(), c.zspages);
        assert_eq!(c.fullness[0], 0, "an empty zspage survived");
        assert_eq!(c.freeable, (c.obj_allocated - c.obj_used) / c.objs_per_zspage * c.pages_per_zspage);
    }
    assert_eq!(pool.can_compact(), classes.iter().map(|c| c.freeable).sum::<usize>());
    // Quiescent: a full compaction frees exactly what is predicted and leaves nothing.
    let predicted = pool.can_compact();
    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.pages_freed, predicted);
    assert_eq!(pool.can_compact(), 0);
    for (h, expected) in live {
        assert_eq!(&pool.load(*h).unwrap(), expected);
    }
}

/// Explore `f` under loom (bounds from the `LOOM_*` environment), report how many
/// interleavings that took, and fail if it was one: then loom explored nothing (the core's
/// `sync` shim fell back to std, or the preemption bound is 0) and the model proved nothing.
fn model(f: impl Fn() + Sync + Send + 'static) {
    assert!(cfg!(loom), "built without --cfg loom");
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 100_000;
    // This model's own counter (std's atomic, invisible to loom): the tests run in parallel.
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs = std::sync::Arc::clone(&counter);
    builder.check(move || {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = counter.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("loom explored {runs} interleavings");
    assert!(runs > 1, "loom ran the model under {runs} interleaving(s): nothing was explored");
}

#[test]
fn compaction_races_free_of_a_source_object() {
    model(|| {
        let Setup { pool, mut live, a } = setup();
        let compaction = spawn_compaction(&pool);
        pool.free(a[0]).unwrap();
        let report = compaction.join().unwrap();
        assert!(matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable), "{report:?}");
        // Freed, wherever it was at the time: the handle is dead for good.
        assert!(matches!(pool.load(a[0]), Err(ZsError::InvalidHandle { .. })));
        live.retain(|(h, _)| *h != a[0]);
        check_quiescent(&pool, &live);
    });
}

#[test]
fn compaction_races_reads_of_migrating_objects() {
    model(|| {
        let Setup { pool, live, a } = setup();
        let compaction = spawn_compaction(&pool);
        for h in a {
            let expected = &live.iter().find(|(x, _)| *x == h).unwrap().1;
            assert_eq!(&pool.load(h).unwrap(), expected, "a read saw a half-moved object");
        }
        let report = compaction.join().unwrap();
        assert_eq!((report.stop_reason, report.pages_freed, report.objects_migrated), (StopReason::Done, 1, 2));
        assert!(report.lock_yields >= 2, "{report:?}");
        check_quiescent(&pool, &live);
    });
}

#[test]
fn compaction_races_a_write_to_a_migrating_object() {
    model(|| {
        let Setup { pool, mut live, a } = setup();
        let compaction = spawn_compaction(&pool);
        // Overwrite the second half, then the first, of A's first object.
        let new = bytes(0xA5);
        pool.write(a[0], SIZE / 2, &new[SIZE / 2..]).unwrap();
        pool.write(a[0], 0, &new[..SIZE / 2]).unwrap();
        let report = compaction.join().unwrap();
        assert_eq!((report.stop_reason, report.pages_freed), (StopReason::Done, 1));
        for (h, contents) in live.iter_mut() {
            if *h == a[0] {
                *contents = new.clone();
            }
        }
        check_quiescent(&pool, &live);
    });
}

#[test]
fn compaction_races_a_malloc_in_the_same_class() {
    model(|| {
        let Setup { pool, mut live, .. } = setup();
        let compaction = spawn_compaction(&pool);
        // The new object may take the destination's free slot before or between slices.
        let h = pool.malloc(SIZE).unwrap();
        assert_eq!(pool.load(h).unwrap(), vec![0; SIZE], "a new object must read as zeros");
        pool.write(h, 0, &bytes(0x3C)).unwrap();
        let report = compaction.join().unwrap();
        assert!(matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable), "{report:?}");
        live.push((h, bytes(0x3C)));
        check_quiescent(&pool, &live);
    });
}

/// The outside index of the owned models: one location per owner id, in loom's atomics (the
/// cache's slots, reduced to their locations; `Relaxed` as there).
struct Records(Vec<AtomicU64>);

impl ObjectOwner for Records {
    fn location(&self, id: u32) -> Location {
        Location(self.0[id as usize].load(Relaxed))
    }

    fn set_location(&self, id: u32, to: Location) {
        self.0[id as usize].store(to.0, Relaxed);
    }
}

/// The fragmented pool of [`setup`], its objects owned by records 0..12 (one spare record,
/// 12, for a store), and the live ones `(record, contents)`; A holds records 0 and 1.
struct OwnedSetup {
    pool: Arc<Pool>,
    records: std::sync::Arc<Records>,
    live: Vec<(u32, Vec<u8>)>,
}

fn owned_setup() -> OwnedSetup {
    let pool = Pool::new(PoolConfig { max_pages_per_zspage: 1, mem_limit: None, name: None }).unwrap();
    let records = std::sync::Arc::new(Records((0..13).map(|_| AtomicU64::new(0)).collect()));
    pool.set_object_owner(records.clone()).unwrap();
    let mut live = Vec::new();
    for id in 0..12u32 {
        let at = pool.store_owned(id, &[&bytes(id as u8)]).unwrap();
        assert_eq!(records.location(id), at, "the store published the location");
    }
    for id in 0..12u32 {
        if [2, 3, 7, 11].contains(&id) {
            pool.free_owned(id, || records.location(id)).unwrap();
        } else {
            live.push((id, bytes(id as u8)));
        }
    }
    assert_eq!(pool.can_compact(), 1);
    OwnedSetup { pool: Arc::new(pool), records, live }
}

fn read_owned(pool: &Pool, records: &Records, id: u32) -> Vec<u8> {
    pool.read_owned(
        || records.location(id),
        |object| {
            let mut out = vec![0; object.len()];
            object.read(0, &mut out).map(|()| out)
        },
    )
    .unwrap()
    .unwrap()
}

/// What must hold once the threads are joined: every record names its object's bytes, the
/// counts agree, and a quiescent compaction frees what it predicts and keeps the records true.
fn check_owned_quiescent(pool: &Pool, records: &Records, live: &[(u32, Vec<u8>)]) {
    for (id, expected) in live {
        assert_eq!(&read_owned(pool, records, *id), expected, "record {id} names the wrong bytes");
    }
    assert_eq!(pool.len(), live.len());
    let predicted = pool.can_compact();
    assert_eq!(pool.compact(&CompactOptions::default()).pages_freed, predicted);
    for (id, expected) in live {
        assert_eq!(&read_owned(pool, records, *id), expected, "record {id} after a quiescent compaction");
    }
}

#[test]
fn compaction_races_owned_reads_of_migrating_objects() {
    model(|| {
        let OwnedSetup { pool, records, live } = owned_setup();
        let compaction = spawn_compaction(&pool);
        for id in [0, 1] {
            assert_eq!(read_owned(&pool, &records, id), bytes(id as u8), "a read saw a stale location");
        }
        let report = compaction.join().unwrap();
        assert_eq!((report.stop_reason, report.pages_freed, report.objects_migrated), (StopReason::Done, 1, 2));
        check_owned_quiescent(&pool, &records, &live);
    });
}

#[test]
fn compaction_races_an_owned_free_of_a_source_object() {
    model(|| {
        let OwnedSetup { pool, records, mut live } = owned_setup();
        let compaction = spawn_compaction(&pool);
        pool.free_owned(0, || records.location(0)).unwrap();
        let report = compaction.join().unwrap();
        assert!(matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable), "{report:?}");
        // Freed wherever it was: a second free finds its place free, not another object.
        assert!(matches!(pool.free_owned(0, || records.location(0)), Err(ZsError::InvalidHandle { .. })));
        live.retain(|(id, _)| *id != 0);
        check_owned_quiescent(&pool, &records, &live);
    });
}

#[test]
fn compaction_races_an_owned_store_in_the_same_class() {
    model(|| {
        let OwnedSetup { pool, records, mut live } = owned_setup();
        let compaction = spawn_compaction(&pool);
        // The new object may take the destination's free slot; its record must follow it.
        pool.store_owned(12, &[&bytes(0x3C)]).unwrap();
        let report = compaction.join().unwrap();
        assert!(matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable), "{report:?}");
        live.push((12, bytes(0x3C)));
        check_owned_quiescent(&pool, &records, &live);
    });
}

#[test]
fn compaction_races_an_owned_overwrite() {
    model(|| {
        let OwnedSetup { pool, records, mut live } = owned_setup();
        let compaction = spawn_compaction(&pool);
        // The cache's overwrite of record 0: the new value under the spare record 12, the old
        // object freed, the new one handed record 0; compaction may move either meanwhile.
        pool.store_owned(12, &[&bytes(0x5A)]).unwrap();
        pool.free_owned(0, || records.location(0)).unwrap();
        pool.reown(12, 0, || records.location(12)).unwrap();
        let report = compaction.join().unwrap();
        assert!(matches!(report.stop_reason, StopReason::Done | StopReason::NothingFreeable), "{report:?}");
        for (id, contents) in live.iter_mut() {
            if *id == 0 {
                *contents = bytes(0x5A);
            }
        }
        check_owned_quiescent(&pool, &records, &live);
    });
}
