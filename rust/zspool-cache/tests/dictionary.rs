//! Trained zstd dictionaries and recompression, end to end on a real pool: versions that
//! keep old values readable, dictionaries freed with their last value, `currsize` that
//! counts them, recompression that shrinks and frees pages, bad dictionaries.

use std::sync::Arc;
use std::thread;

use zspool_cache::{
    Cache, CacheConfig, CacheError, Compression, Dictionary, Key, RecompressStop, TRAIN_AFTER_BYTES, Ttl,
};
use zspool_core::{Pool, PoolConfig};

fn zstd_cache(dictionary: Dictionary) -> Cache<Arc<Pool>> {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let config = CacheConfig { compression: Compression::Zstd(3), dictionary, ..CacheConfig::new(1 << 30) };
    Cache::new(pool, config).unwrap()
}

/// A JSON user record, as a cache of profiles holds: shared field names, small vocabularies.
fn record(i: usize, generation: usize) -> Vec<u8> {
    let first = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Greta", "Hiro", "Ines", "Jonas"];
    let last = ["Smith", "Garcia", "Okafor", "Tanaka", "Novak", "Dubois", "Rossi", "Kowalski"];
    let cities = ["Lyon", "Osaka", "Toronto", "Lagos", "Quito", "Perth", "Porto", "Brno"];
    let jobs = ["engineer", "nurse", "teacher", "designer", "accountant", "chef"];
    format!(
        "{{\"id\": {i}, \"gen\": {generation}, \"name\": \"{} {}\", \"email\": \"{}.{}{}@example.com\", \
         \"address\": {{\"city\": \"{}\", \"zip\": \"{:05}\"}}, \"job\": \"{}\", \"active\": {}, \
         \"created_at\": \"2026-{:02}-{:02}T{:02}:{:02}:00Z\", \"visits\": {}}}",
        first[i % 10],
        last[(i / 10) % 8],
        first[i % 10].to_lowercase(),
        last[(i / 10) % 8].to_lowercase(),
        i % 97,
        cities[(i * 7) % 8],
        (i * 7919) % 100_000,
        jobs[(i * 3) % 6],
        !i.is_multiple_of(3),
        1 + i % 12,
        1 + i % 28,
        i % 24,
        (i * 13) % 60,
        (i * 31) % 1000,
    )
    .into_bytes()
}

fn key(i: usize) -> String {
    format!("user:{i}")
}

fn fill(c: &Cache<Arc<Pool>>, n: usize, generation: usize) {
    for i in 0..n {
        c.set(Key::str(&key(i)), &record(i, generation), Ttl::Default).unwrap();
    }
}

fn check_all(c: &Cache<Arc<Pool>>, n: usize, generation: usize) {
    for i in 0..n {
        assert_eq!(c.get(Key::str(&key(i))).unwrap(), Some(record(i, generation)), "value {i}");
    }
}

/// Bytes of every entry's object plus every dictionary: what `currsize` must equal.
fn stored_by_hand(c: &Cache<Arc<Pool>>) -> u64 {
    let s = c.stats().unwrap();
    s.pool.payload_bytes
}

#[test]
fn trained_dictionary_shrinks_new_values_and_recompress_rewrites_old_ones() {
    let c = zstd_cache(Dictionary::Train);
    fill(&c, 3_000, 0);
    let before = c.lock().currsize();
    assert_eq!(c.stats().unwrap().dictionaries.current, None, "3,000 small records are below the threshold");
    let id = c.train_dictionary(Some(8 * 1024)).unwrap().expect("a trained dictionary beats plain zstd");
    let s = c.stats().unwrap().dictionaries;
    assert_eq!((s.current, s.trained, s.dictionaries.len()), (Some(id), 1, 1));
    assert!(s.recompressible_bytes > 0);
    assert_eq!(c.lock().currsize(), before + s.bytes, "the dictionary counts in currsize");

    let report = c.recompress(None, None).unwrap();
    assert_eq!(report.stop_reason, RecompressStop::Done);
    assert_eq!(report.values_recompressed, 3_000);
    assert!(report.bytes_after * 10 < report.bytes_before * 7, "{report:?}");
    check_all(&c, 3_000, 0);
    let s = c.stats().unwrap();
    assert_eq!(s.dictionaries.dictionaries[0].usage.values, 3_000);
    assert_eq!(s.dictionaries.recompressible_bytes, 0, "the pass is complete");
    assert_eq!(s.stored_bytes, stored_by_hand(&c), "currsize = entries + dictionary, as the pool holds them");
    assert_eq!(s.dictionaries.recompression.values_recompressed, 3_000);
    let again = c.recompress(None, None).unwrap();
    assert_eq!(again.values_recompressed, 0, "nothing left to do");
}

#[test]
fn an_old_dictionary_stays_while_values_use_it_then_is_freed() {
    let c = zstd_cache(Dictionary::Train);
    fill(&c, 2_000, 0);
    let first = c.train_dictionary(Some(4096)).unwrap().unwrap();
    fill(&c, 2_000, 1); // every value now on the first dictionary
    // Values of another shape, so that a second dictionary beats the first.
    for i in 0..2_000 {
        let v = format!("<li class=\"item\" data-id=\"{i}\"><a href=\"/p/{}\">product {}</a></li>", i * 7, i % 50);
        c.set(Key::str(&format!("html:{i}")), v.as_bytes(), Ttl::Default).unwrap();
    }
    let second = c.train_dictionary(Some(4096)).unwrap().expect("the new values train a better dictionary");
    assert_ne!(first, second);
    let d = c.stats().unwrap().dictionaries;
    assert_eq!(d.dictionaries.len(), 2, "the first stays: 2,000 values use it");
    check_all(&c, 2_000, 1);
    // Overwrite or delete the first dictionary's values: the new ones use the second.
    fill(&c, 2_000, 2);
    assert_eq!(c.stats().unwrap().dictionaries.freed, 0, "the HTML values still use the first");
    for i in 0..2_000 {
        assert!(c.remove(Key::str(&format!("html:{i}"))).unwrap());
    }
    let d = c.stats().unwrap().dictionaries;
    assert_eq!(d.freed, 1, "freed with its last value");
    assert_eq!(d.dictionaries.iter().map(|x| x.id).collect::<Vec<_>>(), vec![second]);
    check_all(&c, 2_000, 2);
    assert_eq!(c.stats().unwrap().stored_bytes, stored_by_hand(&c));
}

