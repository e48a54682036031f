//! One cache entry = one pool object. Layout, in bytes:
//!
//! ```text
//! +-------+-------------+-----------+-----------+-------------------------------------+
//! | flags | key_len     | key bytes | [dict id] | value: raw bytes, or                |
//! |  1    | LEB128 1..3 | key_len   | LEB128    | LEB128 original length + compressed |
//! +-------+-------------+-----------+-----------+-------------------------------------+
//! flags: bits 0-1 codec (0 raw, 1 lz4, 2 zstd), bit 2 the key was a str (else bytes),
//!        bit 3 the value is a serializer's output (the bindings unpickle it on the way out),
//!        bit 4 a dict id follows the key: the zstd dictionary the value was compressed
//!        with, or (codec raw) tried and kept raw because it did not shrink
//! ```
//!
//! A raw entry with an 11-byte key therefore costs 2 header bytes. The key is stored with
//! the value so that a lookup checks the real key bytes (the index keeps only a 30-bit hash)
//! and iteration can give keys back; the index needs no per-entry heap allocation.

use std::borrow::Cow;
use std::sync::Arc;

use zspool_core::ObjectRef;

use crate::compression::{Codec, Compression, MIN_COMPRESS_LEN, compress, decompress};
use crate::dictionary::{Dict, DictSet};
use crate::error::{CacheError, Result};

/// The longest key, in bytes (a 3-byte LEB128 length).
pub const MAX_KEY_LEN: usize = (1 << 21) - 1;

const FLAG_STR_KEY: u8 = 0b100;
const FLAG_SERIALIZED: u8 = 0b1000;
const FLAG_DICT: u8 = 0b1_0000;
const CODEC_MASK: u8 = 0b11;
/// flags (1) + the longest key length (3).
const MAX_HEADER: usize = 4;

/// What a key was in Python: `str` (stored as UTF-8) and `bytes` keys never compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// A `bytes` key.
    Bytes,
    /// A `str` key, stored as UTF-8.
    Str,
}

/// A borrowed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key<'a> {
    /// What the key was in Python.
    pub kind: KeyKind,
    /// Its bytes (UTF-8 for a `str`).
    pub bytes: &'a [u8],
}

impl<'a> Key<'a> {
    /// A `bytes` key.
    pub fn bytes(bytes: &'a [u8]) -> Key<'a> {
        Key { kind: KeyKind::Bytes, bytes }
    }

    /// A `str` key.
    pub fn str(s: &'a str) -> Key<'a> {
        Key { kind: KeyKind::Str, bytes: s.as_bytes() }
    }
}

/// An owned key, as iteration and `popitem` give it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedKey {
    /// What the key was in Python.
    pub kind: KeyKind,
    /// Its bytes (UTF-8 for a `str`).
    pub bytes: Vec<u8>,
}

#[cfg(test)]
fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: usize) -> usize {
    (usize::BITS - (v | 1).leading_zeros()).div_ceil(7) as usize
}

/// Decode a LEB128 number of at most 4 bytes at `offset` of `object`: (value, bytes used).
fn read_varint(object: &ObjectRef<'_>, offset: usize) -> Option<(usize, usize)> {
    let mut buf = [0u8; 4];
    let n = object.len().checked_sub(offset)?.min(4);
    object.read(offset, &mut buf[..n]).ok()?;
    get_varint(&buf[..n])
}

/// Decode a LEB128 number from the front of `buf`: (value, bytes used).
fn get_varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut v = 0usize;
    for (i, &b) in buf.iter().enumerate().take(4) {
        v |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// A new entry's bytes, in the pieces `Pool::store_parts` writes one after the other:
/// `head` (flags + key length), the key, `prefix` (the dict id, if any, then the original
/// length of a compressed value) and the value. A raw value is borrowed, never copied
/// here: the pool copies it straight into the object.
pub(crate) struct Pieces<'v> {
    head: [u8; MAX_HEADER],
    head_len: u8,
    prefix: [u8; 10],
    prefix_len: u8,
    pub(crate) value: Cow<'v, [u8]>,
    /// The dictionary the value was compressed with (or tried with), held until the entry
    /// is stored so that it cannot be freed in between.
    pub(crate) dict: Option<Arc<Dict>>,
    /// Bytes of the value before compression.
    pub(crate) value_len: usize,
}

impl Pieces<'_> {
    /// The entry's bytes, given its key (`head` + key + `prefix` + value).
    pub(crate) fn parts<'a>(&'a self, key: &'a [u8]) -> [&'a [u8]; 4] {
        [&self.head[..usize::from(self.head_len)], key, &self.prefix[..usize::from(self.prefix_len)], &self.value]
    }

    /// Bytes of the pool object, given the key's length.
    pub(crate) fn stored_len(&self, key_len: usize) -> usize {
        usize::from(self.head_len) + key_len + usize::from(self.prefix_len) + self.value.len()
    }

    pub(crate) fn is_compressed(&self) -> bool {
        self.head[0] & CODEC_MASK != Codec::Raw as u8
    }

    pub(crate) fn dict_id(&self) -> Option<u32> {
        self.dict.as_ref().map(|d| d.id)
    }
}

