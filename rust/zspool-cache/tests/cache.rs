//! The cache end to end on a real pool: round trips, eviction, TTL, compression, threads,
//! compaction underneath, errors.

use std::sync::Arc;
use std::time::Duration;

use zspool_cache::{Cache, CacheConfig, CacheError, Clock, Compression, Eviction, Key, KeyKind, Ttl};
use zspool_core::{CompactOptions, Pool, PoolConfig, ZsError};

fn cache(max_bytes: u64) -> Cache<Arc<Pool>> {
    cache_with(CacheConfig::new(max_bytes))
}

fn cache_with(config: CacheConfig) -> Cache<Arc<Pool>> {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    Cache::new(pool, config).unwrap()
}

fn k(s: &str) -> Key<'_> {
    Key::str(s)
}

#[test]
fn round_trip_overwrite_delete() {
    let c = cache(1 << 20);
    c.set(k("a"), b"one", Ttl::Default).unwrap();
    c.set(Key::bytes(b"a"), b"bytes key", Ttl::Default).unwrap();
    assert_eq!(c.get(k("a")).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(c.get(Key::bytes(b"a")).unwrap().as_deref(), Some(&b"bytes key"[..]), "str and bytes keys differ");
    c.set(k("a"), b"two, longer than before", Ttl::Default).unwrap();
    assert_eq!(c.get(k("a")).unwrap().as_deref(), Some(&b"two, longer than before"[..]));
    assert_eq!(c.len(), 2);
    assert!(c.remove(k("a")).unwrap());
    assert!(!c.remove(k("a")).unwrap());
    assert_eq!(c.get(k("a")).unwrap(), None);
    c.set(k(""), b"", Ttl::Default).unwrap();
    assert_eq!(c.get(k("")).unwrap().as_deref(), Some(&b""[..]), "empty key and value");
    let s = c.stats().unwrap();
    assert_eq!((s.hits, s.misses, s.entries), (4, 1, 2));
    assert_eq!(s.payload_bytes, 1 + 9, "b'a' -> 'bytes key' and '' -> ''");
    assert_eq!(s.stored_bytes, s.pool.payload_bytes);
    let mut g = c.lock();
    let keys = g.keys().unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.kind, k.bytes.as_slice())).collect::<Vec<_>>(),
        [(KeyKind::Bytes, &b"a"[..]), (KeyKind::Str, &b""[..])]
    );
    g.clear().unwrap();
    assert_eq!(g.len(), 0);
    drop(g);
    assert_eq!(c.pool().len(), 0, "clear frees every object");
}

#[test]
fn budget_is_kept_and_sieve_spares_hit_entries() {
    // Each entry: 1 flag + 1 key length + 2 key + 98 value = 102 bytes; room for 4.
    let c = cache(4 * 102);
    let value = [7u8; 98];
    for key in ["k0", "k1", "k2", "k3"] {
        c.set(k(key), &value, Ttl::Default).unwrap();
    }
    assert!(c.get(k("k0")).unwrap().is_some());
    c.set(k("k4"), &value, Ttl::Default).unwrap();
    assert_eq!(c.get(k("k1")).unwrap(), None, "k1 is the oldest unvisited entry");
    assert!(c.get(k("k0")).unwrap().is_some(), "k0 was hit, so SIEVE kept it");
    assert_eq!(c.lock().currsize(), 4 * 102);
    assert_eq!(c.stats().unwrap().evictions, 1);
    let err = c.set(k("big"), &[0; 500], Ttl::Default).unwrap_err();
    assert!(matches!(err, CacheError::TooLarge { stored_bytes: 505, max_bytes: 408, .. }), "{err}");
    assert_eq!(c.len(), 4, "a value too large changes nothing");
}

#[test]
fn lru_evicts_the_least_recently_used() {
    let mut config = CacheConfig::new(3 * 10);
    config.eviction = Eviction::Lru;
    let c = cache_with(config);
    for key in ["k0", "k1", "k2"] {
        c.set(k(key), b"123456", Ttl::Default).unwrap();
    }
    c.get(k("k0")).unwrap();
    c.set(k("k3"), b"123456", Ttl::Default).unwrap();
    assert_eq!(c.get(k("k1")).unwrap(), None);
    let mut g = c.lock();
    let popped = g.popitem_with(|key, v| (key.bytes, v.to_vec().unwrap())).unwrap().unwrap();
    assert_eq!(popped, (b"k2".to_vec(), b"123456".to_vec()));
}

