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
    let big = vec![0u8; 9000];
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
