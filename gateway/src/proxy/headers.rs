//! Header rewriting between client and upstream (RFC 9110 §7.6.1 hop-by-hop fields).

use std::fmt::Write as _;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

mod added;

pub use added::Added;

/// `X-Forwarded-For`
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Request-Id`
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `X-Cell`
pub static X_CELL: HeaderName = HeaderName::from_static("x-cell");
/// `traceparent` (W3C Trace Context)
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// `X-Priority`: `critical`, `normal` or `batch`, for load shedding.
pub static X_PRIORITY: HeaderName = HeaderName::from_static("x-priority");
/// `Idempotency-Key`: marks a non-idempotent request as safe to retry.
pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `X-Request-Deadline-Ms`: the remaining time budget of a request, in milliseconds.
pub static X_REQUEST_DEADLINE_MS: HeaderName = HeaderName::from_static("x-request-deadline-ms");

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The client of one connection, its address formatted once for `X-Forwarded-For`: every
/// request on a keep-alive connection comes from the same address, and formatting it anew
/// each time cost about a tenth of the gateway's own work per request.
#[derive(Clone, Debug)]
pub struct Client {
    ip: IpAddr,
    forwarded_for: Option<HeaderValue>,
}

impl Client {
    /// The client at `ip`.
    pub fn new(ip: IpAddr) -> Client {
        Client {
            ip,
            forwarded_for: HeaderValue::from_str(&ip.to_string()).ok(),
        }
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

/// Removes hop-by-hop fields: the fixed set plus every field the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass comparing the names they have is cheaper than
    // hashing each of the nine names to look it up.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        // Collect first: the names borrow from the map we are about to mutate. Rare path.
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    for name in FIXED_HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The hop-by-hop fields every message loses (RFC 9110 §7.6.1, plus the legacy ones), besides
/// `Connection` and what it names.
static FIXED_HOP_BY_HOP: [&HeaderName; 8] = [
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &PROXY_AUTHENTICATE,
    &PROXY_AUTHORIZATION,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION || FIXED_HOP_BY_HOP.contains(&name)
}

/// Appends the client address to `X-Forwarded-For` and sets `X-Forwarded-Proto`.
///
/// A chain sent on several field lines is one list (RFC 9110 §5.3): the lines are joined, in
/// order, so that no hop is lost. Lines that are not visible ASCII or are empty are dropped.
/// The proto is overwritten, not trusted: at the edge, a client-supplied value is a lie
/// the upstream must not act on.
pub fn add_forwarded(headers: &mut HeaderMap, client: &Client) {
    let mut chain = String::new();
    for line in forwarded_lines(headers) {
        chain.push_str(line);
        chain.push_str(", ");
    }
    let value = if chain.is_empty() {
        // The usual case, on every request: the connection's value, shared.
        client.forwarded_for.clone()
    } else {
        let _ = write!(chain, "{}", client.ip);
        HeaderValue::from_str(&chain).ok()
    };
    if let Some(value) = value {
        headers.insert(&X_FORWARDED_FOR, value);
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// The `X-Forwarded-For` lines a request carries that can go on: in order (a chain sent on
/// several lines is one list, RFC 9110 §5.3), each trimmed, without the empty ones and those
/// that are not visible ASCII. Both ways of forwarding ([`add_forwarded`], [`Added`]) join
/// these and end the chain with the client's address.
pub(crate) fn forwarded_lines(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Writes one field line, `name: value` and CRLF. `HeaderName` and `HeaderValue` reject CR
/// and LF, and so do the values [`Added`] writes, so nothing can be smuggled in here.
pub(crate) fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Bytes the request's header fields occupy on the wire (name, value, `": "` and CRLF).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn strips_fixed_and_connection_named_fields() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["x-keep"], "yes");
        // Each fixed name alone is found, whatever its case on the wire.
        for name in [
            "Keep-Alive",
            "proxy-connection",
            "Proxy-Authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "upgrade",
            "transfer-encoding",
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            h.insert("x-keep", HeaderValue::from_static("yes"));
            strip_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{name}: {h:?}");
        }
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        let client = |ip: &str| Client::new(ip.parse().unwrap());
        add_forwarded(&mut h, &client("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        add_forwarded(&mut h, &client("10.0.0.2"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1, 10.0.0.2");
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let v6 = client("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
        add_forwarded(&mut h, &v6);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "10.0.0.1, 10.0.0.2, 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        h.remove(&X_FORWARDED_FOR);
        add_forwarded(&mut h, &v6);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        add_forwarded(&mut h, &client("::1"));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(
            h[&X_FORWARDED_FOR],
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff, ::1"
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
    }

    #[test]
    fn a_chain_sent_on_several_lines_keeps_every_hop() {
        let mut h = HeaderMap::new();
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.1, 198.51.100.2"),
        );
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static(" "));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.3"));
        add_forwarded(&mut h, &Client::new("10.0.0.1".parse().unwrap()));
        let lines: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
        assert_eq!(
            lines,
            ["198.51.100.1, 198.51.100.2, 198.51.100.3, 10.0.0.1"],
            "one line, every hop in order, the blank and the non-ASCII line dropped"
        );
    }
}
