//! Model-based test: random sequences of pool operations run against a plain
//! `HashMap<handle, Vec<u8>>`; after every operation every byte of every live object, the
//! object count, the payload bytes and the per-class counters must agree with the model.
//!
//! Sizes are biased towards the interesting ones: 0 and 1, class boundaries (32/33, 48/49,
//! ...), objects that straddle a page boundary inside a multi-page zspage (1000..3000), a
//! whole page (4096), objects of the classes above a page (4097..=8192, straddling up to
//! three pages), the largest class object (8192), the first large object (8193) and a few
//! large ones (8..20 KiB). At `mem_limit` an object of 4097..=8192 bytes may take the large
//! path instead of a new zspage; the model predicts which.
//! Compaction runs with small yielding slices and random page budgets, so objects move
//! between operations and every later access must follow them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use proptest::prelude::*;
use zspool_core::{
    CompactOptions, HandleProblem, LockHold, MAX_CLASS_SIZE, PAGE_SIZE, Pool, PoolConfig, StopReason, ZsError,
};

#[derive(Debug, Clone)]
enum Op {
    Malloc(usize),
    Store(usize, u8),
    /// Write `len` bytes at `offset` into live object number `pick % live`.
    Write {
        pick: usize,
        offset: usize,
        len: usize,
        seed: u8,
    },
    Read {
        pick: usize,
        offset: usize,
        len: usize,
    },
    Free(usize),
    /// Free every `step`-th live object starting at `start`: fragments the zspages.
    FreeEvery {
        start: usize,
        step: usize,
    },
    /// Free, read or write a handle that was already freed (kind = 0, 1, 2).
    Stale {
        pick: usize,
        kind: u8,
    },
    Compact {
        slice_objects: usize,
        max_pages: Option<usize>,
    },
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        // A few popular sizes, so that classes fill several zspages and fragment.
        8 => prop::sample::select(vec![40usize, 200, 1000, 1500, 2500]),
        2 => Just(0usize),
        2 => Just(1usize),
        4 => prop::sample::select(vec![31usize, 32, 33, 47, 48, 49, 63, 64, 65, 255, 256, 257, 511, 512, 513]),
        6 => 1000usize..3000,
        2 => prop::sample::select(vec![4095usize, 4096, 4097, 4109, 8191, 8192, 8193]),
        3 => 4097usize..=8192,
        1 => 8192usize..20480,
        6 => 0usize..=4096,
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => size_strategy().prop_map(Op::Malloc),
        6 => (size_strategy(), any::<u8>()).prop_map(|(size, seed)| Op::Store(size, seed)),
        // Offsets and lengths reach past the end of most objects, to exercise OutOfBounds.
        4 => (any::<usize>(), 0usize..8400, 0usize..4500, any::<u8>())
            .prop_map(|(pick, offset, len, seed)| Op::Write { pick, offset, len, seed }),
        3 => (any::<usize>(), 0usize..8400, 0usize..4500).prop_map(|(pick, offset, len)| Op::Read { pick, offset, len }),
        5 => any::<usize>().prop_map(Op::Free),
        1 => (any::<usize>(), 2usize..5).prop_map(|(start, step)| Op::FreeEvery { start, step }),
        1 => (any::<usize>(), 0u8..3).prop_map(|(pick, kind)| Op::Stale { pick, kind }),
        3 => (1usize..8, prop::option::of(0usize..4))
            .prop_map(|(slice_objects, max_pages)| Op::Compact { slice_objects, max_pages }),
    ]
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i as u8).wrapping_mul(31)) ^ (i >> 8) as u8).collect()
}

struct Harness {
    pool: Pool,
    model: HashMap<u64, Vec<u8>>,
    /// Live handles in a stable order, so that `pick` indices are reproducible.
    order: Vec<u64>,
    dead: Vec<u64>,
    /// Live handles on the large-object path.
    large: HashSet<u64>,
}

impl Harness {
    fn pick(&self, pick: usize) -> Option<u64> {
        (!self.order.is_empty()).then(|| self.order[pick % self.order.len()])
    }

    fn insert(&mut self, handle: u64, bytes: Vec<u8>) {
        assert!(self.model.insert(handle, bytes).is_none(), "handle {handle:#x} issued twice while live");
        self.order.push(handle);
    }

