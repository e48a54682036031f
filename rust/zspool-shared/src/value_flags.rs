//! What a stored value is, as the bindings need to know it on the way out. No locks.

/// How the bindings must treat a value: bytes as given, or a serializer's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueFlags(pub(crate) u8);

impl ValueFlags {
    /// The value is the bytes the caller gave.
    pub const RAW: ValueFlags = ValueFlags(0);
    /// The value is a serializer's output (the bindings decode it).
    pub const SERIALIZED: ValueFlags = ValueFlags(1);

    /// Whether the value is a serializer's output.
    pub fn is_serialized(self) -> bool {
        self.0 & 1 != 0
    }

    /// The flag bits, as stored.
    pub fn bits(self) -> u8 {
        self.0
    }
}
