//! Round trips through one cache file and through a second opener of it.

mod common;

use std::time::Duration;

use common::{TempPath, check_value, config, create, key_bytes, make_value};
use zspool_cache::{Compression, Key};
use zspool_core::CompactOptions;
use zspool_shared::{OpenOptions, SharedCache, SharedConfig, SharedError, ValueFlags};

#[test]
fn set_get_delete_round_trip_and_a_second_opener_sees_them() {
    let path = TempPath::new("rt");
    let cache = create(&path, 8 << 20);
    let mut out = Vec::new();
    for k in 0..2000u64 {
        assert!(
            cache
                .set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 40 + (k as usize % 900)), ValueFlags::RAW, None)
                .unwrap()
        );
    }
    let other = SharedCache::open(&path.0, None, &OpenOptions::default()).unwrap();
    for k in 0..2000u64 {
        assert_eq!(other.get(Key::bytes(&key_bytes(k)), &mut out).unwrap(), Some(ValueFlags::RAW));
        assert_eq!(check_value(k, &out), Some(1));
    }
    assert_eq!(cache.len().unwrap(), 2000);
    assert!(cache.set(Key::str("s"), b"text", ValueFlags::SERIALIZED, None).unwrap());
    assert_eq!(other.get(Key::str("s"), &mut out).unwrap(), Some(ValueFlags::SERIALIZED));
    assert_eq!(out, b"text");
    assert_eq!(other.get(Key::bytes(b"s"), &mut out).unwrap(), None, "a str key is not its bytes");
    for k in (0..2000u64).step_by(2) {
        assert!(other.delete(Key::bytes(&key_bytes(k))).unwrap());
    }
    assert!(!cache.delete(Key::bytes(&key_bytes(0))).unwrap());
    assert_eq!(cache.len().unwrap(), 1001);
    assert!(!cache.contains(Key::bytes(&key_bytes(2))).unwrap());
    assert!(cache.contains(Key::bytes(&key_bytes(3))).unwrap());
    let keys = cache.keys().unwrap();
    assert_eq!(keys.len(), 1001);
    let stats = cache.stats();
    assert_eq!(stats.entries, 1001);
    assert!(stats.hits >= 2001);
    cache.clear().unwrap();
    assert_eq!(cache.len().unwrap(), 0);
    assert_eq!(cache.currsize(), 0);
    assert_eq!(cache.stats().pages_in_use, 0);
}

#[test]
fn compression_round_trips_and_saves_space() {
    let path = TempPath::new("lz4");
    let cfg = SharedConfig { compression: Compression::Lz4, ..config(8 << 20) };
    let cache = SharedCache::open(&path.0, Some(&cfg), &OpenOptions::default()).unwrap();
    let text = b"the quick brown fox jumps over the lazy dog; ".repeat(40);
    assert!(cache.set(Key::bytes(b"t"), &text, ValueFlags::RAW, None).unwrap());
    assert!(cache.currsize() < text.len() as u64 / 2);
    let mut out = Vec::new();
    assert_eq!(cache.get(Key::bytes(b"t"), &mut out).unwrap(), Some(ValueFlags::RAW));
    assert_eq!(out, text);
    let zstd = TempPath::new("zstd");
    let cfg = SharedConfig { compression: Compression::Zstd(3), ..config(8 << 20) };
    let cache = SharedCache::open(&zstd.0, Some(&cfg), &OpenOptions::default()).unwrap();
    assert!(cache.set(Key::bytes(b"t"), &text, ValueFlags::RAW, None).unwrap());
    assert_eq!(cache.get(Key::bytes(b"t"), &mut out).unwrap(), Some(ValueFlags::RAW));
    assert_eq!(out, text);
}

