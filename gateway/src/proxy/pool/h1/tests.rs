//! Framing tests: heads, body rules, chunked decoding, request framing.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::proxy::headers::Client;
use crate::proxy::trace_context::TraceParent;

fn parse(bytes: &[u8], method: &Method) -> (Result<Option<ResponseHead>, ProtocolError>, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let head = parse_response(&mut buf, method);
    (head, buf)
}

#[test]
fn a_head_is_parsed_and_consumed_and_the_body_left() {
    let (head, rest) = parse(
        b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
        &Method::GET,
    );
    let head = head.unwrap().unwrap();
    assert_eq!(head.response.status(), 201);
    assert_eq!(head.body, BodyKind::Length(5));
    assert!(head.keep_alive);
    let values: Vec<_> = head.response.headers().get_all("x-a").iter().collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(&rest[..], b"hello");
}

#[test]
fn an_incomplete_head_needs_more_and_consumes_nothing() {
    let (head, rest) = parse(b"HTTP/1.1 200 OK\r\nContent-Le", &Method::GET);
    assert!(head.unwrap().is_none());
    assert_eq!(rest.len(), 27);
}

#[test]
fn informational_responses_are_skipped() {
    let (head, rest) = parse(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        &Method::POST,
    );
    assert_eq!(head.unwrap().unwrap().response.status(), 200);
    assert_eq!(&rest[..], b"ok");
    let (head, _) = parse(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", &Method::GET);
    assert_eq!(head.unwrap_err(), ProtocolError::Upgrade);
}

#[test]
fn body_framing_follows_rfc_9112() {
    let kind = |head: &[u8], method: &Method| {
        let (parsed, _) = parse(head, method);
        parsed.map(|h| h.map(|h| (h.body, h.keep_alive)))
    };
    let ok = |k, ka| Ok(Some((k, ka)));
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            &Method::HEAD
        ),
        ok(BodyKind::Empty, true)
    );
    assert_eq!(
        kind(b"HTTP/1.1 204 No Content\r\n\r\n", &Method::GET),
        ok(BodyKind::Empty, true)
    );
    assert_eq!(
        kind(b"HTTP/1.1 304 Not Modified\r\n\r\n", &Method::GET),
        ok(BodyKind::Empty, true)
    );
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Chunked, false)
    );
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Chunked, true)
    );
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Eof, false)
    );
    assert_eq!(
        kind(b"HTTP/1.1 200 OK\r\n\r\n", &Method::GET),
        ok(BodyKind::Eof, false)
    );
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Empty, false)
    );
    assert_eq!(
        kind(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Length(1), false)
    );
    assert_eq!(
        kind(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\nContent-Length: 4\r\n\r\n",
            &Method::GET
        ),
        ok(BodyKind::Length(4), true)
    );
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ] {
        assert_eq!(kind(bad, &Method::GET), Err(ProtocolError::ContentLength));
    }
}

#[test]
fn chunked_with_te_drops_content_length() {
    let (head, _) = parse(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        &Method::GET,
    );
    assert!(
        !head
            .unwrap()
            .unwrap()
            .response
            .headers()
            .contains_key(CONTENT_LENGTH)
    );
}

