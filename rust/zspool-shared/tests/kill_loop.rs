//! Processes killed with SIGKILL at random moments, holding any lock, never make another
//! process hang or read a wrong value: N forked children hammer shared keys (set, get,
//! delete, compact) and verify every value they read; the parent kills random children and
//! respawns them. Violations and progress go through an anonymous shared mapping.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, TempPath, check_value, create, key_bytes, make_value};
use zspool_cache::{Compression, Key};
use zspool_core::{CompactOptions, LockHold};
use zspool_shared::{OpenOptions, SharedCache, SharedConfig, ValueFlags};

const CHILDREN: usize = 4;
const KILLS: usize = 500;
const KEYS: u64 = 3000;

/// What the children do.
#[derive(Clone, Copy)]
struct Workload {
    keys: u64,
    /// Values are 32 + up to this many bytes.
    extra_len: u64,
    /// Sets and deletes by turns (the entries rise and fall, so index tables double and
    /// halve under the kills), instead of a steady mix: the parent turns the tide on the
    /// entry count (`Board::ebb`), so a slow (debug) build goes through whole turns too.
    tides: bool,
    maxbytes: u64,
}

/// Values of every class size up to ~1.5 KB over few keys, the budget small enough that sets
/// evict and classes fill and empty all the time.
const MIXED: Workload = Workload { keys: KEYS, extra_len: 1500, tides: false, maxbytes: 1 << 20 };
/// Many small entries, rising and falling.
const TIDES: Workload = Workload { keys: 40_000, extra_len: 16, tides: true, maxbytes: 8 << 20 };
/// A child that makes no progress for this long is hung.
const HUNG: Duration = Duration::from_secs(10);

/// Per child: operations done, wrong reads seen.
#[repr(C)]
struct Board {
    progress: [AtomicU64; CHILDREN],
    violations: AtomicU64,
    /// Nonzero: the children delete instead of setting, mostly (`Workload::tides`).
    ebb: AtomicU64,
    reads_checked: AtomicU64,
}

fn shared_board() -> &'static Board {
    // SAFETY: a fresh anonymous shared mapping (zeroed), inherited by every child; Board is
    // atomics only, and the mapping lives as long as the process.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            size_of::<Board>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        &*p.cast::<Board>()
    }
}