#[test]
fn ttl_per_cache_and_per_entry() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let mut config = CacheConfig::new(1 << 20);
    config.default_ttl = Some(Duration::from_secs(10));
    let c = Cache::with_clock(pool, config, Clock::manual()).unwrap();
    c.set(k("default"), b"v", Ttl::Default).unwrap();
    c.set(k("short"), b"v", Ttl::For(Duration::from_secs(1))).unwrap();
    c.set(k("never"), b"v", Ttl::Never).unwrap();
    c.clock().advance(Duration::from_secs(2));
    assert_eq!(c.get(k("short")).unwrap(), None);
    assert!(c.get(k("default")).unwrap().is_some());
    assert!(!c.lock().contains(k("short")).unwrap());
    c.clock().advance(Duration::from_secs(9));
    assert_eq!(c.len(), 1, "len() drops expired entries");
    assert!(c.get(k("never")).unwrap().is_some());
    let s = c.stats().unwrap();
    assert_eq!(s.expirations, 2);
    assert_eq!(s.pool.objects, 1);
}

#[test]
fn compression_round_trips_and_is_counted() {
    for compression in [Compression::Lz4, Compression::Zstd(3)] {
        let mut config = CacheConfig::new(1 << 20);
        config.compression = compression;
        let c = cache_with(config);
        let text = b"compressible text, compressible text, compressible text. ".repeat(30);
        c.set(k("text"), &text, Ttl::Default).unwrap();
        c.set(k("tiny"), b"tiny", Ttl::Default).unwrap();
        assert_eq!(c.get(k("text")).unwrap().unwrap(), text);
        assert_eq!(c.get(k("tiny")).unwrap().unwrap(), b"tiny");
        let s = c.stats().unwrap();
        assert_eq!(s.compressed_entries, 1);
        assert!(s.compression_ratio > 5.0, "{s:?}");
        assert_eq!(s.payload_bytes, (4 + text.len() + 4 + 4) as u64);
        c.remove(k("text")).unwrap();
        assert_eq!(c.stats().unwrap().compressed_entries, 0);
    }
}

/// The value writer `t` stores under `key` at step `i`: it names its key and step, then
/// a body derived from both.
fn tagged_value(key: &str, i: u32, t: u32) -> Vec<u8> {
    let mut value = format!("{key}|{i}|").into_bytes();
    let len = 32 + (i * 37 % 900) as usize;
    value.extend((0..len).map(|j| (j as u32 ^ i ^ t) as u8));
    value
}

/// Assert `got`, read under `key` (which writer `t` owns), is a value stored under that key.
fn check_tagged(key: &str, t: u32, got: &[u8]) {
    let step = got
        .strip_prefix(format!("{key}|").as_bytes())
        .and_then(|rest| rest.split(|&b| b == b'|').next())
        .and_then(|digits| std::str::from_utf8(digits).ok()?.parse::<u32>().ok());
    let Some(i) = step else { panic!("value under {key} names another key: {:?}", &got[..got.len().min(24)]) };
    assert!(got == tagged_value(key, i, t), "value under {key} (step {i}) is corrupt");
}

#[test]
fn threads_with_checksums_while_compacting() {
    let c = Arc::new(cache(2 << 20));
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    let key = format!("t{t}-{}", i % 700);
                    c.set(k(&key), &tagged_value(&key, i, t), Ttl::Default).unwrap();
                    if let Some(got) = c.get(k(&key)).unwrap() {
                        check_tagged(&key, t, &got);
                    }
                    let other = format!("t{t}-{}", i * 7 % 700);
                    if let Some(got) = c.get(k(&other)).unwrap() {
                        check_tagged(&other, t, &got);
                    }
                    if i % 5 == 0 {
                        c.remove(k(&format!("t{t}-{}", (i / 5) % 700))).unwrap();
                    }
                }
            })
        })
        .collect();
    let mut migrated = 0;
    while !threads.iter().all(|t| t.is_finished()) {
        migrated += c.pool().compact(&CompactOptions::default()).objects_migrated;
        std::thread::sleep(Duration::from_millis(2));
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(migrated > 0, "nothing migrated while the writers ran");
    let s = c.stats().unwrap();
    assert!(s.stored_bytes <= 2 << 20);
    assert_eq!(s.stored_bytes, s.pool.payload_bytes, "the budget counts exactly the pool's objects");
    assert_eq!(s.entries, s.pool.objects);
}

