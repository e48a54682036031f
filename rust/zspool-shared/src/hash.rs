//! The key hash: fixed (no per-process seed), since every process must put a key in the same
//! shard and slot. Not DoS-resistant; whoever can write keys can write the file anyway.
//! No locks.

const K: u64 = 0x9E37_79B9_7F4A_7C15;

pub(crate) struct Hasher(u64);

impl Hasher {
    pub(crate) fn new() -> Hasher {
        Hasher(0x243F_6A88_85A3_08D3)
    }

    pub(crate) fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(K).rotate_left(29);
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    /// murmur3's finalizer: every input bit reaches every output bit.
    pub(crate) fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// The hash of a key (its kind included: a str and a bytes key never collide by design).
pub(crate) fn key_hash(kind: u8, bytes: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.write_u64(u64::from(kind) << 32 | bytes.len() as u64);
    h.write(bytes);
    h.finish()
}
