//! Owned objects: objects named by their *location* in an outside index, not by a handle.
//!
//! A handle costs a hop on every access: handle -> handle-table entry (8 bytes) -> zspage ->
//! page. An index that already keeps one record per object (the cache's slot) can hold the
//! object's location itself and skip that hop, if it lets compaction rewrite the record when
//! the object moves. That is this file: the kernel's `record_obj(handle, obj)` with the
//! "handle" being a record in someone else's memory.
//!
//! - The pool knows one [`ObjectOwner`] ([`Pool::set_object_owner`], at most one per pool:
//!   a second is refused, so owner ids can never be routed to the wrong index).
//! - An owned object's *owner word* in its zspage (`zspage.rs`) is `OWNED_TAG | id`, where
//!   `id` is the owner's record number (below 2^30); a handle object's word is its table
//!   index (below 2^28), so compaction tells the two apart by one bit.
//! - A [`Location`] packs (class, zspage, object index, slack) in 56 bits; the top 8 bits
//!   belong to the owner and the pool carries them through moves unchanged. Objects above
//!   `MAX_CLASS_SIZE` live in a large-object shard, never move, and keep a handle-table
//!   entry; their location names that entry.
//!
//! ## Protocol (the lock order is in `docs/ARCHITECTURE.md`)
//!
//! The owner serialises its own accesses to a record (the cache mutex); compaction writes
//! records without that lock, so the owner's records must be atomics at stable addresses.
//!
//! - **Store** ([`Pool::store_owned`]): allocate under the class lock and publish the location
//!   with [`ObjectOwner::set_location`] *before* the class lock is dropped: from then on
//!   compaction may move the object, and the record must already name it.
//! - **Read / free** ([`Pool::read_owned`], [`Pool::free_owned`]): read the record (without the
//!   class lock: it may be stale), take the class lock it names, read the record again. Only
//!   compaction rewrites a record behind the owner's back, and only under that class lock, so
//!   the second read is current for as long as the lock is held. Objects never change class,
//!   so the first read always names the right lock; if it ever did not, the call retries.
//! - **Reown** ([`Pool::reown`]): hand an object to another record (owner word and record
//!   rewritten in one class-lock hold); an owner overwriting an entry stores the new object
//!   under a spare record, frees the old object, then reowns the new one into the entry's.
//! - **Move** (compaction, `size_class.rs`): with the class lock held, read the record (its
//!   slack gives the size), copy, and write the record with the new (zspage, object index).
//!
//! A location is checked against the class before it is used (zspage live, index in range;
//! a free also checks the owner word), so a wrong location from the owner can name the
//! wrong object of this pool, never memory outside it: the guarantee a forged handle has.

use std::sync::{Arc, OnceLock};

use crate::error::{HandleProblem, Result, ZsError};
use crate::handle::{HandleParts, LARGE_OWNER_BASE, LARGE_SHARDS, LOCATION_BITS, PackedLocation};
use crate::large::LargeShard;
use crate::pool::{Locked, Pool, class_object, large_object};
use crate::size_class::{ClassSlot, SizeClass};

/// Marks an owner word that names an outside owner's record (bit 31 is the free tag).
pub(crate) const OWNED_TAG: u32 = 1 << 30;
/// Owner ids run below this: the cache's slot numbers.
pub const MAX_OWNER_ID: u32 = OWNED_TAG - 1;
const _: () = assert!(crate::handle::MAX_INDEX < OWNED_TAG);

/// Bit 55: the object is in a size class (else in a large-object shard).
const IN_CLASS: u64 = 1 << 55;
/// The owner's 8 bits: never read by the pool, carried through moves.
const OWNER_BITS_SHIFT: u32 = 56;
const POOL_MASK: u64 = (1 << OWNER_BITS_SHIFT) - 1;
const LARGE_INDEX_BITS: u32 = crate::handle::INDEX_BITS;
const LARGE_SHARD_BITS: u32 = 3;
const _: () = assert!(LARGE_SHARDS <= 1 << LARGE_SHARD_BITS);
const _: () = assert!(LOCATION_BITS + 8 <= 55, "class id and slot fit below the tag");

