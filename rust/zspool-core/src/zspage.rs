//! A zspage: a chain of `pages_per_zspage` 4 KiB pages holding `objs_per_zspage` objects of
//! one class, laid end to end. Object `i` starts at byte `i * class_size` of the chain, so an
//! object may straddle the boundary between two pages (never more than two, since a class
//! is at most a page). The pages need not be adjacent in memory: every byte copy walks the
//! chain and splits at page boundaries, as the kernel's `zs_object_copy` does.
//!
//! Metadata lives on the heap, not in the pages: a stack of free object indices, and for
//! each object the handle-table index that owns it (the compactor walks this back-reference
//! to find live objects and rewrite their handles; the kernel keeps the handle in an object
//! header instead).
//!
//! Invariant: every byte of a free object is zero. Pages arrive zeroed from the provider,
//! writes never pass an object's size, and `free_obj` zeroes the bytes it held, so a new
//! object reads as zeros without a memset and freed data never lingers.
//!
//! Locking: a zspage belongs to one class and is only touched with that class's lock held.

use crate::os_pages::{PAGE_SIZE, PagePtr};

/// Fullness groups, the kernel's `ZS_INUSE_RATIO_*`: 0 = empty, 1..=10 = up to
/// 10 %, 20 %, … 90 %, 99 % in use, 11 = full.
pub const FULLNESS_GROUPS: usize = 12;
pub(crate) const GROUP_EMPTY: usize = 0;
pub(crate) const GROUP_FULL: usize = FULLNESS_GROUPS - 1;

/// No handle owns this object slot.
const NO_OWNER: u32 = u32::MAX;

pub(crate) fn fullness_group(inuse: usize, objs_per_zspage: usize) -> usize {
    if inuse == 0 {
        GROUP_EMPTY
    } else if inuse == objs_per_zspage {
        GROUP_FULL
    } else {
        100 * inuse / objs_per_zspage / 10 + 1
    }
}

#[derive(Debug)]
pub(crate) struct Zspage {
    pages: Box<[PagePtr]>,
    /// Free object indices; the top is handed out next.
    free_objs: Vec<u16>,
    /// Handle-table index owning each object, or `NO_OWNER`.
    owner: Box<[u32]>,
    /// The fullness group whose list holds this zspage, and its position in that list.
    pub(crate) group: usize,
    pub(crate) group_pos: usize,
}

impl Zspage {
    /// A zspage with no pages yet (see [`Self::attach_pages`]). Its metadata is the one heap
    /// allocation per zspage on the allocation path, so it is made fallibly, before any page
    /// is taken: under `RLIMIT_AS` the pool reports `PoolFull` instead of aborting.
    pub(crate) fn try_new(objs_per_zspage: usize) -> Result<Zspage, std::collections::TryReserveError> {
        let objs = u16::try_from(objs_per_zspage).expect("at most 2048 objects per zspage");
        let mut free_objs = Vec::new();
        free_objs.try_reserve_exact(objs_per_zspage)?;
        free_objs.extend((0..objs).rev());
        let mut owner = Vec::new();
        owner.try_reserve_exact(objs_per_zspage)?;
        owner.resize(objs_per_zspage, NO_OWNER);
        Ok(Zspage {
            pages: Box::default(),
            free_objs,
            owner: owner.into_boxed_slice(),
            group: GROUP_EMPTY,
            group_pos: 0,
        })
    }

    /// Give the zspage its page chain. `pages` has exactly the capacity it holds, so this
    /// does not allocate.
    pub(crate) fn attach_pages(&mut self, pages: Vec<PagePtr>) {
        debug_assert_eq!(pages.len(), pages.capacity());
        self.pages = pages.into_boxed_slice();
    }

    pub(crate) fn inuse(&self) -> usize {
        self.owner.len() - self.free_objs.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.free_objs.is_empty()
    }

    pub(crate) fn into_pages(self) -> Box<[PagePtr]> {
        self.pages
    }

    /// Take a free object for handle-table index `owner`; `None` if the zspage is full.
    pub(crate) fn alloc_obj(&mut self, owner: u32) -> Option<u16> {
        let obj = self.free_objs.pop()?;
        self.owner[usize::from(obj)] = owner;
        Some(obj)
    }

    /// Return object `obj`, which held `size` bytes, to the free stack, zeroing it.
    pub(crate) fn free_obj(&mut self, class_size: usize, obj: u16, size: usize) {
        debug_assert_ne!(self.owner[usize::from(obj)], NO_OWNER, "freeing a free object");
        self.zero(class_size, obj, size);
        self.owner[usize::from(obj)] = NO_OWNER;
        self.free_objs.push(obj);
    }

    /// The first live object and its owner, scanning from object index `from`.
    pub(crate) fn find_alloced_obj(&self, from: usize) -> Option<(u16, u32)> {
        self.owner
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, owner)| **owner != NO_OWNER)
            .map(|(obj, owner)| (obj as u16, *owner))
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
    pub(crate) fn prefetch(&self, class_size: usize, obj: u16) {
        let start = usize::from(obj) * class_size;
        let Some(page) = self.pages.get(start / PAGE_SIZE) else { return };
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

    fn zero(&mut self, class_size: usize, obj: u16, len: usize) {
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
            offset + len <= class_size && start + len <= self.pages.len() * PAGE_SIZE,
            "object access out of its slot: obj {obj}, offset {offset}, len {len}, class {class_size}"
        );
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let page = pos / PAGE_SIZE;
            let in_page = pos % PAGE_SIZE;
            let chunk = (PAGE_SIZE - in_page).min(end - pos);
            // SAFETY: page < pages.len() because pos < end <= pages.len() * PAGE_SIZE, and
            // in_page + chunk <= PAGE_SIZE, so the pointer stays inside that page.
            let ptr = unsafe { self.pages[page].as_ptr().add(in_page) };
            f(ptr, chunk);
            pos += chunk;
        }
    }
}
