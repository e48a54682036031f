//! Which entry goes when the byte budget is reached: SIEVE (the default) or LRU.
//!
//! Both keep the entries in one doubly linked queue threaded through the index's slots
//! (`newer`/`older`, 8 bytes per entry), newest at the head.
//!
//! - **SIEVE** (Zhang et al., NSDI 2024): a hit only sets the slot's `visited` bit (no list
//!   surgery, so a hit never writes the queue). To evict, a *hand* walks from the tail toward
//!   the head, clearing `visited` bits, and evicts the first unvisited entry; the hand stays
//!   where it stopped. New entries enter at the head. Entries seen once (a scan) leave
//!   quickly, entries hit while in the cache survive a whole sweep.
//! - **LRU**: a hit moves the entry to the head; the tail is evicted.
//!
//! SIEVE won the comparison on the project's Zipf and scan-mixed traces
//! (`asv_bench/standalone/cache_eviction.py`, figures in the README), so it is the default;
//! LRU stays selectable for workloads with strong recency. Guarded by the cache mutex.

use crate::slots::{NIL, Slots};

/// The eviction algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Eviction {
    #[default]
    /// SIEVE: a hand sweeps from old to new, sparing entries hit since its last pass.
    Sieve,
    /// Least recently used.
    Lru,
}

#[derive(Debug)]
pub(crate) struct Queue {
    kind: Eviction,
    head: u32,
    tail: u32,
    /// SIEVE's hand: the next slot to examine (NIL: start from the tail).
    hand: u32,
    /// Entries queued.
    len: usize,
}

impl Queue {
    pub(crate) fn new(kind: Eviction) -> Queue {
        Queue { kind, head: NIL, tail: NIL, hand: NIL, len: 0 }
    }

    /// The oldest entry (NIL when empty); follow `newer` links toward the head.
    pub(crate) fn tail(&self) -> u32 {
        self.tail
    }

    /// Put a new slot at the head.
    pub(crate) fn push(&mut self, slots: &Slots, id: u32) {
        let slot = slots.slot(id);
        slot.set_newer(NIL);
        slot.set_older(self.head);
        slot.set_visited(false);
        self.len += 1;
        if self.head != NIL {
            slots.slot(self.head).set_newer(id);
        } else {
            self.tail = id;
        }
        self.head = id;
    }

    /// Take a slot out of the queue (before the index frees it).
    pub(crate) fn unlink(&mut self, slots: &Slots, id: u32) {
        let (newer, older) = (slots.slot(id).newer(), slots.slot(id).older());
        self.len -= 1;
        if self.hand == id {
            self.hand = newer;
        }
        if newer != NIL {
            slots.slot(newer).set_older(older);
        } else {
            self.head = older;
        }
        if older != NIL {
            slots.slot(older).set_newer(newer);
        } else {
            self.tail = newer;
        }
        slots.slot(id).set_newer(NIL);
        slots.slot(id).set_older(NIL);
    }

    /// A hit on `id`.
    pub(crate) fn touch(&mut self, slots: &Slots, id: u32) {
        match self.kind {
            Eviction::Sieve => slots.slot(id).set_visited(true),
            Eviction::Lru => {
                if self.head != id {
                    self.unlink(slots, id);
                    self.push(slots, id);
                }
            }
        }
    }

    /// The entry to evict next, never `keep` (the entry being written); `None` if there is
    /// no other. SIEVE clears `visited` bits on the way and moves its hand.
    pub(crate) fn victim(&mut self, slots: &Slots, keep: u32) -> Option<u32> {
        if self.tail == NIL {
            return None;
        }
        match self.kind {
            Eviction::Lru => {
                let mut p = self.tail;
                while p == keep {
                    p = slots.slot(p).newer();
                }
                (p != NIL).then_some(p)
            }
            Eviction::Sieve => {
                let mut p = if self.hand == NIL { self.tail } else { self.hand };
                // Two sweeps always suffice: the first clears every bit it passes.
                let mut steps = 0usize;
                loop {
                    if p == NIL {
                        p = self.tail;
                    }
                    if p != keep {
                        let slot = slots.slot(p);
                        if !slot.visited() {
                            self.hand = slot.newer();
                            return Some(p);
                        }
                        slot.set_visited(false);
                    }
                    steps += 1;
                    if steps > 2 * self.len + 2 {
                        return None; // only `keep` is left
                    }
                    p = slots.slot(p).newer();
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Queue::new(self.kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::index::tests::{index, insert};

    fn setup(kind: Eviction, n: u32) -> (Index, Queue) {
        let mut index = index();
        let mut queue = Queue::new(kind);
        for i in 0..n {
            let id = insert(&mut index, u64::from(i), i);
            queue.push(&index.slots, id);
        }
        (index, queue)
    }

    fn evict(index: &mut Index, queue: &mut Queue) -> u32 {
        let id = queue.victim(&index.slots, NIL).unwrap();
        queue.unlink(&index.slots, id);
        index.remove(id);
        id
    }

    #[test]
    fn sieve_spares_visited_and_keeps_its_hand() {
        let (mut index, mut queue) = setup(Eviction::Sieve, 5); // tail 0 .. head 4
        queue.touch(&index.slots, 0);
        queue.touch(&index.slots, 2);
        assert_eq!(evict(&mut index, &mut queue), 1, "0 was visited: spared, bit cleared");
        assert_eq!(evict(&mut index, &mut queue), 3, "the hand continues from 2, which is spared");
        assert_eq!(evict(&mut index, &mut queue), 4);
        assert_eq!(evict(&mut index, &mut queue), 0, "wrapped: 0's bit was cleared by the first sweep");
        assert_eq!(evict(&mut index, &mut queue), 2);
        assert_eq!(queue.victim(&index.slots, NIL), None);
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let (mut index, mut queue) = setup(Eviction::Lru, 4);
        queue.touch(&index.slots, 0);
        assert_eq!(evict(&mut index, &mut queue), 1);
        assert_eq!(evict(&mut index, &mut queue), 2);
        assert_eq!(evict(&mut index, &mut queue), 3);
        assert_eq!(evict(&mut index, &mut queue), 0);
    }

    #[test]
    fn never_picks_the_kept_slot() {
        for kind in [Eviction::Sieve, Eviction::Lru] {
            let (index, mut queue) = setup(kind, 1);
            assert_eq!(queue.victim(&index.slots, 0), None);
            let (index, mut queue) = setup(kind, 2);
            assert_eq!(queue.victim(&index.slots, 0), Some(1));
        }
    }
}