#[test]
fn ttl_expires_entries_on_read_and_by_expire() {
    let path = TempPath::new("ttl");
    let cache = create(&path, 4 << 20);
    let mut out = Vec::new();
    cache.set(Key::bytes(b"short"), b"v", ValueFlags::RAW, Some(Duration::from_millis(30))).unwrap();
    cache.set(Key::bytes(b"short2"), b"v", ValueFlags::RAW, Some(Duration::from_millis(30))).unwrap();
    cache.set(Key::bytes(b"long"), b"v", ValueFlags::RAW, None).unwrap();
    assert!(cache.get(Key::bytes(b"short"), &mut out).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(cache.get(Key::bytes(b"short"), &mut out).unwrap(), None);
    assert_eq!(cache.len().unwrap(), 1);
    assert_eq!(cache.expire().unwrap(), 1);
    assert_eq!(cache.stats().expirations, 2);
    assert!(cache.get(Key::bytes(b"long"), &mut out).unwrap().is_some());
}

#[test]
fn eviction_keeps_the_budget_and_too_large_is_an_error() {
    let path = TempPath::new("evict");
    let cache = create(&path, 1 << 20);
    for k in 0..20_000u64 {
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 200), ValueFlags::RAW, None).unwrap());
        assert!(cache.currsize() <= 1 << 20);
    }
    let stats = cache.stats();
    assert!(stats.evictions > 10_000, "{stats:?}");
    assert!(stats.entries > 3000, "{stats:?}");
    let big = vec![0u8; 64 << 10];
    assert!(matches!(cache.set(Key::bytes(b"big"), &big, ValueFlags::RAW, None), Err(SharedError::TooLarge { .. })));
}

#[test]
fn delete_and_compact_punch_pages_out_of_the_file() {
    let path = TempPath::new("compact");
    let cache = create(&path, 32 << 20);
    for k in 0..60_000u64 {
        cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 300), ValueFlags::RAW, None).unwrap();
    }
    let full = cache.stats();
    for k in 0..60_000u64 {
        if k % 10 < 7 {
            cache.delete(Key::bytes(&key_bytes(k))).unwrap();
        }
    }
    assert!(cache.can_compact() > 0);
    let report = cache.compact(&CompactOptions::default()).unwrap();
    assert!(report.pages_freed > 0 && report.objects_migrated > 0, "{report:?}");
    let after = cache.stats();
    assert!(after.pages_in_use * 10 < full.pages_in_use * 5, "{full:?} {after:?}");
    assert!(after.file_bytes_allocated * 10 < full.file_bytes_allocated * 6, "{full:?} {after:?}");
    let mut out = Vec::new();
    for k in 0..60_000u64 {
        let found = cache.get(Key::bytes(&key_bytes(k)), &mut out).unwrap().is_some();
        assert_eq!(found, k % 10 >= 7);
        if found {
            assert_eq!(check_value(k, &out), Some(1));
        }
    }
}

#[test]
fn opening_checks_configuration_and_files() {
    let path = TempPath::new("open");
    assert!(matches!(SharedCache::open(&path.0, None, &OpenOptions::default()), Err(SharedError::NotFound { .. })));
    // A creator killed before linking its file left it behind (pid 0x7fffffff never exists).
    let mut stale = path.0.clone().into_os_string();
    stale.push(".creating.2147483647.1");
    std::fs::write(&stale, b"half-built").unwrap();
    let _cache = create(&path, 4 << 20);
    assert!(!std::path::Path::new(&stale).exists(), "a dead creator's temporary file is removed");
    let err = SharedCache::open(&path.0, Some(&config(8 << 20)), &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SharedError::Mismatch { field: "maxbytes", .. }), "{err}");
    assert!(err.to_string().contains("maxbytes"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path.0).unwrap().permissions().mode() & 0o777, 0o600);
    let junk = TempPath::new("junk");
    std::fs::write(&junk.0, vec![7u8; 10000]).unwrap();
    assert!(matches!(SharedCache::open(&junk.0, None, &OpenOptions::default()), Err(SharedError::NotOurs { .. })));
    assert!(matches!(
        SharedCache::open(&path.0, Some(&config(1)), &OpenOptions::default()),
        Err(SharedError::InvalidConfig(_))
    ));
    // The largest budget, 128 GiB, is more than this machine's /dev/shm holds (24 GiB).
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: statvfs fills the struct; the path is a C string literal.
    assert_eq!(unsafe { libc::statvfs(c"/dev/shm".as_ptr(), &mut st) }, 0);
    if st.f_bavail * st.f_frsize < 128 << 30 {
        let huge = TempPath::new("huge");
        let err = SharedCache::open(&huge.0, Some(&config(128 << 30)), &OpenOptions::default()).unwrap_err();
        assert!(matches!(err, SharedError::InvalidConfig(_)), "a budget /dev/shm cannot hold is refused: {err}");
        assert!(!huge.0.exists());
    }
    assert!(SharedCache::destroy(&path.0).unwrap());
    assert!(!SharedCache::destroy(&path.0).unwrap());
}

