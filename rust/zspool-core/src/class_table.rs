//! The size-class table: which class an object of a given size lives in, and how each
//! class lays its objects out over a chain of pages. Pure arithmetic, computed once per
//! pool; no locks.
//!
//! Up to a page this is the kernel's rule (mm/zsmalloc.c since v6.3) with 4 KiB pages:
//! - class sizes run from [`MIN_ALLOC_SIZE`] (32) to [`PAGE_SIZE`] in [`CLASS_DELTA`] (16)
//!   byte steps: 255 size slots;
//! - a class's zspage is the chain of `1..=max_pages_per_zspage` pages that wastes the
//!   fewest tail bytes (`(pages * PAGE_SIZE) % size`, first minimum wins); power-of-two sizes
//!   always take one page (`calculate_zspage_chain_size`);
//! - walking from the largest slot down, a slot whose `(pages_per_zspage, objs_per_zspage)`
//!   equals the previous (larger) class's is merged into it: its objects go to the larger
//!   class, which wastes nothing extra per zspage and halves the lists to keep.
//!
//! Unlike the kernel we keep the handle outside the object (in the class's handle table),
//! so an object of `n` bytes goes to the first class of size `>= n`, with no 8-byte header.
//!
//! ## Above a page: our divergence
//!
//! The kernel stops at `PAGE_SIZE` because zram never stores more than a page. We are a
//! general allocator, and page-sized *values* plus a few bytes of header (a cache entry's
//! flags and key) are common, so the classes go on, in the same 16-byte steps, up to
//! [`MAX_CLASS_SIZE`] (two pages): 256 more slots. Only objects above that take the
//! large-object path (`large.rs`, whole pages of their own, never moved).
//!
//! Their chains use the same least-waste rule, starting at the fewest pages that hold one
//! object (`size.div_ceil(PAGE_SIZE)`, power-of-two sizes take exactly that) and going up to
//! [`ABOVE_PAGE_CHAIN_LIMIT`] = 16 pages *whatever the pool's `max_pages_per_zspage`*: an
//! object just over a page needs a long chain to pack well. Measured with a 4109-byte object
//! (a 4096-byte value in a cache entry) and with sizes uniform over 4097..=8192, the memory
//! per object (pages per zspage / objects per zspage) is:
//!
//! | chain limit | classes above a page | 4109 bytes cost | uniform 4097..=8192: waste |
//! |---|---|---|---|
//! | large path (whole pages) | - | 8192 | 33.3 % |
//! | 4  | 3  | 5461 | 13.0 % |
//! | 8 (the default for small classes) | 11 | 4681 | 4.4 % |
//! | 16 | 40 | 4369 | 1.5 % |
//!
//! 16 is the longest chain the kernel allows and a pool may be configured with. Longer would
//! pack a little better (24 pages: 0.8 % waste) but needs 88 classes above a page, 280 in all
//! with a 16-page pool, past the 256 owner ids a handle has for classes (`LARGE_OWNER_BASE`);
//! with 16, every chain limit gives at most 232. The price is granularity: one zspage of such
//! a class is up to 64 KiB, so a class holds at most that much in a partly used zspage (a pool
//! with one 5000-byte object holds 16 pages for it), and compaction frees memory in steps of
//! that size.
//!
//! No object of 4097..=8192 bytes costs more here than on the large path (two pages): the
//! two-page chain with one object is always a candidate and wastes `2 * PAGE_SIZE - size`; the
//! chosen chain wastes at most that, shared by at least one object, so each object costs at
//! most `size + waste <= 2 * PAGE_SIZE` (test `no_class_above_a_page_costs_more_than_the_large_path`).

use crate::handle::LARGE_OWNER_BASE;
use crate::os_pages::PAGE_SIZE;

