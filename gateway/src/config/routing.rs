//! `[routing]`: where the routing key comes from.

use std::fmt;
use std::str::FromStr;

use http::HeaderName;

use cell_router::containment::Priority;

use super::raw::RawRouting;
use super::validate::{Ctx, Result, or_default};

/// `[routing]`: how a request's routing key (the user) is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingConfig {
    /// Sources tried in order; the first present wins. Never empty.
    /// Default `["header:x-user-id"]`.
    pub key: Vec<KeySource>,
    /// What to do when no source yields a key. Default [`MissingKey::Reject`].
    pub missing_key: MissingKey,
    /// Default priorities by path prefix (`[[routing.priorities]]`), for requests without a
    /// valid `X-Priority`; the longest matching prefix wins, unmatched paths are `normal`.
    pub priorities: Vec<(String, Priority)>,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            key: vec![KeySource::Header(HeaderName::from_static("x-user-id"))],
            missing_key: MissingKey::Reject,
            priorities: Vec::new(),
        }
    }
}

/// One place to read the routing key from. Parsed from and displayed as its config form.
///
/// ```
/// use gateway::config::KeySource;
///
/// let source: KeySource = "header:X-User-Id".parse()?;
/// assert_eq!(source.to_string(), "header:x-user-id");
/// assert_eq!("ip".parse::<KeySource>()?, KeySource::Ip);
/// # Ok::<(), gateway::config::KeySourceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `header:<name>`: a request header.
    Header(HeaderName),
    /// `query:<name>`: a query-string parameter.
    Query(String),
    /// `cookie:<name>`: a cookie.
    Cookie(String),
    /// `ip`: the client address.
    Ip,
}

impl FromStr for KeySource {
    type Err = KeySourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "ip" {
            return Ok(Self::Ip);
        }
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| KeySourceError::UnknownKind(s.to_owned()))?;
        if !matches!(kind, "header" | "query" | "cookie") {
            return Err(KeySourceError::UnknownKind(s.to_owned()));
        }
        if name.is_empty() {
            return Err(KeySourceError::EmptyName(s.to_owned()));
        }
        match kind {
            "header" => HeaderName::from_bytes(name.as_bytes())
                .map(Self::Header)
                .map_err(|_| KeySourceError::InvalidName(s.to_owned())),
            "cookie" if !name.bytes().all(is_tchar) => {
                Err(KeySourceError::InvalidName(s.to_owned()))
            }
            "cookie" => Ok(Self::Cookie(name.to_owned())),
            _ => Ok(Self::Query(name.to_owned())),
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Query(name) => write!(f, "query:{name}"),
            Self::Cookie(name) => write!(f, "cookie:{name}"),
            Self::Ip => f.write_str("ip"),
        }
    }
}

/// RFC 9110 `tchar`: cookie names are tokens too (RFC 6265).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A string that is not a [`KeySource`]; each variant holds the whole string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySourceError {
    /// Not `header:`, `query:`, `cookie:` or `ip`.
    #[error(
        "unknown routing key source `{0}`: expected `header:<name>`, `query:<name>`, `cookie:<name>` or `ip`"
    )]
    UnknownKind(String),
    /// The prefix is right but the name after it is empty.
    #[error("routing key source `{0}` needs a name after the colon, e.g. `header:x-user-id`")]
    EmptyName(String),
    /// The header or cookie name has characters not allowed there.
    #[error("routing key source `{0}`: not a valid header or cookie name")]
    InvalidName(String),
}

/// What happens to a request without a routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// `reject`: answer 400 `missing_routing_key`.
    #[default]
    Reject,
    /// `ip`: route by the client address instead.
    Ip,
}

impl fmt::Display for MissingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reject => "reject",
            Self::Ip => "ip",
        })
    }
}

pub(super) fn build(raw: &RawRouting, ctx: &Ctx<'_>) -> Result<RoutingConfig> {
    let defaults = RoutingConfig::default();
    let key = or_default(raw.key.as_ref(), defaults.key, |list| {
        if list.get_ref().is_empty() {
            return Err(ctx.error_at(
                list.span(),
                "`routing.key` must list at least one source, e.g. [\"header:x-user-id\"]",
            ));
        }
        list.get_ref()
            .iter()
            .map(|item| {
                ctx.string(item)?
                    .parse::<KeySource>()
                    .map_err(|e| ctx.error_at(item.span(), e.to_string()))
            })
            .collect()
    })?;
    let missing_key = or_default(
        raw.missing_key.as_ref(),
        defaults.missing_key,
        |v| match ctx.string(v)?.as_str() {
            "reject" => Ok(MissingKey::Reject),
            "ip" => Ok(MissingKey::Ip),
            other => Err(ctx.error_at(
                v.span(),
                format!("invalid `routing.missing_key` `{other}`: expected `reject` or `ip`"),
            )),
        },
    )?;
    let mut priorities: Vec<(String, Priority)> = Vec::with_capacity(raw.priorities.len());
    for entry in &raw.priorities {
        let e = entry.get_ref();
        let prefix = ctx.string(&e.prefix)?;
        if !prefix.starts_with('/') {
            return Err(ctx.error_at(
                e.prefix.span(),
                format!("`routing.priorities` prefix must start with `/`, got `{prefix}`"),
            ));
        }
        if priorities.iter().any(|(p, _)| *p == prefix) {
            return Err(ctx.error_at(
                e.prefix.span(),
                format!("duplicate `routing.priorities` prefix `{prefix}`"),
            ));
        }
        let priority = ctx.string(&e.priority)?.parse::<Priority>().map_err(|_| {
            ctx.error_at(
                e.priority.span(),
                "invalid priority: expected `critical`, `normal` or `batch`",
            )
        })?;
        priorities.push((prefix, priority));
    }
    // Longest first, so the first match is the most specific.
    priorities.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    Ok(RoutingConfig {
        key,
        missing_key,
        priorities,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sources_round_trip() {
        for form in ["header:x-user-id", "query:user", "cookie:uid", "ip"] {
            assert_eq!(form.parse::<KeySource>().unwrap().to_string(), form);
        }
    }

    #[test]
    fn bad_sources_are_named() {
        let cases = [
            ("user", KeySourceError::UnknownKind("user".into())),
            ("body:user", KeySourceError::UnknownKind("body:user".into())),
            ("header:", KeySourceError::EmptyName("header:".into())),
            ("query:", KeySourceError::EmptyName("query:".into())),
            ("cookie:", KeySourceError::EmptyName("cookie:".into())),
            (
                "header:x user",
                KeySourceError::InvalidName("header:x user".into()),
            ),
            (
                "cookie:a;b",
                KeySourceError::InvalidName("cookie:a;b".into()),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<KeySource>(), Err(expected), "{input}");
        }
    }
}
