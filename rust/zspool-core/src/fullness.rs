//! Fullness groups, the kernel's `ZS_INUSE_RATIO_*`: which list of its class a zspage sits
//! in, by the share of its object slots in use. Allocation takes the fullest zspage with
//! room; compaction drains the emptiest into the fullest. Pure arithmetic, no locks; shared
//! by every class storage (this crate's `size_class.rs`, the shared-file pool's).

/// Number of fullness groups: 0 = empty, 1..=10 = up to 10 %, 20 %, … 90 %, 99 % in use,
/// 11 = full.
pub const FULLNESS_GROUPS: usize = 12;

/// The fullness group of a zspage (see [`FULLNESS_GROUPS`]); a class keeps one list per group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fullness(u8);

impl Fullness {
    /// No object in use.
    pub const EMPTY: Fullness = Fullness(0);
    /// Every object in use.
    pub const FULL: Fullness = Fullness(FULLNESS_GROUPS as u8 - 1);

    /// The group of a zspage with `inuse` of its `objs_per_zspage` objects in use.
    pub fn of(inuse: usize, objs_per_zspage: usize) -> Fullness {
        if inuse == 0 {
            Fullness::EMPTY
        } else if inuse == objs_per_zspage {
            Fullness::FULL
        } else {
            Fullness((100 * inuse / objs_per_zspage / 10 + 1) as u8)
        }
    }

    /// Groups with room for an object (all but full), emptiest first.
    pub fn with_room() -> impl DoubleEndedIterator<Item = Fullness> {
        (Fullness::EMPTY.0..Fullness::FULL.0).map(Fullness)
    }

    /// Groups neither empty nor full, emptiest first: compaction's sources and destinations.
    pub fn partly_used() -> impl DoubleEndedIterator<Item = Fullness> {
        (Fullness::EMPTY.0 + 1..Fullness::FULL.0).map(Fullness)
    }

    /// This group's position in a per-group array (`0..FULLNESS_GROUPS`).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The group at position `index` of a per-group array; `None` past the last group (a
    /// group number read from memory another process can write is checked here).
    pub fn from_index(index: usize) -> Option<Fullness> {
        (index < FULLNESS_GROUPS).then_some(Fullness(index as u8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_kernels_ratios() {
        assert_eq!(Fullness::of(0, 10), Fullness::EMPTY);
        assert_eq!(Fullness::of(10, 10), Fullness::FULL);
        assert_eq!(Fullness::of(1, 10).index(), 2, "10 % in use: the <= 20 % group, as the kernel rounds");
        assert_eq!(Fullness::of(1, 100).index(), 1);
        assert_eq!(Fullness::of(99, 100).index(), 10);
        assert_eq!(Fullness::with_room().count(), FULLNESS_GROUPS - 1);
        assert_eq!(Fullness::partly_used().count(), FULLNESS_GROUPS - 2);
        for g in 0..FULLNESS_GROUPS {
            assert_eq!(Fullness::from_index(g).map(Fullness::index), Some(g));
        }
        assert_eq!(Fullness::from_index(FULLNESS_GROUPS), None);
    }
}
