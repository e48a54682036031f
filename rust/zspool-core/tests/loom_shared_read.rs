//! Loom model of zspool-shared's lock-free read (`rust/zspool-shared/src/shard.rs` `read_unlocked`) against compaction moving
//! the object it reads (`class.rs` `begin_move`/`end_move`, `compaction.rs` `migrate`) and a
//! store of another key reusing the slot the object left. The file's memory is not loom's, so
//! this is a model of the protocol with the same atomics, orderings and fences as the code,
//! not the code itself. It lives here because zspool-shared's dependencies (the cache crate)
//! do not build with `--cfg loom`, and it needs nothing of either crate. Run by `make loom`:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p zspool-core --test loom_shared_read --release
//! ```
//!
//! The reader holds the key's shard lock (so no set or delete of this key runs), reads the
//! slot's location, the class's move sequence, copies the object word by word and trusts the
//! copy only if the sequence was even and both the sequence and the location are unchanged.
//! The mover, under the class lock, makes the sequence odd, copies the object to its new
//! place, points the slot there, frees the old place and makes the sequence even again. The
//! reuser, under the class lock but without touching the sequence (as `set` of another key
//! does), writes another object into the old place once it is free. A copy the reader
//! trusts must be the object's bytes. The `broken_` models drop the location re-check, or the
//! reuser's release fence, and loom must find the interleaving where the reader then trusts
//! the other key's bytes (found by this model: the fence was missing in the code).
#![cfg(loom)]

use loom::sync::atomic::{AtomicU64, Ordering, fence};
use loom::sync::{Arc, Mutex};
use loom::thread;

const VALUE: [u64; 2] = [0xAAAA_0001, 0xAAAA_0002];
const OTHER: [u64; 2] = [0xBBBB_0001, 0xBBBB_0002];
const FREE: u64 = 0xF4EE;

struct Class {
    lock: Mutex<()>,
    seq: AtomicU64,
    /// Two object places of two words each; the object starts in place 0.
    places: [[AtomicU64; 2]; 2],
    /// The index slot's location: 1 + the place, 0 for none.
    loc: AtomicU64,
}

impl Class {
    fn new() -> Class {
        let place = |w: [u64; 2]| [AtomicU64::new(w[0]), AtomicU64::new(w[1])];
        Class {
            lock: Mutex::new(()),
            seq: AtomicU64::new(0),
            places: [place(VALUE), place([FREE, 0])],
            loc: AtomicU64::new(1),
        }
    }

    fn begin_move(&self) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    fn end_move(&self) {
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// `read_unlocked`: `None` means "take the class lock instead".
    fn read_unlocked(&self, recheck_location: bool) -> Option<[u64; 2]> {
        let word = self.loc.load(Ordering::Acquire);
        let seq = self.seq.load(Ordering::Acquire);
        if word == 0 || seq & 1 == 1 {
            return None;
        }
        let place = &self.places[(word - 1) as usize];
        let copy = [place[0].load(Ordering::Relaxed), place[1].load(Ordering::Relaxed)];
        fence(Ordering::Acquire);
        let unchanged =
            self.seq.load(Ordering::Relaxed) == seq && (!recheck_location || self.loc.load(Ordering::Relaxed) == word);
        unchanged.then_some(copy)
    }

    /// `migrate`: place 0 -> place 1, the slot rewritten, place 0 freed.
    fn compact(&self) {
        let _class = self.lock.lock().unwrap();
        self.begin_move();
        for w in 0..2 {
            self.places[1][w].store(self.places[0][w].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.loc.store(2, Ordering::Release);
        self.places[0][0].store(FREE, Ordering::Relaxed);
        self.end_move();
    }

    /// A store of another key into place 0 once it is free (no sequence change): `pop_free`,
    /// whose release fence is what lets the reader's acquire fence see the move (without it
    /// this model fails: the reader copies the new bytes yet reads the old sequence and slot).
    fn reuse(&self, fenced: bool) {
        let _class = self.lock.lock().unwrap();
        if self.places[0][0].load(Ordering::Relaxed) == FREE {
            if fenced {
                fence(Ordering::Release);
            }
            for w in 0..2 {
                self.places[0][w].store(OTHER[w], Ordering::Relaxed);
            }
        }
    }
}

fn model(recheck_location: bool, fenced_reuse: bool) {
    loom::model(move || {
        let class = Arc::new(Class::new());
        let mover = {
            let class = class.clone();
            thread::spawn(move || class.compact())
        };
        let reuser = {
            let class = class.clone();
            thread::spawn(move || class.reuse(fenced_reuse))
        };
        if let Some(copy) = class.read_unlocked(recheck_location) {
            assert_eq!(copy, VALUE, "a lock-free read trusted bytes that are not the object's");
        }
        mover.join().unwrap();
        reuser.join().unwrap();
    });
}

#[test]
fn a_lock_free_read_never_trusts_a_copy_torn_by_a_move_or_a_reuse() {
    model(true, true);
}

#[test]
#[should_panic(expected = "not the object's")]
fn broken_a_read_without_the_location_recheck_trusts_another_keys_bytes() {
    model(false, true);
}

#[test]
#[should_panic(expected = "not the object's")]
fn broken_a_reuse_without_the_release_fence_lets_a_read_trust_a_torn_copy() {
    model(true, false);
}
