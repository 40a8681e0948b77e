//! Routing-key extraction (SPEC §4 step 1).

use std::borrow::Cow;
use std::net::IpAddr;

use http::HeaderMap;
use http::header::COOKIE;

use crate::config::{KeySource, MissingKey, RoutingConfig};

/// Longest accepted routing key, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Why no usable routing key was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// None of the configured sources carried a key.
    #[error("no routing key")]
    Missing,
    /// A key was found but is too long or has control characters.
    #[error("invalid routing key")]
    Invalid,
}

/// Finds the routing key of a request from the configured sources, in order.
#[derive(Clone, Debug)]
pub struct RoutingKeys {
    sources: Vec<KeySource>,
    missing: MissingKey,
}

impl RoutingKeys {
    /// Builds the extractor from `[routing]`.
    pub fn new(config: &RoutingConfig) -> Self {
        RoutingKeys {
            sources: config.key.clone(),
            missing: config.missing_key,
        }
    }

    /// The key of a request: the first non-empty source wins. An invalid key is an error even
    /// if a later source would have matched: silently falling through would route the same
    /// user to different cells depending on which header a client happened to mangle.
    ///
    /// # Errors
    /// [`KeyError::Missing`] when no source matched and `missing_key = "reject"`;
    /// [`KeyError::Invalid`] when the chosen key is too long or has control characters.
    pub fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
        remote: IpAddr,
    ) -> Result<Cow<'a, [u8]>, KeyError> {
        for source in &self.sources {
            let found = match source {
                KeySource::Header(name) => headers
                    .get(name)
                    .map(|v| Cow::Borrowed(v.as_bytes()))
                    .filter(|v| !v.is_empty()),
                KeySource::Query(name) => query.and_then(|q| query_param(q, name)),
                KeySource::Cookie(name) => cookie(headers, name).map(Cow::Borrowed),
                KeySource::Ip => Some(ip_key(remote)),
            };
            if let Some(key) = found {
                return validate(key);
            }
        }
        match self.missing {
            MissingKey::Reject => Err(KeyError::Missing),
            MissingKey::Ip => Ok(ip_key(remote)),
        }
    }
}

fn ip_key(remote: IpAddr) -> Cow<'static, [u8]> {
    Cow::Owned(remote.to_string().into_bytes())
}

pub(crate) fn validate(key: Cow<'_, [u8]>) -> Result<Cow<'_, [u8]>, KeyError> {
    if key.len() > MAX_KEY_LEN || key.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(KeyError::Invalid);
    }
    Ok(key)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            (k == name.as_bytes() && !v.is_empty()).then_some(strip_quotes(v))
        })
}

fn strip_quotes(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, [u8]>> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k.as_bytes()).as_ref() == name.as_bytes() && !v.is_empty())
            .then(|| percent_decode(v.as_bytes()))
    })
}

/// Decodes `%XX` and `+` (form encoding); borrows when there is nothing to decode.
/// Malformed escapes are kept literally, as browsers and most servers do.
fn percent_decode(input: &[u8]) -> Cow<'_, [u8]> {
    if !input.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: Option<&u8>) -> Option<u8> {
    let b = *b?;
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::{HeaderName, HeaderValue};

    fn keys(sources: Vec<KeySource>, missing: MissingKey) -> RoutingKeys {
        RoutingKeys::new(&RoutingConfig {
            key: sources,
            missing_key: missing,
            priorities: Vec::new(),
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn sources_are_tried_in_order() {
        let k = keys(
            vec![
                KeySource::Header(HeaderName::from_static("x-user-id")),
                KeySource::Query("user".into()),
                KeySource::Cookie("uid".into()),
            ],
            MissingKey::Reject,
        );
        let h = headers(&[("cookie", "a=1; uid=carol; b=2")]);
        assert_eq!(
            k.extract(&h, Some("user=bob"), IP).unwrap().as_ref(),
            b"bob"
        );
        assert_eq!(k.extract(&h, Some("x=1"), IP).unwrap().as_ref(), b"carol");
        let h = headers(&[("x-user-id", "alice"), ("cookie", "uid=carol")]);
        assert_eq!(
            k.extract(&h, Some("user=bob"), IP).unwrap().as_ref(),
            b"alice"
        );
        assert_eq!(
            k.extract(&HeaderMap::new(), None, IP),
            Err(KeyError::Missing)
        );
    }

    #[test]
    fn missing_key_can_fall_back_to_ip() {
        let k = keys(
            vec![KeySource::Header(HeaderName::from_static("x-user-id"))],
            MissingKey::Ip,
        );
        assert_eq!(
            k.extract(&HeaderMap::new(), None, IP).unwrap().as_ref(),
            b"10.1.2.3"
        );
    }

    #[test]
    fn empty_values_count_as_missing() {
        let k = keys(
            vec![
                KeySource::Header(HeaderName::from_static("x-user-id")),
                KeySource::Query("user".into()),
            ],
            MissingKey::Reject,
        );
        let h = headers(&[("x-user-id", "")]);
        assert_eq!(k.extract(&h, Some("user="), IP), Err(KeyError::Missing));
    }

    #[test]
    fn long_or_control_keys_are_invalid() {
        let k = keys(vec![KeySource::Query("user".into())], MissingKey::Reject);
        let long = format!("user={}", "a".repeat(257));
        assert_eq!(
            k.extract(&HeaderMap::new(), Some(&long), IP),
            Err(KeyError::Invalid)
        );
        let ok = format!("user={}", "a".repeat(256));
        assert!(k.extract(&HeaderMap::new(), Some(&ok), IP).is_ok());
        assert_eq!(
            k.extract(&HeaderMap::new(), Some("user=a%0Ab"), IP),
            Err(KeyError::Invalid)
        );
        assert_eq!(
            k.extract(&HeaderMap::new(), Some("user=a%7Fb"), IP),
            Err(KeyError::Invalid)
        );
        let h = keys(
            vec![KeySource::Header(HeaderName::from_static("x-user-id"))],
            MissingKey::Reject,
        );
        let tab = headers(&[("x-user-id", "a\tb")]);
        assert_eq!(h.extract(&tab, None, IP), Err(KeyError::Invalid));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let k = keys(vec![KeySource::Query("u ser".into())], MissingKey::Reject);
        assert_eq!(
            k.extract(&HeaderMap::new(), Some("a=1&u+ser=al%69ce+x&b"), IP)
                .unwrap()
                .as_ref(),
            b"alice x"
        );
        assert_eq!(percent_decode(b"100%").as_ref(), b"100%");
        assert_eq!(percent_decode(b"%4").as_ref(), b"%4");
        assert_eq!(percent_decode(b"%zz").as_ref(), b"%zz");
    }

    #[test]
    fn quoted_cookie_values_are_unquoted() {
        let k = keys(vec![KeySource::Cookie("uid".into())], MissingKey::Reject);
        let h = headers(&[("cookie", "uid=\"dave\"")]);
        assert_eq!(k.extract(&h, None, IP).unwrap().as_ref(), b"dave");
    }
}
