//! A zspage: a chain of `pages_per_zspage` 4 KiB pages holding `objs_per_zspage` objects of
//! one class, laid end to end. Object `i` starts at byte `i * class_size` of the chain, so an
//! object may straddle page boundaries: one, as in the kernel, for classes up to a page; up
//! to two (three pages) for our classes above a page, which run to two pages (a 4112-byte
//! object starting 100 bytes before a page's end covers those 100 bytes, the whole next
//! page and 16 bytes of the one after). The
//! pages need not be adjacent in memory: every byte copy walks the chain and splits at each
//! page boundary, however many, as the kernel's `zs_object_copy` does for one.
//!
//! Metadata lives on the heap, not in the pages, in one allocation per zspage: the page
//! chain, then one 32-bit *owner word* per object slot. A live slot's word is the
//! handle-table index that owns it, or for an owned object `OWNED_TAG | ` its record in the
//! outside owner (`owned.rs`); the compactor walks this back-reference to find live objects
//! and rewrite their handles or records (the kernel keeps the handle in an object header
//! instead). A free slot's word is `FREE_TAG | next free slot`: the free list is threaded
//! through the owner words, so it costs no memory of its own.
//!
//! Invariant: every byte of a free object is zero whenever the class lock is free. Pages
//! arrive zeroed from the provider, writes never pass an object's size, and `free_obj` zeroes
//! the bytes it held, so a new object reads as zeros without a memset and freed data never
//! lingers. Compaction alone frees without zeroing, and zeroes before it lets the lock go
//! unless the whole zspage goes back to the OS, whose frames return zeroed.
//!
//! Locking: a zspage belongs to one class and is only touched with that class's lock held.

use std::alloc::Layout;
use std::ptr::NonNull;

use crate::fullness::Fullness;
use crate::os_pages::{PAGE_SIZE, PagePtr};

/// Marks a free slot's owner word (handle-table indices use 28 bits, so never this one).
const FREE_TAG: u32 = 1 << 31;
/// Bytes of an object [`Zspage::prefetch_object`] asks for at most: 16 lines, about what a
/// core keeps in flight; the copy streams the rest.
const PREFETCH_OBJECT_MAX: usize = 1024;
/// The end of the free list.
const NO_SLOT: u16 = u16::MAX;
const _: () = assert!(crate::handle::MAX_INDEX < FREE_TAG);

/// 24 bytes: the metadata allocation and small counters (this struct sits in the class's
/// zspage vector, one per zspage id).
#[derive(Debug)]
pub(crate) struct Zspage {
    /// `pages` page pointers followed by `objs` owner words: one allocation (`meta_layout`).
    meta: NonNull<u8>,
    pages: u8,
    objs: u16,
    /// The first free slot, or `NO_SLOT` when full.
    free_head: u16,
    inuse: u16,
    /// The fullness group whose list holds this zspage, and its position in that list.
    group: Fullness,
    group_pos: u32,
}

// SAFETY: a Zspage owns its metadata allocation exclusively (like a Box) and the pages it
// names (see PagePtr); it is only touched under its class lock, so moving it between threads
// is as sound as moving a Box<[u32]> and PagePtrs.
unsafe impl Send for Zspage {}
// SAFETY: as above; `&self` methods only read.
unsafe impl Sync for Zspage {}

/// The layout of a zspage's metadata, and the byte offset of its owner words.
fn meta_layout(pages: usize, objs: usize) -> (Layout, usize) {
    let chain = Layout::array::<PagePtr>(pages).expect("at most 16 pages");
    let owners = Layout::array::<u32>(objs).expect("at most 2048 objects");
    chain.extend(owners).expect("a few KiB at most")
}