/// Where an owned object is, as the pool hands it to its owner (see the module docs):
///
/// ```text
///  63      56 55  54      47 46                                   0
/// | owner 8b | 1 | class 8b | ClassSlot: zspage 23, object 11, slack 13 |   in a size class
/// | owner 8b | 0 |   0  | generation 17b | shard 3b | table index 28b  |   large object
/// ```
///
/// All zeros names nothing (generation 0 is never live), so a zeroed record is safe to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location(pub u64);

/// A location, decoded.
enum Place {
    Class { class: usize, slot: ClassSlot },
    Large(HandleParts),
}

impl Location {
    pub(crate) fn in_class(class: usize, slot: ClassSlot) -> Location {
        debug_assert!(class < 256);
        Location(IN_CLASS | (class as u64) << LOCATION_BITS | slot.pack())
    }

    fn large(parts: HandleParts) -> Location {
        let shard = u64::from(parts.owner - LARGE_OWNER_BASE);
        Location(
            u64::from(parts.index)
                | shard << LARGE_INDEX_BITS
                | u64::from(parts.generation) << (LARGE_INDEX_BITS + LARGE_SHARD_BITS),
        )
    }

    /// The owner's 8 bits (the pool makes locations with them clear and keeps them on moves).
    pub fn owner_bits(self) -> u8 {
        (self.0 >> OWNER_BITS_SHIFT) as u8
    }

    /// This location with the owner's 8 bits set to `bits`.
    pub fn with_owner_bits(self, bits: u8) -> Location {
        Location(self.0 & POOL_MASK | u64::from(bits) << OWNER_BITS_SHIFT)
    }

    /// The same object after compaction moved it to (`zspage`, `obj`) of its class.
    pub(crate) fn moved(self, zspage: u32, obj: u16) -> Location {
        let Place::Class { class, slot } = self.place() else { unreachable!("large objects never move") };
        Location::in_class(class, ClassSlot { zspage, obj, ..slot }).with_owner_bits(self.owner_bits())
    }

    fn place(self) -> Place {
        let bits = self.0 & POOL_MASK;
        if bits & IN_CLASS != 0 {
            let class = ((bits & !IN_CLASS) >> LOCATION_BITS) as usize;
            Place::Class { class, slot: ClassSlot::unpack(bits & ((1 << LOCATION_BITS) - 1)) }
        } else {
            let shard = ((bits >> LARGE_INDEX_BITS) & ((1 << LARGE_SHARD_BITS) - 1)) as u16;
            Place::Large(HandleParts {
                index: (bits & ((1 << LARGE_INDEX_BITS) - 1)) as u32,
                owner: LARGE_OWNER_BASE + shard,
                generation: (bits >> (LARGE_INDEX_BITS + LARGE_SHARD_BITS)) as u32,
            })
        }
    }

    /// The object's place in its class, if it is in one.
    pub(crate) fn class_slot(self) -> Option<ClassSlot> {
        match self.place() {
            Place::Class { slot, .. } => Some(slot),
            Place::Large(_) => None,
        }
    }

    /// The size class index (into the pool's classes) if the object is in one.
    fn class(self) -> Option<usize> {
        match self.place() {
            Place::Class { class, .. } => Some(class),
            Place::Large(_) => None,
        }
    }

    /// The error for a location that names no live owned object.
    #[cold]
    fn invalid(self) -> ZsError {
        ZsError::InvalidHandle { handle: self.0, problem: HandleProblem::Unknown }
    }
}

/// The index that owns a pool's owned objects: its records, by owner id. Compaction calls
/// both methods with the object's class lock held and without any lock of the owner's, so
/// a record must live at a stable address and be read and written atomically.
pub trait ObjectOwner: Send + Sync {
    /// The location recorded for owner id `id`.
    fn location(&self, id: u32) -> Location;
    /// Record that the object of owner id `id` is now at `to`: on store (before the class
    /// lock is dropped) and when compaction moves it. An owner keeps its own 8 bits.
    fn set_location(&self, id: u32, to: Location);
}

