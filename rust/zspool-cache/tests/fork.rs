//! The cache across a real `fork()`: the core's `pthread_atfork` handlers hold the cache mutex
//! (before the pool's locks) while another thread uses the cache, and a mutex that another
//! thread sits on past the deadline leaves the cache closed in the child instead of hung.
//!
//! Trained zstd dictionaries are read by threads outside the cache mutex (an encode, a decode
//! under a pool class lock): a fork among them must leave the child able to read every value
//! and install a new dictionary.
//!
//! Each child runs only the checks below and leaves with `_exit`; the parent waits for it with
//! a deadline and kills it if it hangs (the failure this file exists to catch). The tests take
//! turns (`FORKS`): this binary's process-wide fork handlers see every cache of every test.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use zspool_cache::{Cache, CacheConfig, CacheError, Compression, Dictionary, Key, Ttl};
use zspool_core::{Pool, PoolConfig, QUIESCE_DEADLINE};

static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// A cache over a pool, both registered for fork as the Python bindings register them.
fn fork_safe_cache_with(config: CacheConfig) -> Arc<Cache<Arc<Pool>>> {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    zspool_core::register_for_fork(&pool);
    let cache = Arc::new(Cache::new(pool, config).unwrap());
    zspool_cache::register_for_fork(&cache);
    cache
}

fn fork_safe_cache() -> Arc<Cache<Arc<Pool>>> {
    fork_safe_cache_with(CacheConfig::new(64 << 20))
}

/// Fork; in the child run `child` and `_exit(0)` if it returns, 1 if it panics. In the parent,
/// the child's exit code (a child still running after the deadline is killed: a panic).
fn run_child(child: impl FnOnce()) -> i32 {
    // SAFETY: fork() itself is safe to call; the child below only runs `child` (this crate's
    // code, which the fork handlers made safe to use there) and leaves with `_exit`, never
    // returning into the test harness, whose other threads do not exist in the child.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(AssertUnwindSafe(child)).is_ok();
        // SAFETY: `_exit` ends the child without running the harness's exit code.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only the status through the valid pointer given.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            assert!(libc::WIFEXITED(status), "the child died: status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill and waitpid on the child this function forked.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not finish within {CHILD_DEADLINE:?}: deadlocked after fork");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sets the flag when dropped, so that a failed check (a panic) still stops the threads it
/// scopes instead of leaving the test waiting for them.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn value(key: &str, version: usize) -> Vec<u8> {
    format!("{key}|{version}|").repeat(1 + version % 200).into_bytes()
}

#[test]
fn fork_while_threads_hold_and_wait_for_the_mutex() {
    let _turn = FORKS.lock().unwrap();
    let cache = fork_safe_cache();
    for i in 0..1000 {
        cache.set(Key::str(&format!("frozen{i}")), &value("frozen", i), Ttl::Default).unwrap();
    }
    let stop = AtomicBool::new(false);
    let rounds = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (cache, stop, rounds) = (&cache, &stop, &rounds);
            // Batches of 200 inserts (and reads) under one guard: the mutex is held most of
            // the time, and the other thread is usually queued on it.
            s.spawn(move || {
                let mut version = 0;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    let keys: Vec<String> = (0..200).map(|i| format!("t{t}-{i}")).collect();
                    let values: Vec<Vec<u8>> = keys.iter().map(|k| value(k, version)).collect();
                    let encoded: Vec<_> =
                        keys.iter().zip(&values).map(|(k, v)| cache.encode(Key::str(k), v, false).unwrap()).collect();
                    let mut g = cache.lock();
                    for e in encoded {
                        g.insert(e, Ttl::Default).unwrap();
                    }
                    for (k, v) in keys.iter().zip(&values) {
                        assert_eq!(g.get_with(Key::str(k), |got| got.to_vec().unwrap()).unwrap().as_ref(), Some(v));
                    }
                    drop(g);
                    rounds.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        while rounds.load(Ordering::Relaxed) < 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..5 {
            let status = run_child(|| {
                for i in 0..1000 {
                    let got = cache.get(Key::str(&format!("frozen{i}"))).unwrap();
                    assert_eq!(got, Some(value("frozen", i)));
                }
                let stats = cache.stats().unwrap();
                assert_eq!(stats.entries, 1000 + 2 * 200, "every batch was whole at fork time");
                assert_eq!(stats.pool.objects, stats.entries);
                cache.set(Key::str("child"), b"c", Ttl::Default).unwrap();
                assert_eq!(cache.get(Key::str("child")).unwrap().as_deref(), Some(&b"c"[..]));
                cache.close();
            });
            assert_eq!(status, 0, "the child failed (its panic is above)");
        }
    });
    assert_eq!(cache.len(), 1000 + 2 * 200);
    cache.close();
}

