//! The compaction loop is storage-independent: a toy size class kept in plain `Vec`s (no
//! pages, no unsafe, no pool) implements `CompactClass` / `LockedClass` from outside the
//! crate, as the shared-file pool does, and the generic `compact_class` frees exactly
//! `can_compact` pages from it, keeps every object's bytes (each a keyed pattern, compared
//! whole) with its record pointing at it, and leaves every free slot zeroed.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{Rng, pattern};
use zspool_core::{
    ClassLayout, ClassTable, CompactClass, CompactOptions, CompactionReport, FULLNESS_GROUPS, Fullness, LockHold,
    LockedClass, StopReason, can_compact, compact_class, compact_classes,
};

/// One zspage: its slots, each free (`None`) or holding (owner, bytes); freed slots keep
/// their bytes until `zero_moved`, as a real zspage's do.
struct ToyZspage {
    owners: Vec<Option<u32>>,
    bytes: Vec<Vec<u8>>,
    group: Fullness,
}

impl ToyZspage {
    fn inuse(&self) -> usize {
        self.owners.iter().flatten().count()
    }
}

/// Everything the toy class lock guards.
struct ToyState {
    layout: ClassLayout,
    zspages: Vec<Option<ToyZspage>>,
    groups: [Vec<u32>; FULLNESS_GROUPS],
    obj_allocated: usize,
    obj_used: usize,
    /// Each owner's record: where its object is (zspage, object), and its size.
    records: Vec<Option<(u32, u16, usize)>>,
}

impl ToyState {
    fn zspage(&self, id: u32) -> &ToyZspage {
        self.zspages[id as usize].as_ref().expect("a live zspage")
    }

    fn zspage_mut(&mut self, id: u32) -> &mut ToyZspage {
        self.zspages[id as usize].as_mut().expect("a live zspage")
    }

    fn relist(&mut self, id: u32) {
        let new = Fullness::of(self.zspage(id).inuse(), self.layout.objs_per_zspage);
        let old = self.zspage(id).group;
        self.groups[old.index()].retain(|&z| z != id);
        self.groups[new.index()].push(id);
        self.zspage_mut(id).group = new;
    }

    fn head_except(&self, group: Fullness, except: Option<u32>) -> Option<u32> {
        self.groups[group.index()].iter().rev().copied().find(|&id| Some(id) != except)
    }

    /// Store `bytes` for a new owner in the fullest zspage with room (a new one if none).
    fn store(&mut self, bytes: Vec<u8>) {
        let id = match Fullness::with_room().rev().find_map(|g| self.groups[g.index()].last().copied()) {
            Some(id) => id,
            None => {
                let n = self.layout.objs_per_zspage;
                let slot = vec![0; self.layout.size];
                self.zspages.push(Some(ToyZspage {
                    owners: vec![None; n],
                    bytes: vec![slot; n],
                    group: Fullness::EMPTY,
                }));
                let id = (self.zspages.len() - 1) as u32;
                self.groups[Fullness::EMPTY.index()].push(id);
                self.obj_allocated += n;
                id
            }
        };
        let owner = self.records.len() as u32;
        let zspage = self.zspage_mut(id);
        let obj = zspage.owners.iter().position(Option::is_none).expect("a zspage with room");
        zspage.owners[obj] = Some(owner);
        zspage.bytes[obj][..bytes.len()].copy_from_slice(&bytes);
        self.records.push(Some((id, obj as u16, bytes.len())));
        self.obj_used += 1;
        self.relist(id);
    }

    /// Free `owner`'s object, zeroing it; an emptied zspage is dropped (not compaction's).
    fn free(&mut self, owner: u32) {
        let (id, obj, _) = self.records[owner as usize].take().expect("a live owner");
        let zspage = self.zspage_mut(id);
        zspage.owners[usize::from(obj)] = None;
        zspage.bytes[usize::from(obj)].fill(0);
        self.obj_used -= 1;
        self.relist(id);
        if self.zspage(id).inuse() == 0 {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u32) -> ToyZspage {
        let zspage = self.zspages[id as usize].take().expect("a live zspage");
        self.groups[zspage.group.index()].retain(|&z| z != id);
        self.obj_allocated -= self.layout.objs_per_zspage;
        zspage
    }
}

/// The toy class: its state behind a mutex, the counters published for the lock-free
/// `can_compact`, and what was given back.
struct ToyClass {
    layout: ClassLayout,
    state: Mutex<ToyState>,
    published: (AtomicUsize, AtomicUsize),
    released_pages: AtomicUsize,
    released_zspages: AtomicUsize,
}

/// The toy class's state under its lock.
struct Locked<'a>(MutexGuard<'a, ToyState>);

impl CompactClass for ToyClass {
    type Locked<'a> = Locked<'a>;
    type Dead = ToyZspage;