#[test]
fn close_makes_later_calls_fail_and_leases_exclude_others() {
    let path = TempPath::new("close");
    let cache = create(&path, 4 << 20);
    assert!(cache.try_lease(1, Duration::from_secs(5)));
    assert!(!cache.try_lease(2, Duration::from_secs(5)));
    assert!(cache.try_lease(1, Duration::from_secs(5)));
    cache.release_lease(1);
    assert!(cache.try_lease(2, Duration::from_millis(1)));
    std::thread::sleep(Duration::from_millis(5));
    assert!(cache.try_lease(1, Duration::from_secs(5)), "an expired lease is taken over");
    cache.close();
    assert!(matches!(cache.get(Key::bytes(b"k"), &mut Vec::new()), Err(SharedError::Closed)));
    assert_eq!(cache.currsize(), 0);
}

#[test]
fn try_get_answers_as_get_does_or_not_at_all_and_never_waits() {
    let path = TempPath::new("tryget");
    let cfg = SharedConfig { ttl: None, ..config(8 << 20) };
    let cache = SharedCache::open(&path.0, Some(&cfg), &OpenOptions::default()).unwrap();
    let mut out = Vec::new();
    for k in 0..500u64 {
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 200), ValueFlags::RAW, None).unwrap());
    }
    for k in 0..500u64 {
        assert_eq!(cache.try_get(Key::bytes(&key_bytes(k)), &mut out).unwrap(), Some(Some(ValueFlags::RAW)));
        assert_eq!(check_value(k, &out), Some(1));
    }
    assert_eq!(cache.try_get(Key::bytes(b"absent"), &mut out).unwrap(), Some(None));
    // An expired entry must be removed, which takes a class lock: not a no-wait read.
    assert!(cache.set(Key::bytes(b"brief"), b"v", ValueFlags::RAW, Some(Duration::from_millis(1))).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(cache.try_get(Key::bytes(b"brief"), &mut out).unwrap(), None);
    assert_eq!(cache.get(Key::bytes(b"brief"), &mut out).unwrap(), None);
    // Beside writers and a compactor: every answer is the key's own value, a version it had.
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut version = 2u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for k in (0..500u64).step_by(3) {
                    cache.set(Key::bytes(&key_bytes(k)), &make_value(k, version, 200), ValueFlags::RAW, None).unwrap();
                    cache.delete(Key::bytes(&key_bytes(k + 1))).unwrap();
                }
                version += 1;
            }
        });
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                cache.compact(&CompactOptions::default()).unwrap();
            }
        });
        let (mut answered, mut declined) = (0, 0);
        let mut out = Vec::new();
        for round in 0..40_000u64 {
            let k = round % 500;
            match cache.try_get(Key::bytes(&key_bytes(k)), &mut out).unwrap() {
                Some(Some(_)) => {
                    assert!(check_value(k, &out).is_some(), "try_get returned bytes that are not key {k}'s");
                    answered += 1;
                }
                Some(None) => answered += 1,
                None => declined += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(answered > declined, "try_get declined {declined} of {} reads", answered + declined);
    });
}

#[test]
fn entries_above_the_core_classes_up_to_a_chunk_round_trip_and_give_their_pages_back() {
    let path = TempPath::new("pages");
    let cache = create(&path, 16 << 20);
    let mut out = Vec::new();
    let sizes = [8200usize, 9000, 12_288, 20_000, 40_000, 65_000];
    for (k, &len) in sizes.iter().enumerate() {
        let k = k as u64;
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 1, len), ValueFlags::RAW, None).unwrap());
    }
    let used = cache.stats().pages_in_use;
    let expected: u64 = sizes.iter().map(|&len| (len + 64).div_ceil(4096) as u64).sum();
    assert!(used <= expected + sizes.len() as u64, "{used} pages for {expected} pages of entries");
    for (k, &len) in sizes.iter().enumerate() {
        let k = k as u64;
        assert_eq!(cache.get(Key::bytes(&key_bytes(k)), &mut out).unwrap(), Some(ValueFlags::RAW));
        assert_eq!((out.len(), check_value(k, &out)), (len, Some(1)));
    }
    let blocks = cache.stats().file_bytes_allocated;
    for k in 0..sizes.len() as u64 {
        assert!(cache.delete(Key::bytes(&key_bytes(k))).unwrap());
    }
    assert_eq!(cache.stats().pages_in_use, 0);
    assert!(cache.stats().file_bytes_allocated + used * 4096 <= blocks, "the pages left the file");
    let too_big = vec![7u8; 64 << 10];
    assert!(matches!(cache.set(Key::bytes(b"x"), &too_big, ValueFlags::RAW, None), Err(SharedError::TooLarge { .. })));
}