#[test]
fn closed_cache_fails_cleanly() {
    let c = cache(1 << 20);
    c.set(k("a"), b"v", Ttl::Default).unwrap();
    c.close();
    c.close();
    assert_eq!(c.get(k("a")).unwrap_err(), CacheError::Pool(ZsError::Closed));
    assert!(c.set(k("a"), b"v", Ttl::Default).is_err());
    assert!(c.stats().is_err());
}

#[test]
fn a_zero_budget_caches_nothing() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let c = Cache::new(pool, CacheConfig::new(0)).unwrap();
    assert!(matches!(c.set(k("a"), b"", Ttl::Default), Err(CacheError::TooLarge { .. })));
    assert_eq!(c.len(), 0);
}

#[test]
fn pop_keeps_an_entry_changed_since_it_was_peeked() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let c = Cache::new(pool, CacheConfig::new(1 << 20)).unwrap();
    c.set(k("a"), b"old", Ttl::Default).unwrap();
    let (entry, value) = c.lock().peek_with(k("a"), |v| v.to_vec().unwrap()).unwrap().unwrap();
    assert_eq!(value, b"old");
    c.set(k("a"), b"new", Ttl::Default).unwrap(); // overwritten meanwhile
    assert!(!c.lock().remove_entry(entry).unwrap(), "the new entry is not the one peeked");
    assert_eq!(c.get(k("a")).unwrap().unwrap(), b"new");
    let (entry, _) = c.lock().peek_with(k("a"), |v| v.to_vec().unwrap()).unwrap().unwrap();
    assert!(c.lock().remove_entry(entry).unwrap());
    assert!(c.get(k("a")).unwrap().is_none());
    assert!(!c.lock().remove_entry(entry).unwrap(), "removed once");
}

#[test]
fn bad_config() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let mut config = CacheConfig::new(10);
    config.compression = Compression::Zstd(99);
    assert!(Cache::new(pool, config).is_err());
}

#[test]
fn get_many_matches_one_get_per_key() {
    let clock = Clock::manual();
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let c = Cache::with_clock(pool, CacheConfig::new(1 << 24), clock).unwrap();
    let keys: Vec<String> = (0..600).map(|i| format!("k{i}")).collect();
    // Sizes across many classes, and a few large objects (> a page).
    let value_of = |i: usize| vec![i as u8; if i.is_multiple_of(97) { 5000 } else { i * 7 % 3000 }];
    for (i, key) in keys.iter().enumerate() {
        let value = value_of(i);
        let ttl = if i % 50 == 0 { Ttl::For(Duration::from_secs(1)) } else { Ttl::Default };
        c.set(k(key), &value, ttl).unwrap();
    }
    c.clock().advance(Duration::from_secs(2)); // every 50th key has expired
    let mut asked: Vec<Key<'_>> = keys.iter().map(|s| k(s)).collect();
    asked.push(k("absent"));
    asked.push(Key::bytes(b"k1")); // same bytes as a stored str key: a miss
    asked.push(k("k3")); // a key twice in one batch
    let mut got = vec![None; asked.len()];
    c.lock().get_many_with(&asked, |i, v| got[i] = Some(v.to_vec().unwrap())).unwrap();
    // Expected values from the model (what was stored, less what expired), not from the cache.
    let mut expected: Vec<Option<Vec<u8>>> =
        (0..keys.len()).map(|i| if i.is_multiple_of(50) { None } else { Some(value_of(i)) }).collect();
    expected.extend([None, None, Some(value_of(3))]);
    assert_eq!(got.len(), expected.len());
    for (i, (got, expected)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(got, expected, "key {i}");
    }
    let s = c.stats().unwrap();
    let expired = keys.len().div_ceil(50) as u64;
    assert_eq!(s.expirations, expired);
    assert_eq!(s.hits, (keys.len() as u64 - expired) + 1, "every live key once, k3 twice");
    assert_eq!(s.misses, expired + 2, "expired keys, absent and b'k1' miss");
}