impl Zspage {
    /// A zspage whose page chain is still to come (see [`Self::attach_pages`]). Its metadata
    /// is the one heap allocation per zspage on the allocation path, so it is made fallibly,
    /// before any page is taken: `None` when the heap refuses (under `RLIMIT_AS`), for the
    /// pool to report `PoolFull` instead of aborting.
    pub(crate) fn try_new(pages_per_zspage: usize, objs_per_zspage: usize) -> Option<Zspage> {
        let pages = u8::try_from(pages_per_zspage).expect("at most 16 pages per zspage");
        let objs = u16::try_from(objs_per_zspage).expect("at most 2048 objects per zspage");
        assert!(pages > 0 && objs > 0 && objs < NO_SLOT);
        let (layout, offset) = meta_layout(pages_per_zspage, objs_per_zspage);
        // SAFETY: the layout has a non-zero size (at least one page pointer).
        let meta = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // Initialise every element before any slice of them is made: placeholder pages
        // (attach_pages replaces them), and a free list in which slot i points at slot i + 1,
        // so allocation hands out slots in address order.
        for i in 0..pages_per_zspage {
            // SAFETY: element i < pages of the PagePtr array at the start of the allocation.
            unsafe { meta.as_ptr().cast::<PagePtr>().add(i).write(PagePtr::PLACEHOLDER) };
        }
        for i in 0..objs_per_zspage {
            let next = if i + 1 < objs_per_zspage { i as u32 + 1 } else { u32::from(NO_SLOT) };
            // SAFETY: word i < objs of the u32 array at `offset`, inside the allocation and
            // aligned for u32 (meta_layout).
            unsafe { meta.as_ptr().add(offset).cast::<u32>().add(i).write(FREE_TAG | next) };
        }
        Some(Zspage { meta, pages, objs, free_head: 0, inuse: 0, group: Fullness::EMPTY, group_pos: 0 })
    }

    /// Give the zspage its page chain, exactly `pages_per_zspage` pages.
    pub(crate) fn attach_pages(&mut self, pages: &[PagePtr]) {
        self.chain_mut().copy_from_slice(pages);
    }

    /// The page chain.
    pub(crate) fn pages(&self) -> &[PagePtr] {
        // SAFETY: `meta` was allocated with `meta_layout(pages, objs)`, whose first `pages`
        // elements are PagePtrs, all initialised in `try_new`; the allocation lives as long
        // as `self` and is only mutated through `&mut self`.
        unsafe { std::slice::from_raw_parts(self.meta.as_ptr().cast::<PagePtr>(), usize::from(self.pages)) }
    }

    fn chain_mut(&mut self) -> &mut [PagePtr] {
        // SAFETY: as in `pages`, with `&mut self` for exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.meta.as_ptr().cast::<PagePtr>(), usize::from(self.pages)) }
    }

    fn owners(&self) -> &[u32] {
        let (_, offset) = meta_layout(usize::from(self.pages), usize::from(self.objs));
        // SAFETY: `meta_layout` puts `objs` u32s, aligned, at `offset` inside the allocation,
        // all initialised in `try_new`; shared access as in `pages`.
        unsafe { std::slice::from_raw_parts(self.meta.as_ptr().add(offset).cast::<u32>(), usize::from(self.objs)) }
    }

    fn owners_mut(&mut self) -> &mut [u32] {
        let (_, offset) = meta_layout(usize::from(self.pages), usize::from(self.objs));
        // SAFETY: as in `owners`, with `&mut self` for exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.meta.as_ptr().add(offset).cast::<u32>(), usize::from(self.objs)) }
    }

    pub(crate) fn inuse(&self) -> usize {
        usize::from(self.inuse)
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free_head == NO_SLOT
    }

    pub(crate) fn group(&self) -> Fullness {
        self.group
    }

    pub(crate) fn group_pos(&self) -> usize {
        self.group_pos as usize
    }

    pub(crate) fn set_group(&mut self, group: Fullness, pos: usize) {
        self.group = group;
        self.set_group_pos(pos);
    }

    pub(crate) fn set_group_pos(&mut self, pos: usize) {
        self.group_pos = u32::try_from(pos).expect("zspage ids fit in 23 bits");
    }

    /// Take a free object for owner word `owner`; `None` if the zspage is full.
    pub(crate) fn alloc_obj(&mut self, owner: u32) -> Option<u16> {
        debug_assert_eq!(owner & FREE_TAG, 0);
        let obj = self.free_head;
        if obj == NO_SLOT {
            return None;
        }
        let word = &mut self.owners_mut()[usize::from(obj)];
        debug_assert_ne!(*word & FREE_TAG, 0, "the free list names a live slot");
        let next = *word as u16; // a free word's low 16 bits: the next free slot
        *word = owner;
        self.free_head = next;
        self.inuse += 1;
        Some(obj)
    }

    /// Return object `obj`, which held `size` bytes, to the free list, zeroing it.
    pub(crate) fn free_obj(&mut self, class_size: usize, obj: u16, size: usize) {
        self.zero(class_size, obj, size);
        self.free_obj_unzeroed(obj);
    }

