//! Threads of one process and two processes creating one file at once.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, TempPath, check_value, create, key_bytes, make_value};
use zspool_cache::Key;
use zspool_core::CompactOptions;
use zspool_shared::{OpenOptions, SharedCache, ValueFlags};

#[test]
fn four_threads_with_compaction_flat_out_read_only_right_values() {
    let path = TempPath::new("threads");
    let cache = create(&path, 2 << 20);
    let stop = AtomicBool::new(false);
    let wrong = AtomicU64::new(0);
    let reads = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (cache, wrong, reads) = (&cache, &wrong, &reads);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15u64 ^ t);
                let mut out = Vec::new();
                let start = Instant::now();
                // Versions this thread wrote last per key it owns (keys k with k % 4 == t, which
                // only it writes): reading one back must give exactly that version (or a miss).
                let mut mine = vec![None; 1000];
                while start.elapsed() < Duration::from_secs(3) {
                    let x = rng.next();
                    let op = (x >> 20) % 10;
                    // Reads look at every key; writes only at this thread's own.
                    let k = if op < 5 { x % 4000 } else { (x % 1000) * 4 + t };
                    let key = key_bytes(k);
                    match op {
                        0..5 => {
                            if cache.get(Key::bytes(&key), &mut out).unwrap().is_some() {
                                reads.fetch_add(1, Ordering::Relaxed);
                                let version = check_value(k, &out);
                                let own_ok = k % 4 != t || (version.is_some() && mine[(k / 4) as usize] == version);
                                if version.is_none() || !own_ok {
                                    wrong.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        5..9 => {
                            let version = x >> 40;
                            if cache
                                .set(
                                    Key::bytes(&key),
                                    &make_value(k, version, 32 + (x % 1200) as usize),
                                    ValueFlags::RAW,
                                    None,
                                )
                                .unwrap()
                            {
                                mine[(k / 4) as usize] = Some(version);
                            }
                        }
                        _ => {
                            cache.delete(Key::bytes(&key)).unwrap();
                            mine[(k / 4) as usize] = None;
                        }
                    }
                }
            });
        }
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                cache.compact(&CompactOptions::default()).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(3100));
        stop.store(true, Ordering::Relaxed);
    });
    let stats = cache.stats();
    eprintln!("{} reads, {stats:?}", reads.load(Ordering::Relaxed));
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(reads.load(Ordering::Relaxed) > 1000);
    assert!(stats.objects_migrated > 0, "compaction moved objects under the readers: {stats:?}");
}

#[test]
fn two_processes_creating_one_path_at_once_both_succeed_on_one_file() {
    for round in 0..20 {
        let path = TempPath::new(&format!("race{round}"));
        let config = common::config(1 << 20);
        // SAFETY: the child only opens the cache, writes one entry and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let ok = SharedCache::open(&path.0, Some(&config), &OpenOptions::default())
                .and_then(|c| c.set(Key::bytes(b"child"), b"1", ValueFlags::RAW, None))
                .is_ok();
            // SAFETY: leave without running the harness's destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let cache = SharedCache::open(&path.0, Some(&config), &OpenOptions::default()).unwrap();
        cache.set(Key::bytes(b"parent"), b"1", ValueFlags::RAW, None).unwrap();
        let mut status = 0;
        // SAFETY: reaping our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the child's open failed");
        let mut out = Vec::new();
        assert!(cache.get(Key::bytes(b"child"), &mut out).unwrap().is_some(), "both used one file");
        let leftovers = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&*path.0.file_name().unwrap().to_string_lossy()))
            .count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }
}

#[test]
fn shared_cache_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SharedCache>();
}
