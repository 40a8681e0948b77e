//! A tracked key's bytes, kept inside its state: inline when short, boxed otherwise.
//!
//! A lookup confirms the key of the state it found by comparing bytes. Inline bytes sit on the
//! state's key line, which the lookup reads anyway, so the comparison costs no extra memory
//! access; a boxed key is one more dependent cache miss per lookup of a key not in cache. Most
//! keys (addresses, user ids, UUIDs) fit inline.

/// Longest key stored inline; chosen so that the key line of [`KeyState`](crate::state) is
/// one cache line (checked by a test there).
pub(crate) const INLINE: usize = 46;

/// The bytes of a key.
pub(crate) enum KeyBytes {
    /// `bytes[..len]`.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    pub(crate) fn new(key: &[u8]) -> Self {
        match u8::try_from(key.len()) {
            Ok(len) if key.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..key.len()].copy_from_slice(key);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(Box::from(key)),
        }
    }

    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes().escape_ascii().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_inline_and_long_ones_boxed() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 300] {
            let key: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let stored = KeyBytes::new(&key);
            assert_eq!(stored.as_bytes(), &key[..]);
            assert_eq!(matches!(stored, KeyBytes::Inline { .. }), len <= INLINE);
        }
        assert_eq!(size_of::<KeyBytes>(), 48);
    }
}