#[test]
fn a_mutex_held_past_the_deadline_closes_the_cache_in_the_child_only() {
    let _turn = FORKS.lock().unwrap();
    let cache = fork_safe_cache();
    cache.set(Key::str("a"), b"1", Ttl::Default).unwrap();
    let (held, is_held) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let cache = &cache;
        s.spawn(move || {
            let g = cache.lock();
            held.send(()).unwrap();
            std::thread::sleep(QUIESCE_DEADLINE + Duration::from_millis(500));
            drop(g);
        });
        is_held.recv().unwrap();
        let started = Instant::now();
        let status = run_child(|| {
            assert!(cache.is_closed());
            let err = cache.get(Key::str("a")).unwrap_err();
            assert_eq!(err, CacheError::LostInFork);
            assert!(err.to_string().contains("create a new cache in the child"), "{err}");
            assert!(matches!(cache.set(Key::str("b"), b"2", Ttl::Default), Err(CacheError::LostInFork)));
            assert_eq!(cache.len(), 0);
            cache.close();
            // A new cache works in the child.
            let fresh = fork_safe_cache();
            fresh.set(Key::str("b"), b"2", Ttl::Default).unwrap();
            assert_eq!(fresh.get(Key::str("b")).unwrap().as_deref(), Some(&b"2"[..]));
        });
        assert!(started.elapsed() >= QUIESCE_DEADLINE, "fork() waited for the mutex first");
        assert_eq!(status, 0, "the child failed (its panic is above)");
    });
    assert!(!cache.is_closed(), "the parent's cache is unaffected");
    assert_eq!(cache.get(Key::str("a")).unwrap().as_deref(), Some(&b"1"[..]));
    cache.close();
}

/// A JSON record, as dictionary-compressed caches hold: shared field names, small vocabularies.
fn record(i: usize, generation: usize) -> Vec<u8> {
    let names = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Greta", "Hiro"];
    let cities = ["Lyon", "Osaka", "Toronto", "Lagos", "Quito", "Perth"];
    format!(
        "{{\"id\": {i}, \"gen\": {generation}, \"name\": \"{}\", \"email\": \"{}{}@example.com\", \
         \"city\": \"{}\", \"active\": {}, \"created_at\": \"2026-{:02}-{:02}T{:02}:00:00Z\"}}",
        names[i % 8],
        names[i % 8].to_lowercase(),
        i % 97,
        cities[(i * 7) % 6],
        i.is_multiple_of(3),
        1 + i % 12,
        1 + i % 28,
        i % 24,
    )
    .into_bytes()
}

