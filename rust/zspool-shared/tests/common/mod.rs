//! Helpers shared by the integration tests: temporary cache files on tmpfs and values that
//! encode their key, a version and a checksum.
#![allow(dead_code)]

use std::path::PathBuf;

use zspool_shared::{OpenOptions, SharedCache, SharedConfig};

/// A fresh path under /dev/shm, removed on drop.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(tag: &str) -> TempPath {
        let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        TempPath(PathBuf::from(format!("/dev/shm/zspool-shared-test-{tag}-{}-{nonce}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn config(maxbytes: u64) -> SharedConfig {
    SharedConfig { maxbytes, ..SharedConfig::default() }
}

pub fn create(path: &TempPath, maxbytes: u64) -> SharedCache {
    SharedCache::open(&path.0, Some(&config(maxbytes)), &OpenOptions::default()).unwrap()
}

/// A value that names its key and version and carries a checksum, `len` bytes (>= 24).
pub fn make_value(key: u64, version: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    // A 16-byte pattern of the key and version, repeated: compressible, like most values.
    let x = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ version;
    let pattern: Vec<u8> = x.to_le_bytes().into_iter().chain((x ^ version.rotate_left(17)).to_le_bytes()).collect();
    while v.len() < len - 8 {
        v.push(pattern[v.len() % 16]);
    }
    let sum = v.iter().fold(0u64, |a, &b| a.wrapping_mul(31).wrapping_add(u64::from(b)));
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

/// The version of a value made by `make_value` for `key`, or `None` if it is not one.
pub fn check_value(key: u64, v: &[u8]) -> Option<u64> {
    if v.len() < 24 || v[..8] != key.to_le_bytes() {
        return None;
    }
    let version = u64::from_le_bytes(v[8..16].try_into().unwrap());
    (make_value(key, version, v.len()) == v).then_some(version)
}

pub fn key_bytes(key: u64) -> Vec<u8> {
    format!("key-{key}").into_bytes()
}

/// xorshift64: a seeded, dependency-free random stream for the tests and the benchmark.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
