//! `X-Request-Id`: kept when the client sent a sane one, generated otherwise.

use http::HeaderValue;

/// Longest client-supplied request id we keep.
const MAX_LEN: usize = 128;

/// The request id to use: the client's if it is 1..=128 visible ASCII bytes, else a new one.
pub fn request_id(client: Option<&HeaderValue>) -> HeaderValue {
    match client {
        Some(v) if is_sane(v.as_bytes()) => v.clone(),
        _ => generate(),
    }
}

fn is_sane(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A random 128-bit id as 32 lowercase hex digits.
pub fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    hex_into(fastrand::u128(..).to_be_bytes().as_slice(), &mut buf);
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}

/// Writes `bytes` as lowercase hex into `out` (which must be twice as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let sane = HeaderValue::from_static("req-123");
        assert_eq!(request_id(Some(&sane)), sane);
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap_or(sane.clone());
        assert_eq!(request_id(Some(&long)).len(), 32);
        let spaced = HeaderValue::from_static("a b");
        assert_eq!(request_id(Some(&spaced)).len(), 32);
        let a = request_id(None);
        let b = request_id(None);
        assert_ne!(a, b);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
    }
}
