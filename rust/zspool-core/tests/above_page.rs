//! The size classes above a page (4097..=8192 bytes): objects that straddle three pages of a
//! zspage survive every way in and out (store, store_parts, write, read, read_batch) and
//! compaction's moves; the boundary between the last class (8192) and the large path (8193);
//! the stats identities with both kinds of object; and the fallback to the large path when a
//! new zspage of such a class would pass `mem_limit`.

mod common;

use common::{Rng, pattern};
use zspool_core::{CompactOptions, MAX_CLASS_SIZE, PAGE_SIZE, Pool, PoolConfig, PoolStats, StopReason, ZsError};

/// Does object `obj` of a class of `class_size` bytes touch three pages of its zspage?
fn spans_three_pages(class_size: usize, obj: usize) -> bool {
    let start = obj * class_size;
    (start + class_size - 1) / PAGE_SIZE - start / PAGE_SIZE == 2
}

/// Every size class above a page, by its largest size, with its layout.
fn classes_above_a_page(pool: &Pool) -> Vec<(usize, usize)> {
    pool.class_table().classes().iter().filter(|c| c.size > PAGE_SIZE).map(|c| (c.size, c.objs_per_zspage)).collect()
}

/// `stats` agrees with the class table: pages, objects and the large path add up.
fn assert_stats_identities(pool: &Pool, live_objects: usize, payload: u64) -> PoolStats {
    let stats = pool.stats();
    let classes = pool.class_stats();
    assert_eq!(stats.objects, live_objects);
    assert_eq!(stats.payload_bytes, payload);
    assert_eq!(classes.iter().map(|c| c.obj_used).sum::<usize>() + stats.large_objects, stats.objects);
    assert_eq!(classes.iter().map(|c| c.pages_used).sum::<usize>() + stats.large_object_pages, stats.pages_used);
    assert_eq!(stats.freeable_pages, classes.iter().map(|c| c.freeable).sum::<usize>());
    stats
}

#[test]
fn objects_straddling_three_pages_round_trip() {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut three_page_objects = 0;
    let mut live = Vec::new();
    for (class_size, objs_per_zspage) in classes_above_a_page(&pool) {
        // Fill two zspages of the class with objects of the class's own size and one byte
        // less, so the last byte of each slot is covered by some objects and not others.
        for i in 0..2 * objs_per_zspage {
            let size = class_size - i % 2;
            let key = (class_size * 1000 + i) as u64;
            let data = pattern(key, size);
            let handle = if i % 3 == 0 {
                let (a, rest) = data.split_at(size / 3);
                let (b, c) = rest.split_at(PAGE_SIZE.min(rest.len()));
                pool.store_parts(&[a, b, &[], c]).unwrap()
            } else {
                pool.store(&data).unwrap()
            };
            if spans_three_pages(class_size, i % objs_per_zspage) {
                three_page_objects += 1;
            }
            live.push((handle, key, size));
        }
    }
    assert!(three_page_objects > 100, "only {three_page_objects} objects straddled three pages");
    let stats = pool.stats();
    assert_eq!(stats.large_objects, 0, "every object of 4097..=8192 bytes is packed");

    // Whole reads, one by one and in a batch.
    for &(handle, key, size) in &live {
        assert_eq!(pool.load(handle).unwrap(), pattern(key, size), "{size} bytes");
    }
    let handles: Vec<u64> = live.iter().map(|o| o.0).collect();
    let mut seen = 0;
    pool.read_batch(&handles, |i, object| {
        let object = object.unwrap();
        let (_, key, size) = live[i];
        let mut out = vec![0u8; object.len()];
        object.read(0, &mut out).unwrap();
        assert!(out == pattern(key, size), "batch read of object {i} ({size} bytes)");
        seen += 1;
    })
    .unwrap();
    assert_eq!(seen, live.len());

    // Partial writes and reads across every page boundary an object spans.
    let mut rng = Rng::new(7);
    for &(handle, key, size) in live.iter().step_by(3) {
        let mut expected = pattern(key, size);
        for _ in 0..4 {
            let offset = rng.below(size);
            let len = rng.below(size - offset + 1);
            let patch = pattern(rng.next_u64(), len);
            pool.write(handle, offset, &patch).unwrap();
            expected[offset..offset + len].copy_from_slice(&patch);
            let mut back = vec![0u8; len];
            pool.read(handle, offset, &mut back).unwrap();
            assert_eq!(back, patch);
        }
        assert_eq!(pool.load(handle).unwrap(), expected);
        assert!(matches!(pool.write(handle, size, &[1]), Err(ZsError::OutOfBounds { .. })));
        // Put the pattern back for the checks below.
        pool.write(handle, 0, &pattern(key, size)).unwrap();
    }
    for &(handle, _, _) in &live {
        pool.free(handle).unwrap();
    }
    assert_eq!(pool.stats().pages_used, 0);
}

