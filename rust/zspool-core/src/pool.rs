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
//! Every operation on an existing object goes through one prologue, [`Pool::locate`]: check
//! open, decode the owner, enter it through the fork gate, take its lock, re-check `closed`.
//! Locks: one class or shard lock at a time, the provider's inside it (the lock order is in
//! `docs/ARCHITECTURE.md`).
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
use crate::class_table::{ClassTable, DEFAULT_MAX_PAGES_PER_ZSPAGE, MAX_CHAIN_LIMIT, MAX_CLASS_SIZE};
use crate::compaction::CompactionState;
use crate::error::{HandleProblem, Result, ZsError};
use crate::fork::{Counted, ForkState};
use crate::handle::{HandleParts, HandleTable, LARGE_OWNER_BASE, LARGE_SHARDS, LargeId, PackedLocation, random_key};
use crate::large::{LargeShard, LargeState, Refusal};
use crate::os_pages::{Mapping, PAGE_SIZE, PageProvider};
use crate::owned::{Location, ObjectOwner, OwnerCell};
use crate::size_class::{ClassSlot, ClassState, SizeClass};
use crate::sync::{AtomicBool, AtomicUsize, MutexGuard, Ordering};
use crate::zspage::Zspage;

/// The largest object a pool accepts: 1 GiB.
pub const MAX_OBJECT_SIZE: usize = 1 << 30;

/// How a pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Longest page chain a zspage of a class up to a page may use, 1..=16 (the kernel's
    /// `CONFIG_ZSMALLOC_CHAIN_SIZE`). Classes above a page always use up to 16
    /// (`class_table.rs` says why).
    pub max_pages_per_zspage: usize,
    /// Bytes of pages the pool may hold at once (zram's `mem_limit`); `None` for no limit.
    pub mem_limit: Option<u64>,
    /// A name for stats and logs.
    pub name: Option<String>,
}

impl PoolConfig {
    /// The allowed `max_pages_per_zspage`, as error messages state it (`1..=MAX_CHAIN_LIMIT`).
    pub const MAX_PAGES_ALLOWED: &'static str = "1..=16";
    /// The allowed `mem_limit`, as error messages state it (a page at least).
    pub const MEM_LIMIT_ALLOWED: &'static str = "at least 4096 bytes, or None";
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig { max_pages_per_zspage: DEFAULT_MAX_PAGES_PER_ZSPAGE, mem_limit: None, name: None }
    }
}

/// An owned object's record and its owner, for an allocation on its behalf (`owned.rs`).
pub(crate) type Outside<'a> = (u32, &'a dyn ObjectOwner);

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
    pub(crate) key: u64,
    pub(crate) pages_used: AtomicUsize,
    pub(crate) pages_used_max: AtomicUsize,
    closed: AtomicBool,
    /// Compaction's single-runner flag and counters (`compaction.rs`).
    pub(crate) compaction: CompactionState,
    /// The fork gate and what the fork hooks keep (`fork.rs`).
    pub(crate) fork: ForkState,
    /// The index of the owned objects, if any (`owned.rs`).
    pub(crate) object_owner: OwnerCell,
}

/// A lock domain: a size class or a large-object shard, each with its own lock, handle table
/// and activity counters. The data path's prologue ([`Pool::lock_domain`]) is written once,
/// against this trait.
pub(crate) trait LockDomain {
    /// What the domain's lock guards.
    type State;
    /// What its handle-table entries hold.
    type Location: PackedLocation;
    fn activity(&self) -> &ActivityCounters;
    fn lock(&self) -> MutexGuard<'_, Self::State>;
    fn handles(state: &Self::State) -> &HandleTable<Self::Location>;
    fn handles_mut(state: &mut Self::State) -> &mut HandleTable<Self::Location>;
}

impl LockDomain for SizeClass {
    type State = ClassState;
    type Location = ClassSlot;
    #[inline]
    fn activity(&self) -> &ActivityCounters {
        &self.activity
    }
    #[inline]
    fn lock(&self) -> MutexGuard<'_, ClassState> {
        SizeClass::lock(self)
    }
    #[inline]
    fn handles(state: &ClassState) -> &HandleTable<ClassSlot> {
        &state.handles
    }
    #[inline]
    fn handles_mut(state: &mut ClassState) -> &mut HandleTable<ClassSlot> {
        &mut state.handles
    }
}

