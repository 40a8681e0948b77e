//! [`Added`]: the fields the gateway adds to a request it forwards, written with its head.

use http::{HeaderMap, HeaderName, HeaderValue};

use super::{
    Client, TRACEPARENT, X_CELL, X_FORWARDED_FOR, X_FORWARDED_PROTO, X_REQUEST_DEADLINE_MS,
    X_REQUEST_ID, forwarded_lines, put_field,
};
use crate::proxy::trace_context::TraceParent;

/// The fields the gateway adds to a request it forwards to a cell: `X-Forwarded-For` (the
/// client's address appended to the chain the client sent), `X-Forwarded-Proto`,
/// `X-Request-Id`, `X-Cell`, `traceparent` and `X-Request-Deadline-Ms`. A field the client
/// sent by one of these names is replaced, never passed on: at the edge, a client-supplied
/// proto, cell or deadline is a lie the upstream must not act on.
///
/// They are written with the request head ([`write_fields`](Self::write_fields)) rather than
/// inserted into the request's header map: an insert hashes the name and probes the map, and
/// the six of them, with their values' allocations, were about a tenth of the gateway's
/// user-space instructions per proxied request.
#[derive(Clone, Copy, Debug)]
pub struct Added<'a> {
    client: &'a Client,
    request_id: &'a HeaderValue,
    cell: &'a HeaderValue,
    trace: &'a TraceParent,
    deadline_ms: u64,
}

/// What becomes of a request's own field when [`Added`] fields go with it.
enum Own {
    Kept,
    Replaced,
    ForwardedFor,
}