    fn can_compact(&self) -> usize {
        can_compact(&self.layout, self.published.0.load(Ordering::Relaxed), self.published.1.load(Ordering::Relaxed))
    }

    fn lock(&self) -> Locked<'_> {
        Locked(self.state.lock().unwrap())
    }

    fn unlock_fair<'a>(&'a self, locked: Locked<'a>) {
        drop(locked);
    }

    fn lock_is_contended(&self) -> bool {
        false
    }

    fn publish<'a>(&'a self, locked: &Locked<'a>) {
        self.published.0.store(locked.0.obj_allocated, Ordering::Relaxed);
        self.published.1.store(locked.0.obj_used, Ordering::Relaxed);
    }

    fn release_dead(&self, dead: &[ToyZspage]) {
        // No lock held: a second lock() here would deadlock if the loop still held it.
        let pages =
            self.state.try_lock().expect("dead zspages are released with the lock dropped").layout.pages_per_zspage;
        assert!(dead.iter().all(|z| z.inuse() == 0), "only empty zspages die");
        self.released_pages.fetch_add(dead.len() * pages, Ordering::Relaxed);
        self.released_zspages.fetch_add(dead.len(), Ordering::Relaxed);
    }

    fn must_stop(&self) -> Option<StopReason> {
        None
    }
}

impl LockedClass for Locked<'_> {
    type Dead = ToyZspage;

    fn pages_per_zspage(&self) -> usize {
        self.0.layout.pages_per_zspage
    }

    fn can_compact(&self) -> usize {
        can_compact(&self.0.layout, self.0.obj_allocated, self.0.obj_used)
    }

    fn zspage_exists(&self, zspage: u32) -> bool {
        matches!(self.0.zspages.get(zspage as usize), Some(Some(_)))
    }

    fn is_full(&self, zspage: u32) -> bool {
        self.0.zspage(zspage).owners.iter().all(Option::is_some)
    }

    fn inuse(&self, zspage: u32) -> usize {
        self.0.zspage(zspage).inuse()
    }

    fn fullest_with_room(&self, except: Option<u32>) -> Option<u32> {
        Fullness::partly_used().rev().find_map(|g| self.0.head_except(g, except))
    }

    fn emptiest(&self, except: Option<u32>) -> Option<u32> {
        Fullness::partly_used().find_map(|g| self.0.head_except(g, except))
    }

    fn find_alloced_obj(&self, zspage: u32, from: usize) -> Option<(u16, u32)> {
        let owners = &self.0.zspage(zspage).owners;
        (from..owners.len()).find_map(|obj| owners[obj].map(|owner| (obj as u16, owner)))
    }

    fn migrate_obj(&mut self, src: u32, obj: u16, owner: u32, dst: u32) -> usize {
        let state = &mut *self.0;
        let (at_zspage, at_obj, size) = state.records[owner as usize].expect("a live owner");
        assert_eq!((at_zspage, at_obj), (src, obj), "the record names the object moved");
        let bytes = state.zspage(src).bytes[usize::from(obj)][..size].to_vec();
        state.zspage_mut(src).owners[usize::from(obj)] = None;
        let to = state.zspage_mut(dst);
        let new_obj = to.owners.iter().position(Option::is_none).expect("a destination with room");
        to.owners[new_obj] = Some(owner);
        to.bytes[new_obj][..size].copy_from_slice(&bytes);
        state.records[owner as usize] = Some((dst, new_obj as u16, size));
        size
    }

    fn fix_fullness(&mut self, zspage: u32) {
        self.0.relist(zspage);
    }

    fn zero_moved(&mut self, zspage: u32, moved: &[(u16, usize)]) {
        let zspage = self.0.zspage_mut(zspage);
        for &(obj, size) in moved {
            zspage.bytes[usize::from(obj)][..size].fill(0);
        }
    }

    fn remove_zspage(&mut self, zspage: u32) -> ToyZspage {
        self.0.remove(zspage)
    }
}

/// A toy class of `size`-byte slots holding `objects` objects, a random 70 % then freed;
/// returns it and the live owners.
fn fragmented(size: usize, objects: usize, seed: u64) -> (ToyClass, Vec<u32>) {
    fragmented_by(size, objects, 0.7, seed)
}

/// As [`fragmented`], freeing each object with probability `free`.
fn fragmented_by(size: usize, objects: usize, free: f64, seed: u64) -> (ToyClass, Vec<u32>) {
    let table = ClassTable::new(8);
    let layout = table.classes()[table.class_for(size)];
    let mut state = ToyState {
        layout,
        zspages: Vec::new(),
        groups: Default::default(),
        obj_allocated: 0,
        obj_used: 0,
        records: Vec::new(),
    };
    let mut rng = Rng::new(seed);
    for owner in 0..objects {
        let len = 1 + rng.below(layout.size);
        state.store(pattern(owner as u64, len));
    }
    let mut live = Vec::new();
    for owner in 0..objects as u32 {
        if rng.chance(free) {
            state.free(owner);
        } else {
            live.push(owner);
        }
    }
    let class = ToyClass {
        layout,
        published: (AtomicUsize::new(state.obj_allocated), AtomicUsize::new(state.obj_used)),
        state: Mutex::new(state),
        released_pages: AtomicUsize::new(0),
        released_zspages: AtomicUsize::new(0),
    };
    (class, live)
}

