//! A mapping is input, not trust: random bytes written into the header, the metadata
//! regions (class states, shards, slots, descriptors) and the objects of a valid file make
//! open and every operation return `Ok` or an error, never panic, hang or read out of bounds.
//! (No catch_unwind: a panic fails the test.)

mod common;

use std::os::unix::fs::FileExt;

use common::{Rng, TempPath, create, key_bytes, make_value};
use zspool_cache::Key;
use zspool_core::CompactOptions;
use zspool_shared::{OpenOptions, SharedCache, SharedError, ValueFlags};

/// Where a file's data region starts: the header's `data_off` field, at byte 128 (a unit
/// test in header.rs pins that offset).
fn data_off(path: &std::path::Path) -> u64 {
    let file = std::fs::File::open(path).unwrap();
    let mut word = [0u8; 8];
    file.read_exact_at(&mut word, 128).unwrap();
    u64::from_le_bytes(word)
}

fn exercise(cache: &SharedCache, rng: &mut Rng) {
    let mut out = Vec::new();
    for _ in 0..200 {
        let k = rng.next() % 300;
        let key = key_bytes(k);
        let _ = cache.get(Key::bytes(&key), &mut out);
        let _ = cache.set(Key::bytes(&key), &make_value(k, 2, 100 + (k as usize % 700)), ValueFlags::RAW, None);
        if k.is_multiple_of(5) {
            let _ = cache.delete(Key::bytes(&key));
        }
    }
    let _ = cache.compact(&CompactOptions::default());
    let _ = cache.stats();
    let _ = cache.keys();
    let _ = cache.len();
    let _ = cache.expire();
    let _ = cache.contains(Key::bytes(b"x"));
    let _ = cache.clear();
}

#[test]
fn random_bytes_in_header_metadata_and_objects_never_panic() {
    let mut rng = Rng(0xfeed_beef_1234_5679);
    let mut opened = 0;
    let mut refused = 0;
    for round in 0..60 {
        let path = TempPath::new(&format!("garbage{round}"));
        {
            let cache = create(&path, 1 << 20);
            for k in 0..300u64 {
                cache
                    .set(Key::bytes(&key_bytes(k)), &make_value(k, 1, 100 + (k as usize % 700)), ValueFlags::RAW, None)
                    .unwrap();
            }
        }
        let data = data_off(&path.0);
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path.0).unwrap();
        let writes = 1 + rng.next() % 40;
        for _ in 0..writes {
            let region = rng.next() % 10;
            let offset = match region {
                // The header page: its checked fields, then its shared state.
                0..2 => rng.next() % 4096,
                // Class states, shards, slots, descriptors.
                2..8 => 4096 + rng.next() % (data - 4096),
                // Objects of the first zspages.
                _ => data + rng.next() % (64 * 65536),
            };
            let len = 1 + rng.next() as usize % 16;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            file.write_all_at(&bytes, offset).unwrap();
        }
        match SharedCache::open(&path.0, None, &OpenOptions::default()) {
            Ok(cache) => {
                opened += 1;
                exercise(&cache, &mut rng);
            }
            Err(SharedError::NotOurs { .. } | SharedError::Version { .. }) => refused += 1,
            Err(e) => panic!("unexpected error for a scribbled file: {e}"),
        }
    }
    assert!(opened > 20 && refused > 0, "opened {opened}, refused {refused}");
}

#[test]
fn truncated_and_foreign_files_are_refused() {
    let path = TempPath::new("trunc");
    drop(create(&path, 1 << 20));
    let len = std::fs::metadata(&path.0).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path.0).unwrap();
    file.set_len(len - 4096).unwrap();
    let err = SharedCache::open(&path.0, None, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SharedError::NotOurs { .. }), "{err}");
    file.set_len(100).unwrap();
    assert!(matches!(SharedCache::open(&path.0, None, &OpenOptions::default()), Err(SharedError::NotOurs { .. })));
    // Another layout version.
    let path = TempPath::new("version");
    drop(create(&path, 1 << 20));
    let file = std::fs::OpenOptions::new().write(true).open(&path.0).unwrap();
    file.write_all_at(&999u32.to_le_bytes(), 8).unwrap();
    let err = SharedCache::open(&path.0, None, &OpenOptions::default()).unwrap_err();
    assert!(matches!(err, SharedError::Version { found: 999, expected: zspool_shared::LAYOUT_VERSION }), "{err}");
}
