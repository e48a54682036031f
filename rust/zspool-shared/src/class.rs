//! A class state in the file: the kernel's `struct size_class` for one class of the core's
//! class table. Its lock guards its counters, its 12 fullness lists (heads here, links in the
//! descriptors), its zspages' objects and the index slots' locations that name them.
//!
//! Lock order: shard lock -> **class lock** -> allocator lock. [`ClassGuard`] is the locked
//! class; taking it runs the recovery (`recovery.rs`) if the previous holder died.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use zspool_core::{ClassLayout, FULLNESS_GROUPS, Fullness};

use crate::error::SharedError;
use crate::header::Header;
use crate::location::{EPOCH_MASK, Location};
use crate::object::{FREE_BIT, FREE_END, HEADER_LEN, copy_words, load_words, store_words};
use crate::regions::Regions;
use crate::robust_mutex::{Guard, RobustMutex};
use crate::zspage::NONE;

/// Two parts on cache lines of their own: what lock-free readers load on every get (`seq`,
/// `epoch`: written only by compaction and recovery), and what every set writes (the lock
/// and the counters). On one line, each set in one process took the line away from every
/// reader in the others.
#[repr(C, align(64))]
pub(crate) struct ClassShm {
    /// The move sequence, a seqlock over the class's objects: odd while compaction moves an
    /// object or a recovery discards the class, bumped by each. A reader that copies an
    /// object without the class lock trusts the copy only if it read the same even value
    /// before and after (see `shard.rs`).
    pub(crate) seq: AtomicU64,
    pub(crate) epoch: AtomicU32,
    _pad: [u8; 52],
    pub(crate) lock: RobustMutex,
    pub(crate) obj_allocated: AtomicU64,
    pub(crate) obj_used: AtomicU64,
    /// Stored bytes of this class's entries.
    pub(crate) bytes: AtomicU64,
    pub(crate) heads: [AtomicU32; FULLNESS_GROUPS],
}

impl ClassShm {
    /// Set up a new file's class state (the creator).
    pub(crate) fn init(&self) {
        self.lock.init();
        for head in &self.heads {
            head.store(NONE, Ordering::Relaxed);
        }
    }

    /// The kernel's `zs_can_compact`, lock-free.
    pub(crate) fn can_compact(&self, layout: &ClassLayout) -> usize {
        let allocated = self.obj_allocated.load(Ordering::Relaxed) as usize;
        let used = self.obj_used.load(Ordering::Relaxed) as usize;
        zspool_core::can_compact(layout, allocated, used)
    }
}

/// A locked class.
pub(crate) struct ClassGuard<'a> {
    pub(crate) r: &'a Regions,
    pub(crate) id: u32,
    pub(crate) layout: ClassLayout,
    pub(crate) shm: &'a ClassShm,
    _guard: Guard<'a>,
}

/// Take class `id`'s lock (`id < n_classes`), recovering the class if its holder died.
pub(crate) fn lock_class(r: &Regions, id: u32) -> Result<ClassGuard<'_>, SharedError> {
    let shm = r.class(id as usize);
    let (guard, died) = shm.lock.lock(&r.lock_file).map_err(crate::cache::corrupt)?;
    let mut class = ClassGuard { r, id, layout: r.classes()[id as usize], shm, _guard: guard };
    if died {
        crate::recovery::recover_class(&class);
        class._guard.mark_consistent();
    }
    Ok(class)
}

