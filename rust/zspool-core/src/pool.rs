//! The pool: size classes plus the large-object shards, the page provider, the handle
//! encoding key and the pool-wide counters. This file is the data path:
//!
//! ```text
//! malloc(size) -> class_for(size) -> class lock -> fullest zspage with room
//!                                   (or a new zspage: reserve pages under mem_limit,
//!                                    take them from the provider) -> object slot
//! read/write/free(handle) -> decode owner -> owner's lock -> handle table -> zspage -> pages
//! ```
//!
//! Lock order (a thread may take a later lock while holding an earlier one, never the
//! reverse):
//!
//! 1. one class lock, or one large-object shard lock (never two of either at once);
//! 2. the provider's `alive` read lock, then its free-list mutex.
//!
//! Pool-wide state on the hot path is atomics only: `pages_used` (changed once per zspage,
//! not per object) and the `closed` flag. Compaction's single-runner flag and counters are in
//! `compaction.rs`.
//!
//! Closing: `close` sets `closed`, then drains each class and shard under its lock, then
//! unmaps the arenas. Every operation re-checks `closed` after taking its lock, so none can
//! touch a zspage after its class was drained; pages in flight to the provider are dropped by
//! its `alive` check instead of being `madvise`d after unmap.

use crate::activity::{Activity, ActivityCounters, InFlight};
use crate::class::{ClassState, SizeClass};
use crate::error::{HandleProblem, Result, ZsError};
use crate::handle::{ClassSlot, HandleParts, HandleTable, LARGE_OWNER_BASE, random_key};
use crate::large::{LARGE_SHARDS, LargeShard, Refusal};
use crate::os_pages::{Mapping, PAGE_SIZE, PageProvider};
use crate::size_class::{ClassTable, DEFAULT_MAX_PAGES_PER_ZSPAGE, MAX_CHAIN_LIMIT, MAX_CLASS_SIZE};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::zspage::Zspage;

/// The largest object a pool accepts: 1 GiB.
pub const MAX_OBJECT_SIZE: usize = 1 << 30;

/// How a pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Longest page chain a zspage of a class up to a page may use, 1..=16 (the kernel's
    /// `CONFIG_ZSMALLOC_CHAIN_SIZE`). Classes above a page always use up to 16
    /// (`size_class.rs` says why).
    pub max_pages_per_zspage: usize,
    /// Bytes of pages the pool may hold at once (zram's `mem_limit`); `None` for no limit.
    pub mem_limit: Option<u64>,
    /// A name for stats and logs.
    pub name: Option<String>,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig { max_pages_per_zspage: DEFAULT_MAX_PAGES_PER_ZSPAGE, mem_limit: None, name: None }
    }
}

/// A compacting memory pool after Linux's zsmalloc. All methods take `&self` and are safe
/// to call from any number of threads.
#[derive(Debug)]
pub struct Pool {
    pub(crate) config: PoolConfig,
    pub(crate) table: ClassTable,
    pub(crate) classes: Box<[SizeClass]>,
    pub(crate) large: Box<[LargeShard]>,
    large_next: AtomicUsize,
    pub(crate) provider: PageProvider,
    key: u64,
    pub(crate) pages_used: AtomicUsize,
    pub(crate) pages_used_max: AtomicUsize,
    closed: AtomicBool,
    pub(crate) compaction_running: AtomicBool,
    pub(crate) pages_compacted: AtomicU64,
    /// Pages compaction freed since the heap was last trimmed (`compaction.rs`).
    pub(crate) freed_since_trim: AtomicUsize,
    pub(crate) objects_migrated: AtomicU64,
    pub(crate) compactions: AtomicU64,
    /// Calls in flight that are not counted in an `ActivityCounters` (close, stats): the
    /// fork hooks wait for these too, without making the pool look busy to policies.
    pub(crate) others_in_flight: AtomicUsize,
    /// Set by `fork_prepare` until the fork is over: compaction stops at its next slice.
    pub(crate) fork_pending: AtomicBool,
    /// `fork_prepare` holds every lock of this pool.
    pub(crate) fork_held: AtomicBool,
}