/// Where a pool keeps its [`ObjectOwner`]: set once, read by compaction on every move of an
/// owned object.
#[derive(Default)]
pub(crate) struct OwnerCell(OnceLock<Arc<dyn ObjectOwner>>);

impl std::fmt::Debug for OwnerCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() { "OwnerCell(set)" } else { "OwnerCell(unset)" })
    }
}

/// An owned object's owner word, decoded: whom compaction must tell when it moves it.
pub(crate) enum OwnerWord {
    /// A handle-table index.
    Table(u32),
    /// An outside owner's record.
    Owned(u32),
}

impl OwnerWord {
    pub(crate) fn decode(word: u32) -> OwnerWord {
        if word & OWNED_TAG != 0 { OwnerWord::Owned(word & MAX_OWNER_ID) } else { OwnerWord::Table(word) }
    }
}

impl Pool {
    /// Make `owner` the index of this pool's owned objects. At most one per pool, for the
    /// pool's lifetime: `BadConfig` if it has one already.
    pub fn set_object_owner(&self, owner: Arc<dyn ObjectOwner>) -> Result<()> {
        self.object_owner.0.set(owner).map_err(|_| ZsError::BadConfig {
            what: "object owner",
            value: 2,
            allowed: "one per pool (one cache per pool)",
        })
    }

    /// The owner of this pool's owned objects, if one was set.
    pub(crate) fn object_owner(&self) -> Option<&dyn ObjectOwner> {
        self.object_owner.0.get().map(|owner| &**owner)
    }

    /// Store the concatenation of `parts` as an object owned by record `id` of the pool's
    /// [`ObjectOwner`], publish its location there (under the class lock, see the module
    /// docs) and return it. `BadConfig` if the pool has no owner or `id` is too large.
    pub fn store_owned(&self, id: u32, parts: &[&[u8]]) -> Result<Location> {
        let Some(owner) = self.object_owner() else {
            return Err(ZsError::BadConfig { what: "object owner", value: 0, allowed: "set_object_owner first" });
        };
        if id > MAX_OWNER_ID {
            return Err(ZsError::BadConfig { what: "owner id", value: u64::from(id), allowed: "below 2**30" });
        }
        let size = parts.iter().map(|p| p.len()).sum();
        self.alloc(size, Some(parts), Some((id, owner))).map(Location)
    }

    /// A large object just stored for `outside` (its `handle`): publish its location there and
    /// return it, as `alloc` returns an owned object's location bits.
    pub(crate) fn large_owned(&self, handle: u64, (id, owner): (u32, &dyn ObjectOwner)) -> u64 {
        let location = Location::large(HandleParts::decode(handle, self.key));
        owner.set_location(id, location);
        location.0
    }

