//! [`Upstream`]: one backend instance of a cell, written `host:port`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One backend instance of a cell.
///
/// Written `host:port`: `127.0.0.1:7001`, `cell1-a:7001`, `[::1]:7001`. Hostnames are
/// lowercased and IP addresses kept in canonical form, so equal upstreams compare equal.
///
/// ```
/// use gateway::config::Upstream;
///
/// let upstream: Upstream = "[::1]:7001".parse()?;
/// assert_eq!(upstream.host, "::1");
/// assert_eq!(upstream.authority(), "[::1]:7001");
/// assert!("http://cell-1:7001".parse::<Upstream>().is_err());
/// # Ok::<(), gateway::config::UpstreamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upstream {
    /// Hostname or IP address, without brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl Upstream {
    /// `host:port`, with brackets around an IPv6 host: the form for `Host` headers and URIs.
    pub fn authority(&self) -> String {
        self.to_string()
    }

    /// The host as an IP address, when it is one (no DNS lookup needed).
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Upstream {
    type Err = UpstreamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| UpstreamError {
            input: s.to_owned(),
            reason,
        };
        if s.contains("://") {
            return Err(fail("a URL scheme is not allowed"));
        }
        if s.contains(['/', '?', '#']) {
            return Err(fail("a path is not allowed"));
        }
        let (host, port) = if let Some(bracketed) = s.strip_prefix('[') {
            let (v6, rest) = bracketed
                .split_once(']')
                .ok_or_else(|| fail("unclosed `[`"))?;
            let ip: Ipv6Addr = v6.parse().map_err(|_| fail("invalid IPv6 address"))?;
            let port = rest.strip_prefix(':').ok_or_else(|| fail("missing port"))?;
            (ip.to_string(), port)
        } else {
            let (host, port) = s.rsplit_once(':').ok_or_else(|| fail("missing port"))?;
            if host.contains(':') {
                return Err(fail("an IPv6 address needs brackets"));
            }
            (hostname(host).map_err(fail)?, port)
        };
        let port: u16 = port.parse().map_err(|_| fail("invalid port"))?;
        if port == 0 {
            return Err(fail("port 0 is not allowed"));
        }
        Ok(Self { host, port })
    }
}

/// A hostname lowercased, or an IPv4 address in canonical form.
fn hostname(host: &str) -> Result<String, &'static str> {
    if host.is_empty() {
        return Err("empty host");
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| "invalid IPv4 address");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("invalid hostname");
    }
    Ok(host.to_ascii_lowercase())
}

/// A string that is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid upstream `{input}`: {reason}; expected `host:port`, e.g. `10.0.0.1:7001`, `cell1-a:7001` or `[::1]:7001`"
)]
pub struct UpstreamError {
    input: String,
    reason: &'static str,
}

impl UpstreamError {
    /// The rejected string.
    pub fn input(&self) -> &str {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let cases = [
            ("127.0.0.1:7001", "127.0.0.1", "127.0.0.1:7001"),
            ("cell1-a:7001", "cell1-a", "cell1-a:7001"),
            (
                "Cell1-A.internal:7001",
                "cell1-a.internal",
                "cell1-a.internal:7001",
            ),
            ("[::1]:7001", "::1", "[::1]:7001"),
            ("[0:0::1]:7001", "::1", "[::1]:7001"),
            ("svc_a.ns:80", "svc_a.ns", "svc_a.ns:80"),
        ];
        for (input, host, authority) in cases {
            let upstream: Upstream = input.parse().unwrap();
            assert_eq!(upstream.host, host, "{input}");
            assert_eq!(upstream.authority(), authority, "{input}");
        }
        assert_eq!(
            "10.0.0.1:7001".parse::<Upstream>().unwrap().ip(),
            Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        );
        assert_eq!("cell:1".parse::<Upstream>().unwrap().ip(), None);
    }

    #[test]
    fn rejects_with_a_reason_and_the_expected_form() {
        let cases = [
            ("http://cell-1:7001", "scheme"),
            ("cell-1:7001/api", "path"),
            ("cell-1", "missing port"),
            ("cell-1:", "invalid port"),
            ("cell-1:http", "invalid port"),
            ("cell-1:70000", "invalid port"),
            ("cell-1:0", "port 0"),
            (":7001", "empty host"),
            ("::1:7001", "brackets"),
            ("[::1]7001", "missing port"),
            ("[::1:7001", "unclosed"),
            ("[nope]:7001", "invalid IPv6"),
            ("300.1.1.1:7001", "invalid IPv4"),
            ("cell 1:7001", "invalid hostname"),
            ("-cell:7001", "invalid hostname"),
            ("cell..a:7001", "invalid hostname"),
        ];
        for (input, reason) in cases {
            let message = input.parse::<Upstream>().unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid upstream `{input}`: ")),
                "{message}"
            );
            assert!(message.contains(reason), "{input}: {message}");
            assert!(message.contains("expected `host:port`"), "{message}");
        }
    }
}