/// Marks a close or stats call in flight until dropped (see [`Pool::enter_other`]).
pub(crate) struct OtherInFlight<'a>(&'a AtomicUsize);

impl Drop for OtherInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Who holds an object, decoded from its handle.
enum Owner<'a> {
    Class(&'a SizeClass),
    Large(&'a LargeShard),
}

/// A live object, lent to a [`Pool::read_with`] closure while its lock is held.
pub struct ObjectRef<'a> {
    handle: u64,
    size: usize,
    mem: ObjectMem<'a>,
}

enum ObjectMem<'a> {
    Packed { zspage: &'a Zspage, class_size: usize, obj: u16 },
    Large(&'a Mapping),
}

impl ObjectRef<'_> {
    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Copy `dst.len()` bytes from byte `offset` of the object into `dst`.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        check_bounds(self.handle, offset, dst.len(), self.size)?;
        match self.mem {
            ObjectMem::Packed { zspage, class_size, obj } => zspage.read(class_size, obj, offset, dst),
            ObjectMem::Large(mapping) => {
                // SAFETY: offset + dst.len() <= size <= mapping.len() (checked above and at
                // insert); the shard lock is held for the lifetime of this ObjectRef, so the
                // mapping is live and nobody writes it; `dst` is caller memory, disjoint.
                unsafe { std::ptr::copy_nonoverlapping(mapping.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) }
            }
        }
        Ok(())
    }
}

fn check_bounds(handle: u64, offset: usize, len: usize, size: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ZsError::OutOfBounds { handle, offset: offset as u64, len: len as u64, object_size: size as u64 }),
    }
}

fn invalid<L: crate::handle::PackedLocation>(handle: u64, table: &HandleTable<L>, index: u32) -> ZsError {
    let problem = if table.has_index(index) { HandleProblem::Stale } else { HandleProblem::Unknown };
    ZsError::InvalidHandle { handle, problem }
}

impl Pool {
    pub fn new(config: PoolConfig) -> Result<Pool> {
        if !(1..=MAX_CHAIN_LIMIT).contains(&config.max_pages_per_zspage) {
            return Err(ZsError::BadConfig {
                what: "max_pages_per_zspage",
                value: config.max_pages_per_zspage as u64,
                allowed: "1..=16",
            });
        }
        if let Some(limit) = config.mem_limit.filter(|&limit| limit < PAGE_SIZE as u64) {
            return Err(ZsError::BadConfig {
                what: "mem_limit",
                value: limit,
                allowed: "at least 4096 bytes, or None",
            });
        }
        let table = ClassTable::new(config.max_pages_per_zspage);
        let classes = table.classes().iter().map(|&layout| SizeClass::new(layout)).collect();
        let large = (0..LARGE_SHARDS).map(|_| LargeShard::new()).collect();
        Ok(Pool {
            config,
            table,
            classes,
            large,
            large_next: AtomicUsize::new(0),
            provider: PageProvider::new(),
            key: random_key(),
            pages_used: AtomicUsize::new(0),
            pages_used_max: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            compaction_running: AtomicBool::new(false),
            pages_compacted: AtomicU64::new(0),
            freed_since_trim: AtomicUsize::new(0),
            objects_migrated: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            others_in_flight: AtomicUsize::new(0),
            fork_pending: AtomicBool::new(false),
            fork_held: AtomicBool::new(false),
        })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The class table this pool was built with.
    pub fn class_table(&self) -> &ClassTable {
        &self.table
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Count a data-path call in flight on `counters`, through the fork gate: if a fork is
    /// being prepared, step back out (so `fork_prepare` sees the pool quiet) and wait, without
    /// holding or queueing on any pool lock, until it is over. The SeqCst increment in
    /// `enter` and the SeqCst load here pair with `fork_prepare`'s store and loads: either
    /// this call sees `fork_pending`, or `fork_prepare` sees this call in flight.
    pub(crate) fn enter<'a>(&self, counters: &'a ActivityCounters) -> InFlight<'a> {
        loop {
            let in_flight = counters.enter();
            if !self.fork_pending.load(Ordering::SeqCst) {
                return in_flight;
            }
            drop(in_flight);
            self.wait_for_fork();
        }
    }