fn child(cache: &SharedCache, work: Workload, board: &Board, me: usize, seed: u64) -> ! {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    let options = CompactOptions {
        lock_hold: LockHold::Yielding { slice_objects: 16, slice: Duration::from_micros(50) },
        ..CompactOptions::default()
    };
    loop {
        let k = rng.next() % work.keys;
        let key = key_bytes(k);
        let ebb = work.tides && board.ebb.load(Ordering::Relaxed) != 0;
        let roll = rng.next() % 100;
        // An ebb turns most sets into deletes.
        let roll = if ebb && (55..85).contains(&roll) { 85 + roll % 13 } else { roll };
        match roll {
            0..50 => {
                if let Ok(Some(_)) = cache.get(Key::bytes(&key), &mut out) {
                    board.reads_checked.fetch_add(1, Ordering::Relaxed);
                    if check_value(k, &out).is_none() {
                        board.violations.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            50..85 => {
                let len = 32 + (rng.next() % work.extra_len) as usize;
                let _ = cache.set(Key::bytes(&key), &make_value(k, rng.next(), len), ValueFlags::RAW, None);
            }
            85..98 => {
                let _ = cache.delete(Key::bytes(&key));
            }
            _ => {
                let _ = cache.compact(&options);
            }
        }
        board.progress[me].fetch_add(1, Ordering::Relaxed);
    }
}

fn spawn(cache: &SharedCache, work: Workload, board: &Board, me: usize, seed: u64) -> libc::pid_t {
    // SAFETY: the child only runs `child` (the cache, its own allocations) and never returns
    // into the test harness; it dies by SIGKILL.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child(cache, work, board, me, seed);
    }
    pid
}

fn kill(pid: libc::pid_t) {
    // SAFETY: pid is our child; waitpid reaps it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

#[test]
fn sigkill_at_random_moments_never_hangs_or_lies() {
    let path = TempPath::new("kill");
    let stats = kill_loop(&create(&path, MIXED.maxbytes), MIXED, KILLS);
    assert!(stats.evictions > 0, "the budget was exceeded and entries evicted: {stats:?}");
}

#[test]
fn sigkill_with_compression_and_ttl_never_hangs_or_lies() {
    let path = TempPath::new("kill-lz4");
    let config = SharedConfig {
        compression: Compression::Lz4,
        ttl: Some(Duration::from_millis(50)),
        ..common::config(MIXED.maxbytes)
    };
    let cache = SharedCache::open(&path.0, Some(&config), &OpenOptions::default()).unwrap();
    let stats = kill_loop(&cache, MIXED, KILLS / 2);
    assert!(stats.expirations > 0, "entries expired under the kills: {stats:?}");
}

#[test]
fn sigkill_while_index_tables_grow_and_shrink_never_hangs_or_lies() {
    let path = TempPath::new("kill-tides");
    let cache = create(&path, TIDES.maxbytes);
    let smallest = cache.stats().index_slots;
    let (most, last, shrinks) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let stats = kill_loop_watching(&cache, TIDES, KILLS, |s, board| {
        // Flow until the tables must have doubled (past 3/4 of 256 slots per shard), ebb until
        // compaction can halve them again.
        if s.entries > 16_000 {
            board.ebb.store(1, Ordering::Relaxed);
        } else if s.entries < 2_000 {
            board.ebb.store(0, Ordering::Relaxed);
        }
        most.fetch_max(s.index_slots, Ordering::Relaxed);
        if s.index_slots < last.swap(s.index_slots, Ordering::Relaxed) {
            shrinks.fetch_add(1, Ordering::Relaxed);
        }
    });
    let (most, shrinks) = (most.load(Ordering::Relaxed), shrinks.load(Ordering::Relaxed));
    assert!(most > smallest, "the tables grew under the kills ({smallest} -> {most} slots): {stats:?}");
    assert!(shrinks > 0, "and shrank: {stats:?}");
    cache.clear().unwrap();
    assert_eq!(cache.stats().index_slots, smallest);
}

/// Run the loop until `kills_wanted` kills, check it, and return the stats after it.
fn kill_loop(cache: &SharedCache, work: Workload, kills_wanted: usize) -> zspool_shared::SharedStats {
    kill_loop_watching(cache, work, kills_wanted, |_, _| {})
}

/// `kill_loop`, showing `watch` the stats before every kill.
fn kill_loop_watching(
    cache: &SharedCache,
    work: Workload,
    kills_wanted: usize,
    watch: impl Fn(&zspool_shared::SharedStats, &Board),
) -> zspool_shared::SharedStats {
    let board = shared_board();
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ u64::from(std::process::id()));
    let mut pids: Vec<libc::pid_t> = (0..CHILDREN).map(|i| spawn(cache, work, board, i, rng.next())).collect();
    let mut last: Vec<(u64, Instant)> = (0..CHILDREN).map(|_| (0, Instant::now())).collect();
    let start = Instant::now();
    let mut kills = 0;
    while kills < kills_wanted {
        std::thread::sleep(Duration::from_micros(rng.next() % 8000));
        let victim = (rng.next() % CHILDREN as u64) as usize;
        // Progress check: every child must move within HUNG.
        for (i, (seen, at)) in last.iter_mut().enumerate() {
            let now = board.progress[i].load(Ordering::Relaxed);
            if now != *seen {
                *seen = now;
                *at = Instant::now();
            } else if at.elapsed() > HUNG {
                pids.iter().for_each(|&p| kill(p));
                panic!("child {i} made no progress for {HUNG:?}: hung");
            }
        }
        // Only kill a child that did something since it started, so every life does work.
        if board.progress[victim].load(Ordering::Relaxed) == 0 {
            continue;
        }
        watch(&cache.stats(), board);
        kill(pids[victim]);
        board.progress[victim].store(0, Ordering::Relaxed);
        last[victim] = (0, Instant::now());
        pids[victim] = spawn(cache, work, board, victim, rng.next());
        kills += 1;
    }
    // Let the survivors run on the repaired state a little, then stop them.
    std::thread::sleep(Duration::from_millis(200));
    pids.iter().for_each(|&p| kill(p));

    let stats = cache.stats();
    let violations = board.violations.load(Ordering::Relaxed);
    let reads = board.reads_checked.load(Ordering::Relaxed);
    eprintln!("{kills} kills in {:?}, {reads} reads checked, {stats:?}", start.elapsed());
    assert_eq!(violations, 0, "wrong reads");
    assert!(reads > 1000, "the children did work ({reads} reads)");
    assert!(stats.recoveries > 0, "some kill hit a lock holder: {stats:?}");
    // Still usable, and everything in it is right.
    let mut out = Vec::new();
    for k in 0..work.keys {
        if cache.get(Key::bytes(&key_bytes(k)), &mut out).unwrap().is_some() {
            assert!(check_value(k, &out).is_some(), "key {k}");
        }
        let ttl = Some(Duration::from_secs(600));
        assert!(cache.set(Key::bytes(&key_bytes(k)), &make_value(k, 7, 100), ValueFlags::RAW, ttl).unwrap());
    }
    for k in 0..work.keys {
        assert_eq!(
            cache.get(Key::bytes(&key_bytes(k)), &mut out).unwrap().map(|_| check_value(k, &out)),
            Some(Some(7))
        );
    }
    cache.compact(&CompactOptions::default()).unwrap();
    assert!(cache.len().unwrap() > 0);
    assert!(cache.currsize() <= work.maxbytes);
    stats
}