impl LockDomain for LargeShard {
    type State = LargeState;
    type Location = LargeId;
    #[inline]
    fn activity(&self) -> &ActivityCounters {
        &self.activity
    }
    #[inline]
    fn lock(&self) -> MutexGuard<'_, LargeState> {
        LargeShard::lock(self)
    }
    #[inline]
    fn handles(state: &LargeState) -> &HandleTable<LargeId> {
        &state.handles
    }
    #[inline]
    fn handles_mut(state: &mut LargeState) -> &mut HandleTable<LargeId> {
        &mut state.handles
    }
}

/// A lock domain locked for one call: its guard and (dropped after it) the call's in-flight
/// mark.
pub(crate) struct Locked<'a, D: LockDomain> {
    pub(crate) domain: &'a D,
    pub(crate) state: MutexGuard<'a, D::State>,
    in_flight: InFlight<'a>,
}

impl<'a, D: LockDomain> Locked<'a, D> {
    /// The location of the live object `parts` names, if any.
    #[inline(always)]
    pub(crate) fn get(&self, parts: HandleParts) -> Option<D::Location> {
        D::handles(&self.state).get(parts.index, parts.generation)
    }

    /// The location of the live object `parts` names, or why `handle` names none.
    #[inline(always)]
    fn lookup(&self, handle: u64, parts: HandleParts) -> Result<D::Location> {
        self.get(parts).ok_or_else(|| self.invalid(handle, parts))
    }

    /// Take the object `parts` names out of the handle table (the handle goes stale).
    #[inline(always)]
    fn remove(&mut self, handle: u64, parts: HandleParts) -> Result<D::Location> {
        match D::handles_mut(&mut self.state).remove(parts.index, parts.generation) {
            Some(location) => Ok(location),
            None => Err(self.invalid(handle, parts)),
        }
    }

    /// Why `handle` names no live object here: stale (its index was used) or unknown.
    #[cold]
    fn invalid(&self, handle: u64, parts: HandleParts) -> ZsError {
        let problem =
            if D::handles(&self.state).has_index(parts.index) { HandleProblem::Stale } else { HandleProblem::Unknown };
        ZsError::InvalidHandle { handle, problem }
    }

    /// Drop the lock, staying in flight (for work after it: releasing pages).
    pub(crate) fn unlock(self) -> InFlight<'a> {
        drop(self.state);
        self.in_flight
    }
}

/// Who holds an object, decoded from its handle.
enum Owner<'a> {
    Class(&'a SizeClass),
    Large(&'a LargeShard),
}

/// The owner a handle names, locked: see [`Pool::locate`].
enum Located<'a> {
    Class(Locked<'a, SizeClass>),
    Large(Locked<'a, LargeShard>),
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
    /// Start loading the object's first cache lines (see [`Zspage::prefetch_object`]): for a
    /// reader about to copy it out, before it reads the first byte.
    pub(crate) fn prefetch(&self) {
        if let ObjectMem::Packed { zspage, class_size, obj } = self.mem {
            zspage.prefetch_object(class_size, obj, self.size);
        }
    }

    /// The object's size in bytes.
    pub fn len(&self) -> usize {
        self.size
    }

    /// Whether the object is empty.
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

/// Check that `[offset, offset + len)` lies inside `handle`'s object of `size` bytes:
/// `OutOfBounds` if not (built without allocating, so callers may use it under a lock).
pub fn check_bounds(handle: u64, offset: usize, len: usize, size: usize) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(ZsError::OutOfBounds { handle, offset: offset as u64, len: len as u64, object_size: size as u64 }),
    }
}

/// The object at `slot` of a locked class, to lend to a reader.
#[inline]
pub(crate) fn class_object(handle: u64, state: &ClassState, slot: ClassSlot) -> ObjectRef<'_> {
    let class_size = state.layout.size;
    let mem = ObjectMem::Packed { zspage: state.zspage(slot.zspage), class_size, obj: slot.obj };
    ObjectRef { handle, size: slot.size(class_size), mem }
}

