//! The page provider: where every byte of object memory comes from and goes back to.
//!
//! Object memory never comes from the global allocator. Pages are carved out of anonymous
//! `mmap` arenas of [`ARENA_PAGES`] pages and handed out one 4 KiB page at a time, as the
//! kernel's buddy allocator hands zsmalloc 0-order pages. When a zspage dies its pages are
//! given back with `MADV_DONTNEED`: the kernel drops the physical frames at once (RSS falls),
//! and the next touch of that address faults in a fresh zero page. Compaction empties many
//! zspages whose pages are rarely adjacent, so their ranges go to the kernel in batches, one
//! `process_madvise` call for up to [`DISCARD_BATCH`] of them (plain `madvise` per range on
//! kernels before 6.15, which refuse it: see [`discard_ranges`]). The virtual
//! range stays reserved in the arena's free list for reuse, so a long-lived pool does not
//! fragment the process's address space into thousands of VMAs (`vm.max_map_count`).
//! Arenas are `munmap`ped when the pool is closed or dropped.
//!
//! Large objects (bigger than the largest size class, two pages) take their own [`Mapping`] of whole pages and
//! `munmap` it when freed.
//!
//! Locking: one provider mutex guards the arena list and the free-page stack. It is taken
//! only when a zspage is created or destroyed (once per `objs_per_zspage` allocations), never
//! per object; it nests inside a class lock and takes no other lock. `madvise` runs outside
//! it, under a shared read lock on `alive`: `unmap_all` takes that lock for writing, so no
//! `madvise` can ever land on an address range after the arena behind it was unmapped (and
//! possibly reused by someone else's `mmap`).

use std::ptr::NonNull;

use crate::sync::{Mutex, RwLock, lock, new_mutex, new_rwlock, read, write};

/// The page size zspool lays objects out in. Linux on x86-64 and most arm64 kernels use 4 KiB.
pub const PAGE_SIZE: usize = 4096;

/// Pages per arena: 2 MiB of address space per `mmap` call.
const ARENA_PAGES: usize = 512;

/// The address of one 4 KiB page owned by this pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PagePtr(NonNull<u8>);

// SAFETY: a PagePtr is an address, not a reference. The page it names is owned by exactly
// one zspage (or by the provider's free stack), and all access to its bytes goes through
// that zspage while its class lock is held; moving the address between threads is sound.
unsafe impl Send for PagePtr {}
// SAFETY: as above; shared references to a PagePtr only expose the address.
unsafe impl Sync for PagePtr {}

impl PagePtr {
    /// Names no page: fills a zspage's chain between its metadata allocation and the
    /// arrival of its pages, and is never dereferenced.
    pub(crate) const PLACEHOLDER: PagePtr = PagePtr(NonNull::dangling());

    pub(crate) fn as_ptr(self) -> *mut u8 {
        self.0.as_ptr()
    }
}

