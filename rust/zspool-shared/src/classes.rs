//! The file's size classes: the core's class table (32..=8192 bytes, zspages of packed
//! objects, compacted), then one class per whole number of pages from 3 to a chunk (16 pages):
//! one object per zspage, for entries of 8193 bytes up to 64 KiB.
//!
//! The in-process pool puts objects above two pages on its large path (a mapping each); in the
//! file every zspage is a chunk, so an object of up to a chunk is a one-object zspage of the
//! fewest pages that hold it, allocated, freed (hole-punched), recovered and read exactly as
//! any other class's: no second path. Such a class never has anything to compact
//! (`can_compact` of one-object zspages is 0). Entries above a chunk are `TooLarge`. No locks
//! (built once per open; the digest of the whole list is in the header).

use zspool_core::{ClassLayout, ClassTable, DEFAULT_MAX_PAGES_PER_ZSPAGE, MAX_CLASS_SIZE, PAGE_SIZE};

use crate::zspage::CHUNK_PAGES;

/// The largest object (stored entry: header, key and stored value) in bytes: a whole chunk,
/// 64 KiB. Exported as `MAX_ENTRY_SIZE`.
pub const MAX_OBJECT: usize = CHUNK_PAGES * PAGE_SIZE;

/// The classes of a shared file, indexed by class id.
#[derive(Debug, Clone)]
pub(crate) struct FileClasses {
    table: ClassTable,
    all: Vec<ClassLayout>,
}

impl FileClasses {
    pub(crate) fn new() -> FileClasses {
        let table = ClassTable::new(DEFAULT_MAX_PAGES_PER_ZSPAGE);
        let mut all = table.classes().to_vec();
        let first_pages = MAX_CLASS_SIZE / PAGE_SIZE + 1;
        all.extend((first_pages..=CHUNK_PAGES).map(|pages| ClassLayout {
            // Past every size slot of the core's table, so no index repeats.
            index: zspool_core::NUM_SIZE_SLOTS + pages,
            size: pages * PAGE_SIZE,
            pages_per_zspage: pages,
            objs_per_zspage: 1,
        }));
        FileClasses { table, all }
    }

    pub(crate) fn classes(&self) -> &[ClassLayout] {
        &self.all
    }

    /// The class of an object of `size` bytes (`1..=MAX_OBJECT`).
    pub(crate) fn class_for(&self, size: usize) -> usize {
        if size <= MAX_CLASS_SIZE {
            return self.table.class_for(size);
        }
        let pages = size.div_ceil(PAGE_SIZE);
        self.table.classes().len() + pages - (MAX_CLASS_SIZE / PAGE_SIZE + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_up_to_a_chunk_has_the_smallest_class_that_holds_it() {
        let c = FileClasses::new();
        for size in (1..=MAX_OBJECT).step_by(7).chain([MAX_CLASS_SIZE, MAX_CLASS_SIZE + 1, MAX_OBJECT]) {
            let class = &c.classes()[c.class_for(size)];
            assert!(class.size >= size, "{size} -> {class:?}");
            if size > MAX_CLASS_SIZE {
                assert_eq!(class.pages_per_zspage, size.div_ceil(PAGE_SIZE));
                assert_eq!(class.objs_per_zspage, 1);
            }
        }
        assert_eq!(c.classes().last().map(|l| l.size), Some(MAX_OBJECT));
    }
}
