//! The size-class table: which class an object of a given size lives in, and how each
//! class lays its objects out over a chain of pages. Pure arithmetic, computed once per
//! pool; no locks.
//!
//! This is the kernel's rule (mm/zsmalloc.c since v6.3) with 4 KiB pages:
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

use crate::os_pages::PAGE_SIZE;

/// The smallest class size in bytes.
pub const MIN_ALLOC_SIZE: usize = 32;
/// The step between class sizes in bytes (`PAGE_SIZE >> CLASS_BITS` in the kernel).
pub const CLASS_DELTA: usize = 16;
/// Number of size slots from 32 to 4096 bytes: 255.
pub const NUM_SIZE_SLOTS: usize = (PAGE_SIZE - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA) + 1;
/// The largest chain a pool may be configured with (the kernel's Kconfig allows 4..16).
pub const MAX_CHAIN_LIMIT: usize = 16;
/// The default chain limit, as `CONFIG_ZSMALLOC_CHAIN_SIZE`.
pub const DEFAULT_MAX_PAGES_PER_ZSPAGE: usize = 8;

/// How one physical class lays out its objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassLayout {
    /// The kernel's class index: the size slot this physical class was created for.
    pub index: usize,
    /// Object slot size in bytes.
    pub size: usize,
    pub pages_per_zspage: usize,
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
    (MIN_ALLOC_SIZE + slot * CLASS_DELTA).min(PAGE_SIZE)
}

/// The size slot an object of `size` bytes (`size <= PAGE_SIZE`) belongs to.
pub fn size_slot(size: usize) -> usize {
    if size <= MIN_ALLOC_SIZE { 0 } else { (size - MIN_ALLOC_SIZE).div_ceil(CLASS_DELTA).min(NUM_SIZE_SLOTS - 1) }
}

/// Pages per zspage for a class of `size` bytes: the chain with the least tail waste.
pub fn chain_size(size: usize, max_pages_per_zspage: usize) -> usize {
    if size.is_power_of_two() {
        return 1;
    }
    let mut best = (usize::MAX, 1);
    for pages in 1..=max_pages_per_zspage {
        let waste = (pages * PAGE_SIZE) % size;
        if waste < best.0 {
            best = (waste, pages);
        }
    }
    best.1
}

impl ClassTable {
    /// Build the table for chains of at most `max_pages_per_zspage` pages (1..=16).
    pub fn new(max_pages_per_zspage: usize) -> ClassTable {
        assert!((1..=MAX_CHAIN_LIMIT).contains(&max_pages_per_zspage));
        let mut classes_desc: Vec<ClassLayout> = Vec::new();
        let mut slot_to_desc = [0usize; NUM_SIZE_SLOTS];
        for slot in (0..NUM_SIZE_SLOTS).rev() {
            let size = slot_size(slot);
            let pages_per_zspage = chain_size(size, max_pages_per_zspage);
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
        classes_desc.reverse();
        let mut slot_to_class = [0u16; NUM_SIZE_SLOTS];
        for (slot, desc) in slot_to_desc.iter().enumerate() {
            slot_to_class[slot] = u16::try_from(n - 1 - desc).expect("at most 255 classes");
        }
        ClassTable { classes: classes_desc, slot_to_class }
    }

    /// The physical classes, smallest first. A class's position here is its class id.
    pub fn classes(&self) -> &[ClassLayout] {
        &self.classes
    }

    /// The class id for an object of `size <= PAGE_SIZE` bytes.
    pub fn class_for(&self, size: usize) -> usize {
        usize::from(self.slot_to_class[size_slot(size)])
    }

    /// The kernel's `zs_huge_class_size`: objects at least this big get a whole page each.
    pub fn huge_class_size(&self) -> usize {
        self.classes
            .iter()
            .filter(|c| !(c.pages_per_zspage == 1 && c.objs_per_zspage == 1))
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
        let mut i = NUM_SIZE_SLOTS as isize - 1;
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
        // 69 / 119 / 192, and so do we.
        for (chain, expected) in [(4, 69), (8, 119), (16, 192)] {
            assert_eq!(kernel_physical_classes(chain), expected, "the derivation itself, chain {chain}");
            assert_eq!(ClassTable::new(chain).classes().len(), expected, "zspool's table, chain {chain}");
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
            for size in 0..=PAGE_SIZE {
                let class = table.classes()[table.class_for(size)];
                assert!(class.size >= size, "size {size} in class of {}", class.size);
                assert!(class.objs_per_zspage >= 1 && class.pages_per_zspage <= chain);
            }
        }
    }
}