    /// The pool's externally visible state that a failed operation must leave untouched.
    fn snapshot(&self) -> (zspool_core::PoolStats, Vec<zspool_core::ClassStats>) {
        (self.pool.stats(), self.pool.class_stats())
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Malloc(size) | Op::Store(size, _) => {
                let before = self.snapshot();
                // Which path the object must take: the large one above MAX_CLASS_SIZE, and
                // for a class above a page also when a new zspage is needed and would pass
                // the limit (the object's own pages are then the smaller step).
                let limit_pages = self.pool.config().mem_limit.map(|bytes| bytes as usize / PAGE_SIZE);
                let (class_full, zspage_pages) = if size <= MAX_CLASS_SIZE {
                    let table = self.pool.class_table();
                    let layout = table.classes()[table.class_for(size)];
                    let row = before.1.iter().find(|c| c.index == layout.index).unwrap();
                    (row.obj_used == row.obj_allocated, layout.pages_per_zspage)
                } else {
                    (true, 0)
                };
                let zspage_passes_limit = limit_pages.is_some_and(|l| before.0.pages_used + zspage_pages > l);
                let expect_large = size > MAX_CLASS_SIZE || (size > PAGE_SIZE && class_full && zspage_passes_limit);
                let bytes = match *op {
                    Op::Store(_, seed) => pattern(size, seed),
                    _ => vec![0; size],
                };
                let result = match *op {
                    Op::Store(..) => self.pool.store(&bytes),
                    _ => self.pool.malloc(size),
                };
                match result {
                    Ok(handle) => {
                        let large_before = before.0.large_objects;
                        assert_eq!(
                            self.pool.stats().large_objects,
                            large_before + usize::from(expect_large),
                            "malloc({size}) took the wrong path"
                        );
                        if expect_large {
                            self.large.insert(handle);
                        }
                        self.insert(handle, bytes);
                    }
                    Err(ZsError::PoolFull { mem_limit, os_error: None, .. }) => {
                        assert!(mem_limit.is_some(), "PoolFull without a limit");
                        assert_eq!(self.snapshot(), before, "a failed malloc of {size} changed the pool");
                        // It really was the limit: the class had no room and the pages a new
                        // zspage (or large object) needs would not fit under it.
                        let limit_pages = limit_pages.unwrap();
                        assert!(class_full, "PoolFull with room in the class");
                        if size <= MAX_CLASS_SIZE {
                            assert!(zspage_passes_limit, "PoolFull below the limit");
                        }
                        if size > PAGE_SIZE {
                            let own_pages = size.div_ceil(PAGE_SIZE);
                            assert!(before.0.pages_used + own_pages > limit_pages, "PoolFull below the limit");
                        }
                    }
                    Err(e) => panic!("malloc({size}) failed unexpectedly: {e}"),
                }
            }
            Op::Write { pick, offset, len, seed } => {
                let Some(handle) = self.pick(pick) else { return };
                let data = pattern(len, seed);
                let size = self.model[&handle].len();
                let before = self.snapshot();
                match self.pool.write(handle, offset, &data) {
                    Ok(()) => {
                        assert!(offset + len <= size);
                        self.model.get_mut(&handle).unwrap()[offset..offset + len].copy_from_slice(&data);
                    }
                    Err(ZsError::OutOfBounds { handle: h, offset: o, len: l, object_size }) => {
                        assert!(offset + len > size, "in-bounds write rejected");
                        assert_eq!((h, o as usize, l as usize, object_size as usize), (handle, offset, len, size));
                        assert_eq!(self.snapshot(), before, "a rejected write changed the pool");
                        // Bytes are compared by `check` below.
                    }
                    Err(e) => panic!("write failed unexpectedly: {e}"),
                }
            }
            Op::Read { pick, offset, len } => {
                let Some(handle) = self.pick(pick) else { return };
                let expected = &self.model[&handle];
                let mut buf = vec![0xEE; len];
                match self.pool.read(handle, offset, &mut buf) {
                    Ok(()) => assert_eq!(buf, expected[offset..offset + len]),
                    Err(ZsError::OutOfBounds { .. }) => {
                        assert!(offset + len > expected.len());
                        assert!(buf.iter().all(|&b| b == 0xEE), "a rejected read wrote into the buffer");
                    }
                    Err(e) => panic!("read failed unexpectedly: {e}"),
                }
            }
            Op::Free(pick) => {
                let Some(handle) = self.pick(pick) else { return };
                self.pool.free(handle).unwrap();
                self.model.remove(&handle);
                self.large.remove(&handle);
                self.order.retain(|&h| h != handle);
                self.dead.push(handle);
            }
            Op::FreeEvery { start, step } => {
                let n = self.order.len();
                let victims: Vec<u64> =
                    (0..n).filter(|i| (i + start % step.max(1)) % step == 0).map(|i| self.order[i]).collect();
                for handle in victims {
                    self.pool.free(handle).unwrap();
                    self.model.remove(&handle);
                    self.large.remove(&handle);
                    self.dead.push(handle);
                }
                self.order.retain(|h| self.model.contains_key(h));
            }
            Op::Stale { pick, kind } => {
                let Some(&handle) = self.dead.get(pick % self.dead.len().max(1)) else { return };
                // A dead handle's slot may since have been reused by a new object, but with a
                // new generation, so the old handle must never reach it.
                assert!(!self.model.contains_key(&handle), "a live object got a dead handle back");
                let before = self.snapshot();
                let err = match kind {
                    0 => self.pool.free(handle).unwrap_err(),
                    1 => self.pool.load(handle).unwrap_err(),
                    _ => self.pool.write(handle, 0, &[]).unwrap_err(),
                };
                assert_eq!(err, ZsError::InvalidHandle { handle, problem: HandleProblem::Stale });
                assert_eq!(self.snapshot(), before, "a stale-handle call changed the pool");
            }
            Op::Compact { slice_objects, max_pages } => {
                let predicted = self.pool.can_compact();
                let pages_before = self.pool.stats().pages_used;
                let lock_hold = LockHold::Yielding { slice_objects, slice: Duration::from_secs(60) };
                let report = self.pool.compact(&CompactOptions { max_pages, time_budget: None, lock_hold });
                let after = self.pool.stats();
                assert_eq!(after.pages_used, pages_before - report.pages_freed);
                match (predicted, max_pages) {
                    (0, _) => {
                        assert_eq!(report.stop_reason, StopReason::NothingFreeable);
                        assert_eq!(report.objects_migrated, 0, "objects moved with nothing to free");
                    }
                    (p, Some(max)) if max < p => {
                        // Stops at the first zspage that reaches the budget; that may also be
                        // the last freeable one, which makes the run `Done`.
                        assert!(report.pages_freed >= max && report.pages_freed <= p, "{report:?} {p}");
                        match report.stop_reason {
                            StopReason::BudgetReached => {}
                            StopReason::Done => assert_eq!(report.pages_freed, p, "{report:?}"),
                            other => panic!("budgeted run stopped with {other:?}"),
                        }
                        assert_eq!(self.pool.can_compact(), p - report.pages_freed);
                    }
                    (p, _) => {
                        assert_eq!(report.pages_freed, p, "compaction freed other than can_compact: {report:?}");
                        assert_eq!(self.pool.can_compact(), 0);
                    }
                }
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.pool.len(), self.model.len());
        let stats = self.pool.stats();
        let classes = self.pool.class_stats();
        assert_eq!(stats.objects, self.model.len());
        let payload: u64 = self.model.values().map(|v| v.len() as u64).sum();
        assert_eq!(stats.payload_bytes, payload);
        let large = self.large.len();
        assert_eq!(stats.large_objects, large);
        assert!(self.model.iter().all(|(h, v)| (v.len() > MAX_CLASS_SIZE) <= self.large.contains(h)));
        let packed = classes.iter().map(|c| c.obj_used).sum::<usize>();
        assert_eq!(packed, self.model.len() - large, "sum of class obj_used");
        let large_pages: usize = self.large.iter().map(|h| self.model[h].len().div_ceil(PAGE_SIZE)).sum();
        assert_eq!(stats.large_object_pages, large_pages);
        let class_pages: usize = classes.iter().map(|c| c.pages_used).sum();
        assert_eq!(stats.pages_used, class_pages + large_pages, "pages_used vs the class table");
        assert_eq!(stats.freeable_pages, classes.iter().map(|c| c.freeable).sum::<usize>());
        for c in &classes {
            assert!(c.obj_used <= c.obj_allocated);
            assert_eq!(c.obj_allocated, c.zspages * c.objs_per_zspage);
            assert_eq!(c.fullness.iter().sum::<usize>(), c.zspages);
            assert_eq!(c.fullness[0], 0, "an empty zspage outlived its last object");
        }
        for (&handle, bytes) in &self.model {
            assert_eq!(self.pool.size_of(handle).unwrap(), bytes.len());
            let got = self.pool.load(handle).unwrap();
            assert!(got == *bytes, "object {handle:#x} ({} bytes) differs from the model", bytes.len());
        }
    }
}