/// The smallest class size in bytes.
pub const MIN_ALLOC_SIZE: usize = 32;
/// The step between class sizes in bytes (`PAGE_SIZE >> CLASS_BITS` in the kernel).
pub const CLASS_DELTA: usize = 16;
/// The largest class size in bytes: two pages. Bigger objects take the large-object path.
pub const MAX_CLASS_SIZE: usize = 2 * PAGE_SIZE;
/// Number of size slots from 32 to 8192 bytes: 511 (the kernel's 255 up to a page, then 256).
pub const NUM_SIZE_SLOTS: usize = (MAX_CLASS_SIZE - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA) + 1;
/// Size slots up to a page: the kernel's `ZS_SIZE_CLASSES`, 255.
pub const NUM_PAGE_SIZE_SLOTS: usize = (PAGE_SIZE - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA) + 1;
/// The largest chain a pool may be configured with (the kernel's Kconfig allows 4..16).
pub const MAX_CHAIN_LIMIT: usize = 16;
/// The chain limit of classes above a page, whatever the pool is configured with (see the
/// table at the top of this file: it is what wastes least).
pub const ABOVE_PAGE_CHAIN_LIMIT: usize = MAX_CHAIN_LIMIT;
/// The default chain limit, as `CONFIG_ZSMALLOC_CHAIN_SIZE`.
pub const DEFAULT_MAX_PAGES_PER_ZSPAGE: usize = 8;

/// How one physical class lays out its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// The kernel's class index: the size slot this physical class was created for.
    pub index: usize,
    /// Object slot size in bytes.
    pub size: usize,
    /// Pages in each zspage of this class.
    pub pages_per_zspage: usize,
    /// Object slots in each zspage of this class.
    pub objs_per_zspage: usize,
}

/// All classes of one pool: the physical classes (ascending size) and the map from size
/// slot to physical class.
#[derive(Debug, Clone)]
pub struct ClassTable {
    classes: Vec<ClassLayout>,
    slot_to_class: [u16; NUM_SIZE_SLOTS],
}

/// Size of the class in size slot `slot`.
pub fn slot_size(slot: usize) -> usize {
    (MIN_ALLOC_SIZE + slot * CLASS_DELTA).min(MAX_CLASS_SIZE)
}

/// The size slot an object of `size` bytes (`size <= MAX_CLASS_SIZE`) belongs to.
pub fn size_slot(size: usize) -> usize {
    if size <= MIN_ALLOC_SIZE { 0 } else { (size - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA).min(NUM_SIZE_SLOTS - 1) }
}

/// The longest chain a class of `size` bytes may use in a pool configured with
/// `max_pages_per_zspage`: that, up to a page; [`ABOVE_PAGE_CHAIN_LIMIT`] above it.
pub fn chain_limit(size: usize, max_pages_per_zspage: usize) -> usize {
    if size <= PAGE_SIZE { max_pages_per_zspage } else { ABOVE_PAGE_CHAIN_LIMIT }
}

/// Pages per zspage for a class of `size` bytes: the chain of at most `max_pages` pages with
/// the least tail waste. A chain holds at least one object, so it has at least
/// `size.div_ceil(PAGE_SIZE)` pages (1 up to a page, as in the kernel), and a power-of-two
/// size takes exactly that many, wasting nothing.
pub fn chain_size(size: usize, max_pages: usize) -> usize {
    let min_pages = size.div_ceil(PAGE_SIZE).max(1);
    if size.is_power_of_two() {
        return min_pages;
    }
    let mut best = (usize::MAX, min_pages);
    for pages in min_pages..=max_pages {
        let waste = (pages * PAGE_SIZE) % size;
        if waste < best.0 {
            best = (waste, pages);
        }
    }
    best.1
}