    /// Return object `obj` to the free list and leave its bytes: compaction's source, which is
    /// usually emptied and given back whole (its frames come back zeroed). Whoever calls this
    /// must [`Self::zero`] the object before the class lock is dropped if the zspage stays.
    pub(crate) fn free_obj_unzeroed(&mut self, obj: u16) {
        debug_assert_eq!(self.owners()[usize::from(obj)] & FREE_TAG, 0, "freeing a free object");
        let head = self.free_head;
        self.owners_mut()[usize::from(obj)] = FREE_TAG | u32::from(head);
        self.free_head = obj;
        self.inuse -= 1;
    }

    /// Whether `obj` is an object index of this zspage (free or live).
    pub(crate) fn has_obj(&self, obj: u16) -> bool {
        obj < self.objs
    }

    /// The owner word of object `obj` (a free one's has the free tag); `None` out of range.
    pub(crate) fn owner_of(&self, obj: u16) -> Option<u32> {
        self.owners().get(usize::from(obj)).copied()
    }

    /// Give live object `obj` a new owner word (`owned.rs`'s reown).
    pub(crate) fn set_owner(&mut self, obj: u16, owner: u32) {
        let word = &mut self.owners_mut()[usize::from(obj)];
        debug_assert_eq!(*word & FREE_TAG, 0, "re-owning a free object");
        debug_assert_eq!(owner & FREE_TAG, 0);
        *word = owner;
    }

