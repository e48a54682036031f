//! Statistics in the shapes kernel readers know: the per-class table of debugfs
//! `/sys/kernel/debug/zsmalloc/<pool>/classes`, and pool totals after zram's `mm_stat`.
//!
//! Each class row is taken under that class's lock (a consistent row); the pool totals add
//! rows taken one after another, so under concurrent use they are a close, not an atomic,
//! snapshot. Nothing here is on the allocation path.

use crate::fullness::FULLNESS_GROUPS;
use crate::os_pages::PAGE_SIZE;
use crate::pool::Pool;
use crate::sync::Ordering;

/// One row of the kernel's `classes` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassStats {
    /// The kernel's class index (the size slot the class was created for).
    pub index: usize,
    /// Object slot size in bytes.
    pub size: usize,
    /// Pages in each zspage of this class.
    pub pages_per_zspage: usize,
    /// Object slots in each zspage of this class.
    pub objs_per_zspage: usize,
    /// Zspages per fullness group: `[0]` empty, `[1..=10]` up to 10 %, 20 % … 90 %, 99 %
    /// in use, `[11]` full (the kernel's `ZS_INUSE_RATIO_*`).
    pub fullness: [usize; FULLNESS_GROUPS],
    /// Zspages in this class.
    pub zspages: usize,
    /// Object slots in the class's zspages, used or not.
    pub obj_allocated: usize,
    /// Live objects.
    pub obj_used: usize,
    /// Pages held by the class.
    pub pages_used: usize,
    /// Pages compaction could free now (`can_compact`).
    pub freeable: usize,
    /// Bytes of live objects (their requested sizes).
    pub payload_bytes: u64,
}

/// Pool totals, after zram's `mm_stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool's name, if it was given one.
    pub name: Option<String>,
    /// Pages held for objects (zspages and large objects).
    pub pages_used: usize,
    /// `pages_used` in bytes (`mem_used_total`).
    pub mem_used_bytes: u64,
    /// The most bytes of pages ever held at once.
    pub mem_used_max: u64,
    /// The pool's `mem_limit` in bytes, if any.
    pub mem_limit: Option<u64>,
    /// Live objects.
    pub objects: usize,
    /// Bytes of live objects (`orig_data_size`).
    pub payload_bytes: u64,
    /// Live objects on the large path (larger than `MAX_CLASS_SIZE`, or 4097..=8192 bytes
    /// allocated at `mem_limit`, see `large.rs`), and the pages they hold.
    pub large_objects: usize,
    /// Pages held by large objects.
    pub large_object_pages: usize,
    /// Pages a full compaction would free now.
    pub freeable_pages: usize,
    /// Heap bytes of bookkeeping (handle tables, zspage metadata), outside `mem_used_bytes`.
    pub metadata_bytes: usize,
    /// Pages freed by compaction, ever (`pages_compacted`).
    pub pages_compacted: u64,
    /// Objects moved by compaction, ever.
    pub objects_migrated: u64,
    /// Compaction runs that had something to do.
    pub compactions: u64,
}

impl Pool {
    /// The per-class table, smallest class first.
    pub fn class_stats(&self) -> Vec<ClassStats> {
        let _in_flight = self.enter_other();
        self.classes
            .iter()
            .map(|class| {
                let state = class.lock();
                let layout = class.layout;
                ClassStats {
                    index: layout.index,
                    size: layout.size,
                    pages_per_zspage: layout.pages_per_zspage,
                    objs_per_zspage: layout.objs_per_zspage,
                    fullness: state.group_counts(),
                    zspages: state.zspage_count(),
                    obj_allocated: state.obj_allocated,
                    obj_used: state.obj_used,
                    pages_used: state.obj_allocated / layout.objs_per_zspage * layout.pages_per_zspage,
                    freeable: state.can_compact(),
                    payload_bytes: state.payload_bytes,
                }
            })
            .collect()
    }

    /// Pool totals.
    pub fn stats(&self) -> PoolStats {
        let _in_flight = self.enter_other();
        let mut objects = 0;
        let mut payload_bytes = 0;
        let mut metadata_bytes = 0;
        for class in self.classes.iter() {
            let state = class.lock();
            objects += state.obj_used;
            payload_bytes += state.payload_bytes;
            metadata_bytes += state.metadata_bytes();
        }
        let (mut large_objects, mut large_object_pages) = (0, 0);
        for shard in self.large.iter() {
            let state = shard.lock();
            large_objects += state.handles.live();
            large_object_pages += state.pages;
            payload_bytes += state.payload_bytes;
            metadata_bytes += state.metadata_bytes();
        }
        let pages_used = self.pages_used.load(Ordering::Relaxed);
        PoolStats {
            name: self.config.name.clone(),
            pages_used,
            mem_used_bytes: (pages_used * PAGE_SIZE) as u64,
            mem_used_max: (self.pages_used_max.load(Ordering::Relaxed) * PAGE_SIZE) as u64,
            mem_limit: self.config.mem_limit,
            objects: objects + large_objects,
            payload_bytes,
            large_objects,
            large_object_pages,
            freeable_pages: self.can_compact(),
            metadata_bytes,
            pages_compacted: self.compaction.pages_compacted.load(Ordering::Relaxed),
            objects_migrated: self.compaction.objects_migrated.load(Ordering::Relaxed),
            compactions: self.compaction.compactions.load(Ordering::Relaxed),
        }
    }
}