#[test]
fn recompress_frees_the_old_dictionary_and_clear_keeps_the_current() {
    let c = zstd_cache(Dictionary::Train);
    fill(&c, 2_000, 0);
    c.train_dictionary(Some(4096)).unwrap().unwrap();
    fill(&c, 2_000, 1);
    let s0 = c.stats().unwrap();
    // A given dictionary (the cache's own, retrained bigger) supersedes it.
    let other = zstd_cache(Dictionary::Train);
    fill(&other, 2_000, 1);
    other.train_dictionary(Some(16 * 1024)).unwrap().unwrap();
    let bytes = other.dictionary().unwrap().unwrap();
    c.install_dictionary(&bytes).unwrap();
    let report = c.recompress(None, None).unwrap();
    assert!(report.values_recompressed > 1_500, "{report:?}");
    check_all(&c, 2_000, 1);
    let old = c.stats().unwrap().dictionaries.dictionaries[0].usage.values;
    assert!(old < 500, "most values left the old dictionary; the rest fit it better ({old})");
    // Once those are overwritten too, the old dictionary is freed.
    fill(&c, 2_000, 2);
    let s1 = c.stats().unwrap();
    assert_eq!((s1.dictionaries.dictionaries.len(), s1.dictionaries.freed), (1, 1));
    assert_eq!(s1.stored_bytes, stored_by_hand(&c));
    assert!(s0.dictionaries.dictionaries[0].usage.values == 2_000);
    c.lock().clear().unwrap();
    let s2 = c.stats().unwrap();
    assert_eq!(s2.stored_bytes, bytes.len() as u64, "after clear, currsize is the current dictionary");
    assert_eq!(s2.stored_bytes, stored_by_hand(&c));
}

#[test]
fn dictionary_true_trains_by_itself_after_the_threshold() {
    let c = zstd_cache(Dictionary::Train);
    let per = record(0, 0).len() as u64;
    let n = (TRAIN_AFTER_BYTES / per) as usize + 100;
    fill(&c, n, 0);
    let d = c.stats().unwrap().dictionaries;
    assert_eq!(d.trained, 1, "trained once past {TRAIN_AFTER_BYTES} bytes");
    assert!(d.dictionaries[0].usage.values > 0, "later values use it");
    check_all(&c, n, 0);
}

#[test]
fn bad_dictionaries_are_clear_errors() {
    let pool = Arc::new(Pool::new(PoolConfig::default()).unwrap());
    let config = |d: Vec<u8>| CacheConfig {
        compression: Compression::Zstd(3),
        dictionary: Dictionary::Given(d),
        ..CacheConfig::new(1 << 30)
    };
    for (bytes, says) in [
        (vec![0u8; 4096], "not a zstd dictionary"),
        (b"\x37\xa4\x30\xec".iter().copied().chain([0xff; 2000]).collect(), "corrupt"),
        (vec![7u8; 10], "out of range"),
    ] {
        match Cache::new(pool.clone(), config(bytes)) {
            Err(CacheError::Dictionary(msg)) => assert!(msg.contains(says), "{msg}"),
            other => panic!("expected a dictionary error, got {:?}", other.err()),
        }
    }
    let lz4 = CacheConfig { compression: Compression::Lz4, dictionary: Dictionary::Train, ..CacheConfig::new(1 << 30) };
    assert!(matches!(Cache::new(pool, lz4), Err(CacheError::BadConfig { .. })));
}

#[test]
fn values_that_do_not_shrink_are_kept_raw() {
    let c = zstd_cache(Dictionary::Train);
    fill(&c, 1_000, 0);
    c.train_dictionary(Some(4096)).unwrap().unwrap();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let noise: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    c.set(Key::str("noise"), &noise, Ttl::Default).unwrap();
    assert_eq!(c.get(Key::str("noise")).unwrap(), Some(noise.clone()));
    let s = c.stats().unwrap();
    let usage = s.dictionaries.dictionaries[0].usage;
    assert_eq!(usage.values, 1, "tried with the dictionary");
    assert_eq!(usage.bytes_before, usage.bytes_after, "and kept raw");
}

#[test]
fn readers_and_writers_see_every_value_intact_during_recompression() {
    let c = Arc::new(zstd_cache(Dictionary::Train));
    fill(&c, 4_000, 0);
    c.train_dictionary(Some(4096)).unwrap().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                for round in 0..3 {
                    for i in (t..4_000).step_by(3) {
                        let got = c.get(Key::str(&key(i))).unwrap().expect("never lost");
                        assert!(got == record(i, 0) || got == record(i, 1), "value {i} intact");
                        if round == 1 {
                            c.set(Key::str(&key(i)), &record(i, 1), Ttl::Default).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    let mut runs = 0;
    while c.recompress(None, Some(std::time::Duration::from_millis(2))).unwrap().stop_reason != RecompressStop::Done {
        runs += 1;
    }
    for w in workers {
        w.join().unwrap();
    }
    assert!(runs > 0, "the pass took several yielding slices");
    assert_eq!(c.stats().unwrap().stored_bytes, stored_by_hand(&c));
}