    /// The first live object and its owner, scanning from object index `from`.
    pub(crate) fn find_alloced_obj(&self, from: usize) -> Option<(u16, u32)> {
        self.owners()
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, owner)| **owner & FREE_TAG == 0)
            .map(|(obj, owner)| (obj as u16, *owner))
    }

    /// Heap bytes of one zspage's metadata allocation, for the stats.
    pub(crate) fn meta_bytes(pages_per_zspage: usize, objs_per_zspage: usize) -> usize {
        meta_layout(pages_per_zspage, objs_per_zspage).0.size()
    }

    /// Copy `dst.len()` bytes starting at byte `offset` of object `obj` into `dst`.
    pub(crate) fn read(&self, class_size: usize, obj: u16, offset: usize, dst: &mut [u8]) {
        let mut done = 0;
        self.for_each_segment(class_size, obj, offset, dst.len(), |src, len| {
            // SAFETY: `src` points at `len` readable bytes inside one of our pages
            // (for_each_segment's contract); `dst[done..done + len]` is in bounds because the
            // segments' lengths sum to dst.len(); page memory and `dst` never overlap.
            unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr().add(done), len) };
            done += len;
        });
    }

    /// Hint the CPU to start loading the first cache lines of object `obj` (a batch read
    /// resolves several objects first, then copies them, so their cache misses overlap).
    /// Only the object's start: whatever pages it spans, the copy then runs sequentially.
    pub(crate) fn prefetch(&self, class_size: usize, obj: u16) {
        let start = usize::from(obj) * class_size;
        let Some(page) = self.pages().get(start / PAGE_SIZE) else { return };
        let in_page = start % PAGE_SIZE;
        // Two lines: an entry's header and key, and the start of its value; the hardware
        // prefetcher follows the rest of a sequential copy.
        for line in [in_page, (in_page + 64).min(PAGE_SIZE - 1)] {
            // The pointer stays inside the page (in_page < PAGE_SIZE), so the `add` is in
            // bounds; a prefetch never faults and reads nothing the program can observe.
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `line < PAGE_SIZE`, so the pointer is inside this zspage's page;
            // `_mm_prefetch` is only a hint and never dereferences the pointer.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(page.as_ptr().add(line).cast::<i8>().cast_const());
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (page, line);
        }
    }

    /// Hint the CPU to start loading the slot the next [`Self::alloc_obj`] hands out (a
    /// compaction destination's holes are scattered, so each copy into one would wait for it).
    pub(crate) fn prefetch_free_slot(&self, class_size: usize) {
        if self.free_head != NO_SLOT {
            self.prefetch(class_size, self.free_head);
        }
    }

    /// Hint the CPU to start loading every cache line of the first `len` bytes of object
    /// `obj` that lie in its first page, all at once: a single read (a cache get) then waits
    /// for one memory access instead of one per line, header first and the value after it.
    /// Lines past the first page are left to the hardware prefetcher, which follows the copy.
    pub(crate) fn prefetch_object(&self, class_size: usize, obj: u16, len: usize) {
        let start = usize::from(obj) * class_size;
        let Some(page) = self.pages().get(start / PAGE_SIZE) else { return };
        let in_page = start % PAGE_SIZE;
        let end = (in_page + len.min(PREFETCH_OBJECT_MAX)).min(PAGE_SIZE);
        let mut line = in_page & !63;
        while line < end {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `line < end <= PAGE_SIZE`, so the pointer is inside this zspage's page;
            // `_mm_prefetch` is only a hint and never dereferences the pointer.
            unsafe {
                use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
                _mm_prefetch::<_MM_HINT_T0>(page.as_ptr().add(line).cast::<i8>().cast_const());
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = page;
            line += 64;
        }
    }

    /// Copy `src` into object `obj` at byte `offset`.
    pub(crate) fn write(&mut self, class_size: usize, obj: u16, offset: usize, src: &[u8]) {
        let mut done = 0;
        self.for_each_segment(class_size, obj, offset, src.len(), |dst, len| {
            // SAFETY: as in `read`, with the roles swapped; `&mut self` means no other
            // reference to these page bytes exists while we write.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(done), dst, len) };
            done += len;
        });
    }

    /// Copy the first `size` bytes of object `obj` into object `to_obj` of `to`, a zspage of
    /// the same class: the kernel's `zs_object_copy`. Segment by segment, with no bounce
    /// buffer: each piece of the source that lies in one page is written to the destination,
    /// which splits it again wherever its own page boundaries fall.
    pub(crate) fn copy_obj_to(&self, class_size: usize, obj: u16, size: usize, to: &mut Zspage, to_obj: u16) {
        let mut done = 0;
        self.for_each_segment(class_size, obj, 0, size, |src, len| {
            // SAFETY: `src` points at `len` initialised bytes inside one of our pages
            // (for_each_segment's contract), which stay unchanged while we hold `&self`; `to`
            // is another zspage, whose pages are its own, so `write` never changes these bytes.
            let piece = unsafe { std::slice::from_raw_parts(src.cast_const(), len) };
            to.write(class_size, to_obj, done, piece);
            done += len;
        });
    }

    /// Zero the first `len` bytes of object `obj`.
    pub(crate) fn zero(&mut self, class_size: usize, obj: u16, len: usize) {
        self.for_each_segment(class_size, obj, 0, len, |dst, len| {
            // SAFETY: `dst` points at `len` writable bytes inside one of our pages.
            unsafe { std::ptr::write_bytes(dst, 0, len) };
        });
    }

    /// Call `f(ptr, len)` for each page-contained piece of the byte range
    /// `[offset, offset + len)` of object `obj`, in order.
    ///
    /// Contract relied on by the callers' SAFETY comments: every `(ptr, len)` lies inside one
    /// page of this zspage. The assert below makes that hold for any arguments.
    fn for_each_segment(
        &self,
        class_size: usize,
        obj: u16,
        offset: usize,
        len: usize,
        mut f: impl FnMut(*mut u8, usize),
    ) {
        let start = usize::from(obj) * class_size + offset;
        assert!(
            offset + len <= class_size && start + len <= self.pages().len() * PAGE_SIZE,
            "object access out of its slot: obj {obj}, offset {offset}, len {len}, class {class_size}"
        );
        let pages = self.pages();
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let page = pos / PAGE_SIZE;
            let in_page = pos % PAGE_SIZE;
            let chunk = (PAGE_SIZE - in_page).min(end - pos);
            // SAFETY: page < pages.len() because pos < end <= pages.len() * PAGE_SIZE, and
            // in_page + chunk <= PAGE_SIZE, so the pointer stays inside that page.
            let ptr = unsafe { pages[page].as_ptr().add(in_page) };
            f(ptr, chunk);
            pos += chunk;
        }
    }
}

