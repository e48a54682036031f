//! Compaction throughput: bytes of objects moved per second of the compacting thread's CPU
//! time (and of wall time), next to what the kernel charges to give the emptied pages back.
//!
//! ```text
//! cargo bench -p zspool-core --bench compaction_rate             # 300 MiB, ~20 s
//! ZSPOOL_BENCH_MIB=64 ZSPOOL_BENCH_ROUNDS=5 cargo bench -p zspool-core --bench compaction_rate
//! cargo test -p zspool-core --bench compaction_rate              # the 4 MiB smoke
//! ```
//!
//! Each round fills `ZSPOOL_BENCH_MIB` MiB with objects of Facebook-ETC sizes (32..=4096),
//! frees a random 70 %, and times one `Pool::compact` (no budget, default lock slices) with
//! `CLOCK_THREAD_CPUTIME_ID`: MB of objects moved per CPU second is the figure of issue 13.
//! Then, on pages of its own, what the kernel costs: `madvise(MADV_DONTNEED)` of faulted-in
//! pages one zspage-sized run at a time, per page, next to a `memcpy` of the bytes compaction
//! moves per freed page. Their sum bounds the rate compaction can reach with no bookkeeping
//! of its own at all.
//!
//! Output is Markdown. Not a timed test: numbers depend on the machine.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{Rng, etc_size, fill_pattern};
use zspool_core::{CompactOptions, CompactionReport, PAGE_SIZE, Pool, PoolConfig};

const FREE_FRACTION: f64 = 0.7;
const SMOKE_MIB: usize = 4;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|&m| m > 0).unwrap_or(default)
}

/// MiB to fill: `ZSPOOL_BENCH_MIB`, else 300 under `cargo bench` and 4 under `cargo test`.
fn bench_mib() -> usize {
    env_or("ZSPOOL_BENCH_MIB", if std::env::args().any(|a| a == "--bench") { 300 } else { SMOKE_MIB })
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the pointer we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A pool holding `mib` MiB of ETC-sized objects, a random 70 % of them freed.
fn fragmented(mib: usize, seed: u64) -> Pool {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 4096];
    let mut handles = Vec::new();
    let mut filled = 0;
    while filled < mib << 20 {
        let size = etc_size(&mut rng);
        fill_pattern(handles.len() as u64, &mut buf[..size]);
        handles.push(pool.store(&buf[..size]).unwrap());
        filled += size;
    }
    for h in handles {
        if rng.chance(FREE_FRACTION) {
            pool.free(h).unwrap();
        }
    }
    pool
}

struct Round {
    report: CompactionReport,
    cpu: Duration,
}

