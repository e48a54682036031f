//! ns per get and per set, single-threaded, at 1M entries of 200-byte values with random
//! keys: SharedCache (the shared file on /dev/shm) next to zspool-cache's in-process Cache,
//! in the same process and run. Prints both and their ratio.
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
}
