//! zstd frames as the cache stores them, made and read with per-thread contexts.
//!
//! **Frames.** Values are compressed as magicless zstd frames without content size, dictionary
//! id or checksum: the entry header (`entry.rs`) already holds the original length and the
//! dictionary id, and those fields cost 9..13 bytes a value, about 8 % of a 120-byte result.
//! With and without a dictionary (`dictionary.rs`) alike.
//!
//! **Contexts.** A zstd context is 100s of KiB of tables: making one per value (what
//! `zstd::bulk` does) cost several microseconds a `get` of a 300-byte value, about ten times
//! the lookup. Each thread makes one compression and one decompression context on first use
//! and keeps them; a per-cache context would serialise the compressions that run outside the
//! cache mutex. A dictionary is *referenced* into the context for one call (its prepared
//! `ZSTD_CDict`/`ZSTD_DDict`), never loaded per call, and dereferenced before the call
//! returns, so a context refers to no dictionary between calls.

use std::cell::RefCell;

use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter, FrameFormat};

use crate::error::{CacheError, Result};

thread_local! {
    static ENCODER: RefCell<Option<CCtx<'static>>> = const { RefCell::new(None) };
    static DECODER: RefCell<Option<DCtx<'static>>> = const { RefCell::new(None) };
}

fn zstd_error(code: usize) -> CacheError {
    CacheError::Dictionary(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

fn no_context() -> CacheError {
    CacheError::Dictionary("zstd could not allocate a context".into())
}

fn new_encoder() -> Result<CCtx<'static>> {
    let mut cctx = CCtx::try_create().ok_or_else(no_context)?;
    for param in [
        CParameter::Format(FrameFormat::Magicless),
        CParameter::ContentSizeFlag(false),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        cctx.set_parameter(param).map_err(zstd_error)?;
    }
    Ok(cctx)
}

fn new_decoder() -> Result<DCtx<'static>> {
    let mut dctx = DCtx::try_create().ok_or_else(no_context)?;
    dctx.set_parameter(DParameter::Format(FrameFormat::Magicless)).map_err(zstd_error)?;
    Ok(dctx)
}

/// How a frame is compressed: at a level on its own, or with a prepared dictionary (which
/// carries its own level).
#[derive(Clone, Copy)]
pub(crate) enum With<'d> {
    Level(i32),
    Dictionary(&'d EncoderDictionary<'static>),
}

/// `value` as one frame (see the module doc).
pub(crate) fn compress(value: &[u8], with: With<'_>) -> Result<Vec<u8>> {
    ENCODER.with(|cell| {
        let mut slot = cell.borrow_mut();
        let mut cctx: CCtx<'_> = match slot.take() {
            Some(cctx) => cctx,
            None => new_encoder()?,
        };
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(value.len()));
        let done = match with {
            With::Level(level) => {
                cctx.set_parameter(CParameter::CompressionLevel(level)).map_err(zstd_error)?;
                cctx.compress2(&mut out, value)
            }
            With::Dictionary(dict) => {
                cctx.ref_cdict(dict.as_cdict()).map_err(zstd_error)?;
                let done = cctx.compress2(&mut out, value);
                // Forget the dictionary before the context outlives this borrow of it; a
                // context that cannot is dropped (the next call makes another).
                if cctx.disable_dictionary().is_err() {
                    return done.map_err(zstd_error).map(|_| out);
                }
                done
            }
        };
        // SAFETY: `CCtx<'a>` borrows only the dictionaries referenced into it; none is (a
        // referenced one was dereferenced just above), so the context refers to nothing and
        // may live as long as the thread.
        *slot = Some(unsafe { std::mem::transmute::<CCtx<'_>, CCtx<'static>>(cctx) });
        done.map_err(zstd_error)?;
        Ok(out)
    })
}

/// Decompress the frame `packed` into `out`, which must be exactly the original length;
/// `dict` is the prepared dictionary it was compressed with, if any.
pub(crate) fn decompress(packed: &[u8], out: &mut [u8], dict: Option<&DecoderDictionary<'static>>) -> Result<()> {
    let written = DECODER.with(|cell| -> Result<usize> {
        let mut slot = cell.borrow_mut();
        let dctx = match &mut *slot {
            Some(dctx) => dctx,
            empty => empty.insert(new_decoder()?),
        };
        let done = match dict {
            // The DDict is passed for this call only: the context keeps no reference to it.
            Some(dict) => dctx.decompress_using_ddict(out, packed, dict.as_ddict()),
            None => dctx.decompress(out, packed),
        };
        done.map_err(|_| CacheError::Corrupt("zstd"))
    })?;
    if written == out.len() { Ok(()) } else { Err(CacheError::Corrupt("decompressed length")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_on_reused_contexts_and_carry_no_header_fields() {
        let text = b"{\"name\": \"Ada Lovelace\", \"email\": \"ada@example.com\", \"active\": true}".repeat(4);
        for level in [1, 3, 19, 3] {
            let packed = compress(&text, With::Level(level)).unwrap();
            // A standard frame would start with the magic number 0xFD2FB528.
            assert_ne!(packed[..4], 0xFD2F_B528u32.to_le_bytes());
            let mut out = vec![0u8; text.len()];
            decompress(&packed, &mut out, None).unwrap();
            assert_eq!(out, text);
        }
    }

    #[test]
    fn a_wrong_length_or_garbage_is_an_error_not_a_panic() {
        let text = b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc".to_vec();
        let packed = compress(&text, With::Level(3)).unwrap();
        let mut short = vec![0u8; text.len() - 1];
        assert!(decompress(&packed, &mut short, None).is_err());
        let mut long = vec![0u8; text.len() + 1];
        assert!(decompress(&packed, &mut long, None).is_err());
        assert!(decompress(&[0xff; 10], &mut long, None).is_err());
        assert!(decompress(&[], &mut long, None).is_err());
    }
}
