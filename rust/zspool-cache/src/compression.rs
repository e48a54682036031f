//! Value compression: lz4 (`lz4_flex`, pure Rust) or zstd (the reference C library through
//! the `zstd` crate, in the frames and per-thread contexts of `zstd_frame.rs`), applied per
//! value and kept only where it saves space.
//!
//! "Saves space" means the compressed value plus its length prefix is at least
//! [`MIN_SAVING`] bytes smaller than the raw value: one 16-byte step of the pool's size
//! classes, so a kept compression almost always lands the object in a smaller class.
//! Values shorter than [`MIN_COMPRESS_LEN`] are never tried. No locks.

use crate::error::CacheError;
use crate::zstd_frame::{self, With};

/// Values shorter than this (bytes) are stored raw without trying.
pub const MIN_COMPRESS_LEN: usize = 64;
/// A compressed value must be at least this many bytes smaller to be kept.
pub const MIN_SAVING: usize = 16;

/// How values are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    /// Values are stored as given.
    None,
    /// lz4 (fast, modest ratio).
    Lz4,
    /// zstd at this level (1..=22; 3 is zstd's default).
    Zstd(i32),
}

/// The codec an object was stored with (two bits of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Stored as given.
    Raw = 0,
    /// lz4 block.
    Lz4 = 1,
    /// zstd frame.
    Zstd = 2,
}

impl Codec {
    /// The codec stored as `bits`, if any.
    pub fn from_bits(bits: u8) -> Option<Codec> {
        match bits {
            0 => Some(Codec::Raw),
            1 => Some(Codec::Lz4),
            2 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// Compress `value` if that saves at least [`MIN_SAVING`] bytes (counting `prefix_len`, the
/// bytes of the length prefix the caller adds); `None` means store it raw.
pub fn compress(compression: Compression, value: &[u8], prefix_len: usize) -> Option<(Codec, Vec<u8>)> {
    if value.len() < MIN_COMPRESS_LEN {
        return None;
    }
    let (codec, packed) = match compression {
        Compression::None => return None,
        Compression::Lz4 => (Codec::Lz4, lz4_flex::block::compress(value)),
        Compression::Zstd(level) => (Codec::Zstd, zstd_frame::compress(value, With::Level(level)).ok()?),
    };
    (packed.len() + prefix_len + MIN_SAVING <= value.len()).then_some((codec, packed))
}

/// Decompress `packed` into `out`, which must be exactly the original length.
pub fn decompress(codec: Codec, packed: &[u8], out: &mut [u8]) -> Result<(), CacheError> {
    let written = match codec {
        Codec::Raw => {
            out.copy_from_slice(packed);
            packed.len()
        }
        Codec::Lz4 => lz4_flex::block::decompress_into(packed, out).map_err(|_| CacheError::Corrupt("lz4"))?,
        Codec::Zstd => return zstd_frame::decompress(packed, out, None),
    };
    if written == out.len() { Ok(()) } else { Err(CacheError::Corrupt("decompressed length")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_only_savings() {
        let text = b"the quick brown fox jumps over the lazy dog; ".repeat(20);
        for compression in [Compression::Lz4, Compression::Zstd(3)] {
            let (codec, packed) = compress(compression, &text, 2).expect("repetitive text compresses");
            assert!(packed.len() < text.len() / 4);
            let mut out = vec![0; text.len()];
            decompress(codec, &packed, &mut out).unwrap();
            assert_eq!(out, text);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..1000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(compress(Compression::Lz4, &noise, 2).is_none(), "incompressible values stay raw");
        assert!(compress(Compression::Zstd(3), &[7; 40], 1).is_none(), "short values are not tried");
        assert!(compress(Compression::None, &text, 2).is_none());
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let mut out = vec![0; 100];
        assert!(decompress(Codec::Lz4, &[0xff; 10], &mut out).is_err());
        assert!(decompress(Codec::Zstd, &[0xff; 10], &mut out).is_err());
    }
}