impl<'a> Added<'a> {
    /// The fields for a request from `client`, served by `cell`, with `deadline_ms` left.
    pub fn new(
        client: &'a Client,
        request_id: &'a HeaderValue,
        cell: &'a HeaderValue,
        trace: &'a TraceParent,
        deadline_ms: u64,
    ) -> Added<'a> {
        Added {
            client,
            request_id,
            cell,
            trace,
            deadline_ms,
        }
    }

    /// The same fields with another time budget (a retry has less left).
    pub fn with_deadline_ms(self, deadline_ms: u64) -> Added<'a> {
        Added {
            deadline_ms,
            ..self
        }
    }

    /// Writes `headers` as `name: value` lines, less the fields these replace, then these.
    ///
    /// A chain the client sent on several field lines is one list (RFC 9110 §5.3): its lines
    /// are joined, in order, so that no hop is lost, and the client's address ends it. Lines
    /// that are not visible ASCII or are empty are dropped.
    pub fn write_fields(&self, headers: &HeaderMap, out: &mut Vec<u8>) {
        let mut chain_written = false;
        for (name, value) in headers {
            match own(name) {
                Own::Kept => put_field(out, name.as_str().as_bytes(), value.as_bytes()),
                Own::Replaced => {}
                Own::ForwardedFor if chain_written => {}
                Own::ForwardedFor => {
                    // All its lines at once, in order (which `get_all` promises; the order of
                    // a map's iteration is not), where the first one was.
                    self.write_chain(Some(headers), out);
                    chain_written = true;
                }
            }
        }
        if !chain_written {
            self.write_chain(None, out);
        }
        put_field(out, X_FORWARDED_PROTO.as_str().as_bytes(), b"http");
        put_field(
            out,
            X_REQUEST_ID.as_str().as_bytes(),
            self.request_id.as_bytes(),
        );
        put_field(out, X_CELL.as_str().as_bytes(), self.cell.as_bytes());
        put_field(out, TRACEPARENT.as_str().as_bytes(), &self.trace.encode());
        let mut digits = [0u8; 20];
        put_field(
            out,
            X_REQUEST_DEADLINE_MS.as_str().as_bytes(),
            decimal(self.deadline_ms, &mut digits),
        );
    }

    /// `X-Forwarded-For`: the usable hops the client `sent`, then the client's address.
    fn write_chain(&self, sent: Option<&HeaderMap>, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(X_FORWARDED_FOR.as_str().as_bytes());
        out.extend_from_slice(b": ");
        let prefix_end = out.len();
        let hops = sent
            .into_iter()
            .flat_map(forwarded_lines)
            .map(str::as_bytes)
            .chain(
                self.client
                    .forwarded_for
                    .as_ref()
                    .map(HeaderValue::as_bytes),
            );
        for (i, hop) in hops.enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(hop);
        }
        if out.len() == prefix_end {
            // Nothing to say: no field rather than an empty one.
            out.truncate(start);
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Which of the [`Added`] fields `name` is, if any. By length first: a request's fields are
/// mostly other names, and most of those differ in length from all six.
fn own(name: &HeaderName) -> Own {
    let added: &HeaderName = match name.as_str().len() {
        6 => &X_CELL,
        11 => &TRACEPARENT,
        12 => &X_REQUEST_ID,
        15 => &X_FORWARDED_FOR,
        17 => &X_FORWARDED_PROTO,
        21 => &X_REQUEST_DEADLINE_MS,
        _ => return Own::Kept,
    };
    if name != added {
        Own::Kept
    } else if name == X_FORWARDED_FOR {
        Own::ForwardedFor
    } else {
        Own::Replaced
    }
}

/// `n` in decimal, in the end of `buf`.
fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The lines `write_fields` wrote, as (name, value) pairs.
    fn written(added: &Added<'_>, headers: &HeaderMap) -> Vec<(String, String)> {
        let mut out = Vec::new();
        added.write_fields(headers, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n"), "{text:?}");
        text.trim_end_matches("\r\n")
            .split("\r\n")
            .map(|line| {
                let (name, value) = line.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    fn pairs(lines: &[(&str, &str)]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// What the fields of a request from 10.0.0.1, id `req-1`, to `cell-2` borrow.
    struct Request {
        client: Client,
        id: HeaderValue,
        cell: HeaderValue,
        trace: TraceParent,
    }

    impl Request {
        fn new() -> Request {
            Request {
                client: Client::new("10.0.0.1".parse().unwrap()),
                id: HeaderValue::from_static("req-1"),
                cell: HeaderValue::from_static("cell-2"),
                trace: TraceParent::parse(&HeaderValue::from_static(TRACE)).unwrap(),
            }
        }

        fn added(&self, deadline_ms: u64) -> Added<'_> {
            Added::new(&self.client, &self.id, &self.cell, &self.trace, deadline_ms)
        }
    }

    #[test]
    fn added_fields_follow_the_requests_own() {
        let request = Request::new();
        let added = request.added(0);
        let mut h = HeaderMap::new();
        h.insert("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        assert_eq!(
            written(&added, &h),
            pairs(&[
                ("x-a", "1"),
                ("x-a", "2"),
                ("accept", "*/*"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-forwarded-proto", "http"),
                ("x-request-id", "req-1"),
                ("x-cell", "cell-2"),
                ("traceparent", TRACE),
                ("x-request-deadline-ms", "0"),
            ])
        );
        let later = added.with_deadline_ms(18_446_744_073_709_551_615);
        assert_eq!(
            written(&later, &HeaderMap::new()).last().unwrap().1,
            "18446744073709551615"
        );
    }

    #[test]
    fn added_fields_replace_what_the_client_sent() {
        let request = Request::new();
        let added = request.added(250);
        let mut h = HeaderMap::new();
        // Same lengths as the added names, other names: kept.
        h.insert("x-cely", HeaderValue::from_static("kept"));
        h.insert("x-request-ix", HeaderValue::from_static("kept"));
        h.insert("tracestate1", HeaderValue::from_static("kept"));
        for name in [
            "x-cell",
            "traceparent",
            "x-request-id",
            "x-forwarded-proto",
            "x-request-deadline-ms",
        ] {
            h.append(name, HeaderValue::from_static("forged"));
            h.append(name, HeaderValue::from_static("forged again"));
        }
        let lines = written(&added, &h);
        assert!(
            !lines.iter().any(|(_, v)| v.starts_with("forged")),
            "{lines:?}"
        );
        assert_eq!(lines.iter().filter(|(_, v)| v == "kept").count(), 3);
        assert_eq!(lines.len(), 9, "{lines:?}");
        assert!(lines.contains(&("x-forwarded-proto".into(), "http".into())));
        assert!(lines.contains(&("x-request-deadline-ms".into(), "250".into())));
    }

    #[test]
    fn the_client_address_ends_the_chain_it_sent() {
        let request = Request::new();
        let added = request.added(1);
        let chain = |h: &HeaderMap| {
            let lines = written(&added, h);
            let xff: Vec<_> = lines
                .iter()
                .filter(|(n, _)| n == "x-forwarded-for")
                .map(|(_, v)| v.clone())
                .collect();
            (xff, lines)
        };

        // Several lines, a blank and a non-ASCII one among them, and fields on either side.
        let mut h = HeaderMap::new();
        h.insert("x-before", HeaderValue::from_static("b"));
        h.append(
            &X_FORWARDED_FOR,
            HeaderValue::from_static("198.51.100.1, 198.51.100.2"),
        );
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static(" "));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_bytes(b"\xff").unwrap());
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static(" 198.51.100.3 "));
        h.insert("x-after", HeaderValue::from_static("a"));
        let (xff, lines) = chain(&h);
        assert_eq!(
            xff,
            ["198.51.100.1, 198.51.100.2, 198.51.100.3, 10.0.0.1"],
            "one line, every hop in order, the blank and the non-ASCII line dropped"
        );
        assert!(lines.contains(&("x-before".into(), "b".into())));
        assert!(lines.contains(&("x-after".into(), "a".into())));

        // The chain as the map's last field: closed after the loop.
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.1"));
        assert_eq!(chain(&h).0, ["198.51.100.1, 10.0.0.1"]);

        // Nothing usable in it: the client's address alone.
        let mut h = HeaderMap::new();
        h.insert(&X_FORWARDED_FOR, HeaderValue::from_static(""));
        h.insert("x-after", HeaderValue::from_static("a"));
        assert_eq!(chain(&h).0, ["10.0.0.1"]);
    }
}