/// Every live owner's record names a slot holding its pattern; every free slot is zeros.
fn check_objects(class: &ToyClass, live: &[u32]) {
    let state = class.state.lock().unwrap();
    for &owner in live {
        let (id, obj, size) = state.records[owner as usize].expect("a live owner keeps its record");
        let zspage = state.zspage(id);
        assert_eq!(zspage.owners[usize::from(obj)], Some(owner), "owner {owner}'s slot names it");
        let bytes = &zspage.bytes[usize::from(obj)];
        assert_eq!(&bytes[..size], &pattern(u64::from(owner), size)[..], "owner {owner}'s bytes survive the moves");
        assert!(bytes[size..].iter().all(|&b| b == 0), "nothing past owner {owner}'s object");
    }
    for zspage in state.zspages.iter().flatten() {
        for (owner, bytes) in zspage.owners.iter().zip(&zspage.bytes) {
            if owner.is_none() {
                assert!(bytes.iter().all(|&b| b == 0), "a free slot left unzeroed");
            }
        }
    }
    assert_eq!(state.obj_used, live.len());
}

#[test]
fn the_generic_loop_frees_exactly_can_compact_pages_of_a_toy_storage() {
    for (size, lock_hold) in [
        (200, LockHold::default()),
        // Three objects per slice: most moves end mid-zspage, so yields and kept destinations
        // are exercised; 1000-byte slots straddle pages in a multi-page zspage.
        (1000, LockHold::Yielding { slice_objects: 3, slice: Duration::from_secs(60) }),
        (3000, LockHold::WholeClass),
    ] {
        let (class, live) = fragmented(size, 5000, size as u64);
        let predicted = class.can_compact();
        assert!(predicted > 0, "a 70 % freed class has pages to free");
        let options = CompactOptions { lock_hold, ..CompactOptions::default() };
        let mut report = CompactionReport::default();
        let stop = compact_class(&class, &options, None, &mut report);
        assert_eq!(stop, None, "the class was compacted to the end");
        assert_eq!(report.pages_freed, predicted, "freed other than can_compact predicted ({size} bytes)");
        assert_eq!(class.released_pages.load(Ordering::Relaxed), predicted, "every unlinked zspage was released");
        assert_eq!(class.can_compact(), 0, "the published counters say nothing is left");
        assert_eq!(LockedClass::can_compact(&class.lock()), 0);
        assert!(report.objects_migrated > 0 && report.bytes_migrated > 0);
        if lock_hold == LockHold::WholeClass {
            assert_eq!(report.lock_yields, 0, "a whole-class hold never yields");
        } else {
            assert!(
                report.lock_yields >= class.released_zspages.load(Ordering::Relaxed) as u64,
                "a yield per drained source"
            );
        }
        check_objects(&class, &live);
    }
}

#[test]
fn the_generic_loop_stops_at_the_page_budget_and_resumes() {
    let (class, live) = fragmented(500, 5000, 7);
    let predicted = class.can_compact();
    let mut report = CompactionReport::default();
    let options = CompactOptions { max_pages: Some(1), ..CompactOptions::default() };
    assert_eq!(compact_class(&class, &options, None, &mut report), Some(StopReason::BudgetReached));
    assert!(report.pages_freed >= 1 && report.pages_freed < predicted, "{report:?}");
    check_objects(&class, &live);
    let mut rest = CompactionReport::default();
    assert_eq!(compact_class(&class, &CompactOptions::default(), None, &mut rest), None);
    assert_eq!(report.pages_freed + rest.pages_freed, predicted, "the two runs free what was predicted");
    check_objects(&class, &live);
}

#[test]
fn the_generic_run_skips_classes_with_nothing_to_free() {
    let (sparse, sparse_live) = fragmented(300, 4000, 11);
    // Nothing freed: every zspage full but the last, so no page can be freed.
    let (dense, dense_live) = fragmented_by(2000, 300, 0.0, 12);
    assert_eq!(dense.can_compact(), 0);
    let predicted = sparse.can_compact();
    let mut report = CompactionReport::default();
    let stop = compact_classes([&dense, &sparse], &CompactOptions::default(), None, &mut report);
    assert_eq!(stop, StopReason::Done);
    assert_eq!(report.classes_scanned, 1, "only the class with pages to free is scanned");
    assert_eq!(report.pages_freed, predicted);
    assert_eq!(dense.released_pages.load(Ordering::Relaxed), 0);
    check_objects(&sparse, &sparse_live);
    check_objects(&dense, &dense_live);
}
