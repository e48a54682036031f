//! Compaction latency benchmark: what a compaction costs the allocators of the class it is
//! compacting, with the class lock held in slices (`LockHold::Yielding`, the default) versus
//! for the whole class (`LockHold::WholeClass`, the 2015 RFC's behaviour).
//!
//! ```text
//! cargo bench -p zspool-core --bench compaction_latency            # 256 MiB, a few minutes at most
//! ZSPOOL_BENCH_MIB=16 cargo bench -p zspool-core --bench compaction_latency   # a quick run
//! cargo test -p zspool-core --bench compaction_latency   # the smoke `make test` runs: 4 MiB
//! ```
//!
//! 1. Fill `ZSPOOL_BENCH_MIB` MiB with objects of 497..=512 bytes (all in the 512-byte class)
//!    and free a random 70 %. For the baseline (no compaction) and each mode, on a fresh,
//!    identically fragmented pool: a thread compacts while the main thread mallocs and frees
//!    in that same class, timing every call on its own. Reports p50 / p99 / p99.9 / max,
//!    the compaction's pages freed, duration and migration throughput next to a plain
//!    `copy_from_slice` of as many bytes.
//! 2. Memory efficiency with 1,000,000 objects of Facebook-ETC sizes (32..4096): pool pages
//!    and process RSS per live payload byte after fill, after freeing 70 %, after compaction;
//!    what the pool pages hold beyond the payload, and how many handle-table pages hold no
//!    live object (what giving the tables back in page-sized chunks could return).
//!
//! Output is Markdown. Not a timed test: numbers depend on the machine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, etc_size, fill_pattern};
use zspool_core::{CompactOptions, CompactionReport, LockHold, PAGE_SIZE, Pool, PoolConfig, process_rss_bytes};

const MIN_SIZE: usize = 497;
const MAX_SIZE: usize = 512;
const FREE_FRACTION: f64 = 0.7;
/// Objects the latency loop keeps alive at once; each iteration mallocs one and frees one.
const RING: usize = 64;

/// MiB to fill: `ZSPOOL_BENCH_MIB`, else 256 under `cargo bench` and 4 under `cargo test`
/// (a smoke that runs every step of the benchmark, so a broken one fails the build).
fn bench_mib() -> usize {
    let default = if std::env::args().any(|a| a == "--bench") { 256 } else { SMOKE_MIB };
    std::env::var("ZSPOOL_BENCH_MIB").ok().and_then(|v| v.parse().ok()).filter(|&m| m > 0).unwrap_or(default)
}
const SMOKE_MIB: usize = 4;

/// A pool holding `mib` MiB of 497..=512-byte objects with a random 70 % freed; same seed,
/// same pool (up to handle keys).
fn fragmented_one_class(mib: usize) -> Pool {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut rng = Rng::new(0xBE7C);
    let n = (mib << 20) / MAX_SIZE;
    let mut buf = [0u8; MAX_SIZE];
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let size = MIN_SIZE + rng.below(MAX_SIZE - MIN_SIZE + 1);
        fill_pattern(i as u64, &mut buf[..size]);
        handles.push(pool.store(&buf[..size]).unwrap());
    }
    for h in handles {
        if rng.chance(FREE_FRACTION) {
            pool.free(h).unwrap();
        }
    }
    assert_eq!(pool.class_stats().iter().filter(|c| c.obj_used > 0).count(), 1, "one class only");
    pool
}

struct Latencies {
    /// Nanoseconds per call, malloc and free alike.
    ns: Vec<u64>,
}

impl Latencies {
    fn percentile_us(&self, p: f64) -> f64 {
        let i = ((self.ns.len() as f64 * p).ceil() as usize).clamp(1, self.ns.len()) - 1;
        self.ns[i] as f64 / 1000.0
    }
    fn slower_than_us(&self, us: u64) -> usize {
        self.ns.len() - self.ns.partition_point(|&ns| ns <= us * 1000)
    }
    fn max_us(&self) -> f64 {
        *self.ns.last().unwrap() as f64 / 1000.0
    }
}

/// malloc + free in the class, timing each call, until `until()` says stop.
fn latency_loop(pool: &Pool, mut until: impl FnMut(usize) -> bool) -> Latencies {
    let mut rng = Rng::new(7);
    let mut ring = std::collections::VecDeque::with_capacity(RING + 1);
    let mut ns = Vec::with_capacity(1 << 20);
    let mut ops = 0;
    // At least one call: a small pool's compaction can end before the first (the smoke run).
    while ops == 0 || !until(ops) {
        let size = MIN_SIZE + rng.below(MAX_SIZE - MIN_SIZE + 1);
        let t = Instant::now();
        let h = pool.malloc(size).unwrap();
        ns.push(t.elapsed().as_nanos() as u64);
        ring.push_back(h);
        if ring.len() > RING {
            let old = ring.pop_front().unwrap();
            let t = Instant::now();
            pool.free(old).unwrap();
            ns.push(t.elapsed().as_nanos() as u64);
        }
        ops += 1;
    }
    for h in ring {
        pool.free(h).unwrap();
    }
    ns.sort_unstable();
    Latencies { ns }
}