fn compact_round(mib: usize, seed: u64) -> Round {
    let pool = fragmented(mib, seed);
    let cpu0 = thread_cpu();
    let report = pool.compact(&CompactOptions::default());
    let cpu = thread_cpu() - cpu0;
    assert_eq!(pool.can_compact(), 0, "a full run leaves nothing freeable");
    Round { report, cpu }
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Pages per zspage that compaction frees in this workload, on average (50,031 pages in
/// 17,060 ranges, counted with `perf stat -e syscalls:sys_enter_madvise` before batching).
const ZSPAGE_PAGES: usize = 3;

/// How the kernel is asked to drop frames: one `madvise` per range, or `process_madvise`
/// with `per_call` ranges at once (what `os_pages.rs` does, on Linux 6.15+).
#[derive(Clone, Copy)]
enum Advice {
    Madvise,
    ProcessMadvise { per_call: usize },
}

/// CPU ns per page to drop the frames of `pages` faulted-in pages, in ranges of `run` pages
/// with a page left between them (so that no two ranges merge, as compaction's rarely do).
fn dontneed_ns_per_page(pages: usize, run: usize, advice: Advice) -> f64 {
    let len = pages * PAGE_SIZE;
    // SAFETY: a fresh private anonymous mapping, checked against MAP_FAILED, unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    // SAFETY: as the pool does (os_pages.rs): small pages only.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    let base = base.cast::<u8>();
    for page in 0..pages {
        // SAFETY: page < pages, inside the mapping; touching faults a frame in.
        unsafe { base.add(page * PAGE_SIZE).write_volatile(1) };
    }
    let ranges: Vec<libc::iovec> = (0..pages)
        .step_by(run + 1)
        .filter(|start| start + run <= pages)
        // SAFETY: start < pages: inside the mapping.
        .map(|start| libc::iovec { iov_base: unsafe { base.add(start * PAGE_SIZE) }.cast(), iov_len: run * PAGE_SIZE })
        .collect();
    let cpu0 = thread_cpu();
    match advice {
        Advice::Madvise => {
            for r in &ranges {
                // SAFETY: whole pages inside our own mapping, referenced by nobody.
                unsafe { libc::madvise(r.iov_base, r.iov_len, libc::MADV_DONTNEED) };
            }
        }
        Advice::ProcessMadvise { per_call } => {
            for batch in ranges.chunks(per_call) {
                // SAFETY: as above; PIDFD_SELF_THREAD (-10000) names this process's memory.
                let done = unsafe {
                    libc::syscall(
                        libc::SYS_process_madvise,
                        -10_000,
                        batch.as_ptr(),
                        batch.len(),
                        libc::MADV_DONTNEED,
                        0u32,
                    )
                };
                if done < 0 {
                    return f64::NAN; // a kernel before 6.15
                }
            }
        }
    }
    let ns = (thread_cpu() - cpu0).as_nanos() as f64 / (ranges.len() * run) as f64;
    // SAFETY: exactly the mapping made above.
    unsafe { libc::munmap(base.cast(), len) };
    ns
}

/// CPU ns per byte of a memcpy of `bytes` (buffers faulted in first).
fn memcpy_ns_per_byte(bytes: usize) -> f64 {
    let src = vec![0x5Au8; bytes];
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src);
    let cpu0 = thread_cpu();
    dst.copy_from_slice(&src);
    std::hint::black_box(&dst);
    (thread_cpu() - cpu0).as_nanos() as f64 / bytes as f64
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mib = bench_mib();
    let rounds = env_or("ZSPOOL_BENCH_ROUNDS", if mib == SMOKE_MIB { 1 } else { 3 });
    println!("## Compaction throughput\n");
    println!(
        "{mib} MiB of Facebook-ETC sizes (32..=4096 bytes), {:.0} % freed at random, one full \
         `compact()` per round; CPU = the compacting thread's CPU time.\n",
        FREE_FRACTION * 100.0
    );
    println!(
        "| round | objects moved | MB moved | pages freed | CPU ms | wall ms | MB/s per CPU s | MB/s per wall s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut best: Option<Round> = None;
    for i in 0..rounds {
        let round = compact_round(mib, 0xC0_4AC7 + i as u64);
        let r = &round.report;
        println!(
            "| {i} | {} | {:.1} | {} | {:.1} | {:.1} | {:.0} | {:.0} |",
            r.objects_migrated,
            r.bytes_migrated as f64 / 1e6,
            r.pages_freed,
            round.cpu.as_secs_f64() * 1e3,
            r.duration.as_secs_f64() * 1e3,
            mb_per_s(r.bytes_migrated, round.cpu),
            mb_per_s(r.bytes_migrated, r.duration)
        );
        if best.as_ref().is_none_or(|b| round.cpu < b.cpu) {
            best = Some(round);
        }
    }
    let best = best.expect("at least one round");
    let r = &best.report;
    let pages = r.pages_freed.max(1);
    let sample = (pages * 2).clamp(4096, 131_072);
    let one_page = dontneed_ns_per_page(sample, 1, Advice::Madvise);
    let zspage_each = dontneed_ns_per_page(sample, ZSPAGE_PAGES, Advice::Madvise);
    let zspage_batched = dontneed_ns_per_page(sample, ZSPAGE_PAGES, Advice::ProcessMadvise { per_call: 64 });
    let long_range = dontneed_ns_per_page(sample, 512, Advice::Madvise);
    let bytes_per_page = r.bytes_migrated as f64 / pages as f64;
    let copy_per_page = memcpy_ns_per_byte((r.bytes_migrated as usize).clamp(1 << 20, 256 << 20)) * bytes_per_page;
    let ours_per_page = best.cpu.as_nanos() as f64 / pages as f64;
    println!("\nThe best round against the kernel's share, per freed page (CPU ns):\n");
    println!("| cost per freed page | ns |");
    println!("|---|---:|");
    println!("| compaction, all of it | {ours_per_page:.0} |");
    println!("| `madvise(MADV_DONTNEED)`, one page per call | {one_page:.0} |");
    println!("| `madvise`, one {ZSPAGE_PAGES}-page zspage per call | {zspage_each:.0} |");
    println!("| `process_madvise`, 64 {ZSPAGE_PAGES}-page zspages per call (the pool's way) | {zspage_batched:.0} |");
    println!("| `madvise`, 512 adjacent pages per call (the kernel's floor) | {long_range:.0} |");
    println!("| hot `memcpy` of the {bytes_per_page:.0} bytes moved per freed page | {copy_per_page:.0} |");
    let kernel = if zspage_batched.is_nan() { zspage_each } else { zspage_batched };
    let floor = kernel + copy_per_page;
    println!(
        "\nMoving {bytes_per_page:.0} bytes per freed page, a compaction that only copied and called \
         madvise would run at {:.0} MB/s per CPU second; this one ran at {:.0}.\n",
        bytes_per_page / floor * 1e3,
        mb_per_s(r.bytes_migrated, best.cpu)
    );
}