#[test]
fn the_index_grows_with_its_entries_and_compaction_shrinks_it_and_gives_its_pages_back() {
    let path = TempPath::new("index");
    let cache = create(&path, 32 << 20);
    let smallest = cache.stats().index_slots;
    assert_eq!(smallest, 64 * 256, "every shard starts at one page of slots");
    let n = 100_000u64;
    for k in 0..n {
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 40), ValueFlags::RAW, None).unwrap());
    }
    let full = cache.stats();
    assert_eq!(full.entries, n, "growing, no table evicted an entry: {full:?}");
    assert_eq!(full.evictions, 0);
    assert!(full.index_slots * 3 >= n * 4 && full.index_slots <= n * 4, "tables filled between 1/4 and 3/4: {full:?}");
    for k in 0..n {
        if k % 20 != 0 {
            assert!(cache.delete(Key::bytes(&key_bytes(k))).unwrap());
        }
    }
    cache.compact(&CompactOptions::default()).unwrap();
    let after = cache.stats();
    assert!(after.index_slots * 8 <= full.index_slots, "{full:?} {after:?}");
    assert!(after.entries * 8 <= after.index_slots * 5, "shrunk no further than 5/8 full: {after:?}");
    let index_bytes_freed = (full.index_slots - after.index_slots) * 16;
    let pages_freed = (full.pages_in_use - after.pages_in_use) * zspool_core::PAGE_SIZE as u64;
    assert!(
        full.file_bytes_allocated - after.file_bytes_allocated >= pages_freed + index_bytes_freed * 9 / 10,
        "the slots' pages left the file: {full:?} {after:?}"
    );
    let mut out = Vec::new();
    for k in 0..n {
        let found = cache.get(Key::bytes(&key_bytes(k)), &mut out).unwrap().is_some();
        assert_eq!(found, k % 20 == 0, "key {k}");
        if found {
            assert_eq!(check_value(k, &out), Some(1), "key {k}: moved with its slot, found whole");
        }
    }
    // It grows again, and a second opener sees the same tables.
    for k in n..2 * n {
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 2, 40), ValueFlags::RAW, None).unwrap());
    }
    let other = SharedCache::open(&path.0, None, &OpenOptions::default()).unwrap();
    for k in n..2 * n {
        assert_eq!(other.get(Key::bytes(&key_bytes(k)), &mut out).unwrap(), Some(ValueFlags::RAW));
        assert_eq!(check_value(k, &out), Some(2));
    }
    assert_eq!(other.len().unwrap() as u64, n + n / 20);
    other.clear().unwrap();
    assert_eq!(other.stats().index_slots, smallest, "clear goes back to the smallest tables");
}

#[test]
fn take_and_set_if_absent_act_once_in_one_shard_hold() {
    let path = TempPath::new("take");
    let cache = create(&path, 8 << 20);
    let mut out = Vec::new();
    let key = Key::bytes(b"k");
    assert_eq!(cache.set_if_absent(key, b"first", ValueFlags::RAW, None, &mut out).unwrap(), None, "absent: stored");
    assert_eq!(
        cache.set_if_absent(key, b"second", ValueFlags::SERIALIZED, None, &mut out).unwrap(),
        Some(ValueFlags::RAW)
    );
    assert_eq!(out, b"first", "present: the stored value, unchanged");
    assert_eq!(cache.take(key, &mut out).unwrap(), Some(ValueFlags::RAW));
    assert_eq!(out, b"first");
    assert_eq!(cache.take(key, &mut out).unwrap(), None, "taken once");
    assert!(!cache.contains(key).unwrap());
    // An expired entry is absent to both.
    cache.set(key, b"old", ValueFlags::RAW, Some(Duration::from_millis(1))).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(cache.set_if_absent(key, b"new", ValueFlags::RAW, None, &mut out).unwrap(), None);
    cache.set(key, b"old", ValueFlags::RAW, Some(Duration::from_millis(1))).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(cache.take(key, &mut out).unwrap(), None);
    assert_eq!(cache.len().unwrap(), 0);
}
