//! An object: one cache entry in a zspage slot of its class. Layout (little-endian):
//!
//! ```text
//! 0  u32 back-reference: the global index slot that names this object; in a free slot,
//!        FREE | the next free object index
//! 4  u8  key kind (0 bytes, 1 str)      5  u8 flags: bit 0 serialized, bits 1-2 codec
//! 6  u16 key length                     8  u32 stored value length
//! 12 u32 checksum: crc32 over bytes 4..12 and 16..24, the key and the stored value
//! 16 u64 expiry (CLOCK_MONOTONIC ns; 0 = never)
//! 24 key bytes, then the stored value (compressed: u32 original length, then the frame)
//! ```
//!
//! Written only under the class lock, always with atomic word stores (`store_words`), so that
//! a reader copying an object without the lock (`load_words`, validated afterwards by the
//! class's move sequence: `shard.rs`) races with nothing. Every field read back is checked
//! before use: a record that fails (lengths past its slot, wrong key, bad checksum) is a miss.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes before the key.
pub(crate) const HEADER_LEN: usize = 24;
/// Marks a free slot's back-reference word.
pub(crate) const FREE_BIT: u32 = 1 << 31;
/// The end of a zspage's free list.
pub(crate) const FREE_END: u32 = FREE_BIT - 1;
/// The largest original (decompressed) value length a record may claim.
pub(crate) const MAX_VALUE_LEN: usize = 64 << 20;

/// The parsed, bounds-checked header of a record copied out of its slot.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) backref: u32,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) key_len: usize,
    pub(crate) value_len: usize,
    pub(crate) checksum: u32,
    pub(crate) expiry: u64,
}

impl Record {
    /// Parse the header at the front of `bytes` (a whole slot of its class); `None` if it is
    /// free or its lengths do not fit the slot.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Record> {
        let h = bytes.get(..HEADER_LEN)?;
        let backref = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if backref & FREE_BIT != 0 {
            return None;
        }
        let record = Record {
            backref,
            kind: h[4],
            flags: h[5],
            key_len: usize::from(u16::from_le_bytes([h[6], h[7]])),
            value_len: u32::from_le_bytes([h[8], h[9], h[10], h[11]]) as usize,
            checksum: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
            expiry: u64::from_le_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        };
        (record.len() <= bytes.len() && record.kind <= 1).then_some(record)
    }

    /// Stored length: header, key and value.
    pub(crate) fn len(&self) -> usize {
        HEADER_LEN + self.key_len + self.value_len
    }

    pub(crate) fn key<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[HEADER_LEN..HEADER_LEN + self.key_len]
    }

    pub(crate) fn value<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[HEADER_LEN + self.key_len..self.len()]
    }

    /// Whether the checksum matches the record's bytes.
    pub(crate) fn checksum_ok(&self, bytes: &[u8]) -> bool {
        checksum(&bytes[..self.len()]) == self.checksum
    }

    pub(crate) fn expired(&self, now: u64) -> bool {
        self.expiry != 0 && self.expiry <= now
    }
}

/// The checksum of a whole record (header, key, value); the back-reference and the checksum
/// field itself are left out (compaction rewrites the first).
pub(crate) fn checksum(record: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&record[4..12]);
    h.update(&record[16..]);
    h.finalize()
}

/// Lay out a record in `out`: header (back-reference 0 until placed), key, value pieces.
pub(crate) fn encode(out: &mut Vec<u8>, kind: u8, flags: u8, key: &[u8], value: &[&[u8]], expiry: u64) {
    let value_len: usize = value.iter().map(|v| v.len()).sum();
    out.clear();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(&(value_len as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&expiry.to_le_bytes());
    out.extend_from_slice(key);
    for piece in value {
        out.extend_from_slice(piece);
    }
    let sum = checksum(out);
    out[12..16].copy_from_slice(&sum.to_le_bytes());
}

/// Set the back-reference word of a record being placed.
pub(crate) fn set_backref(record: &mut [u8], backref: u32) {
    record[..4].copy_from_slice(&backref.to_le_bytes());
}

/// Copy `out.len()` bytes (a multiple of 8) from an object slot, a word at a time.
///
/// # Safety
/// `src` is 8-byte aligned and `out.len()` bytes from it lie inside the mapping.
pub(crate) unsafe fn load_words(src: *const u8, out: &mut [u8]) {
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        // SAFETY: in bounds and aligned (the caller's contract); other processes may store
        // to the word meanwhile, hence an atomic load.
        let word = unsafe { (*src.add(i * 8).cast::<AtomicU64>()).load(Ordering::Relaxed) };
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

/// Store `bytes` into an object slot a word at a time, the last word padded with zeros.
///
/// # Safety
/// `dst` is 8-byte aligned and `bytes.len()` rounded up to 8 bytes from it lie inside the
/// mapping, in a slot the caller's class lock guards.
pub(crate) unsafe fn store_words(dst: *mut u8, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        // SAFETY: in bounds and aligned (the caller's contract).
        unsafe { (*dst.add(i * 8).cast::<AtomicU64>()).store(u64::from_le_bytes(word), Ordering::Relaxed) };
    }
}

/// Copy `len` bytes (a multiple of 8) from one object slot to another, a word at a time.
///
/// # Safety
/// Both are 8-byte aligned, `len` bytes from each lie inside the mapping, and the caller's
/// class lock guards both slots.
pub(crate) unsafe fn copy_words(src: *const u8, dst: *mut u8, len: usize) {
    for i in (0..len).step_by(8) {
        // SAFETY: in bounds and aligned (the caller's contract).
        unsafe {
            let word = (*src.add(i).cast::<AtomicU64>()).load(Ordering::Relaxed);
            (*dst.add(i).cast::<AtomicU64>()).store(word, Ordering::Relaxed);
        }
    }
}