impl Drop for Zspage {
    fn drop(&mut self) {
        let (layout, _) = meta_layout(usize::from(self.pages), usize::from(self.objs));
        // SAFETY: `meta` was allocated in `try_new` with this same layout and is freed once.
        unsafe { std::alloc::dealloc(self.meta.as_ptr(), layout) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os_pages::PageProvider;

    fn zspage_of(provider: &PageProvider, pages: usize, objs: usize) -> Zspage {
        let mut zspage = Zspage::try_new(pages, objs).unwrap();
        let mut chain = Vec::new();
        provider.alloc_pages(pages, &mut chain).unwrap();
        zspage.attach_pages(&chain);
        zspage
    }

    #[test]
    fn the_struct_stays_small() {
        assert_eq!(std::mem::size_of::<Option<Zspage>>(), 24);
        assert_eq!(Zspage::meta_bytes(3, 7), 3 * 8 + 7 * 4);
    }

    #[test]
    fn the_free_list_threads_through_the_owner_words() {
        let provider = PageProvider::new();
        let class_size = 1000;
        let mut zspage = zspage_of(&provider, 1, 4);
        let objs: Vec<u16> = (10..14).map(|owner| zspage.alloc_obj(owner).unwrap()).collect();
        assert_eq!(objs, [0, 1, 2, 3], "slots come out in address order");
        assert!(zspage.is_full());
        assert_eq!(zspage.alloc_obj(99), None);
        assert_eq!(zspage.inuse(), 4);

        zspage.write(class_size, 1, 0, &[0xAB; 1000]);
        zspage.free_obj(class_size, 1, 1000);
        zspage.free_obj(class_size, 3, 1000);
        assert_eq!(zspage.inuse(), 2);
        let mut buf = [0xFFu8; 1000];
        zspage.read(class_size, 1, 0, &mut buf);
        assert!(buf.iter().all(|&b| b == 0), "a freed slot is zero");

        assert_eq!(zspage.find_alloced_obj(0), Some((0, 10)));
        assert_eq!(zspage.find_alloced_obj(1), Some((2, 12)), "free slots are skipped");
        assert_eq!(zspage.find_alloced_obj(3), None);

        assert_eq!(zspage.alloc_obj(20), Some(3), "last freed, first reused");
        assert_eq!(zspage.alloc_obj(21), Some(1));
        assert!(zspage.is_full());
        assert_eq!(zspage.find_alloced_obj(1), Some((1, 21)));
        // SAFETY: the zspage's pages came from this provider, once; nothing refers into them.
        unsafe { provider.release_pages(zspage.pages()) };
        provider.unmap_all();
    }

    #[test]
    fn objects_copy_between_zspages_across_three_pages() {
        // The 5040-byte class: 13 objects in 16 pages. Object 4 starts 3776 bytes into page 4
        // and ends in page 6; object 1 starts 944 bytes into page 1 and ends in page 2. A
        // copy between them splits at different offsets on each side.
        let provider = PageProvider::new();
        let (class_size, pages, objs) = (5040, 16, 13);
        let mut from = zspage_of(&provider, pages, objs);
        let mut to = zspage_of(&provider, pages, objs);
        for owner in 0..5 {
            from.alloc_obj(owner).unwrap();
        }
        to.alloc_obj(0).unwrap();
        let to_obj = to.alloc_obj(1).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        from.write(class_size, 4, 0, &data);
        from.copy_obj_to(class_size, 4, data.len(), &mut to, to_obj);
        let mut back = vec![0u8; class_size];
        to.read(class_size, to_obj, 0, &mut back);
        assert_eq!(&back[..5000], &data[..]);
        assert!(back[5000..].iter().all(|&b| b == 0), "nothing past the object's size");
        for zspage in [&from, &to] {
            // SAFETY: the zspage's pages came from this provider, once; nothing refers into them.
            unsafe { provider.release_pages(zspage.pages()) };
        }
        provider.unmap_all();
    }

    #[test]
    fn the_largest_zspage_threads_all_its_slots() {
        let provider = PageProvider::new();
        let mut zspage = zspage_of(&provider, 16, 2048);
        for owner in 0..2048 {
            assert_eq!(zspage.alloc_obj(owner), Some(owner as u16));
        }
        assert!(zspage.is_full());
        for obj in (0..2048).step_by(2) {
            zspage.free_obj(32, obj, 32);
        }
        assert_eq!(zspage.inuse(), 1024);
        assert_eq!(zspage.find_alloced_obj(0), Some((1, 1)));
        assert_eq!(zspage.find_alloced_obj(2047), Some((2047, 2047)));
        for owner in 0..1024 {
            assert!(zspage.alloc_obj(owner).is_some());
        }
        assert!(zspage.is_full());
        // SAFETY: the zspage's pages came from this provider, once; nothing refers into them.
        unsafe { provider.release_pages(zspage.pages()) };
        provider.unmap_all();
    }
}