impl ClassTable {
    /// Build the table for chains of at most `max_pages_per_zspage` pages (1..=16) for
    /// classes up to a page (above a page, see [`chain_limit`]).
    pub fn new(max_pages_per_zspage: usize) -> ClassTable {
        assert!((1..=MAX_CHAIN_LIMIT).contains(&max_pages_per_zspage));
        let mut classes_desc: Vec<ClassLayout> = Vec::new();
        let mut slot_to_desc = [0usize; NUM_SIZE_SLOTS];
        for slot in (0..NUM_SIZE_SLOTS).rev() {
            let size = slot_size(slot);
            let pages_per_zspage = chain_size(size, chain_limit(size, max_pages_per_zspage));
            let objs_per_zspage = pages_per_zspage * PAGE_SIZE / size;
            if let Some(prev) = classes_desc.last()
                && prev.pages_per_zspage == pages_per_zspage
                && prev.objs_per_zspage == objs_per_zspage
            {
                slot_to_desc[slot] = classes_desc.len() - 1;
                continue;
            }
            classes_desc.push(ClassLayout { index: slot, size, pages_per_zspage, objs_per_zspage });
            slot_to_desc[slot] = classes_desc.len() - 1;
        }
        let n = classes_desc.len();
        // A class id is the owner field of its objects' handles, below the large shards'.
        assert!(n <= usize::from(LARGE_OWNER_BASE), "{n} classes do not fit the handle's owner ids");
        classes_desc.reverse();
        let mut slot_to_class = [0u16; NUM_SIZE_SLOTS];
        for (slot, desc) in slot_to_desc.iter().enumerate() {
            slot_to_class[slot] = u16::try_from(n - 1 - desc).expect("fewer than 256 classes");
        }
        ClassTable { classes: classes_desc, slot_to_class }
    }

    /// The physical classes, smallest first. A class's position here is its class id.
    pub fn classes(&self) -> &[ClassLayout] {
        &self.classes
    }

    /// The class id for an object of `size <= MAX_CLASS_SIZE` bytes.
    pub fn class_for(&self, size: usize) -> usize {
        usize::from(self.slot_to_class[size_slot(size)])
    }

