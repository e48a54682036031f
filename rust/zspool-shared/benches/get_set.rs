//! ns per get and per set, single-threaded, at 1M entries of 200-byte values with random
//! keys: SharedCache (the shared file on /dev/shm) next to zspool-cache's in-process Cache,
//! in the same process and run. Prints both and their ratio; then SharedCache's random gets
//! per second from 1 and from 2 forked processes (one second each) and their ratio.
//!
//! Run: `cargo bench -p zspool-shared --bench get_set` (release, fat LTO: a few minutes to
//! build). `ZSPOOL_BENCH_ENTRIES` changes the entry count.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use common::Rng;
use zspool_cache::{Cache, CacheConfig, Key, Ttl};
use zspool_core::{Pool, PoolConfig};
use zspool_shared::{OpenOptions, SharedCache, SharedConfig, ValueFlags};

const VALUE_LEN: usize = 200;
const BUDGET: u64 = 512 << 20;

fn ns_per_op(n: usize, start: Instant) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let n: usize = std::env::var("ZSPOOL_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("key:{:016x}:{i}", rng.next()).into_bytes()).collect();
    let value: Vec<u8> = (0..VALUE_LEN).map(|i| (i * 7) as u8).collect();
    let order: Vec<usize> = (0..n).map(|_| (rng.next() % n as u64) as usize).collect();

    let path = std::path::PathBuf::from(format!("/dev/shm/zspool-bench-get-set-{}", std::process::id()));
    let _ = SharedCache::destroy(&path);
    let config = SharedConfig { maxbytes: BUDGET, ..SharedConfig::default() };
    let shared = SharedCache::open(&path, Some(&config), &OpenOptions::default()).expect("open");
    let start = Instant::now();
    for k in &keys {
        shared.set(Key::bytes(k), &value, ValueFlags::RAW, None).unwrap();
    }
    let shared_set = ns_per_op(n, start);
    let mut out = Vec::new();
    let start = Instant::now();
    for &i in &order {
        black_box(shared.get(Key::bytes(&keys[i]), &mut out).unwrap());
    }
    let shared_get = ns_per_op(n, start);
    let stats = shared.stats();
    let one = gets_per_second(&shared, &keys, 1);
    let two = gets_per_second(&shared, &keys, 2);
    drop(shared);
    let _ = SharedCache::destroy(&path);

    let cache = Cache::new(Arc::new(Pool::new(PoolConfig::default()).unwrap()), CacheConfig::new(BUDGET)).unwrap();
    let start = Instant::now();
    for k in &keys {
        cache.set(Key::bytes(k), &value, Ttl::Default).unwrap();
    }
    let cache_set = ns_per_op(n, start);
    let start = Instant::now();
    for &i in &order {
        let found = cache
            .lock()
            .get_with(Key::bytes(&keys[i]), |v| {
                out.resize(v.len(), 0);
                v.copy_to(&mut out)
            })
            .unwrap();
        black_box(found);
    }
    let cache_get = ns_per_op(n, start);

    println!("{n} entries of {VALUE_LEN} bytes, random keys, one thread (ns per op)");
    println!("{:<24}{:>10}{:>10}", "", "get", "set");
    println!("{:<24}{:>10.0}{:>10.0}", "SharedCache", shared_get, shared_set);
    println!("{:<24}{:>10.0}{:>10.0}", "zspool_cache::Cache", cache_get, cache_set);
    println!("{:<24}{:>10.2}{:>10.2}", "ratio shared / cache", shared_get / cache_get, shared_set / cache_set);
    println!("shared: {} entries, {} evictions, {} pages in use", stats.entries, stats.evictions, stats.pages_in_use);
    println!(
        "SharedCache gets per second: 1 process {one:.0}, 2 processes {two:.0} ({:.2}x; {} CPUs)",
        two / one,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}

/// Random gets per second from `procs` forked processes together, for one second.
fn gets_per_second(cache: &SharedCache, keys: &[Vec<u8>], procs: usize) -> f64 {
    // SAFETY: a fresh anonymous shared mapping for the children's counts (zeroed u64s).
    let counts = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8 * procs,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(counts, libc::MAP_FAILED);
    let counts = counts.cast::<std::sync::atomic::AtomicU64>();
    let pids: Vec<libc::pid_t> = (0..procs)
        .map(|p| {
            // SAFETY: the child only reads the cache and exits with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ p as u64);
                let mut out = Vec::new();
                let start = Instant::now();
                let mut n = 0u64;
                while start.elapsed() < std::time::Duration::from_secs(1) {
                    for _ in 0..1000 {
                        let k = &keys[(rng.next() % keys.len() as u64) as usize];
                        black_box(cache.get(Key::bytes(k), &mut out).unwrap());
                    }
                    n += 1000;
                }
                // SAFETY: counts has `procs` slots; p < procs.
                unsafe { (*counts.add(p)).store(n, std::sync::atomic::Ordering::Relaxed) };
                // SAFETY: leave without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            pid
        })
        .collect();
    for pid in pids {
        // SAFETY: reaping our children.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    }
    // SAFETY: the children have exited; the slots are ours to read.
    (0..procs).map(|p| unsafe { (*counts.add(p)).load(std::sync::atomic::Ordering::Relaxed) } as f64).sum()
}