impl ClassGuard<'_> {
    pub(crate) fn epoch(&self) -> u32 {
        self.shm.epoch.load(Ordering::Relaxed) & EPOCH_MASK
    }

    fn objs(&self) -> u32 {
        self.layout.objs_per_zspage as u32
    }

    fn valid_desc(&self, desc: u32) -> bool {
        (desc as usize) < self.r.layout.n_chunks && self.r.desc(desc).class.load(Ordering::Relaxed) == self.id
    }

    /// Whether `loc` names an object of this class's current epoch in a zspage of this class.
    pub(crate) fn names_live_object(&self, loc: &Location) -> bool {
        loc.class == self.id && loc.epoch == self.epoch() && loc.obj < self.objs() && self.valid_desc(loc.desc)
    }

    pub(crate) fn object_ptr(&self, desc: u32, obj: u32) -> *mut u8 {
        self.r.object(desc, obj, self.layout.size)
    }

    fn backref_word(&self, desc: u32, obj: u32) -> &AtomicU32 {
        // SAFETY: the object is inside the mapping (`Regions::object` clamps) and 16-byte
        // aligned (class sizes are multiples of 16 from a page boundary); its first word is
        // the back-reference (`object.rs`).
        unsafe { &*self.object_ptr(desc, obj).cast::<AtomicU32>() }
    }

    /// The back-reference word of an object.
    pub(crate) fn backref(&self, desc: u32, obj: u32) -> u32 {
        u32::from_le(self.backref_word(desc, obj).load(Ordering::Relaxed))
    }

    pub(crate) fn set_backref(&self, desc: u32, obj: u32, word: u32) {
        self.backref_word(desc, obj).store(word.to_le(), Ordering::Relaxed);
    }

    /// Copy a whole object slot into `out` (resized to the class size).
    pub(crate) fn read_object(&self, desc: u32, obj: u32, out: &mut Vec<u8>) {
        out.resize(self.layout.size, 0);
        // SAFETY: the slot is inside the mapping and aligned (see `backref_word`); `out` is
        // a slot long, a multiple of 16.
        unsafe { load_words(self.object_ptr(desc, obj), out) };
    }

    /// The stored length of an object, as its header says, at most the slot.
    pub(crate) fn stored_len(&self, desc: u32, obj: u32) -> u64 {
        let mut head = [0u8; HEADER_LEN];
        // SAFETY: as in `read_object`; every class is larger than a header (24 bytes).
        unsafe { load_words(self.object_ptr(desc, obj), &mut head) };
        let key = usize::from(u16::from_le_bytes([head[6], head[7]]));
        let value = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        (HEADER_LEN + key + value).min(self.layout.size) as u64
    }

    /// Copy `record` into a slot this class just allocated.
    pub(crate) fn write_object(&self, desc: u32, obj: u32, record: &[u8]) {
        let len = record.len().min(self.layout.size);
        // SAFETY: as in `read_object`; `len` rounded up to 8 is at most the slot (a multiple
        // of 16), and we hold the class lock.
        unsafe { store_words(self.object_ptr(desc, obj), &record[..len]) };
    }

    /// Copy object `obj` of `src` over object `new` of `dst` (compaction).
    pub(crate) fn copy_object(&self, src: u32, obj: u32, dst: u32, new: u32) {
        // SAFETY: both slots are inside the mapping and aligned (see `backref_word`), a class
        // size apart or in different chunks, and guarded by the class lock we hold.
        unsafe { copy_words(self.object_ptr(src, obj), self.object_ptr(dst, new), self.layout.size) };
    }

    /// Compaction or a recovery starts changing objects in place: lock-free readers retry.
    /// Made odd, not incremented: a mover that died left it odd already, and the recovery
    /// must end even. (Only the class lock's holder writes it.)
    pub(crate) fn begin_move(&self) {
        let seq = self.shm.seq.load(Ordering::Relaxed);
        self.shm.seq.store(seq | 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
    }

    /// The change is done: the sequence is even again, and not the value it had before.
    pub(crate) fn end_move(&self) {
        self.shm.seq.fetch_add(1, Ordering::Release);
    }

    /// Allocate an object slot: in the fullest zspage with room, else a new zspage.
    pub(crate) fn alloc(&mut self) -> Option<(u32, u32)> {
        for _ in 0..4 {
            let desc = match self.fullest_with_room(None, true) {
                Some(d) => d,
                None => self.new_zspage()?,
            };
            if let Some(obj) = self.pop_free(desc) {
                return Some((desc, obj));
            }
        }
        None
    }

    /// Take a free object of zspage `desc`; `None` if its free list is empty or garbage (the
    /// zspage is then marked full, so it is not asked again).
    pub(crate) fn pop_free(&mut self, desc: u32) -> Option<u32> {
        // The slot may be one compaction just moved an object out of, which a lock-free
        // reader may still be copying: this fence before our stores into it pairs with the
        // reader's acquire fence, so a reader that copies any of our bytes also sees the
        // move's sequence change or new location and discards its copy (without it the
        // language's memory model allows the torn copy to be trusted: the `broken_` loom
        // model in rust/zspool-core/tests/loom_shared_read.rs). A compiler barrier on x86.
        std::sync::atomic::fence(Ordering::Release);
        let d = self.r.desc(desc);
        let head = d.free_head.load(Ordering::Relaxed);
        let word = (head < self.objs()).then(|| self.backref(desc, head));
        let Some(word) = word.filter(|w| w & FREE_BIT != 0) else {
            d.free_head.store(NONE, Ordering::Relaxed);
            d.inuse.store(self.objs(), Ordering::Relaxed);
            self.fix_fullness(desc);
            return None;
        };
        let next = word & !FREE_BIT;
        d.free_head.store(if next < self.objs() { next } else { NONE }, Ordering::Relaxed);
        self.set_backref(desc, head, 0);
        d.inuse.store(d.inuse.load(Ordering::Relaxed).saturating_add(1).min(self.objs()), Ordering::Relaxed);
        self.shm.obj_used.fetch_add(1, Ordering::Relaxed);
        self.fix_fullness(desc);
        Some(head)
    }

    /// Free object `obj` of zspage `desc`; an emptied zspage goes back to the allocator and
    /// its pages to the OS. Returns whether the zspage was freed.
    pub(crate) fn free(&mut self, desc: u32, obj: u32) -> bool {
        if self.release_obj(desc, obj) == 0 {
            self.remove_zspage(desc);
            true
        } else {
            self.fix_fullness(desc);
            false
        }
    }

    /// Put object `obj` of zspage `desc` on its free list; the zspage's `inuse` after. The
    /// fullness lists are left to the caller.
    pub(crate) fn release_obj(&mut self, desc: u32, obj: u32) -> u32 {
        let d = self.r.desc(desc);
        let head = d.free_head.load(Ordering::Relaxed);
        self.set_backref(desc, obj, FREE_BIT | if head < self.objs() { head } else { FREE_END });
        d.free_head.store(obj, Ordering::Relaxed);
        let inuse = d.inuse.load(Ordering::Relaxed).saturating_sub(1);
        d.inuse.store(inuse, Ordering::Relaxed);
        Header::sub_saturating(&self.shm.obj_used, 1);
        inuse
    }

    fn new_zspage(&mut self) -> Option<u32> {
        let desc = crate::allocator::alloc_desc(self.r, self.id, self.layout.pages_per_zspage).ok()??;
        let d = self.r.desc(desc);
        let objs = self.objs();
        for obj in 0..objs {
            self.set_backref(desc, obj, FREE_BIT | if obj + 1 < objs { obj + 1 } else { FREE_END });
        }
        d.free_head.store(0, Ordering::Relaxed);
        d.inuse.store(0, Ordering::Relaxed);
        d.group.store(NONE, Ordering::Relaxed);
        self.shm.obj_allocated.fetch_add(u64::from(objs), Ordering::Relaxed);
        self.link(desc, Fullness::EMPTY.index() as u32);
        Some(desc)
    }

    /// Unlink an empty zspage and give it (and its pages) back.
    pub(crate) fn remove_zspage(&mut self, desc: u32) {
        let group = self.r.desc(desc).group.load(Ordering::Relaxed);
        self.unlink(desc, group);
        Header::sub_saturating(&self.shm.obj_allocated, u64::from(self.objs()));
        self.r.punch_zspage(desc, self.layout.pages_per_zspage);
        crate::allocator::free_desc(self.r, desc, self.layout.pages_per_zspage);
    }

    /// Whether `desc` is a zspage of this class.
    pub(crate) fn names_zspage(&self, desc: u32) -> bool {
        self.valid_desc(desc)
    }

    pub(crate) fn inuse(&self, desc: u32) -> u32 {
        self.r.desc(desc).inuse.load(Ordering::Relaxed)
    }

    pub(crate) fn is_full(&self, desc: u32) -> bool {
        self.inuse(desc) >= self.objs()
    }

    /// Move a zspage to the list of the group its `inuse` says.
    pub(crate) fn fix_fullness(&mut self, desc: u32) {
        let d = self.r.desc(desc);
        let new = Fullness::of(d.inuse.load(Ordering::Relaxed) as usize, self.layout.objs_per_zspage).index() as u32;
        let old = d.group.load(Ordering::Relaxed);
        if new != old {
            self.unlink(desc, old);
            self.link(desc, new);
        }
    }

    fn head(&self, group: usize) -> u32 {
        let head = self.shm.heads[group].load(Ordering::Relaxed);
        if head == NONE {
            return NONE;
        }
        if self.valid_desc(head) && self.r.desc(head).group.load(Ordering::Relaxed) == group as u32 {
            head
        } else {
            // A garbage list head: forget the list (its zspages come back when the class is
            // next recovered) rather than follow it.
            self.shm.heads[group].store(NONE, Ordering::Relaxed);
            self.r.header().corrupt_dropped.fetch_add(1, Ordering::Relaxed);
            NONE
        }
    }

    fn next_in_group(&self, desc: u32, group: usize) -> u32 {
        let next = self.r.desc(desc).next.load(Ordering::Relaxed);
        let ok =
            next != NONE && self.valid_desc(next) && self.r.desc(next).group.load(Ordering::Relaxed) == group as u32;
        if ok { next } else { NONE }
    }

    fn link(&mut self, desc: u32, group: u32) {
        let Some(head) = self.shm.heads.get(group as usize) else { return };
        let d = self.r.desc(desc);
        let next = self.head(group as usize);
        d.prev.store(NONE, Ordering::Relaxed);
        d.next.store(next, Ordering::Relaxed);
        d.group.store(group, Ordering::Relaxed);
        if next != NONE {
            self.r.desc(next).prev.store(desc, Ordering::Relaxed);
        }
        head.store(desc, Ordering::Relaxed);
    }

    fn unlink(&mut self, desc: u32, group: u32) {
        let d = self.r.desc(desc);
        let prev = d.prev.load(Ordering::Relaxed);
        let next = d.next.load(Ordering::Relaxed);
        let next = if next != NONE && self.valid_desc(next) { next } else { NONE };
        if prev != NONE && self.valid_desc(prev) {
            self.r.desc(prev).next.store(next, Ordering::Relaxed);
        } else if let Some(head) = self.shm.heads.get(group as usize)
            && head.load(Ordering::Relaxed) == desc
        {
            head.store(next, Ordering::Relaxed);
        }
        if next != NONE {
            self.r.desc(next).prev.store(prev, Ordering::Relaxed);
        }
        d.prev.store(NONE, Ordering::Relaxed);
        d.next.store(NONE, Ordering::Relaxed);
        d.group.store(NONE, Ordering::Relaxed);
    }

    /// The fullest zspage with room other than `except` (`with_empty`: the empty group too).
    pub(crate) fn fullest_with_room(&self, except: Option<u32>, with_empty: bool) -> Option<u32> {
        Fullness::with_room()
            .rev()
            .filter(|g| with_empty || *g != Fullness::EMPTY)
            .find_map(|g| self.head_except(g.index(), except))
    }

    /// The emptiest partly used zspage other than `except`.
    pub(crate) fn emptiest(&self, except: Option<u32>) -> Option<u32> {
        Fullness::partly_used().find_map(|g| self.head_except(g.index(), except))
    }

    fn head_except(&self, group: usize, except: Option<u32>) -> Option<u32> {
        let head = self.head(group);
        if head == NONE {
            return None;
        }
        if Some(head) != except {
            return Some(head);
        }
        let next = self.next_in_group(head, group);
        (next != NONE).then_some(next)
    }
}