#[test]
fn compaction_moves_objects_above_a_page() {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut rng = Rng::new(42);
    let mut live = Vec::new();
    for i in 0..3000u64 {
        let size = PAGE_SIZE + 1 + rng.below(MAX_CLASS_SIZE - PAGE_SIZE);
        live.push((pool.store(&pattern(i, size)).unwrap(), i, size));
    }
    live.retain(|&(handle, _, _)| {
        let keep = rng.chance(0.3);
        if !keep {
            pool.free(handle).unwrap();
        }
        keep
    });
    let payload: u64 = live.iter().map(|o| o.2 as u64).sum();
    let before = assert_stats_identities(&pool, live.len(), payload);
    let predicted = pool.can_compact();
    assert!(predicted > 100, "70 % freed should leave whole zspages to free, got {predicted} pages");

    let report = pool.compact(&CompactOptions::default());
    assert_eq!(report.stop_reason, StopReason::Done);
    assert_eq!(report.pages_freed, predicted, "compaction frees what can_compact promised");
    assert!(report.objects_migrated > 0);
    let after = assert_stats_identities(&pool, live.len(), payload);
    assert_eq!(after.pages_used, before.pages_used - predicted);
    assert_eq!(pool.can_compact(), 0);
    for &(handle, key, size) in &live {
        assert!(pool.load(handle).unwrap() == pattern(key, size), "object of {size} bytes after its move");
    }
}

#[test]
fn the_last_class_ends_at_two_pages_and_the_large_path_starts_after() {
    for chain in [1, 4, 8, 16] {
        let pool = Pool::new(PoolConfig { max_pages_per_zspage: chain, ..PoolConfig::default() }).unwrap();
        let packed = pool.store(&pattern(1, MAX_CLASS_SIZE)).unwrap();
        let stats = pool.stats();
        assert_eq!((stats.large_objects, stats.pages_used), (0, 2), "8192 bytes: two pages of a class, chain {chain}");
        let large = pool.store(&pattern(2, MAX_CLASS_SIZE + 1)).unwrap();
        let stats = pool.stats();
        assert_eq!((stats.large_objects, stats.large_object_pages), (1, 3), "8193 bytes: three pages of its own");
        assert_eq!(stats.pages_used, 5);
        assert_eq!(pool.load(packed).unwrap(), pattern(1, MAX_CLASS_SIZE));
        assert_eq!(pool.load(large).unwrap(), pattern(2, MAX_CLASS_SIZE + 1));
        assert_stats_identities(&pool, 2, (2 * MAX_CLASS_SIZE + 1) as u64);
        // A page-sized object is still the kernel's: one page, one object.
        let page = pool.store(&[9; PAGE_SIZE]).unwrap();
        assert_eq!(pool.stats().pages_used, 6);
        for handle in [packed, large, page] {
            pool.free(handle).unwrap();
        }
        assert_eq!(pool.stats().pages_used, 0);
    }
}

#[test]
fn page_sized_values_cost_what_their_class_promises() {
    // The cache's case: a 4096-byte value with a 13-byte header and key, 4109 bytes. On the
    // large path it cost two pages; its class packs 15 into 16 pages.
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let handles: Vec<u64> = (0..150).map(|i| pool.store(&pattern(i, 4109)).unwrap()).collect();
    assert_eq!(pool.stats().pages_used, 160);
    assert_eq!(pool.stats().large_objects, 0);
    for (i, &handle) in handles.iter().enumerate() {
        assert_eq!(pool.load(handle).unwrap(), pattern(i as u64, 4109));
    }
}

#[test]
fn at_mem_limit_an_object_above_a_page_falls_back_to_its_own_pages() {
    // Room for 4 pages: a 16-page zspage of the 4109-byte class does not fit, two pages do.
    let pool = Pool::new(PoolConfig { mem_limit: Some(4 * PAGE_SIZE as u64), ..PoolConfig::default() }).unwrap();
    let a = pool.store(&pattern(1, 4109)).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.large_objects, stats.large_object_pages, stats.pages_used), (1, 2, 2));
    let b = pool.store(&pattern(2, 8000)).unwrap();
    assert_eq!(pool.stats().pages_used, 4);
    let before = (pool.stats(), pool.class_stats());
    let err = pool.store(&pattern(3, 5000)).unwrap_err();
    assert!(matches!(err, ZsError::PoolFull { os_error: None, .. }), "{err:?}");
    assert_eq!((pool.stats(), pool.class_stats()), before, "a refused malloc changes nothing");
    assert_eq!(pool.load(a).unwrap(), pattern(1, 4109));
    assert_eq!(pool.load(b).unwrap(), pattern(2, 8000));
    // The 8000-byte class holds one object in two pages: it fits the limit, so it is packed.
    assert_eq!(pool.stats().large_objects, 1);
    assert_stats_identities(&pool, 2, 4109 + 8000);
    pool.free(a).unwrap();
    pool.free(b).unwrap();
    assert_eq!(pool.stats().pages_used, 0);
}