    /// The kernel's `zs_huge_class_size`: objects from this size up to a page get a whole page
    /// each. (Above a page every class packs several objects per zspage again, except the
    /// 8192-byte one; the kernel has no such classes.)
    pub fn huge_class_size(&self) -> usize {
        self.classes
            .iter()
            .filter(|c| c.size <= PAGE_SIZE && !(c.pages_per_zspage == 1 && c.objs_per_zspage == 1))
            .map(|c| c.size)
            .max()
            .unwrap_or(0)
            + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's rule written out independently, straight from mm/zsmalloc.c
    /// (`calculate_zspage_chain_size` and the `can_merge` walk in `zs_create_pool`), to
    /// derive the physical class count for a chain limit.
    fn kernel_physical_classes(chain: usize) -> usize {
        let mut count = 0;
        let mut prev: Option<(usize, usize)> = None;
        let mut i = NUM_PAGE_SIZE_SLOTS as isize - 1;
        while i >= 0 {
            let size = (32 + i as usize * 16).min(4096);
            let mut pages = 1;
            if !size.is_power_of_two() {
                let mut min_waste = usize::MAX;
                for p in 1..=chain {
                    let waste = (p * 4096) % size;
                    if waste < min_waste {
                        min_waste = waste;
                        pages = p;
                    }
                }
            }
            let objs = pages * 4096 / size;
            if prev != Some((pages, objs)) {
                count += 1;
                prev = Some((pages, objs));
            }
            i -= 1;
        }
        count
    }

    #[test]
    fn merged_class_counts_match_the_kernel_rule() {
        // Documentation/mm/zsmalloc.rst tabulates 69 / 123 / 191 physical classes for chain
        // sizes 4 / 8 / 16. That table predates the power-of-two shortcut in
        // calculate_zspage_chain_size; the rule as the kernel runs it today gives
        // 69 / 119 / 192, and so do we (our classes above a page come on top).
        for (chain, expected) in [(4, 69), (8, 119), (16, 192)] {
            assert_eq!(kernel_physical_classes(chain), expected, "the derivation itself, chain {chain}");
            let table = ClassTable::new(chain);
            let up_to_a_page = table.classes().iter().filter(|c| c.size <= PAGE_SIZE).count();
            assert_eq!(up_to_a_page, expected, "zspool's table, chain {chain}");
        }
    }

    #[test]
    fn huge_watermarks_match_the_documentation() {
        // Same table: the largest class that still packs several objects per zspage is
        // 3264 / 3632 / 3840 bytes. The kernel's zs_huge_class_size is that minus 7 (its
        // objects carry an 8-byte handle header); ours stores the handle out of line, so
        // objects from that size + 1 up sit alone in a page.
        for (chain, watermark) in [(4, 3264), (8, 3632), (16, 3840)] {
            assert_eq!(ClassTable::new(chain).huge_class_size(), watermark + 1);
        }
    }

    #[test]
    fn every_size_maps_to_a_class_that_fits_it() {
        for chain in 1..=MAX_CHAIN_LIMIT {
            let table = ClassTable::new(chain);
            for size in 0..=MAX_CLASS_SIZE {
                let class = table.classes()[table.class_for(size)];
                assert!(class.size >= size, "size {size} in class of {}", class.size);
                assert!(class.objs_per_zspage >= 1 && class.pages_per_zspage <= chain_limit(size, chain));
                assert_eq!(class.objs_per_zspage, class.pages_per_zspage * PAGE_SIZE / class.size);
            }
            assert_eq!(table.classes().last().unwrap().size, MAX_CLASS_SIZE);
        }
    }

    #[test]
    fn class_ids_fit_below_the_large_owners_at_every_chain_limit() {
        for chain in 1..=MAX_CHAIN_LIMIT {
            let table = ClassTable::new(chain);
            assert!(table.classes().len() < usize::from(LARGE_OWNER_BASE), "chain {chain}");
        }
        assert_eq!(ClassTable::new(MAX_CHAIN_LIMIT).classes().len(), 192 + 40);
    }

    #[test]
    fn classes_above_a_page_take_up_to_sixteen_pages_whatever_the_pool_limit() {
        let above = |chain| -> Vec<ClassLayout> {
            let table = ClassTable::new(chain);
            table.classes().iter().filter(|c| c.size > PAGE_SIZE).map(|c| ClassLayout { index: 0, ..*c }).collect()
        };
        let reference = above(MAX_CHAIN_LIMIT);
        assert_eq!(reference.len(), 40);
        for chain in 1..MAX_CHAIN_LIMIT {
            assert_eq!(above(chain), reference, "chain {chain}");
        }
        // A page-sized value in a cache entry (13 bytes of header and key): 15 of them in 16
        // pages, 4369 bytes each instead of the large path's 8192. (Slots 4112..=4368 all pack
        // 15 per 16 pages, so they are merged into the 4368-byte class.)
        let table = ClassTable::new(DEFAULT_MAX_PAGES_PER_ZSPAGE);
        let class = table.classes()[table.class_for(4109)];
        assert_eq!((class.size, class.pages_per_zspage, class.objs_per_zspage), (4368, 16, 15));
        let top = table.classes()[table.class_for(MAX_CLASS_SIZE)];
        assert_eq!((top.size, top.pages_per_zspage, top.objs_per_zspage), (8192, 2, 1));
    }

    #[test]
    fn no_class_above_a_page_costs_more_than_the_large_path() {
        // Per object, a class costs pages_per_zspage * PAGE_SIZE / objs_per_zspage bytes; the
        // large path would map size.div_ceil(PAGE_SIZE) = 2 pages for every size here.
        for chain in 1..=MAX_CHAIN_LIMIT {
            let table = ClassTable::new(chain);
            for size in PAGE_SIZE + 1..=MAX_CLASS_SIZE {
                let c = table.classes()[table.class_for(size)];
                assert!(
                    c.pages_per_zspage * PAGE_SIZE <= 2 * PAGE_SIZE * c.objs_per_zspage,
                    "size {size}: class {c:?} costs more than two pages per object"
                );
            }
        }
    }
}