    /// As [`Self::enter`], for calls not counted as activity (close, stats).
    pub(crate) fn enter_other(&self) -> OtherInFlight<'_> {
        loop {
            self.others_in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.fork_pending.load(Ordering::SeqCst) {
                return OtherInFlight(&self.others_in_flight);
            }
            self.others_in_flight.fetch_sub(1, Ordering::SeqCst);
            self.wait_for_fork();
        }
    }

    fn wait_for_fork(&self) {
        while self.fork_pending.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.is_closed() { Err(ZsError::Closed) } else { Ok(()) }
    }

    /// Allocate a zero-filled object of exactly `size` bytes and return its handle.
    pub fn malloc(&self, size: usize) -> Result<u64> {
        self.alloc(size, None)
    }

    /// Allocate an object holding `data`: malloc and write in one lock hold.
    pub fn store(&self, data: &[u8]) -> Result<u64> {
        self.alloc(data.len(), Some(&[data]))
    }

    /// Allocate an object holding the concatenation of `parts`, written straight into the
    /// object in one lock hold. For callers that build an object from pieces (the cache's
    /// header + key + value): concatenating them first would cost an allocation and a second
    /// copy of every byte, which is most of the work for small objects.
    pub fn store_parts(&self, parts: &[&[u8]]) -> Result<u64> {
        let size = parts.iter().map(|p| p.len()).sum();
        self.alloc(size, Some(parts))
    }

    fn alloc(&self, size: usize, init: Option<&[&[u8]]>) -> Result<u64> {
        self.check_open()?;
        if size > MAX_OBJECT_SIZE {
            return Err(ZsError::SizeOutOfRange { size: size as u64, max: MAX_OBJECT_SIZE as u64 });
        }
        if size > MAX_CLASS_SIZE {
            return self.malloc_large(size, init);
        }
        match self.malloc_in_class(size, init) {
            // A new zspage of a class above a page (up to 16 pages) would pass mem_limit, but
            // the object's own two pages may not: take the large path, which is what such an
            // object cost before these classes existed. (The class lock and the class's
            // in-flight mark are gone by now; see `enter` for why the latter matters.)
            Err(ZsError::PoolFull { os_error: None, .. }) if size > PAGE_SIZE => self.malloc_large(size, init),
            result => result,
        }
    }

    /// Allocate in `size`'s class (`size <= MAX_CLASS_SIZE`).
    fn malloc_in_class(&self, size: usize, init: Option<&[&[u8]]>) -> Result<u64> {
        let class_id = self.table.class_for(size);
        let class = &self.classes[class_id];
        let _in_flight = self.enter(&class.activity);
        let mut state = class.lock();
        self.check_open()?;
        let (zspage, fresh) = match state.find_zspage_with_room() {
            Some(id) => {
                // The handle-table entry is the only metadata a malloc into an existing zspage grows.
                if state.handles.try_reserve_one().is_err() {
                    return Err(self.os_refused(size, libc::ENOMEM));
                }
                (id, false)
            }
            None => (self.grow_class(&mut state, size)?, true),
        };
        let Some((index, generation)) = state.obj_malloc(zspage, size) else {
            let dead = fresh.then(|| state.remove_zspage(zspage));
            class.publish(&state);
            drop(state);
            if let Some(dead) = dead {
                self.release_zspage_pages(&dead);
            }
            return Err(self.table_exhausted(size));
        };
        if let Some(parts) = init {
            let slot = state.handles.get(index, generation).expect("just inserted");
            let class_size = state.layout.size;
            let zspage = state.zspage_mut(slot.zspage);
            let mut offset = 0;
            for part in parts {
                zspage.write(class_size, slot.obj, offset, part);
                offset += part.len();
            }
        }
        class.publish(&state);
        let owner = u16::try_from(class_id).expect("fewer than 256 classes");
        Ok(HandleParts { index, owner, generation }.encode(self.key))
    }

    /// Give a class one more zspage, within `mem_limit`. Every heap allocation on the way is
    /// fallible (see `ClassState::try_reserve_zspage`), so when the OS refuses memory, pages
    /// or metadata, this is `PoolFull` and the class is unchanged.
    fn grow_class(&self, state: &mut ClassState, size: usize) -> Result<u32> {
        let pages_per_zspage = state.layout.pages_per_zspage;
        if !state.has_zspage_id() {
            return Err(self.table_exhausted(size));
        }
        // mem_limit first: a refusal there must leave even the metadata capacity unchanged.
        self.reserve_pages(pages_per_zspage, size)?;
        let mut pages = Vec::new();
        let metadata = state
            .try_reserve_zspage()
            .and_then(|()| pages.try_reserve_exact(pages_per_zspage))
            .ok()
            .and_then(|()| Zspage::try_new(pages_per_zspage, state.layout.objs_per_zspage));
        let Some(mut zspage) = metadata else {
            self.unreserve_pages(pages_per_zspage);
            return Err(self.os_refused(size, libc::ENOMEM));
        };
        if let Err(errno) = self.provider.alloc_pages(pages_per_zspage, &mut pages) {
            self.unreserve_pages(pages_per_zspage);
            return Err(self.os_refused(size, errno));
        }
        zspage.attach_pages(&pages);
        Ok(state.add_zspage(zspage))
    }

    fn malloc_large(&self, size: usize, init: Option<&[&[u8]]>) -> Result<u64> {
        let shard_id = self.large_next.fetch_add(1, Ordering::Relaxed) % LARGE_SHARDS;
        let shard = &self.large[shard_id];
        // In flight from the first step: a fork must not copy a reserved, mapped, unrecorded object.
        let _in_flight = self.enter(&shard.activity);
        let pages = size.div_ceil(PAGE_SIZE);
        self.reserve_pages(pages, size)?;
        let mapping = match Mapping::new(pages) {
            Ok(mapping) => mapping,
            Err(errno) => {
                self.unreserve_pages(pages);
                return Err(self.os_refused(size, errno));
            }
        };
        if let Some(parts) = init {
            let mut offset = 0;
            for part in parts {
                // SAFETY: the mapping is fresh, private to this call and at least `size` =
                // the parts' total length bytes long, so [offset, offset + part.len()) is in it.
                unsafe { std::ptr::copy_nonoverlapping(part.as_ptr(), mapping.as_ptr().add(offset), part.len()) };
                offset += part.len();
            }
        }
        let mut state = shard.lock();
        if self.is_closed() {
            drop(state);
            self.unreserve_pages(pages);
            return Err(ZsError::Closed);
        }
        match state.insert(mapping, size) {
            Ok((index, generation)) => {
                shard.publish(&state);
                let owner = LARGE_OWNER_BASE + u16::try_from(shard_id).expect("few shards");
                Ok(HandleParts { index, owner, generation }.encode(self.key))
            }
            Err((mapping, refusal)) => {
                drop(state);
                drop(mapping);
                self.unreserve_pages(pages);
                Err(match refusal {
                    Refusal::NoMemory => self.os_refused(size, libc::ENOMEM),
                    Refusal::TableFull => self.table_exhausted(size),
                })
            }
        }
    }

    fn os_refused(&self, size: usize, errno: i32) -> ZsError {
        if errno == libc::EBADF && self.is_closed() {
            return ZsError::Closed;
        }
        ZsError::PoolFull {
            requested_bytes: size as u64,
            pages_used: self.pages_used.load(Ordering::Relaxed) as u64,
            mem_limit: self.config.mem_limit,
            os_error: Some(errno),
        }
    }

    /// A class (or large shard) out of zspage ids or handle-table indices: `PoolFull` with
    /// ENOSPC, which no mmap failure reports (they give ENOMEM), so the message can say so.
    fn table_exhausted(&self, size: usize) -> ZsError {
        self.os_refused(size, libc::ENOSPC)
    }

    /// Account `pages` more pages against `mem_limit`, or fail without changing anything.
    fn reserve_pages(&self, pages: usize, size: usize) -> Result<()> {
        let limit_pages = self.config.mem_limit.map(|bytes| bytes / PAGE_SIZE as u64);
        let mut current = self.pages_used.load(Ordering::Relaxed);
        loop {
            let wanted = current + pages;
            if let Some(limit) = limit_pages
                && wanted as u64 > limit
            {
                return Err(ZsError::PoolFull {
                    requested_bytes: size as u64,
                    pages_used: current as u64,
                    mem_limit: self.config.mem_limit,
                    os_error: None,
                });
            }
            match self.pages_used.compare_exchange_weak(current, wanted, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    self.pages_used_max.fetch_max(wanted, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => current = now,
            }
        }
    }

    fn unreserve_pages(&self, pages: usize) {
        self.pages_used.fetch_sub(pages, Ordering::Relaxed);
    }

    /// Hand a dead zspage's pages back to the OS. Call with no class lock held.
    pub(crate) fn release_zspage_pages(&self, dead: &Zspage) {
        let pages = dead.pages();
        self.provider.release_pages(pages);
        self.unreserve_pages(pages.len());
    }

    fn owner(&self, handle: u64) -> Result<(HandleParts, Owner<'_>)> {
        let parts = HandleParts::decode(handle, self.key);
        let owner = if parts.owner < LARGE_OWNER_BASE {
            self.classes.get(usize::from(parts.owner)).map(Owner::Class)
        } else {
            self.large.get(usize::from(parts.owner - LARGE_OWNER_BASE)).map(Owner::Large)
        };
        match owner {
            Some(owner) => Ok((parts, owner)),
            None => Err(ZsError::InvalidHandle { handle, problem: HandleProblem::Unknown }),
        }
    }

    /// Free the object behind `handle`. Its bytes are zeroed; the handle goes stale.
    pub fn free(&self, handle: u64) -> Result<()> {
        self.check_open()?;
        let (parts, owner) = self.owner(handle)?;
        match owner {
            Owner::Class(class) => {
                let _in_flight = self.enter(&class.activity);
                let mut state = class.lock();
                self.check_open()?;
                let Some(slot) = state.handles.remove(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let size = slot.size(state.layout.size);
                let dead = state.obj_free(slot.zspage, slot.obj, size);
                class.publish(&state);
                drop(state);
                if let Some(dead) = dead {
                    self.release_zspage_pages(&dead);
                }
            }
            Owner::Large(shard) => {
                let _in_flight = self.enter(&shard.activity);
                let mut state = shard.lock();
                self.check_open()?;
                let Some(id) = state.handles.remove(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let object = state.remove(id);
                shard.publish(&state);
                drop(state);
                let pages = object.mapping.len() / PAGE_SIZE;
                drop(object);
                self.unreserve_pages(pages);
            }
        }
        Ok(())
    }

    /// Run `f` on the object behind `handle` with its lock held. `f` must be short: it
    /// blocks every other operation on the object's class.
    pub fn read_with<R>(&self, handle: u64, f: impl FnOnce(&ObjectRef<'_>) -> R) -> Result<R> {
        self.check_open()?;
        let (parts, owner) = self.owner(handle)?;
        match owner {
            Owner::Class(class) => {
                let _in_flight = self.enter(&class.activity);
                let state = class.lock();
                self.check_open()?;
                let Some(slot) = state.handles.get(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let class_size = state.layout.size;
                let zspage = state.zspage(slot.zspage);
                let size = slot.size(class_size);
                zspage.prefetch_object(class_size, slot.obj, size);
                let mem = ObjectMem::Packed { zspage, class_size, obj: slot.obj };
                Ok(f(&ObjectRef { handle, size, mem }))
            }
            Owner::Large(shard) => {
                let _in_flight = self.enter(&shard.activity);
                let state = shard.lock();
                self.check_open()?;
                let Some(id) = state.handles.get(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let object = state.object(id);
                Ok(f(&ObjectRef { handle, size: object.size, mem: ObjectMem::Large(&object.mapping) }))
            }
        }
    }

    /// [`Pool::read_with`] for many handles: `f(i, object)` runs for each `handles[i]`, with
    /// `Err` for a handle that names nothing live. The order is the pool's: handles are
    /// grouped by owner (class or large-object shard), each group's lock is taken once and
    /// its objects are resolved and prefetched before the first is handed to `f`, so their
    /// cache misses overlap instead of following one another. A group counts as one
    /// operation in the activity counters (one "in flight" call, one last-access time).
    ///
    /// Why: a per-handle `read_with` pays a lock round trip, the activity counters' atomics
    /// and clock read, and a serialised chain of cache misses per object; for a batch of
    /// small objects (the cache's `get_many`) that is most of the cost. Callers should keep
    /// batches modest (hundreds): a group's lock is held while `f` runs on all its objects.
    pub fn read_batch(&self, handles: &[u64], mut f: impl FnMut(usize, Result<&ObjectRef<'_>>)) -> Result<()> {
        self.check_open()?;
        let mut order: Vec<(u16, u32)> = Vec::with_capacity(handles.len());
        for (i, &handle) in handles.iter().enumerate() {
            let owner = HandleParts::decode(handle, self.key).owner;
            order.push((owner, u32::try_from(i).expect("batch of fewer than 2^32 handles")));
        }
        order.sort_unstable();
        let mut located: Vec<(usize, Option<ClassSlot>)> = Vec::new();
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let first = handles[group[0].1 as usize];
            let owner = match self.owner(first) {
                Ok((_, owner)) => owner,
                Err(e) => {
                    for &(_, i) in group {
                        f(i as usize, Err(e.clone()));
                    }
                    continue;
                }
            };
            match owner {
                Owner::Class(class) => {
                    let _in_flight = self.enter(&class.activity);
                    let state = class.lock();
                    self.check_open()?;
                    let class_size = state.layout.size;
                    located.clear();
                    for &(_, i) in group {
                        let parts = HandleParts::decode(handles[i as usize], self.key);
                        let slot = state.handles.get(parts.index, parts.generation);
                        if let Some(slot) = slot {
                            state.zspage(slot.zspage).prefetch(class_size, slot.obj);
                        }
                        located.push((i as usize, slot));
                    }
                    for &(i, slot) in &located {
                        let handle = handles[i];
                        match slot {
                            Some(slot) => {
                                let zspage = state.zspage(slot.zspage);
                                let mem = ObjectMem::Packed { zspage, class_size, obj: slot.obj };
                                f(i, Ok(&ObjectRef { handle, size: slot.size(class_size), mem }));
                            }
                            None => {
                                let index = HandleParts::decode(handle, self.key).index;
                                f(i, Err(invalid(handle, &state.handles, index)));
                            }
                        }
                    }
                }
                Owner::Large(shard) => {
                    let _in_flight = self.enter(&shard.activity);
                    let state = shard.lock();
                    self.check_open()?;
                    for &(_, i) in group {
                        let handle = handles[i as usize];
                        let parts = HandleParts::decode(handle, self.key);
                        match state.handles.get(parts.index, parts.generation) {
                            Some(id) => {
                                let object = state.object(id);
                                let mem = ObjectMem::Large(&object.mapping);
                                f(i as usize, Ok(&ObjectRef { handle, size: object.size, mem }));
                            }
                            None => f(i as usize, Err(invalid(handle, &state.handles, parts.index))),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Copy `dst.len()` bytes from byte `offset` of the object into `dst`.
    pub fn read(&self, handle: u64, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.read_with(handle, |object| object.read(offset, dst))?
    }

    /// The whole object as a new vector.
    pub fn load(&self, handle: u64) -> Result<Vec<u8>> {
        self.read_with(handle, |object| {
            let mut out = vec![0; object.len()];
            object.read(0, &mut out).map(|()| out)
        })?
    }

    /// The object's size in bytes.
    pub fn size_of(&self, handle: u64) -> Result<usize> {
        self.read_with(handle, |object| object.len())
    }

    /// Whether `handle` names a live object of this pool.
    pub fn contains(&self, handle: u64) -> bool {
        self.read_with(handle, |_| ()).is_ok()
    }

    /// Copy `data` into the object at byte `offset`.
    pub fn write(&self, handle: u64, offset: usize, data: &[u8]) -> Result<()> {
        self.check_open()?;
        let (parts, owner) = self.owner(handle)?;
        match owner {
            Owner::Class(class) => {
                let _in_flight = self.enter(&class.activity);
                let mut state = class.lock();
                self.check_open()?;
                let Some(slot) = state.handles.get(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let class_size = state.layout.size;
                check_bounds(handle, offset, data.len(), slot.size(class_size))?;
                state.zspage_mut(slot.zspage).write(class_size, slot.obj, offset, data);
            }
            Owner::Large(shard) => {
                let _in_flight = self.enter(&shard.activity);
                let state = shard.lock();
                self.check_open()?;
                let Some(id) = state.handles.get(parts.index, parts.generation) else {
                    return Err(invalid(handle, &state.handles, parts.index));
                };
                let object = state.object(id);
                check_bounds(handle, offset, data.len(), object.size)?;
                let mapping = &object.mapping;
                // SAFETY: offset + data.len() <= size <= mapping.len(); the shard lock is held,
                // so this is the only access to the object's bytes; `data` is caller memory.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), mapping.as_ptr().add(offset), data.len()) };
            }
        }
        Ok(())
    }

    /// Number of live objects (a racy snapshot under concurrent use).
    pub fn len(&self) -> usize {
        self.classes.iter().map(SizeClass::objects).sum::<usize>()
            + self.large.iter().map(LargeShard::objects).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Free everything and unmap the arenas; every later call fails with `Closed`.
    /// Idempotent. Runs concurrently with other calls safely (they fail with `Closed`).
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _in_flight = self.enter_other();
        for class in self.classes.iter() {
            let mut state = class.lock();
            let pages: usize = state.drain_all().iter().map(|zspage| zspage.pages().len()).sum();
            class.publish(&state);
            drop(state);
            // No madvise: unmap_all below drops the whole arenas, frames and all.
            self.unreserve_pages(pages);
        }
        for shard in self.large.iter() {
            let mut state = shard.lock();
            let mappings = state.drain_all();
            shard.publish(&state);
            drop(state);
            let pages: usize = mappings.iter().map(|m| m.len() / PAGE_SIZE).sum();
            drop(mappings);
            self.unreserve_pages(pages);
        }
        self.provider.unmap_all();
    }

    /// How busy the pool is: calls in flight and time since the last one finished.
    pub fn activity(&self) -> Activity {
        Activity::from_counters(self.classes.iter().map(|c| &c.activity).chain(self.large.iter().map(|s| &s.activity)))
    }

    /// Bytes of address space the pool has mapped for zspages (resident or not).
    pub fn mapped_bytes(&self) -> usize {
        self.provider.mapped_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_class_out_of_zspage_ids_is_full_not_corrupt() {
        let pool = Pool::new(PoolConfig::default()).unwrap();
        let class_id = pool.table.class_for(4096);
        assert_eq!(pool.classes[class_id].layout.objs_per_zspage, 1);
        pool.classes[class_id].lock().limit_zspages_for_test(2);
        let a = pool.store(&[1; 4096]).unwrap();
        let b = pool.store(&[2; 4096]).unwrap();
        let err = pool.store(&[3; 4096]).unwrap_err();
        assert!(matches!(err, ZsError::PoolFull { os_error: Some(libc::ENOSPC), .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("size class") && !message.contains("OS refused"), "{message}");
        assert_eq!(pool.load(a).unwrap(), vec![1; 4096]);
        assert_eq!(pool.load(b).unwrap(), vec![2; 4096]);
        pool.free(a).unwrap();
        let c = pool.store(&[4; 4096]).unwrap();
        assert_eq!(pool.load(c).unwrap(), vec![4; 4096], "a freed zspage id is reused");
        assert_eq!(pool.load(b).unwrap(), vec![2; 4096]);
        assert_eq!(pool.stats().pages_used, 2);
    }
}