/// One anonymous private mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned exclusively by its holder (an arena list or a large object
// entry), which is itself guarded by a lock; the raw pointer carries no thread affinity.
unsafe impl Send for Mapping {}
// SAFETY: shared access only reads `base`/`len`; byte access is synchronised by the owner's lock.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `pages` fresh zero pages. Returns the errno on failure (ENOMEM under RLIMIT_AS).
    pub(crate) fn new(pages: usize) -> Result<Mapping, i32> {
        let len = pages.checked_mul(PAGE_SIZE).ok_or(libc::ENOMEM)?;
        // SAFETY: a fresh anonymous private mapping with no address hint touches no existing
        // memory; the result is checked against MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM));
        }
        // Transparent huge pages would turn "touch one object" into "fault in 2 MiB" and make
        // every 4 KiB DONTNEED split a huge page: keep object memory in small pages. Advisory;
        // a kernel without THP returns EINVAL, which changes nothing.
        // SAFETY: [ptr, ptr + len) is the mapping just created and owned here.
        unsafe { libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE) };
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(libc::ENOMEM)?;
        Ok(Mapping { base, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; the owner drops the Mapping
        // only once no zspage or object refers into it (see `PageProvider::unmap_all`).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Page ranges handed to the kernel per `process_madvise` call. Each call costs about 2 µs
/// before the first page (syscall entry, the mmap lock, a TLB flush) and about 0.7 µs per
/// page after it (measured on the project's VM, `benches/compaction_rate.rs`); a compacted
/// zspage is 3 pages on average, so one range per call spent more than half the kernel's time
/// on the call itself. The batch lives on the stack: the free path allocates nothing.
const DISCARD_BATCH: usize = 64;

/// Linux's `PIDFD_SELF_THREAD` (6.15+): "the calling thread" for the pidfd syscalls, with
/// no descriptor to open, close or carry into a forked child.
const PIDFD_SELF_THREAD: libc::c_int = -10_000;

/// Whether `process_madvise(PIDFD_SELF_THREAD, .., MADV_DONTNEED)` works here: cleared, for
/// the life of the process, by the first call the kernel refuses (before 6.15, in a seccomp
/// sandbox, under valgrind). A property of the kernel, not of a pool, hence a plain static.
static PROCESS_MADVISE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Drop the frames of every range in `ranges`: they read back as zeros.
///
/// # Safety
/// Every range is whole pages inside a live mapping that the caller owns, and nobody holds a
/// reference into them (their contents are gone after this).
unsafe fn discard_ranges(ranges: &[libc::iovec]) {
    use std::sync::atomic::Ordering::Relaxed;
    if ranges.len() > 1 && PROCESS_MADVISE.load(Relaxed) {
        let total: usize = ranges.iter().map(|r| r.iov_len).sum();
        // SAFETY: the caller's guarantee, for every range; the kernel only reads the iovec
        // array, which lives for the call. MADV_DONTNEED on private anonymous memory only
        // drops the frames; the ranges stay mapped and read back as zeros.
        let done = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                PIDFD_SELF_THREAD,
                ranges.as_ptr(),
                ranges.len(),
                libc::MADV_DONTNEED,
                0u32,
            )
        };
        if done == total as libc::c_long {
            return;
        }
        if done < 0 {
            PROCESS_MADVISE.store(false, Relaxed);
        }
        // Refused, or stopped part way: advise every range below (dropping frames that are
        // already gone is a no-op).
    }
    for range in ranges {
        // SAFETY: as above, one range at a time.
        unsafe { libc::madvise(range.iov_base, range.iov_len, libc::MADV_DONTNEED) };
    }
}

/// Page ranges collected for one [`discard_ranges`] call, adjacent ones merged.
struct Discard {
    ranges: [libc::iovec; DISCARD_BATCH],
    len: usize,
}

impl Discard {
    fn new() -> Discard {
        Discard { ranges: [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; DISCARD_BATCH], len: 0 }
    }

    /// Add `pages` pages from `start`, discarding the batch first if it is full.
    ///
    /// # Safety
    /// As [`discard_ranges`], for this range and all those added before it.
    unsafe fn add(&mut self, start: PagePtr, pages: usize) {
        let len = pages * PAGE_SIZE;
        if let Some(last) = self.ranges[..self.len].last_mut()
            && last.iov_base as usize + last.iov_len == start.as_ptr() as usize
        {
            last.iov_len += len;
            return;
        }
        if self.len == DISCARD_BATCH {
            // SAFETY: the caller's guarantee for the ranges added so far.
            unsafe { self.flush() };
        }
        self.ranges[self.len] = libc::iovec { iov_base: start.as_ptr().cast(), iov_len: len };
        self.len += 1;
    }

    /// # Safety
    /// As [`discard_ranges`], for the ranges added.
    unsafe fn flush(&mut self) {
        // SAFETY: the caller's guarantee.
        unsafe { discard_ranges(&self.ranges[..self.len]) };
        self.len = 0;
    }
}

#[derive(Debug, Default)]
struct ProviderState {
    arenas: Vec<Mapping>,
    /// Pages not in any zspage. All of them are zero-filled (fresh or DONTNEED'd).
    free: Vec<PagePtr>,
}

/// Hands out and takes back single pages; see the module comment.
#[derive(Debug)]
pub(crate) struct PageProvider {
    state: Mutex<ProviderState>,
    /// False once the arenas are unmapped; see the module comment.
    alive: RwLock<bool>,
}

impl PageProvider {
    pub(crate) fn new() -> PageProvider {
        PageProvider { state: new_mutex(ProviderState::default()), alive: new_rwlock(true) }
    }