#[test]
fn a_pool_holds_one_cache() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let first = Cache::new(pool.clone(), CacheConfig::new(1 << 20)).unwrap();
    first.set(k("a"), b"first", Ttl::Default).unwrap();
    // Compaction routes a moved entry to the one index the pool knows: a second cache's
    // entries would be rewritten into the first's slots, so the pool refuses it.
    match Cache::new(pool.clone(), CacheConfig::new(1 << 20)) {
        Err(CacheError::PoolHasCache) => {}
        other => panic!("a second cache on one pool: {:?}", other.err()),
    }
    assert_eq!(first.get(k("a")).unwrap().unwrap(), b"first");
    // The pool's own handles live beside the cache's entries.
    let h = pool.store(b"handle object").unwrap();
    assert_eq!(pool.load(h).unwrap(), b"handle object");
}

/// Large entries (above the largest class: the pool's large objects, which keep a handle-table
/// entry) beside small ones, overwritten both ways, across a compaction.
#[test]
fn large_and_small_entries_overwrite_each_other() {
    let c = cache(1 << 26);
    for i in 0..200u32 {
        let key = format!("k{i}");
        let small = tagged_value(&key, i, 0);
        let large: Vec<u8> = small.iter().copied().cycle().take(20_000 + i as usize).collect();
        c.set(k(&key), &large, Ttl::Default).unwrap();
        assert_eq!(c.get(k(&key)).unwrap().unwrap(), large);
        c.set(k(&key), &small, Ttl::Default).unwrap();
        if i % 3 == 0 {
            c.set(k(&key), &large, Ttl::Default).unwrap();
        }
    }
    for i in (0..200u32).step_by(2) {
        c.remove(k(&format!("k{i}"))).unwrap();
    }
    c.pool().compact(&CompactOptions::default());
    for i in (1..200u32).step_by(2) {
        let key = format!("k{i}");
        let small = tagged_value(&key, i, 0);
        let got = c.get(k(&key)).unwrap().unwrap();
        if i % 3 == 0 {
            assert_eq!(got.len(), 20_000 + i as usize);
            assert!(got.starts_with(&small));
        } else {
            assert_eq!(got, small);
        }
    }
    let s = c.stats().unwrap();
    assert_eq!(s.entries, 100);
    assert_eq!(s.stored_bytes, s.pool.payload_bytes);
}

/// The index's slots are rewritten by compaction without the cache mutex: batches
/// (`get_many`), two-step pops, overwrites and evictions (a budget the writers overflow) race
/// a compactor that runs flat out. Every value names its key and step and carries a body
/// derived from both, so a stale or torn location shows as a wrong or corrupt value.
#[test]
fn batches_pops_and_evictions_with_checksums_while_compacting() {
    let c = Arc::new(cache(256 << 10));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let (c, done) = (Arc::clone(&c), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut migrated = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                migrated += c.pool().compact(&CompactOptions::default()).objects_migrated;
            }
            migrated
        })
    };
    let threads: Vec<_> = (0..3u32)
        .map(|t| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                let keys: Vec<String> = (0..500).map(|j| format!("t{t}-{j}")).collect();
                for i in 0..3_000u32 {
                    let key = &keys[(i * 13 % 500) as usize];
                    c.set(k(key), &tagged_value(key, i, t), Ttl::Default).unwrap();
                    if i % 4 == 0 {
                        let batch: Vec<Key<'_>> = keys[(i % 400) as usize..][..64].iter().map(|s| k(s)).collect();
                        c.lock()
                            .get_many_with(&batch, |j, v| {
                                check_tagged(&keys[(i % 400) as usize + j], t, &v.to_vec().unwrap())
                            })
                            .unwrap();
                    }
                    if i % 7 == 0 {
                        let victim = &keys[(i * 3 % 500) as usize];
                        let popped = c.lock().peek_with(k(victim), |v| v.to_vec().unwrap()).unwrap();
                        if let Some((entry, value)) = popped {
                            check_tagged(victim, t, &value);
                            c.lock().remove_entry(entry).unwrap();
                        }
                    }
                    if let Some(got) = c.get(k(key)).unwrap() {
                        check_tagged(key, t, &got);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let migrated = compactor.join().unwrap();
    assert!(migrated > 0, "nothing migrated while the writers ran");
    let s = c.stats().unwrap();
    assert!(s.evictions > 0, "the writers overflowed the budget");
    assert_eq!(s.stored_bytes, s.pool.payload_bytes, "the budget counts exactly the pool's objects");
    assert_eq!(s.entries, s.pool.objects);
    let keys = c.lock().keys().unwrap();
    assert_eq!(keys.len(), s.entries);
}
