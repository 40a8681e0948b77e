//! HTTP/1.1 framing for the upstream client: request heads out, response heads and bodies in
//! (RFC 9112). Pure functions over buffers; the socket work is in [`super::conn`].
//!
//! Only what a proxy's client side needs: no upgrades, no pipelining, trailers dropped.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};

use crate::proxy::headers::{Added, put_field};

/// Most header fields accepted in a response head (hyper's default).
const MAX_HEADERS: usize = 100;
/// Largest response head accepted (64 KiB less one, so offsets into it fit in a `u16`); an
/// upstream sending more is broken.
pub const MAX_HEAD_BYTES: usize = u16::MAX as usize;
/// Longest chunk-size line (size, extensions, CRLF) and longest trailer section accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Fields the gateway adds to a response on its way to the client (`X-Cell`, `X-Request-Id`,
/// `RateLimit-Policy`, `RateLimit`): the parsed map has room for them, so adding them does
/// not grow it.
const RESPONSE_ROOM: usize = 4;
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// An upstream broke HTTP/1.1 framing. Never shown to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The response head did not parse.
    #[error("invalid response head: {0}")]
    Head(&'static str),
    /// The response head exceeded [`MAX_HEAD_BYTES`].
    #[error("response head too large")]
    HeadTooLarge,
    /// `Content-Length` was not a number, or several values disagreed.
    #[error("invalid content-length")]
    ContentLength,
    /// A chunked body was malformed.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// `101 Switching Protocols`: the gateway strips `Upgrade`, so it never asked for one.
    #[error("unexpected 101 switching protocols")]
    Upgrade,
    /// The request's `Content-Length` was not a number.
    #[error("invalid request content-length")]
    RequestLength,
}

/// How a request body goes on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Chooses the framing of a request body and makes the headers say so, by hyper's client rules:
/// a `Content-Length` the request carries is kept; a body of known size gets one; a body of
/// unknown size is chunked, except on GET, HEAD and CONNECT, which are sent without one.
///
/// `Transfer-Encoding` has been stripped as hop-by-hop before this is called.
///
/// # Errors
/// [`ProtocolError::RequestLength`] for a `Content-Length` that is not a number.
pub fn request_framing(
    method: &Method,
    headers: &mut HeaderMap,
    end_stream: bool,
    exact: Option<u64>,
) -> Result<RequestFraming, ProtocolError> {
    headers.remove(TRANSFER_ENCODING);
    if end_stream {
        return Ok(RequestFraming::Empty);
    }
    if let Some(value) = headers.get(CONTENT_LENGTH) {
        return parse_length(value.as_bytes())
            .map(RequestFraming::Length)
            .ok_or(ProtocolError::RequestLength);
    }
    if let Some(len) = exact {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        return Ok(RequestFraming::Length(len));
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
        return Ok(RequestFraming::Empty);
    }
    headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    Ok(RequestFraming::Chunked)
}

/// Writes the request line and header block, origin-form (authority-form for CONNECT),
/// adding `host` when the request has no `Host`, and the `added` fields.
pub fn encode_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    host: &HeaderValue,
    added: Option<&Added<'_>>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    if *method == Method::CONNECT {
        out.extend_from_slice(uri.authority().map_or("", |a| a.as_str()).as_bytes());
    } else {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        out.extend_from_slice(if target.is_empty() {
            b"/"
        } else {
            target.as_bytes()
        });
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        put_field(out, HOST.as_str().as_bytes(), host.as_bytes());
    }
    match added {
        Some(added) => added.write_fields(headers, out),
        None => {
            for (name, value) in headers {
                put_field(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes the size line that comes before a chunk of `len` bytes.
pub fn chunk_header(len: usize, out: &mut Vec<u8>) {
    // At most 16 hex digits for a usize, plus CRLF.
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body: the last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (HEAD, 1xx, 204, 304, or `Content-Length: 0`).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// Status, version and headers; the body is added by the caller.
    pub response: Response<()>,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the connection can carry another request after this response.
    pub keep_alive: bool,
}

/// Parses a response head from the front of `buf`, consuming it; informational (1xx)
/// responses are consumed and skipped. `Ok(None)`: more bytes are needed.
///
/// # Errors
/// See [`ProtocolError`].
pub fn parse_response(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, ProtocolError> {
    loop {
        // Uninitialised: zeroing 100 fields costs more than parsing a small head.
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
            Ok(httparse::Status::Complete(_)) => return Err(ProtocolError::HeadTooLarge),
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ProtocolError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ProtocolError::HeadTooLarge),
            Err(e) => return Err(ProtocolError::Head(head_error(e))),
        };
        let code = parsed.code.unwrap_or_default();
        let status =
            StatusCode::from_u16(code).map_err(|_| ProtocolError::Head("invalid status"))?;
        let version = if parsed.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProtocolError::Upgrade);
        }
        if status.is_informational() {
            // 100 Continue and friends: the final response follows.
            let _ = buf.split_to(len);
            continue;
        }
        // Field positions, so that values can share the head's memory once it is split off.
        let base = buf.as_ptr() as usize;
        // A head is at most MAX_HEAD_BYTES: offsets fit in u16.
        let mut spans = [[0u16; 4]; MAX_HEADERS];
        let count = parsed.headers.len();
        for (span, field) in spans.iter_mut().zip(parsed.headers.iter()) {
            let name = field.name.as_ptr() as usize - base;
            let value = field.value.as_ptr() as usize - base;
            *span = [
                name,
                name + field.name.len(),
                value,
                value + field.value.len(),
            ]
            .map(|at| u16::try_from(at).unwrap_or(u16::MAX));
        }
        let head = buf.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count + RESPONSE_ROOM);
        for span in &spans[..count] {
            let [n0, n1, v0, v1] = span.map(usize::from);
            let name = head
                .get(n0..n1)
                .and_then(field_name)
                .ok_or(ProtocolError::Head("invalid header name"))?;
            let value = (v1 <= head.len())
                .then(|| HeaderValue::from_maybe_shared(head.slice(v0..v1)).ok())
                .flatten()
                .ok_or(ProtocolError::Head("invalid header value"))?;
            headers.append(name, value);
        }
        let (body, keep_alive) = body_kind(method, status, version, &mut headers)?;
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(ResponseHead {
            response,
            body,
            keep_alive,
        }));
    }
}