fn config_strategy() -> impl Strategy<Value = PoolConfig> {
    (prop::sample::select(vec![1usize, 4, 8, 16]), prop::option::weighted(0.25, 16u64..400)).prop_map(
        |(max_pages_per_zspage, limit_pages)| PoolConfig {
            max_pages_per_zspage,
            mem_limit: limit_pages.map(|p| p * PAGE_SIZE as u64),
            name: None,
        },
    )
}

proptest! {
    // PROPTEST_CASES scales the case count down where each case is slow (`make valgrind`).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pool_matches_a_hashmap_model(config in config_strategy(), ops in prop::collection::vec(op_strategy(), 1..300)) {
        let mut h = Harness {
            pool: Pool::new(config).unwrap(),
            model: HashMap::new(),
            order: Vec::new(),
            dead: Vec::new(),
            large: HashSet::new(),
        };
        for op in &ops {
            h.apply(op);
            h.check();
        }
        // Draining the pool returns every page.
        for handle in std::mem::take(&mut h.order) {
            h.pool.free(handle).unwrap();
            h.model.remove(&handle);
            h.large.remove(&handle);
        }
        h.check();
        prop_assert_eq!(h.pool.stats().pages_used, 0);
    }
}

#[test]
fn forged_and_foreign_handles_are_rejected() {
    let a = Pool::new(PoolConfig::default()).unwrap();
    let b = Pool::new(PoolConfig::default()).unwrap();
    let h = a.store(b"hello").unwrap();
    // Another pool's handle decodes, under this pool's key, to nothing it issued.
    assert!(matches!(b.load(h), Err(ZsError::InvalidHandle { .. })));
    assert!(matches!(b.free(h), Err(ZsError::InvalidHandle { .. })));
    for forged in [0u64, 1, u64::MAX, 0xdead_beef_dead_beef, h ^ 1, h ^ (1 << 40)] {
        if forged != h {
            assert!(matches!(a.load(forged), Err(ZsError::InvalidHandle { .. })), "{forged:#x}");
        }
    }
    assert_eq!(a.load(h).unwrap(), b"hello");
}