#[test]
fn oversized_or_malformed_heads_are_refused() {
    let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    big.resize(MAX_HEAD_BYTES + 1, b'a');
    assert_eq!(
        parse(&big, &Method::GET).0.unwrap_err(),
        ProtocolError::HeadTooLarge
    );
    // Complete in one read, but still too large.
    big.extend_from_slice(b"\r\n\r\n");
    assert_eq!(
        parse(&big, &Method::GET).0.unwrap_err(),
        ProtocolError::HeadTooLarge
    );
    // Just under the limit parses, and field values are where they were.
    let mut edge = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    edge.resize(MAX_HEAD_BYTES - 10, b'a');
    edge.extend_from_slice(b"\r\nY: z\r\n\r\n");
    assert_eq!(edge.len(), MAX_HEAD_BYTES);
    let head = parse(&edge, &Method::GET).0.unwrap().unwrap();
    assert_eq!(head.response.headers()["y"], "z");
    assert!(matches!(
        parse(b"HTTP/1.1 2x0 OK\r\n\r\n", &Method::GET).0,
        Err(ProtocolError::Head(_))
    ));
    assert!(matches!(
        parse(b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", &Method::GET).0,
        Err(ProtocolError::Head(_))
    ));
}

fn decode_all(wire: &[u8], split: usize) -> Result<(Vec<u8>, BytesMut), ProtocolError> {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => body.extend_from_slice(&d),
            Decoded::End => return Ok((body, buf)),
            Decoded::NeedMore => {
                assert!(fed < wire.len(), "ran out of input");
                let end = (fed + split).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn chunked_bodies_decode_whatever_the_read_boundaries() {
    let wire = b"5;ext=1\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
    for split in [1, 2, 3, 7, wire.len()] {
        let (body, rest) = decode_all(wire, split).unwrap();
        assert_eq!(body, b"hello, chunked!", "split {split}");
        // Bytes after the body stay for the next response (fed in pieces, some may not
        // have been fed yet).
        assert!(b"NEXT".starts_with(&rest), "split {split}");
        if split == wire.len() {
            assert_eq!(&rest[..], b"NEXT");
        }
    }
}

#[test]
fn malformed_chunks_are_refused() {
    for bad in [
        &b"5\r\nhelloXX0\r\n\r\n"[..],
        b"z\r\n",
        b"\r\n",
        b"11111111111111111\r\n",
    ] {
        assert!(
            matches!(decode_all(bad, bad.len()), Err(ProtocolError::Chunked(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = vec![b'1'; MAX_CHUNK_LINE + 10];
    assert!(matches!(
        decode_all(&long, long.len()),
        Err(ProtocolError::Chunked(_))
    ));
}

#[test]
fn request_framing_follows_hyper() {
    let mut h = HeaderMap::new();
    h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    assert_eq!(
        request_framing(&Method::POST, &mut h, true, Some(0)),
        Ok(RequestFraming::Empty)
    );
    assert!(!h.contains_key(TRANSFER_ENCODING));
    assert_eq!(
        request_framing(&Method::POST, &mut h, false, Some(7)),
        Ok(RequestFraming::Length(7))
    );
    assert_eq!(h[CONTENT_LENGTH], "7");
    assert_eq!(
        request_framing(&Method::POST, &mut h, false, None),
        Ok(RequestFraming::Length(7))
    );
    h.clear();
    assert_eq!(
        request_framing(&Method::GET, &mut h, false, None),
        Ok(RequestFraming::Empty)
    );
    assert_eq!(
        request_framing(&Method::PUT, &mut h, false, None),
        Ok(RequestFraming::Chunked)
    );
    assert_eq!(h[TRANSFER_ENCODING], "chunked");
    h.clear();
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("x"));
    assert_eq!(
        request_framing(&Method::PUT, &mut h, false, None),
        Err(ProtocolError::RequestLength)
    );
}

#[test]
fn heads_are_encoded_origin_form_with_host() {
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    let host = HeaderValue::from_static("up:81");
    let mut out = Vec::new();
    encode_head(
        &Method::GET,
        &"/p?q=1".parse().unwrap(),
        &h,
        &host,
        None,
        &mut out,
    );
    assert_eq!(out, b"GET /p?q=1 HTTP/1.1\r\nhost: up:81\r\nx-a: 1\r\n\r\n");
    out.clear();
    h.insert(HOST, HeaderValue::from_static("client.example"));
    encode_head(&Method::DELETE, &Uri::default(), &h, &host, None, &mut out);
    assert_eq!(
        out,
        b"DELETE / HTTP/1.1\r\nx-a: 1\r\nhost: client.example\r\n\r\n"
    );
}

#[test]
fn heads_with_added_fields_keep_host_first_and_the_added_last() {
    let client = Client::new("10.0.0.1".parse().unwrap());
    let id = HeaderValue::from_static("req-1");
    let cell = HeaderValue::from_static("cell-2");
    let trace = TraceParent::new_root(true);
    let added = Added::new(&client, &id, &cell, &trace, 7);
    let mut h = HeaderMap::new();
    h.insert("x-a", HeaderValue::from_static("1"));
    h.insert("x-cell", HeaderValue::from_static("forged"));
    let mut out = Vec::new();
    encode_head(
        &Method::GET,
        &"/p".parse().unwrap(),
        &h,
        &HeaderValue::from_static("up:81"),
        Some(&added),
        &mut out,
    );
    let text = String::from_utf8(out).unwrap();
    let want = format!(
        "GET /p HTTP/1.1\r\nhost: up:81\r\nx-a: 1\r\nx-forwarded-for: 10.0.0.1\r\n\
         x-forwarded-proto: http\r\nx-request-id: req-1\r\nx-cell: cell-2\r\n\
         traceparent: {}\r\nx-request-deadline-ms: 7\r\n\r\n",
        trace.to_header().to_str().unwrap()
    );
    assert_eq!(text, want);
}

#[test]
fn chunk_headers_are_hex() {
    for (len, want) in [(0, &b"0\r\n"[..]), (10, b"a\r\n"), (4096, b"1000\r\n")] {
        let mut out = Vec::new();
        chunk_header(len, &mut out);
        assert_eq!(out, want);
    }
}

#[test]
fn common_field_names_parse_as_the_general_parser_does() {
    for raw in [
        &b"Date"[..],
        b"date",
        b"Connection",
        b"CONTENT-TYPE",
        b"Content-Length",
        b"transfer-Encoding",
        // Same lengths as a common name, but another name or not a name at all.
        b"etag",
        b"x-trace-id",
        b"content-typf",
        b"content-lengtx",
        b"transfer encoding",
        b"dat\xc9",
        b"Server",
        b"x-custom-field",
    ] {
        let expected = HeaderName::from_bytes(raw).ok();
        assert_eq!(field_name(raw), expected, "{}", raw.escape_ascii());
    }
}