/// Write `v` as LEB128 at the front of `buf` (no allocation); returns the bytes used.
fn varint_into(buf: &mut [u8], mut v: usize) -> u8 {
    let mut i = 0;
    while v >= 0x80 {
        buf[i] = (v as u8) | 0x80;
        v >>= 7;
        i += 1;
    }
    buf[i] = v as u8;
    i as u8 + 1
}

/// A new entry, ready for `Pool::store_parts`; compressed when that pays, with `dict`
/// (zstd only) when one is given. A value long enough to try that does not shrink with
/// `dict` is stored raw and marked as tried with it, so recompression leaves it alone.
pub(crate) fn encode<'v>(
    key: Key<'_>,
    value: &'v [u8],
    serialized: bool,
    compression: Compression,
    dict: Option<Arc<Dict>>,
) -> Result<Pieces<'v>> {
    if key.bytes.len() > MAX_KEY_LEN {
        return Err(CacheError::KeyTooLong { key_len: key.bytes.len() });
    }
    let dict = dict.filter(|_| matches!(compression, Compression::Zstd(_)) && value.len() >= MIN_COMPRESS_LEN);
    let mut prefix = [0u8; 10];
    let dict_len = dict.as_ref().map_or(0, |d| varint_into(&mut prefix, d.id as usize));
    let packed = match &dict {
        Some(d) => d.compress(value, usize::from(dict_len) + varint_len(value.len())).map(|p| (Codec::Zstd, p)),
        None => compress(compression, value, varint_len(value.len())),
    };
    let codec = packed.as_ref().map_or(Codec::Raw, |(codec, _)| *codec);
    let flags = codec as u8
        | if key.kind == KeyKind::Str { FLAG_STR_KEY } else { 0 }
        | if serialized { FLAG_SERIALIZED } else { 0 }
        | if dict.is_some() { FLAG_DICT } else { 0 };
    let mut head = [0u8; MAX_HEADER];
    head[0] = flags;
    let head_len = 1 + varint_into(&mut head[1..], key.bytes.len());
    let value_len = value.len();
    let (prefix_len, value) = match packed {
        Some((_, bytes)) => {
            (dict_len + varint_into(&mut prefix[usize::from(dict_len)..], value.len()), Cow::Owned(bytes))
        }
        None => (dict_len, Cow::Borrowed(value)),
    };
    Ok(Pieces { head, head_len, prefix, prefix_len, value, dict, value_len })
}

/// A stored entry's header, decoded from a live object.
pub(crate) struct Header {
    kind: KeyKind,
    serialized: bool,
    codec: Codec,
    key_start: usize,
    key_len: usize,
    /// The dictionary the value was compressed (or tried) with.
    pub(crate) dict: Option<u32>,
    /// Where the value (or its original-length prefix) starts.
    value_start: usize,
}

impl Header {
    pub(crate) fn read(object: &ObjectRef<'_>) -> Result<Header> {
        let mut buf = [0u8; MAX_HEADER];
        let n = object.len().min(MAX_HEADER);
        object.read(0, &mut buf[..n])?;
        let flags = *buf.first().ok_or(CacheError::Corrupt("empty object"))?;
        let codec = Codec::from_bits(flags & CODEC_MASK).ok_or(CacheError::Corrupt("codec"))?;
        let (key_len, used) = get_varint(&buf[1..n]).ok_or(CacheError::Corrupt("key length"))?;
        let key_start = 1 + used;
        if key_start + key_len > object.len() {
            return Err(CacheError::Corrupt("key length"));
        }
        let kind = if flags & FLAG_STR_KEY != 0 { KeyKind::Str } else { KeyKind::Bytes };
        let mut value_start = key_start + key_len;
        let dict = if flags & FLAG_DICT != 0 {
            let (id, used) = read_varint(object, value_start).ok_or(CacheError::Corrupt("dict id"))?;
            value_start += used;
            Some(u32::try_from(id).map_err(|_| CacheError::Corrupt("dict id"))?)
        } else {
            None
        };
        let serialized = flags & FLAG_SERIALIZED != 0;
        Ok(Header { kind, serialized, codec, key_start, key_len, dict, value_start })
    }

    pub(crate) fn serialized(&self) -> bool {
        self.serialized
    }

    /// The value's length before compression, and where its stored bytes start.
    fn value_extent(&self, object: &ObjectRef<'_>) -> Result<(usize, usize)> {
        if self.codec == Codec::Raw {
            return Ok((object.len() - self.value_start, self.value_start));
        }
        let (orig_len, used) = read_varint(object, self.value_start).ok_or(CacheError::Corrupt("value length"))?;
        Ok((orig_len, self.value_start + used))
    }

    /// The value's bytes before and after compression.
    pub(crate) fn value_sizes(&self, object: &ObjectRef<'_>) -> Result<(usize, usize)> {
        let (orig_len, start) = self.value_extent(object)?;
        Ok((orig_len, object.len() - start))
    }