/// The object `id` of a locked large-object shard, to lend to a reader.
#[inline]
pub(crate) fn large_object(handle: u64, state: &LargeState, id: LargeId) -> ObjectRef<'_> {
    let object = state.object(id);
    ObjectRef { handle, size: object.size, mem: ObjectMem::Large(&object.mapping) }
}

impl Pool {
    /// A new, empty pool; `BadConfig` if `config` is out of range.
    pub fn new(config: PoolConfig) -> Result<Pool> {
        if !(1..=MAX_CHAIN_LIMIT).contains(&config.max_pages_per_zspage) {
            return Err(ZsError::BadConfig {
                what: "max_pages_per_zspage",
                value: config.max_pages_per_zspage as u64,
                allowed: PoolConfig::MAX_PAGES_ALLOWED,
            });
        }
        if let Some(limit) = config.mem_limit.filter(|&limit| limit < PAGE_SIZE as u64) {
            return Err(ZsError::BadConfig { what: "mem_limit", value: limit, allowed: PoolConfig::MEM_LIMIT_ALLOWED });
        }
        // A zspage longer than mem_limit could never be allocated: its class would refuse
        // every object, however small, on an empty pool. So the limit shortens the chains.
        let limit_pages = config.mem_limit.map_or(usize::MAX, |bytes| (bytes / PAGE_SIZE as u64) as usize);
        let table = ClassTable::new(config.max_pages_per_zspage.min(limit_pages));
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
            compaction: CompactionState::new(),
            fork: ForkState::new(),
            object_owner: OwnerCell::default(),
        })
    }

    /// How this pool was built.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The class table this pool was built with.
    pub fn class_table(&self) -> &ClassTable {
        &self.table
    }

    /// Whether [`Pool::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Count a data-path call in flight on `counters`, through the fork gate ([`ForkGate`]):
    /// while a fork is being prepared the call waits there, holding and queueing on no pool
    /// lock, and is not counted.
    ///
    /// [`ForkGate`]: crate::ForkGate
    #[inline(always)]
    pub(crate) fn enter<'a>(&self, counters: &'a ActivityCounters) -> InFlight<'a> {
        self.fork.gate.pass(|| counters.enter())
    }

    /// As [`Self::enter`], for calls not counted as activity (close, stats).
    pub(crate) fn enter_other(&self) -> Counted<'_> {
        self.fork.enter_other()
    }

    /// The data path's prologue, once for every operation: enter the domain (fork gate,
    /// activity), take its lock, and re-check `closed` under it (so no call touches a
    /// domain that `close` has drained).
    #[inline(always)]
    pub(crate) fn lock_domain<'a, D: LockDomain>(&'a self, domain: &'a D) -> Result<Locked<'a, D>> {
        let in_flight = self.enter(domain.activity());
        let state = domain.lock();
        self.check_open()?;
        Ok(Locked { domain, state, in_flight })
    }

    /// Check the pool is open, decode `handle`'s owner and lock it ([`Self::lock_domain`]).
    #[inline(always)]
    fn locate(&self, handle: u64) -> Result<(HandleParts, Located<'_>)> {
        self.check_open()?;
        let (parts, owner) = self.owner(handle)?;
        let located = match owner {
            Owner::Class(class) => Located::Class(self.lock_domain(class)?),
            Owner::Large(shard) => Located::Large(self.lock_domain(shard)?),
        };
        Ok((parts, located))
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.is_closed() { Err(ZsError::Closed) } else { Ok(()) }
    }

    /// Allocate a zero-filled object of exactly `size` bytes and return its handle.
    pub fn malloc(&self, size: usize) -> Result<u64> {
        self.alloc(size, None, None)
    }

    /// Allocate an object holding `data`: malloc and write in one lock hold.
    pub fn store(&self, data: &[u8]) -> Result<u64> {
        self.alloc(data.len(), Some(&[data]), None)
    }

    /// Allocate an object holding the concatenation of `parts`, written straight into the
    /// object in one lock hold. For callers that build an object from pieces (the cache's
    /// header + key + value): concatenating them first would cost an allocation and a second
    /// copy of every byte, which is most of the work for small objects.
    pub fn store_parts(&self, parts: &[&[u8]]) -> Result<u64> {
        let size = parts.iter().map(|p| p.len()).sum();
        self.alloc(size, Some(parts), None)
    }

    /// Allocate `size` bytes (written from `init`): a handle object, or for `outside`, an
    /// object owned by that record (`owned.rs`), whose location bits are returned.
    pub(crate) fn alloc(&self, size: usize, init: Option<&[&[u8]]>, outside: Option<Outside<'_>>) -> Result<u64> {
        self.check_open()?;
        if size > MAX_OBJECT_SIZE {
            return Err(ZsError::SizeOutOfRange { size: size as u64, max: MAX_OBJECT_SIZE as u64 });
        }
        let large = |init| {
            let handle = self.malloc_large(size, init)?;
            Ok(match outside {
                Some(outside) => self.large_owned(handle, outside),
                None => handle,
            })
        };
        if size > MAX_CLASS_SIZE {
            return large(init);
        }
        match self.malloc_in_class(size, init, outside) {
            // A new zspage of a class above a page (up to 16 pages) would pass mem_limit, but
            // the object's own two pages may not: take the large path, which is what such an
            // object cost before these classes existed. (The class lock and the class's
            // in-flight mark are gone by now; see `enter` for why the latter matters.)
            Err(ZsError::PoolFull { os_error: None, .. }) if size > PAGE_SIZE => large(init),
            result => result,
        }
    }

    /// Allocate in `size`'s class (`size <= MAX_CLASS_SIZE`).
    fn malloc_in_class(&self, size: usize, init: Option<&[&[u8]]>, outside: Option<Outside<'_>>) -> Result<u64> {
        let class_id = self.table.class_for(size);
        let class = &self.classes[class_id];
        let mut locked = self.lock_domain(class)?;
        let state = &mut *locked.state;
        let (zspage, fresh) = match state.find_zspage_with_room() {
            Some(id) => {
                // The handle-table entry is the only metadata a malloc into an existing zspage grows.
                if state.handles.try_reserve_one().is_err() {
                    return Err(self.os_refused(size, libc::ENOMEM));
                }
                (id, false)
            }
            None => (self.grow_class(state, size)?, true),
        };
        let placed = match outside {
            None => state.obj_malloc(zspage, size).map(|(index, generation)| {
                let owner = u16::try_from(class_id).expect("fewer than 256 classes");
                let slot = state.handles.get(index, generation).expect("just inserted");
                (slot, HandleParts { index, owner, generation }.encode(self.key))
            }),
            Some((id, owner)) => {
                let slot = state.obj_malloc_owned(zspage, size, id);
                let location = Location::in_class(class_id, slot);
                // Published before the class lock is dropped: compaction may move it then.
                owner.set_location(id, location);
                Some((slot, location.0))
            }
        };
        let Some((slot, name)) = placed else {
            let dead = fresh.then(|| state.remove_zspage(zspage));
            class.publish(state);
            let _in_flight = locked.unlock();
            if let Some(dead) = dead {
                self.release_zspage_pages(std::slice::from_ref(&dead));
            }
            return Err(self.table_exhausted(size));
        };
        if let Some(parts) = init {
            let class_size = state.layout.size;
            let zspage = state.zspage_mut(slot.zspage);
            let mut offset = 0;
            for part in parts {
                zspage.write(class_size, slot.obj, offset, part);
                offset += part.len();
            }
        }
        class.publish(state);
        Ok(name)
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

    /// Hand dead zspages' pages back to the OS. Call with no class lock held.
    pub(crate) fn release_zspage_pages(&self, dead: &[Zspage]) {
        // SAFETY: every zspage in `dead` was unlinked from its class under the class lock (no
        // handle names an object in it any more) and is released once, here; their pages came
        // from this pool's provider.
        unsafe { self.provider.release_chains(dead.iter().map(Zspage::pages)) };
        self.unreserve_pages(dead.iter().map(|zspage| zspage.pages().len()).sum());
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
        match self.locate(handle)? {
            (parts, Located::Class(mut class)) => {
                let slot = class.remove(handle, parts)?;
                let size = slot.size(class.state.layout.size);
                let dead = class.state.obj_free(slot.zspage, slot.obj, size);
                class.domain.publish(&class.state);
                let _in_flight = class.unlock();
                if let Some(dead) = dead {
                    self.release_zspage_pages(std::slice::from_ref(&dead));
                }
            }
            (parts, Located::Large(shard)) => self.free_large(shard, handle, parts)?,
        }
        Ok(())
    }

    /// Free the large object `parts` names in a locked shard (`handle` for the error).
    pub(crate) fn free_large(&self, mut shard: Locked<'_, LargeShard>, handle: u64, parts: HandleParts) -> Result<()> {
        let id = shard.remove(handle, parts)?;
        let object = shard.state.remove(id);
        shard.domain.publish(&shard.state);
        let _in_flight = shard.unlock();
        let pages = object.mapping.len() / PAGE_SIZE;
        drop(object);
        self.unreserve_pages(pages);
        Ok(())
    }

    /// Run `f` on the object behind `handle` with its lock held. `f` must be short: it
    /// blocks every other operation on the object's class.
    pub fn read_with<R>(&self, handle: u64, f: impl FnOnce(&ObjectRef<'_>) -> R) -> Result<R> {
        match self.locate(handle)? {
            (parts, Located::Class(class)) => {
                let slot = class.lookup(handle, parts)?;
                let object = class_object(handle, &class.state, slot);
                object.prefetch();
                Ok(f(&object))
            }
            (parts, Located::Large(shard)) => {
                let id = shard.lookup(handle, parts)?;
                Ok(f(&large_object(handle, &shard.state, id)))
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
        let parts_of = |i: usize| HandleParts::decode(handles[i], self.key);
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
                    let class = self.lock_domain(class)?;
                    let class_size = class.state.layout.size;
                    located.clear();
                    for &(_, i) in group {
                        let slot = class.get(parts_of(i as usize));
                        if let Some(slot) = slot {
                            class.state.zspage(slot.zspage).prefetch(class_size, slot.obj);
                        }
                        located.push((i as usize, slot));
                    }
                    for &(i, slot) in &located {
                        let handle = handles[i];
                        match slot {
                            Some(slot) => f(i, Ok(&class_object(handle, &class.state, slot))),
                            None => f(i, Err(class.invalid(handle, parts_of(i)))),
                        }
                    }
                }
                Owner::Large(shard) => {
                    let shard = self.lock_domain(shard)?;
                    for &(_, i) in group {
                        let (i, handle) = (i as usize, handles[i as usize]);
                        match shard.lookup(handle, parts_of(i)) {
                            Ok(id) => f(i, Ok(&large_object(handle, &shard.state, id))),
                            Err(e) => f(i, Err(e)),
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
        match self.locate(handle)? {
            (parts, Located::Class(mut class)) => {
                let slot = class.lookup(handle, parts)?;
                let class_size = class.state.layout.size;
                check_bounds(handle, offset, data.len(), slot.size(class_size))?;
                class.state.zspage_mut(slot.zspage).write(class_size, slot.obj, offset, data);
            }
            (parts, Located::Large(shard)) => {
                let id = shard.lookup(handle, parts)?;
                let object = shard.state.object(id);
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

    /// Whether no object is live (a racy snapshot under concurrent use).
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
    fn the_allowed_ranges_state_the_limits() {
        assert_eq!(PoolConfig::MAX_PAGES_ALLOWED, format!("1..={MAX_CHAIN_LIMIT}"));
        assert!(PoolConfig::MEM_LIMIT_ALLOWED.starts_with(&format!("at least {PAGE_SIZE} bytes")));
    }

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