/// A response field's name. The ones nearly every response carries are matched by length and
/// a case-insensitive compare: `HeaderName::from_bytes` lower-cases every name into a scratch
/// buffer and then matches it against every standard name, ~250 instructions a field.
fn field_name(raw: &[u8]) -> Option<HeaderName> {
    let common = match raw.len() {
        4 => &DATE,
        10 => &CONNECTION,
        12 => &CONTENT_TYPE,
        14 => &CONTENT_LENGTH,
        17 => &TRANSFER_ENCODING,
        _ => return HeaderName::from_bytes(raw).ok(),
    };
    if raw.eq_ignore_ascii_case(common.as_str().as_bytes()) {
        Some(common.clone())
    } else {
        HeaderName::from_bytes(raw).ok()
    }
}

fn head_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Version => "invalid version",
        _ => "malformed",
    }
}

/// RFC 9112 §6.3, for a response to `method`.
fn body_kind(
    method: &Method,
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
) -> Result<(BodyKind, bool), ProtocolError> {
    let mut keep_alive = version == Version::HTTP_11
        && !headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"close"));
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((BodyKind::Empty, keep_alive));
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length, which must not reach the client with it.
        let had_length = headers.remove(CONTENT_LENGTH).is_some();
        let chunked = headers
            .get_all(TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.as_bytes().rsplit(|&b| b == b',').next())
            .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        if had_length {
            // Both framings at once is how responses are smuggled (RFC 9112 §6.3): read this
            // one by its chunks, but trust the connection with nothing more.
            keep_alive = false;
        }
        if chunked && version == Version::HTTP_11 {
            return Ok((BodyKind::Chunked, keep_alive));
        }
        return Ok((BodyKind::Eof, false));
    }
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        // `Content-Length: 5, 5` and repeated equal fields are allowed; anything else is not.
        for part in value.as_bytes().split(|&b| b == b',') {
            let n = parse_length(part.trim_ascii()).ok_or(ProtocolError::ContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(ProtocolError::ContentLength);
            }
            length = Some(n);
        }
    }
    match length {
        Some(0) => Ok((BodyKind::Empty, keep_alive)),
        Some(n) => Ok((BodyKind::Length(n), keep_alive)),
        None => {
            keep_alive = false;
            Ok((BodyKind::Eof, keep_alive))
        }
    }
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Decimal digits only (no sign, no spaces), without overflow.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The buffer holds no complete piece: read more.
    NeedMore,
    /// The body ended; what follows in the buffer belongs to the next response.
    End,
}

/// Decodes a chunked body incrementally; trailers are read and dropped.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// Inside a chunk with this many bytes left.
    Data(u64),
    /// After a chunk's data: expecting CRLF.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// Takes the next piece of the body from the front of `buf`.
    ///
    /// # Errors
    /// [`ProtocolError::Chunked`] for malformed framing.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ProtocolError> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Decoded::End),
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ProtocolError::Chunked("missing CRLF after chunk data"));
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Size => {
                    let Some(line) = take_line(buf, MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf, MAX_TRAILER_BYTES)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    self.trailer_bytes += line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(ProtocolError::Chunked("trailers too large"));
                    }
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
    }
}

/// One CRLF-terminated line off the front of `buf`, without the CRLF; `None` if incomplete.
fn take_line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ProtocolError> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > max {
            return Err(ProtocolError::Chunked("line too long"));
        }
        return Ok(None);
    };
    if end > max {
        return Err(ProtocolError::Chunked("line too long"));
    }
    let line = buf.split_to(end);
    let _ = buf.split_to(2);
    Ok(Some(line))
}

/// The hex size at the start of a chunk-size line; extensions after `;` are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, ProtocolError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii_end();
    if digits.is_empty() || digits.len() > 16 {
        return Err(ProtocolError::Chunked("invalid chunk size"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(ProtocolError::Chunked("invalid chunk size")),
        };
        Ok((n << 4) | u64::from(v))
    })
}

#[cfg(test)]
mod tests;
