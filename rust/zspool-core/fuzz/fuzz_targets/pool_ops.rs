//! Random sequences of malloc, store, write, read, free and compaction slices (interleaved
//! with them), on a pool checked against a model after every step: every byte of every live
//! object, the stats invariants, and that forged, stale and foreign handles are rejected.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use zspool_core::{CompactOptions, LockHold, MAX_CLASS_SIZE, Pool, PoolConfig, ZsError};

#[derive(Arbitrary, Debug)]
enum Op {
    /// malloc(size): a zero-filled object.
    Malloc {
        size: u16,
    },
    /// store(data) of `len % 8193` bytes of `fill`, rotated by the object's index: every class,
    /// those above a page (whose objects straddle up to three pages) included.
    Store {
        len: u16,
        fill: u8,
    },
    /// A large object (over the largest class, two pages): len = 8193 + extra.
    StoreLarge {
        extra: u16,
        fill: u8,
    },
    Write {
        pick: u16,
        offset: u16,
        len: u16,
        fill: u8,
    },
    Read {
        pick: u16,
        offset: u16,
        len: u16,
    },
    Free {
        pick: u16,
    },
    /// Use a freed handle again (use after free / double free).
    FreeStale {
        pick: u16,
    },
    /// Any 64-bit value as a handle: read, write and free must all reject it (or, with
    /// negligible probability, it names a live object, which must then be the model's).
    Forged {
        raw: u64,
    },
    /// One compaction slice: at most `max_pages` pages, with a small object slice.
    Compact {
        max_pages: u8,
        slice_objects: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_pages_per_zspage: u8,
    mem_limit_pages: Option<u16>,
    ops: Vec<Op>,
}

struct Model {
    live: Vec<(u64, Vec<u8>)>,
    stale: Vec<u64>,
}

fn pattern(len: usize, fill: u8, salt: usize) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i + salt) as u8)).collect()
}

fn check_all(pool: &Pool, model: &Model) {
    for (h, bytes) in &model.live {
        assert_eq!(&pool.load(*h).expect("live handle"), bytes, "object {h:#x} differs from the model");
    }
    let stats = pool.stats();
    assert_eq!(stats.objects, model.live.len());
    assert_eq!(stats.payload_bytes, model.live.iter().map(|(_, b)| b.len() as u64).sum::<u64>());
    let classes = pool.class_stats();
    let class_pages: usize = classes.iter().map(|c| c.pages_used).sum();
    assert_eq!(stats.pages_used, class_pages + stats.large_object_pages, "page accounting");
    assert_eq!(stats.freeable_pages, classes.iter().map(|c| c.freeable).sum::<usize>());
    assert_eq!(stats.freeable_pages, pool.can_compact());
    for c in &classes {
        assert!(c.obj_used <= c.obj_allocated);
        assert_eq!(c.obj_allocated, c.zspages * c.objs_per_zspage);
        assert_eq!(c.fullness.iter().sum::<usize>(), c.zspages);
    }
    if let Some(limit) = stats.mem_limit {
        assert!(stats.mem_used_bytes <= limit);
    }
}

fn expect_rejected(result: Result<(), ZsError>) {
    match result {
        Err(ZsError::InvalidHandle { .. }) => {}
        other => panic!("a stale or forged handle was not rejected: {other:?}"),
    }
}

