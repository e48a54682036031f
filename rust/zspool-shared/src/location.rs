//! A location: where an entry's object is, as an index slot holds it (one `u64`, stored and
//! rewritten atomically). `valid | class | class epoch | descriptor | object`; 0 is "none".
//! A location whose epoch is not its class's current epoch names an object that a recovery
//! discarded: a miss. No locks (the word is written under the class lock).

const OBJ_BITS: u32 = 12;
const DESC_BITS: u32 = 27;
const EPOCH_BITS: u32 = 16;
const CLASS_BITS: u32 = 8;
const VALID: u64 = 1 << 63;

const _: () = assert!(OBJ_BITS + DESC_BITS + EPOCH_BITS + CLASS_BITS + 1 == 64);

/// Objects per zspage a location can name.
#[cfg(test)]
pub(crate) const MAX_OBJS: usize = 1 << OBJ_BITS;
/// Descriptors a location can name.
pub(crate) const MAX_DESCS: usize = 1 << DESC_BITS;
/// Classes a location can name.
#[cfg(test)]
pub(crate) const MAX_CLASSES: usize = 1 << CLASS_BITS;
/// Epochs wrap at this.
pub(crate) const EPOCH_MASK: u32 = (1 << EPOCH_BITS) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) class: u32,
    pub(crate) epoch: u32,
    pub(crate) desc: u32,
    pub(crate) obj: u32,
}

impl Location {
    pub(crate) fn pack(self) -> u64 {
        VALID
            | u64::from(self.class) << (OBJ_BITS + DESC_BITS + EPOCH_BITS)
            | u64::from(self.epoch & EPOCH_MASK) << (OBJ_BITS + DESC_BITS)
            | u64::from(self.desc) << OBJ_BITS
            | u64::from(self.obj)
    }

    /// `None` for 0 (no location).
    pub(crate) fn unpack(word: u64) -> Option<Location> {
        if word & VALID == 0 {
            return None;
        }
        let field = |shift: u32, bits: u32| ((word >> shift) & ((1 << bits) - 1)) as u32;
        Some(Location {
            class: field(OBJ_BITS + DESC_BITS + EPOCH_BITS, CLASS_BITS),
            epoch: field(OBJ_BITS + DESC_BITS, EPOCH_BITS),
            desc: field(OBJ_BITS, DESC_BITS),
            obj: field(0, OBJ_BITS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_and_object_index_fits_a_location() {
        let table = crate::header::class_table();
        assert!(table.classes().len() <= MAX_CLASSES);
        assert!(table.classes().iter().all(|c| c.objs_per_zspage < MAX_OBJS));
        let loc = Location { class: 200, epoch: EPOCH_MASK, desc: MAX_DESCS as u32 - 1, obj: MAX_OBJS as u32 - 1 };
        assert_eq!(Location::unpack(loc.pack()), Some(loc));
        assert_eq!(Location::unpack(0), None);
    }
}
