//! W3C Trace Context (`traceparent`) propagation.

use http::HeaderValue;

use super::request_id::hex_into;

/// A parsed or generated `traceparent`: version 00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    /// 16-byte trace id, never all zero.
    pub trace_id: [u8; 16],
    /// 8-byte id of the calling span, never all zero.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// [`parse`](Self::parse) of a stored string.
    pub fn parse_str(value: &str) -> Option<TraceParent> {
        HeaderValue::from_str(value)
            .ok()
            .as_ref()
            .and_then(Self::parse)
    }

    /// Parses a `traceparent` header value; `None` if it is malformed (then a new trace starts,
    /// as the W3C spec requires).
    pub fn parse(value: &HeaderValue) -> Option<TraceParent> {
        let v = value.as_bytes();
        // 00-<32 hex>-<16 hex>-<2 hex>; future versions may append fields after a '-'.
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = parse_hex::<1>(&v[0..2])?[0];
        if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let trace_id = parse_hex::<16>(&v[3..35])?;
        let span_id = parse_hex::<8>(&v[36..52])?;
        let flags = parse_hex::<1>(&v[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new root context with random ids.
    pub fn new_root(sampled: bool) -> TraceParent {
        TraceParent {
            trace_id: nonzero(|| fastrand::u128(..).to_be_bytes()),
            span_id: nonzero(|| fastrand::u64(..).to_be_bytes()),
            flags: u8::from(sampled),
        }
    }

    /// The context to send downstream: same trace, a new span id for the gateway's hop.
    pub fn child(&self) -> TraceParent {
        TraceParent {
            span_id: nonzero(|| fastrand::u64(..).to_be_bytes()),
            ..*self
        }
    }

    /// The header value, `00-<trace>-<span>-<flags>`.
    pub fn to_header(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.encode()).unwrap_or(HeaderValue::from_static(""))
    }

    /// The header value's bytes.
    pub fn encode(&self) -> [u8; 55] {
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut buf[3..35]);
        hex_into(&self.span_id, &mut buf[36..52]);
        hex_into(&[self.flags], &mut buf[53..55]);
        buf
    }
}

fn nonzero<const N: usize>(mut f: impl FnMut() -> [u8; N]) -> [u8; N] {
    loop {
        let v = f();
        if v != [0; N] {
            return v;
        }
    }
}

fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = lower_hex(pair[0])? << 4 | lower_hex(pair[1])?;
    }
    Some(out)
}

// The spec allows lowercase hex only.
fn lower_hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips_and_makes_children() {
        let tp = TraceParent::parse(&HeaderValue::from_static(SAMPLE)).unwrap();
        assert_eq!(tp.to_header(), SAMPLE);
        let child = tp.child();
        assert_eq!(child.trace_id, tp.trace_id);
        assert_ne!(child.span_id, tp.span_id);
        assert_eq!(child.flags, 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(
                TraceParent::parse(&HeaderValue::from_static(bad)).is_none(),
                "{bad}"
            );
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(TraceParent::parse(&HeaderValue::from_static(future)).is_some());
    }

    #[test]
    fn roots_are_valid() {
        let root = TraceParent::new_root(true);
        let parsed = TraceParent::parse(&root.to_header()).unwrap();
        assert_eq!(parsed, root);
    }
}