    /// Append `n` zero-filled pages to `out`, mapping a new arena if the free stack runs dry.
    /// On failure nothing is appended and the errno is returned.
    pub(crate) fn alloc_pages(&self, n: usize, out: &mut Vec<PagePtr>) -> Result<(), i32> {
        let alive = read(&self.alive);
        if !*alive {
            return Err(libc::EBADF);
        }
        let mut state = lock(&self.state);
        if state.free.len() < n {
            // Room for the new arena's pages first: a failed heap allocation must be an
            // error the pool reports (PoolFull), not an abort of the whole process.
            state.free.try_reserve(ARENA_PAGES).map_err(|_| libc::ENOMEM)?;
            state.arenas.try_reserve(1).map_err(|_| libc::ENOMEM)?;
            let arena = Mapping::new(ARENA_PAGES)?;
            // Push in reverse so that pops come out in ascending address order: a fresh
            // zspage is then one contiguous run, which keeps its page-straddling copies and
            // its eventual DONTNEED to one range each.
            for i in (0..ARENA_PAGES).rev() {
                // SAFETY: i < ARENA_PAGES, so the offset stays inside the arena just mapped.
                let page = unsafe { arena.as_ptr().add(i * PAGE_SIZE) };
                state.free.push(PagePtr(NonNull::new(page).expect("inside a non-null mapping")));
            }
            state.arenas.push(arena);
        }
        let at = state.free.len() - n;
        out.extend(state.free.drain(at..).rev());
        Ok(())
    }

    /// [`Self::release_chains`] of one chain (the tests' zspages).
    ///
    /// # Safety
    /// As [`Self::release_chains`].
    #[cfg(test)]
    pub(crate) unsafe fn release_pages(&self, pages: &[PagePtr]) {
        // SAFETY: the caller's guarantee.
        unsafe { self.release_chains(std::iter::once(pages)) }
    }

    /// Take pages back, a zspage's chain or many at once (compaction's emptied zspages): drop
    /// their frames (RSS falls now), the ranges reaching the kernel in batches, and keep the
    /// addresses for reuse. No lock is held during `madvise`.
    ///
    /// # Safety
    /// The pages came from [`Self::alloc_pages`] of this provider, none is released twice,
    /// and nobody holds a reference into them (their contents are gone after this).
    pub(crate) unsafe fn release_chains<'a>(&self, chains: impl Iterator<Item = &'a [PagePtr]> + Clone) {
        let alive = read(&self.alive);
        if !*alive {
            return; // the arenas, and these pages with them, are already gone
        }
        let mut discard = Discard::new();
        for run in chains.clone().flat_map(contiguous_runs) {
            // SAFETY: the runs are this provider's pages (the caller's guarantee), in an
            // arena still mapped (`alive` is held for reading until the flush) and unreferenced.
            unsafe { discard.add(run.0, run.1) };
        }
        // SAFETY: as above.
        unsafe { discard.flush() };
        let mut state = lock(&self.state);
        for pages in chains {
            state.free.extend(pages.iter().rev().copied());
        }
    }

    /// Bytes of address space the provider has mapped (resident or not).
    pub(crate) fn mapped_bytes(&self) -> usize {
        lock(&self.state).arenas.iter().map(Mapping::len).sum()
    }

    /// Unmap every arena. The pool calls this on close, after every zspage is gone.
    pub(crate) fn unmap_all(&self) {
        let mut alive = write(&self.alive);
        *alive = false;
        let arenas = {
            let mut state = lock(&self.state);
            state.free.clear();
            std::mem::take(&mut state.arenas)
        };
        drop(arenas);
        drop(alive);
    }
}

/// Fork support: the provider's two locks, in their order (`alive`, then the free list).
#[cfg(not(loom))]
impl PageProvider {
    pub(crate) fn fork_lock(&self) {
        crate::sync::fork::lock_rwlock_write(&self.alive);
        crate::sync::fork::lock_mutex(&self.state);
    }

    /// Release both locks, in the parent or in the child after `fork()` (nobody can have
    /// queued on them: every user of the provider is a pool call or a compaction, and the
    /// fork waited for those).
    ///
    /// # Safety
    /// This thread holds both locks through [`Self::fork_lock`].
    pub(crate) unsafe fn fork_unlock(&self) {
        // SAFETY: the caller's guarantee; released in reverse order of taking.
        unsafe {
            crate::sync::fork::unlock_mutex(&self.state);
            crate::sync::fork::unlock_rwlock_write(&self.alive);
        }
    }
}

