//! Out of memory in the core: under a low `RLIMIT_AS`, filling a pool ends in `PoolFull`,
//! never in an abort, and every object stored is intact (each one's bytes are checked).
//!
//! The limit is per process, so the test re-runs its own binary as a child with
//! `ZSPOOL_OOM_CHILD` set; the child sets the limit and fills the pool. Before the metadata
//! growth was made fallible, the 64 MiB / 32-byte case aborted the child ("memory allocation
//! of 33554432 bytes failed": the handle table doubling) with SIGABRT.

use std::process::Command;

use zspool_core::{Pool, PoolConfig, ZsError};

fn vm_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn child(headroom_mib: u64, size: usize) {
    let pool = Pool::new(PoolConfig::default()).unwrap();
    let mut handles: Vec<u64> = Vec::with_capacity(4_000_000);
    let mut buf = vec![0u8; size];
    let limit = libc::rlimit { rlim_cur: vm_bytes() + headroom_mib * 1024 * 1024, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads one rlimit struct we own.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    let err = loop {
        match pool.malloc(size) {
            Ok(h) => {
                // Filled in place and written: nothing here allocates under the limit.
                fill_object_bytes(&mut buf, handles.len());
                pool.write(h, 0, &buf).unwrap();
                handles.push(h);
            }
            Err(e) => break e,
        }
        if handles.len() == handles.capacity() {
            panic!("never refused: the limit did not bite");
        }
    };
    assert!(matches!(err, ZsError::PoolFull { os_error: Some(libc::ENOMEM), .. }), "{err}");
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &unlimited) }, 0);
    assert_eq!(pool.len(), handles.len());
    for (i, &h) in handles.iter().enumerate() {
        fill_object_bytes(&mut buf, i);
        assert!(pool.load(h).unwrap() == buf, "object {i} ({h:#x}) lost or corrupted");
    }
    println!("{CHILD_MARKER} {} objects of {size} bytes, every one intact, then {err}", handles.len());
}

/// The `i`th object's bytes: its index, repeated.
fn fill_object_bytes(buf: &mut [u8], i: usize) {
    for (b, x) in buf.iter_mut().zip((i as u32).to_le_bytes().iter().cycle()) {
        *b = *x;
    }
}

/// The line a child prints once it has filled and checked its pool: the parent requires it,
/// so a child that ran no test (a renamed test, a filter that matched nothing) cannot pass.
const CHILD_MARKER: &str = "oom child done:";

#[test]
fn os_refusing_memory_is_pool_full_not_an_abort() {
    if let Ok(spec) = std::env::var("ZSPOOL_OOM_CHILD") {
        let (mib, size) = spec.split_once(',').unwrap();
        child(mib.parse().unwrap(), size.parse().unwrap());
        return;
    }
    for (mib, size) in [(64, 32), (24, 1000), (200, 1000)] {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "os_refusing_memory_is_pool_full_not_an_abort", "--nocapture"])
            .env("ZSPOOL_OOM_CHILD", format!("{mib},{size}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child with {mib} MiB headroom, {size}-byte objects: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout.lines().find(|l| l.starts_with(CHILD_MARKER));
        let Some(line) = line else { panic!("child with {mib} MiB headroom ran no test:\n{stdout}") };
        println!("{mib} MiB headroom: {line}");
    }
}