fuzz_target!(|input: Input| {
    let config = PoolConfig {
        max_pages_per_zspage: 1 + usize::from(input.max_pages_per_zspage % 16),
        mem_limit: input.mem_limit_pages.map(|p| 4096 * (1 + u64::from(p))),
        name: None,
    };
    // The model has no memory bound: without a mem_limit, PoolFull is a bug, not an outcome.
    let limited = config.mem_limit.is_some();
    let pool = Pool::new(config).unwrap();
    let mut model = Model { live: Vec::new(), stale: Vec::new() };
    let pick = |model: &Model, i: u16| (!model.live.is_empty()).then(|| usize::from(i) % model.live.len());
    for (step, op) in input.ops.into_iter().take(2000).enumerate() {
        match op {
            Op::Malloc { size } => {
                // Every class, and a little past the last one (8192) into the large path.
                let size = usize::from(size) % 8300;
                match pool.malloc(size) {
                    Ok(h) => model.live.push((h, vec![0; size])),
                    Err(ZsError::PoolFull { .. }) if limited => {}
                    Err(e) => panic!("malloc({size}): {e}"),
                }
            }
            Op::Store { len, fill } | Op::StoreLarge { extra: len, fill } if matches!(op, Op::StoreLarge { .. }) => {
                let data = pattern(MAX_CLASS_SIZE + 1 + usize::from(len) % 20_000, fill, step);
                match pool.store(&data) {
                    Ok(h) => model.live.push((h, data)),
                    Err(ZsError::PoolFull { .. }) if limited => {}
                    Err(e) => panic!("store of {} bytes: {e}", data.len()),
                }
            }
            Op::Store { len, fill } | Op::StoreLarge { extra: len, fill } => {
                let data = pattern(usize::from(len) % (MAX_CLASS_SIZE + 1), fill, step);
                match pool.store(&data) {
                    Ok(h) => model.live.push((h, data)),
                    Err(ZsError::PoolFull { .. }) if limited => {}
                    Err(e) => panic!("store of {} bytes: {e}", data.len()),
                }
            }
            Op::Write { pick: p, offset, len, fill } => {
                let Some(i) = pick(&model, p) else { continue };
                let (h, bytes) = &mut model.live[i];
                let (offset, len) = (usize::from(offset), usize::from(len) % 300);
                let data = pattern(len, fill, step);
                match pool.write(*h, offset, &data) {
                    Ok(()) => bytes[offset..offset + len].copy_from_slice(&data),
                    Err(ZsError::OutOfBounds { .. }) => assert!(offset + len > bytes.len()),
                    Err(e) => panic!("write: {e}"),
                }
            }
            Op::Read { pick: p, offset, len } => {
                let Some(i) = pick(&model, p) else { continue };
                let (h, bytes) = &model.live[i];
                let (offset, len) = (usize::from(offset), usize::from(len) % 300);
                let mut out = vec![0xEE; len];
                match pool.read(*h, offset, &mut out) {
                    Ok(()) => assert_eq!(&out[..], &bytes[offset..offset + len]),
                    Err(ZsError::OutOfBounds { .. }) => {
                        assert!(offset + len > bytes.len());
                        assert!(out.iter().all(|&b| b == 0xEE), "a refused read wrote to its buffer");
                    }
                    Err(e) => panic!("read: {e}"),
                }
            }
            Op::Free { pick: p } => {
                let Some(i) = pick(&model, p) else { continue };
                let (h, _) = model.live.swap_remove(i);
                pool.free(h).unwrap();
                model.stale.push(h);
            }
            Op::FreeStale { pick: p } => {
                if model.stale.is_empty() {
                    continue;
                }
                let h = model.stale[usize::from(p) % model.stale.len()];
                let mut buf = [0u8; 1];
                expect_rejected(pool.read(h, 0, &mut buf[..0]));
                expect_rejected(pool.write(h, 0, &[]));
                expect_rejected(pool.free(h));
            }
            Op::Forged { raw } => {
                if let Some((_, bytes)) = model.live.iter().find(|(h, _)| *h == raw) {
                    assert_eq!(&pool.load(raw).unwrap(), bytes);
                    continue;
                }
                let mut buf = [0u8; 4];
                expect_rejected(pool.read(raw, 0, &mut buf[..0]));
                expect_rejected(pool.write(raw, 0, &[1]));
                expect_rejected(pool.free(raw));
            }
            Op::Compact { max_pages, slice_objects } => {
                let before = pool.can_compact();
                let options = CompactOptions {
                    max_pages: Some(1 + usize::from(max_pages % 8)),
                    time_budget: None,
                    lock_hold: LockHold::Yielding {
                        slice_objects: 1 + usize::from(slice_objects % 64),
                        slice: std::time::Duration::from_secs(1),
                    },
                };
                let report = pool.compact(&options);
                assert!(report.pages_freed <= before, "freed more than can_compact promised");
            }
        }
        check_all(&pool, &model);
    }
    // Fresh objects never show old data: everything freed above was zeroed.
    for size in [4096, 6000, MAX_CLASS_SIZE] {
        let fresh = pool.malloc(size).unwrap_or(0);
        if fresh != 0 {
            assert!(pool.load(fresh).unwrap().iter().all(|&b| b == 0));
            pool.free(fresh).unwrap();
        }
    }
    for (h, _) in model.live.drain(..) {
        pool.free(h).unwrap();
    }
    check_all(&pool, &model);
    assert_eq!(pool.stats().pages_used, 0, "pages left after freeing everything");
    pool.close();
});