/// Split a page list into (first page, count) runs of adjacent addresses.
fn contiguous_runs(pages: &[PagePtr]) -> impl Iterator<Item = (PagePtr, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = *pages.get(i)?;
        let mut n = 1;
        while i + n < pages.len() && pages[i + n].as_ptr() as usize == start.as_ptr() as usize + n * PAGE_SIZE {
            n += 1;
        }
        i += n;
        Some((start, n))
    })
}

/// Hand the heap's free pages back to the OS after compaction freed zspage metadata.
///
/// Object memory never lives on the heap, but each zspage's bookkeeping (page list, owner
/// words) does, and glibc keeps freed chunks resident: after a compaction that
/// emptied thousands of zspages that is megabytes of RSS that no longer hold anything.
/// `malloc_trim(0)` `madvise`s the free pages inside glibc's heaps away. It walks the whole
/// process heap under glibc's arena locks (0.1-0.5 ms after a million-object compaction in a
/// small process; tens of ms in one with a big fragmented heap), so it runs only at the end of
/// a compaction run that freed many pages and still had budget left, with no pool lock held
/// (`compaction.rs`, `TRIM_AFTER_PAGES`).
pub(crate) fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu", not(loom)))]
    // SAFETY: malloc_trim only releases memory the allocator itself considers free; it has
    // no preconditions and touches no memory we own.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resident set size of this process in bytes, from `/proc/self/statm` (pages × page size).
pub fn process_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(resident * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_zero_and_reusable_after_release() {
        let provider = PageProvider::new();
        let mut pages = Vec::new();
        provider.alloc_pages(3, &mut pages).unwrap();
        assert_eq!(pages.len(), 3);
        for p in &pages {
            // SAFETY: the page is ours and PAGE_SIZE long.
            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xAB, PAGE_SIZE) };
        }
        // SAFETY: the pages came from this provider, once; nothing refers into them.
        unsafe { provider.release_pages(&pages) };
        let mut again = Vec::new();
        provider.alloc_pages(3, &mut again).unwrap();
        for p in &again {
            // SAFETY: the page is ours and PAGE_SIZE long.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), PAGE_SIZE) };
            assert!(bytes.iter().all(|&b| b == 0), "released pages must come back zeroed");
        }
        // SAFETY: the pages came from this provider, once; nothing refers into them.
        unsafe { provider.release_pages(&again) };
        provider.unmap_all();
        assert_eq!(provider.mapped_bytes(), 0);
    }

    #[test]
    fn scattered_chains_are_discarded_in_batches_by_either_syscall() {
        use std::sync::atomic::Ordering::Relaxed;
        // Every other page, each its own chain: more ranges than one batch holds, none
        // adjacent. Once through process_madvise (where the kernel has it), once through
        // madvise alone (what the first refusal switches to).
        for process_madvise in [true, false] {
            PROCESS_MADVISE.store(process_madvise, Relaxed);
            let provider = PageProvider::new();
            let mut pages = Vec::new();
            provider.alloc_pages(4 * DISCARD_BATCH + 2, &mut pages).unwrap();
            for p in &pages {
                // SAFETY: the page is ours and PAGE_SIZE long.
                unsafe { std::ptr::write_bytes(p.as_ptr(), 0xCD, PAGE_SIZE) };
            }
            let scattered: Vec<&[PagePtr]> = pages.chunks(2).map(|pair| &pair[..1]).collect();
            // SAFETY: the pages came from this provider, once; nothing refers into them.
            unsafe { provider.release_chains(scattered.iter().copied()) };
            for (i, p) in pages.iter().enumerate() {
                // SAFETY: the page is still mapped (the arena lives until unmap_all).
                let first = unsafe { p.as_ptr().read_volatile() };
                assert_eq!(first, if i % 2 == 0 { 0 } else { 0xCD }, "page {i}: only released pages are dropped");
            }
            provider.unmap_all();
        }
        PROCESS_MADVISE.store(true, Relaxed);
    }

    #[test]
    fn runs_coalesce_adjacent_pages() {
        let provider = PageProvider::new();
        let mut pages = Vec::new();
        provider.alloc_pages(4, &mut pages).unwrap();
        let runs: Vec<_> = contiguous_runs(&pages).collect();
        assert_eq!(runs.len(), 1, "a fresh arena hands out ascending contiguous pages");
        assert_eq!(runs[0].1, 4);
        // SAFETY: the pages came from this provider, once; nothing refers into them.
        unsafe { provider.release_pages(&pages) };
    }
}