    /// Whether the stored key is `key`, byte for byte.
    pub(crate) fn key_is(&self, object: &ObjectRef<'_>, key: Key<'_>) -> Result<bool> {
        if self.kind != key.kind || self.key_len != key.bytes.len() {
            return Ok(false);
        }
        let mut stack = [0u8; 64];
        let mut heap;
        let buf = if self.key_len <= stack.len() {
            &mut stack[..self.key_len]
        } else {
            heap = vec![0u8; self.key_len];
            &mut heap[..]
        };
        object.read(self.key_start, buf)?;
        Ok(buf == key.bytes)
    }

    pub(crate) fn key(&self, object: &ObjectRef<'_>) -> Result<OwnedKey> {
        let mut bytes = vec![0u8; self.key_len];
        object.read(self.key_start, &mut bytes)?;
        Ok(OwnedKey { kind: self.kind, bytes })
    }

    /// Key + value bytes before compression, and whether the value is compressed.
    pub(crate) fn payload_len(&self, object: &ObjectRef<'_>) -> Result<(usize, bool)> {
        let (orig_len, _) = self.value_extent(object)?;
        Ok((self.key_len + orig_len, self.codec != Codec::Raw))
    }

    /// The value of this entry, ready to be copied out (`dicts`: the cache's dictionaries,
    /// for a value compressed with one). A compressed value is decompressed by the copy,
    /// straight into the caller's buffer.
    pub(crate) fn value<'a>(&self, object: &'a ObjectRef<'a>, dicts: &DictSet) -> Result<Value<'a>> {
        let (len, start) = self.value_extent(object)?;
        let data = match (self.codec, self.dict) {
            (Codec::Raw, _) => Data::Raw { object, start, len },
            (_, Some(id)) => {
                let dict = dicts.get(id).ok_or(CacheError::Corrupt("dict id"))?;
                Data::Packed { object, start, len, codec: self.codec, dict: Some(dict) }
            }
            (_, None) => Data::Packed { object, start, len, codec: self.codec, dict: None },
        };
        Ok(Value { serialized: self.serialized, data })
    }
}

/// A value lent to a callback while its pool object is locked: copy it out with
/// [`Value::copy_to`] (a raw value is copied straight from the pool's pages, a compressed
/// one decompressed into the destination).
pub struct Value<'a> {
    /// The value was stored as a serializer's output (see the module doc).
    pub serialized: bool,
    data: Data<'a>,
}

enum Data<'a> {
    Raw {
        object: &'a ObjectRef<'a>,
        start: usize,
        len: usize,
    },
    /// `len` is the length once decompressed.
    Packed {
        object: &'a ObjectRef<'a>,
        start: usize,
        len: usize,
        codec: Codec,
        dict: Option<Arc<Dict>>,
    },
}

/// Compressed values up to this many bytes are read off the pool's pages into a stack
/// buffer before decompression (the frames of the small values compression is for).
const STACK_PACKED: usize = 1024;

impl Value<'_> {
    /// The value's length in bytes (decompressed).
    pub fn len(&self) -> usize {
        match &self.data {
            Data::Raw { len, .. } | Data::Packed { len, .. } => *len,
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copy the value into `dst`, which must be exactly [`Value::len`] bytes; a compressed
    /// value that does not decompress to exactly that is [`CacheError::Corrupt`].
    pub fn copy_to(&self, dst: &mut [u8]) -> Result<()> {
        if dst.len() != self.len() {
            return Err(CacheError::Corrupt("copy_to needs a buffer of exactly len() bytes"));
        }
        match &self.data {
            Data::Raw { object, start, .. } => Ok(object.read(*start, dst)?),
            Data::Packed { object, start, codec, dict, .. } => {
                let packed_len = object.len() - start;
                let mut stack = [0u8; STACK_PACKED];
                let mut heap;
                let packed = if packed_len <= STACK_PACKED {
                    &mut stack[..packed_len]
                } else {
                    heap = vec![0u8; packed_len];
                    &mut heap[..]
                };
                object.read(*start, packed)?;
                match dict {
                    Some(dict) => dict.decompress(packed, dst),
                    None => decompress(*codec, packed, dst),
                }
            }
        }
    }

    /// The value as a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut out = vec![0; self.len()];
        self.copy_to(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        for v in [0usize, 1, 127, 128, 16_383, 16_384, MAX_KEY_LEN] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            assert_eq!(get_varint(&buf), Some((v, buf.len())));
            let mut fixed = [0u8; 5];
            assert_eq!(usize::from(varint_into(&mut fixed, v)), buf.len());
            assert_eq!(&fixed[..buf.len()], &buf[..]);
        }
    }

    #[test]
    fn layout_of_a_raw_entry() {
        let key = Key::str("k0000000001");
        let pieces = encode(key, b"value", false, Compression::Lz4, None).unwrap();
        let bytes = pieces.parts(key.bytes).concat();
        assert_eq!(pieces.stored_len(key.bytes.len()), bytes.len());
        assert_eq!(bytes[0], FLAG_STR_KEY);
        assert_eq!(bytes[1], 11);
        assert_eq!(&bytes[2..13], b"k0000000001");
        assert_eq!(&bytes[13..], b"value");
    }
}