    /// The owned objects' prologue, once for read and free (as `Pool::locate` is for
    /// handles): read the record, lock the domain it names, read the record again under the
    /// lock and check it (see the module docs).
    fn locate_owned(&self, location: impl Fn() -> Location) -> Result<OwnedAt<'_>> {
        self.check_open()?;
        loop {
            let seen = location();
            match seen.place() {
                Place::Class { class, slot } => {
                    let domain = self.classes.get(class).ok_or_else(|| seen.invalid())?;
                    domain.prefetch_zspage(slot.zspage);
                    let locked = self.lock_domain(domain)?;
                    let at = location();
                    match at.place() {
                        Place::Class { class: again, slot } if again == class => {
                            check_slot(&locked.state, at, slot)?;
                            return Ok(OwnedAt::Class { locked, at, slot });
                        }
                        // Moved to another class (never, today): that one's lock, then.
                        _ => continue,
                    }
                }
                Place::Large(parts) => {
                    let shard = self.large_shard(seen)?;
                    return Ok(OwnedAt::Large { locked: self.lock_domain(shard)?, at: seen, parts });
                }
            }
        }
    }

    /// Run `f` on the object owned by record `id`, `location` reading that record (called
    /// once before and once under the object's lock, see the module docs). `f` must be
    /// short: it runs with the class lock held.
    pub fn read_owned<R>(
        &self,
        location: impl Fn() -> Location,
        f: impl FnOnce(&crate::ObjectRef<'_>) -> R,
    ) -> Result<R> {
        match self.locate_owned(location)? {
            OwnedAt::Class { locked, at, slot } => {
                let object = class_object(at.0, &locked.state, slot);
                object.prefetch();
                Ok(f(&object))
            }
            OwnedAt::Large { locked, at, parts } => {
                let id = locked.get(parts).ok_or_else(|| at.invalid())?;
                Ok(f(&large_object(at.0, &locked.state, id)))
            }
        }
    }

    /// [`Pool::read_owned`] for `n` objects, `location(i)` reading the record of the `i`th, as
    /// [`Pool::read_batch`] does for handles: grouped by class, each class lock taken once,
    /// every object of a group resolved and prefetched before `f` runs on the first.
    pub fn read_batch_owned(
        &self,
        n: usize,
        location: impl Fn(usize) -> Location,
        mut f: impl FnMut(usize, Result<&crate::ObjectRef<'_>>),
    ) -> Result<()> {
        self.check_open()?;
        // Sort key: the class, or the large shard after every class.
        let group_of = |at: Location| match at.place() {
            Place::Class { class, .. } => class as u32,
            Place::Large(parts) => 256 + u32::from(parts.owner),
        };
        let mut order: Vec<(u32, u32)> =
            (0..n).map(|i| (group_of(location(i)), u32::try_from(i).expect("batch of fewer than 2^32"))).collect();
        order.sort_unstable();
        let mut resolved: Vec<(usize, Location, Option<ClassSlot>)> = Vec::new();
        let mut retry = Vec::new();
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let first = location(group[0].1 as usize);
            match first.class() {
                Some(class) => {
                    let Some(domain) = self.classes.get(class) else {
                        group.iter().for_each(|&(_, i)| f(i as usize, Err(first.invalid())));
                        continue;
                    };
                    let locked = self.lock_domain(domain)?;
                    let class_size = locked.state.layout.size;
                    resolved.clear();
                    for &(_, i) in group {
                        let now = location(i as usize);
                        match now.place() {
                            Place::Class { class: again, slot } if again == class => {
                                let ok = check_slot(&locked.state, now, slot).is_ok();
                                if ok {
                                    locked.state.zspage(slot.zspage).prefetch(class_size, slot.obj);
                                }
                                resolved.push((i as usize, now, ok.then_some(slot)));
                            }
                            _ => retry.push(i as usize),
                        }
                    }
                    for &(i, now, slot) in &resolved {
                        match slot {
                            Some(slot) => f(i, Ok(&class_object(now.0, &locked.state, slot))),
                            None => f(i, Err(now.invalid())),
                        }
                    }
                }
                None => {
                    for &(_, i) in group {
                        retry.push(i as usize);
                    }
                }
            }
        }
        // Large objects (their own locks, no batching gain) and anything that changed class.
        for i in retry {
            match self.read_owned(|| location(i), |object| f(i, Ok(object))) {
                Ok(()) => {}
                Err(ZsError::Closed) => return Err(ZsError::Closed),
                Err(e) => f(i, Err(e)),
            }
        }
        Ok(())
    }

    /// Move the object owned by record `from` (`location` reads that record, as in
    /// [`Pool::read_owned`]) to record `to`: its owner word and `to`'s location are rewritten
    /// in one hold of its class lock, so compaction writes `to` from then on. For an owner
    /// that overwrites an entry: store the new object under a spare record, free the old
    /// one, then hand the new one the old record (which no object names any more).
    pub fn reown(&self, from: u32, to: u32, location: impl Fn() -> Location) -> Result<()> {
        let Some(owner) = self.object_owner() else { return Err(Location(0).invalid()) };
        if to > MAX_OWNER_ID {
            return Err(ZsError::BadConfig { what: "owner id", value: u64::from(to), allowed: "below 2**30" });
        }
        match self.locate_owned(location)? {
            OwnedAt::Class { mut locked, at, slot } => {
                let zspage = locked.state.zspage_mut(slot.zspage);
                if zspage.owner_of(slot.obj) != Some(OWNED_TAG | from) {
                    return Err(at.invalid());
                }
                zspage.set_owner(slot.obj, OWNED_TAG | to);
                owner.set_location(to, at);
            }
            // Large objects never move and keep no owner word: only the record changes.
            OwnedAt::Large { at, .. } => owner.set_location(to, at),
        }
        Ok(())
    }

    /// Free the object owned by record `id` (`location` reads that record, as in
    /// [`Pool::read_owned`]). Its bytes are zeroed. The owner word must name `id`.
    pub fn free_owned(&self, id: u32, location: impl Fn() -> Location) -> Result<()> {
        match self.locate_owned(location)? {
            OwnedAt::Class { mut locked, at, slot } => {
                if locked.state.zspage(slot.zspage).owner_of(slot.obj) != Some(OWNED_TAG | id) {
                    return Err(at.invalid());
                }
                let size = slot.size(locked.state.layout.size);
                let dead = locked.state.obj_free(slot.zspage, slot.obj, size);
                locked.domain.publish(&locked.state);
                let _in_flight = locked.unlock();
                if let Some(dead) = dead {
                    self.release_zspage_pages(std::slice::from_ref(&dead));
                }
                Ok(())
            }
            OwnedAt::Large { locked, at, parts } => self.free_large(locked, at.0, parts),
        }
    }

    fn large_shard(&self, at: Location) -> Result<&LargeShard> {
        let Place::Large(parts) = at.place() else { unreachable!("a large location") };
        self.large.get(usize::from(parts.owner - LARGE_OWNER_BASE)).ok_or_else(|| at.invalid())
    }
}

