//! A minimal blocking HTTP/1.1 client: one request per connection (`Connection: close`).
//!
//! Enough for readiness checks and simple assertions from any test, async or not, without
//! pulling an HTTP client (and its runtime) into the fixtures.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

/// Timeout of [`get`] and [`post_json`]: for connecting, and for each read or write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    ///
    /// Panics, showing the body, when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response {} is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }
}

/// `GET path` with [`DEFAULT_TIMEOUT`].
///
/// # Errors
///
/// Fails on connection errors, timeouts and malformed responses.
pub fn get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    get_with_timeout(addr, path, DEFAULT_TIMEOUT)
}

/// `GET path` with `timeout` for connecting and for each read.
///
/// # Errors
///
/// Fails on connection errors, timeouts and malformed responses.
pub fn get_with_timeout(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Response> {
    request(addr, "GET", path, &[], b"", timeout)
}

/// `POST path` with a JSON body and [`DEFAULT_TIMEOUT`].
///
/// # Errors
///
/// Fails on connection errors, timeouts and malformed responses.
pub fn post_json(addr: SocketAddr, path: &str, json: &str) -> io::Result<Response> {
    request(
        addr,
        "POST",
        path,
        &[("content-type", "application/json")],
        json.as_bytes(),
        DEFAULT_TIMEOUT,
    )
}

/// Sends one request and reads the whole response.
///
/// `Host`, `Connection: close` and, when there is a body or the method usually has one,
/// `Content-Length` are added.
///
/// # Errors
///
/// Fails on connection errors, timeouts and malformed responses.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw, method == "HEAD")
}

/// Sends one request whose body goes out with `Transfer-Encoding: chunked`, one chunk per
/// element of `chunks`, and reads the whole response. `Host` and `Connection: close` are
/// added.
///
/// # Errors
///
/// Fails on connection errors, timeouts and malformed responses.
pub fn request_chunked(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    chunks: &[&[u8]],
    timeout: Duration,
) -> io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut wire = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n"
    )
    .into_bytes();
    for (name, value) in headers {
        wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    // One write: a server that answers before reading the whole body must not turn the rest
    // of our request into a broken pipe.
    stream.write_all(&wire)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse(&raw, method == "HEAD")
}

/// Splits `http://<ip>:<port><path>` into the address and the path (`/` when absent).
///
/// # Panics
///
/// Panics when `url` is not of that form (host names are not resolved).
pub fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("`{url}` is not an http:// URL"));
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let addr = authority
        .parse()
        .unwrap_or_else(|e| panic!("`{url}` does not name <ip>:<port> ({e})"));
    (addr, path.to_owned())
}

fn parse(raw: &[u8], head_only: bool) -> io::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("response ended before its headers did"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("malformed status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if head_only {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len)
            .ok_or_else(|| invalid("body shorter than its content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or_else(|| invalid("truncated chunk"))?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size + 2..)
            .ok_or_else(|| invalid("truncated chunk end"))?;
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