#[test]
fn mem_limit_failure_changes_nothing() {
    let pool =
        Pool::new(PoolConfig { max_pages_per_zspage: 4, mem_limit: Some(8 * PAGE_SIZE as u64), name: None }).unwrap();
    let mut handles = Vec::new();
    loop {
        let before = (pool.stats(), pool.class_stats());
        match pool.store(&[7u8; 1500]) {
            Ok(h) => handles.push(h),
            Err(ZsError::PoolFull { mem_limit: Some(_), os_error: None, .. }) => {
                assert_eq!((pool.stats(), pool.class_stats()), before);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(pool.stats().pages_used <= 8);
    // A large object over the limit fails the same way, and the small ones are intact.
    assert!(matches!(pool.store(&[1u8; 5 * PAGE_SIZE]), Err(ZsError::PoolFull { .. })));
    for h in handles {
        assert_eq!(pool.load(h).unwrap(), vec![7u8; 1500]);
    }
}

#[test]
fn store_parts_and_read_batch() {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut handles = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300usize {
        let len = if i % 40 == 0 { 6000 + i } else { (i * 37) % 4000 + 1 };
        let data = pattern(len, i as u8);
        let (a, b) = data.split_at(len / 3);
        handles.push(pool.store_parts(&[a, &[], b]).unwrap());
        expected.push(data);
    }
    let dead = handles[7];
    pool.free(dead).unwrap();
    let mut seen = vec![0u32; handles.len()];
    pool.read_batch(&handles, |i, object| {
        seen[i] += 1;
        match object {
            Ok(object) => {
                let mut out = vec![0u8; object.len()];
                object.read(0, &mut out).unwrap();
                assert_eq!(out, expected[i], "object {i}");
            }
            Err(e) => {
                assert_eq!(i, 7);
                assert!(matches!(e, ZsError::InvalidHandle { .. }), "{e:?}");
            }
        }
    })
    .unwrap();
    assert!(seen.iter().all(|&n| n == 1), "every handle exactly once");
    pool.close();
    assert!(matches!(pool.read_batch(&handles, |_, _| ()), Err(ZsError::Closed)));
}