/// An owned object's domain, locked, with its location read under the lock.
enum OwnedAt<'a> {
    Class { locked: Locked<'a, SizeClass>, at: Location, slot: ClassSlot },
    Large { locked: Locked<'a, LargeShard>, at: Location, parts: HandleParts },
}

/// Check that `slot` names a live object of a locked class (see the module docs): its zspage
/// is live and its index in range, so a wrong location cannot reach outside the class.
fn check_slot(state: &crate::size_class::ClassState, at: Location, slot: ClassSlot) -> Result<()> {
    // The index range, not the owner word: a read must not touch one more cache line.
    let live = state.zspage_exists(slot.zspage) && state.zspage(slot.zspage).has_obj(slot.obj);
    let fits = usize::from(slot.slack) <= state.layout.size;
    if live && fits { Ok(()) } else { Err(at.invalid()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_round_trip_and_keep_the_owners_bits() {
        let slot = ClassSlot { zspage: crate::size_class::MAX_ZSPAGE_ID, obj: 2047, slack: 8191 };
        let at = Location::in_class(231, slot).with_owner_bits(0xA5);
        assert_eq!(at.owner_bits(), 0xA5);
        let Place::Class { class, slot: back } = at.place() else { panic!("in a class") };
        assert_eq!((class, back), (231, slot));
        let moved = at.moved(7, 3);
        assert_eq!(moved.owner_bits(), 0xA5);
        let Place::Class { class, slot: back } = moved.place() else { panic!("in a class") };
        assert_eq!((class, back), (231, ClassSlot { zspage: 7, obj: 3, slack: 8191 }));
        let parts = HandleParts { index: crate::handle::MAX_INDEX, owner: LARGE_OWNER_BASE + 7, generation: 0x1_FFFF };
        let Place::Large(back) = Location::large(parts).with_owner_bits(0xFF).place() else { panic!("large") };
        assert_eq!(back, parts);
        assert!(matches!(Location::default().place(), Place::Large(HandleParts { generation: 0, .. })));
    }
}
