//! The large-object path: objects bigger than the largest size class (`MAX_CLASS_SIZE`, two
//! pages) get a mapping of whole pages of their own (the kernel has no such path; zram never
//! stores more than a page). So does an object of 4097..=8192 bytes whose class needs a new
//! zspage (up to 16 pages) that `mem_limit` has no room for, when its own two pages fit
//! (`Pool::alloc`). There is no packing to compact, so these objects never move; they are
//! counted apart in the stats (`large_objects`, `large_object_pages`).
//!
//! Lock: objects are spread over `LARGE_SHARDS` shards (`handle.rs`, with the owner ids), each with its own lock guarding
//! its handle table and the bytes of its objects, so large allocations from different
//! threads rarely meet. A mapping is `munmap`ped only after its shard lock is dropped.

use crate::activity::ActivityCounters;
use crate::handle::{HandleTable, LargeId};
use crate::os_pages::Mapping;
use crate::sync::{AtomicUsize, MutexGuard, Ordering, WaitedMutex};

#[derive(Debug)]
pub(crate) struct LargeShard {
    state: WaitedMutex<LargeState>,
    objects: AtomicUsize,
    pub(crate) activity: ActivityCounters,
}

/// One large object: its pages and its exact size (which does not fit a handle-table entry).
#[derive(Debug)]
pub(crate) struct LargeObject {
    pub(crate) mapping: Mapping,
    pub(crate) size: usize,
}

#[derive(Debug)]
pub(crate) struct LargeState {
    pub(crate) handles: HandleTable<LargeId>,
    /// Records by id (a handle-table entry holds the id); `None` marks an id free for reuse.
    records: Vec<Option<LargeObject>>,
    free_ids: Vec<u32>,
    pub(crate) payload_bytes: u64,
    pub(crate) pages: usize,
}

impl LargeShard {
    pub(crate) fn new() -> LargeShard {
        LargeShard {
            state: WaitedMutex::new(LargeState {
                handles: HandleTable::new(),
                records: Vec::new(),
                free_ids: Vec::new(),
                payload_bytes: 0,
                pages: 0,
            }),
            objects: AtomicUsize::new(0),
            activity: ActivityCounters::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, LargeState> {
        self.state.lock()
    }

    /// The shard lock itself, for the fork hooks (`fork.rs`).
    #[cfg(not(loom))]
    pub(crate) fn lock_for_fork(&self) -> &WaitedMutex<LargeState> {
        &self.state
    }

    pub(crate) fn publish(&self, state: &LargeState) {
        self.objects.store(state.handles.live(), Ordering::Relaxed);
    }

    pub(crate) fn objects(&self) -> usize {
        self.objects.load(Ordering::Relaxed)
    }
}

/// Why [`LargeState::insert`] refused an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its bookkeeping could not grow: the OS refused memory.
    NoMemory,
    /// All of the shard's handle-table indices are used up.
    TableFull,
}

impl LargeState {
    /// Record `mapping` as an object of `size` bytes; `Err` if its metadata cannot grow (the
    /// OS refused memory) or the handle table is full, with the mapping handed back to be
    /// dropped.
    pub(crate) fn insert(&mut self, mapping: Mapping, size: usize) -> Result<(u32, u32), (Mapping, Refusal)> {
        // Every vector this insert (and the matching remove) may grow, reserved fallibly:
        // out of memory is then a `PoolFull` error, not an abort.
        let reserved = self.handles.try_reserve_one().is_ok()
            && (!self.free_ids.is_empty() || self.records.try_reserve(1).is_ok())
            && self.free_ids.try_reserve((self.records.len() + 1).saturating_sub(self.free_ids.len())).is_ok();
        if !reserved {
            return Err((mapping, Refusal::NoMemory));
        }
        let id = match self.free_ids.last() {
            Some(&id) => id,
            None => u32::try_from(self.records.len()).expect("fewer than 2^32 large objects per shard"),
        };
        let Some(handle) = self.handles.insert(LargeId(id)) else {
            return Err((mapping, Refusal::TableFull));
        };
        if self.free_ids.pop().is_none() {
            self.records.push(None);
        }
        self.pages += mapping.len() / crate::os_pages::PAGE_SIZE;
        self.records[id as usize] = Some(LargeObject { mapping, size });
        self.payload_bytes += size as u64;
        Ok(handle)
    }

    pub(crate) fn object(&self, id: LargeId) -> &LargeObject {
        self.records[id.0 as usize].as_ref().expect("live large object")
    }

    /// Take a freed object's record out, for the caller to drop (unmap) after unlocking.
    pub(crate) fn remove(&mut self, id: LargeId) -> LargeObject {
        let object = self.records[id.0 as usize].take().expect("live large object");
        self.free_ids.push(id.0);
        self.payload_bytes -= object.size as u64;
        self.pages -= object.mapping.len() / crate::os_pages::PAGE_SIZE;
        object
    }

    /// Heap bytes of bookkeeping: the handle table, the records and the free-id stack.
    pub(crate) fn metadata_bytes(&self) -> usize {
        self.handles.heap_bytes()
            + self.records.capacity() * std::mem::size_of::<Option<LargeObject>>()
            + self.free_ids.capacity() * std::mem::size_of::<u32>()
    }

    pub(crate) fn drain_all(&mut self) -> Vec<Mapping> {
        let mappings = self.records.drain(..).flatten().map(|object| object.mapping).collect();
        self.free_ids.clear();
        self.handles.clear();
        self.payload_bytes = 0;
        self.pages = 0;
        mappings
    }
}