#[test]
fn fork_while_threads_use_and_replace_dictionaries() {
    let _turn = FORKS.lock().unwrap();
    let config =
        CacheConfig { compression: Compression::Zstd(3), dictionary: Dictionary::Train, ..CacheConfig::new(64 << 20) };
    let cache = fork_safe_cache_with(config);
    const FROZEN: usize = 2000;
    const PER_THREAD: usize = 300;
    for i in 0..FROZEN {
        cache.set(Key::str(&format!("frozen{i}")), &record(i, 0), Ttl::Default).unwrap();
    }
    // A small dictionary, so that the child's default-sized one beats it and is installed.
    let small_id = cache.train_dictionary(Some(256)).unwrap().expect("a dictionary beats plain zstd");
    let small = cache.dictionary().unwrap().unwrap();
    for i in 0..FROZEN {
        cache.set(Key::str(&format!("frozen{i}")), &record(i, 1), Ttl::Default).unwrap();
    }
    assert_eq!(cache.dictionary_stats().dictionaries.iter().find(|d| d.id == small_id).unwrap().usage.values, 2000);
    let stop = AtomicBool::new(false);
    // Per writer: the child expects every writer's keys, so each must have written them all
    // (a shared count let one busy writer reach it while the other had not run yet).
    let rounds = [AtomicUsize::new(0), AtomicUsize::new(0)];
    std::thread::scope(|s| {
        // Writers encode with the current dictionary outside the mutex and read back (a decode
        // under a class lock); one thread keeps installing new versions (the writes of the
        // live set), which retire the old ones as their last values are overwritten.
        for t in 0..2 {
            let (cache, stop, rounds) = (&cache, &stop, &rounds);
            s.spawn(move || {
                let mut generation = 0;
                while !stop.load(Ordering::Relaxed) {
                    generation += 1;
                    for i in 0..PER_THREAD {
                        let key = format!("t{t}-{i}");
                        cache.set(Key::str(&key), &record(i, generation), Ttl::Default).unwrap();
                        assert_eq!(cache.get(Key::str(&key)).unwrap(), Some(record(i, generation)));
                        let frozen = i * 7 % FROZEN;
                        assert_eq!(cache.get(Key::str(&format!("frozen{frozen}"))).unwrap(), Some(record(frozen, 1)));
                    }
                    rounds[t].fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Encoders of short values (`set_many`'s encoding without the GIL): they read the
        // current dictionary so often that forks catch them inside that read.
        for _ in 0..2 {
            let (cache, stop) = (&cache, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100 {
                        std::hint::black_box(cache.encode(Key::str("e"), b"x", false).unwrap());
                    }
                }
            });
        }
        {
            let (cache, stop, small) = (&cache, &stop, &small);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    cache.install_dictionary(small).unwrap();
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        while rounds.iter().any(|r| r.load(Ordering::Relaxed) < 2) {
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..8 {
            let status = run_child(|| {
                for i in 0..FROZEN {
                    assert_eq!(cache.get(Key::str(&format!("frozen{i}"))).unwrap(), Some(record(i, 1)), "frozen{i}");
                }
                for t in 0..2 {
                    for i in 0..PER_THREAD {
                        let got = cache.get(Key::str(&format!("t{t}-{i}"))).unwrap().expect("written before the fork");
                        assert!(got.starts_with(format!("{{\"id\": {i}, \"gen\": ").as_bytes()), "t{t}-{i}");
                    }
                }
                // Writes of the live set: an install (which retires the unused old versions).
                let id = cache.train_dictionary(None).unwrap().expect("16 KiB beats the 256-byte dictionary");
                assert_eq!(cache.dictionary_stats().current, Some(id));
                for i in 0..PER_THREAD {
                    cache.set(Key::str(&format!("child{i}")), &record(i, 9), Ttl::Default).unwrap();
                }
                for i in 0..PER_THREAD {
                    assert_eq!(cache.get(Key::str(&format!("child{i}"))).unwrap(), Some(record(i, 9)));
                }
                for i in 0..FROZEN {
                    assert_eq!(cache.get(Key::str(&format!("frozen{i}"))).unwrap(), Some(record(i, 1)), "frozen{i}");
                }
                cache.close();
            });
            assert_eq!(status, 0, "the child failed (its panic is above)");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    for i in 0..FROZEN {
        assert_eq!(cache.get(Key::str(&format!("frozen{i}"))).unwrap(), Some(record(i, 1)));
    }
    cache.close();
}