/// Compact `pool` on a thread while the main thread measures allocation latency.
fn measure_during_compaction(pool: &Pool, lock_hold: LockHold) -> (Latencies, CompactionReport) {
    let done = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    std::thread::scope(|s| {
        let compactor = s.spawn(|| {
            started.store(true, Ordering::Release);
            let report = pool.compact(&CompactOptions { lock_hold, ..CompactOptions::default() });
            done.store(true, Ordering::Release);
            report
        });
        while !started.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        let latencies = latency_loop(pool, |_| done.load(Ordering::Acquire));
        (latencies, compactor.join().unwrap())
    })
}

/// MB/s of a plain `copy_from_slice` of `bytes` bytes (buffers pre-faulted).
fn memcpy_mb_per_s(bytes: usize) -> f64 {
    let bytes = bytes.max(1 << 20);
    let src = vec![0x5Au8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src); // fault the pages in
    let t = Instant::now();
    dst.copy_from_slice(&src);
    let elapsed = t.elapsed();
    std::hint::black_box(&dst);
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn latency_table() {
    let mib = bench_mib();
    println!("## Allocation latency while compacting one class\n");
    println!(
        "{mib} MiB of {MIN_SIZE}..={MAX_SIZE}-byte objects (one size class), {:.0} % freed at random; \
         main thread: malloc + free in that class, every call timed on its own.\n",
        FREE_FRACTION * 100.0
    );

    let baseline_pool = fragmented_one_class(mib);
    let baseline = latency_loop(&baseline_pool, |ops| ops >= 200_000);
    drop(baseline_pool);

    let mut rows = Vec::new();
    for (name, lock_hold) in [("Yielding (default)", LockHold::default()), ("WholeClass", LockHold::WholeClass)] {
        let pool = fragmented_one_class(mib);
        let predicted = pool.can_compact();
        let (lat, report) = measure_during_compaction(&pool, lock_hold);
        // The allocations racing it take some of the holes, so it may free a little less.
        rows.push((name, lat, Some((predicted, report))));
    }
    rows.insert(0, ("no compaction (baseline)", baseline, None));

    println!(
        "| mode | calls timed | p50 µs | p99 µs | p99.9 µs | max µs | calls > 100 µs | pages freed (predicted) | compaction ms | lock yields |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, lat, report) in &rows {
        let (freed, ms, yields) = match report {
            Some((predicted, r)) => (
                format!("{} ({predicted})", r.pages_freed),
                format!("{:.1}", r.duration.as_secs_f64() * 1e3),
                r.lock_yields.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} | {freed} | {ms} | {yields} |",
            lat.ns.len(),
            lat.percentile_us(0.5),
            lat.percentile_us(0.99),
            lat.percentile_us(0.999),
            lat.max_us(),
            lat.slower_than_us(100)
        );
    }
    let (y, w) = (&rows[1].1, &rows[2].1);
    println!(
        "\nWholeClass / Yielding, same run: p50 {:.1}x, p99 {:.1}x, p99.9 {:.1}x, max {:.1}x\n",
        w.percentile_us(0.5) / y.percentile_us(0.5),
        w.percentile_us(0.99) / y.percentile_us(0.99),
        w.percentile_us(0.999) / y.percentile_us(0.999),
        w.max_us() / y.max_us()
    );

    println!(
        "| mode | objects migrated | MB migrated | compaction MB/s | memcpy MB/s (same bytes) | memcpy / compaction |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, _, report) in &rows[1..] {
        let (_, r) = report.as_ref().unwrap();
        let compaction = mb_per_s(r.bytes_migrated, r.duration);
        let memcpy = memcpy_mb_per_s(r.bytes_migrated as usize);
        println!(
            "| {name} | {} | {:.1} | {compaction:.0} | {memcpy:.0} | {:.1}x |",
            r.objects_migrated,
            r.bytes_migrated as f64 / 1e6,
            memcpy / compaction
        );
    }
    println!();
}

fn memory_table() {
    let n: usize = if bench_mib() < 256 { 1_000_000 * bench_mib() / 256 } else { 1_000_000 };
    println!("## Memory per live payload byte, {n} objects of Facebook-ETC sizes (32..=4096)\n");
    // The bench's own per-object records, written (so resident) before the baseline.
    let mut sizes = vec![u16::MAX; n];
    let mut live = vec![true; n];
    let rss0 = process_rss_bytes().unwrap_or(0);
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut rng = Rng::new(0xE7C);
    let mut buf = vec![0u8; 4096];
    let mut handles = Vec::with_capacity(n);
    for (i, recorded) in sizes.iter_mut().enumerate() {
        let size = etc_size(&mut rng);
        fill_pattern(i as u64, &mut buf[..size]);
        handles.push(pool.store(&buf[..size]).unwrap());
        *recorded = u16::try_from(size).expect("ETC sizes are at most 4096");
    }
    // The handle vector is the benchmark's, not the pool's: count it out of the RSS delta.
    let handles_bytes = (handles.capacity() * 8) as u64;
    println!(
        "| state | live objects | payload MiB | pool MiB | pool pages / payload | RSS delta / payload | freeable pages |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let row = |label: &str, pool: &Pool| {
        let s = pool.stats();
        let rss = process_rss_bytes().unwrap_or(0).saturating_sub(rss0).saturating_sub(handles_bytes);
        println!(
            "| {label} | {} | {:.1} | {:.1} | {:.3} | {:.3} | {} |",
            s.objects,
            s.payload_bytes as f64 / (1 << 20) as f64,
            (s.pages_used * PAGE_SIZE) as f64 / (1 << 20) as f64,
            (s.pages_used * PAGE_SIZE) as f64 / s.payload_bytes as f64,
            rss as f64 / s.payload_bytes as f64,
            s.freeable_pages
        );
    };
    row("after fill", &pool);
    for (i, h) in handles.iter().enumerate() {
        if rng.chance(FREE_FRACTION) {
            pool.free(*h).unwrap();
            live[i] = false;
        }
    }
    row("after freeing 70 %", &pool);
    let report = pool.compact(&CompactOptions::default());
    row("after compaction", &pool);
    println!(
        "\nCompaction: {} pages freed, {} objects ({:.1} MB) migrated in {:.1} ms; \
         RSS delta includes the pool's metadata (handle tables, zspage bookkeeping: {:.1} MiB).\n",
        report.pages_freed,
        report.objects_migrated,
        report.bytes_migrated as f64 / 1e6,
        report.duration.as_secs_f64() * 1e3,
        pool.stats().metadata_bytes as f64 / (1 << 20) as f64
    );
    pool_pages_breakdown(&pool);
    empty_handle_table_pages(&pool, &sizes, &live);
}

/// What the pool pages hold beyond the payload after compaction, per live payload byte.
fn pool_pages_breakdown(pool: &Pool) {
    let payload = pool.stats().payload_bytes as f64;
    let (mut rounding, mut free_slots, mut tails) = (0, 0, 0);
    for c in pool.class_stats() {
        rounding += c.obj_used * c.size;
        free_slots += (c.obj_allocated - c.obj_used) * c.size;
        tails += c.zspages * (c.pages_per_zspage * PAGE_SIZE - c.objs_per_zspage * c.size);
    }
    println!(
        "Pool pages per live payload byte beyond 1: class rounding {:.3}, free slots in partly used zspages {:.3}, \
         zspage tails {:.3}.\n",
        (rounding as f64 - payload) / payload,
        free_slots as f64 / payload,
        tails as f64 / payload
    );
}

/// Handle-table pages (512 entries of 8 bytes) in which every object was freed: all that
/// giving back page-sized chunks of the tables could return. A class's table hands out its
/// indices in allocation order while nothing is freed, so the fill's `i`-th object of a
/// class holds entry `i` of that class's table.
fn empty_handle_table_pages(pool: &Pool, sizes: &[u16], live: &[bool]) {
    const ENTRIES_PER_PAGE: usize = PAGE_SIZE / 8;
    let table = pool.class_table();
    let mut by_class = vec![Vec::new(); table.classes().len()];
    for (&size, &live) in sizes.iter().zip(live) {
        by_class[table.class_for(usize::from(size))].push(live);
    }
    let pages: Vec<&[bool]> = by_class.iter().flat_map(|entries| entries.chunks(ENTRIES_PER_PAGE)).collect();
    let empty = pages.iter().filter(|page| !page.iter().any(|&live| live)).count();
    println!(
        "Handle tables: {} entries ({:.1} MiB, 8 bytes per slot ever used) in {} pages, of which {empty} hold no \
         live object: with {:.0} % freed at random, a page of {ENTRIES_PER_PAGE} entries is empty with probability \
         {:.0e}.\n",
        sizes.len(),
        (sizes.len() * 8) as f64 / (1 << 20) as f64,
        pages.len(),
        FREE_FRACTION * 100.0,
        FREE_FRACTION.powi(ENTRIES_PER_PAGE as i32)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test` runs us without it, at `SMOKE_MIB`.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    latency_table();
    memory_table();
}
