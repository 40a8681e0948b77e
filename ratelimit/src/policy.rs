//! Rate-limit policies: what is limited, per which key, how fast.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Longest accepted policy name. Names end up in `RateLimit-Policy` headers and metric labels.
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// One rate-limit policy: each distinct value of `key` may make `limit` requests per `per`,
/// with bursts of up to `burst` requests.
///
/// Construct it with [`PolicyConfig::new`] and check it with [`PolicyConfig::validate`]; the
/// gateway's config loader does both and attaches line numbers to the errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Unique name, shown in `RateLimit-Policy` headers, metrics and the admin API.
    pub name: String,
    /// What the limit is counted per.
    pub key: PolicyKey,
    /// Requests allowed per window; greater than zero.
    pub limit: u64,
    /// Window length; greater than zero.
    pub per: Duration,
    /// Largest burst admitted at once; greater than zero. Defaults to `limit`.
    pub burst: u64,
}

impl PolicyConfig {
    /// A policy whose burst equals its limit.
    pub fn new(name: impl Into<String>, key: PolicyKey, limit: u64, per: Duration) -> Self {
        Self {
            name: name.into(),
            key,
            limit,
            per,
            burst: limit,
        }
    }

    /// Replaces the burst size.
    #[must_use]
    pub fn with_burst(mut self, burst: u64) -> Self {
        self.burst = burst;
        self
    }

    /// Checks the invariants stated on the fields.
    ///
    /// # Errors
    ///
    /// The first violated invariant, in field order.
    pub fn validate(&self) -> Result<(), PolicyError> {
        validate_name(&self.name)?;
        if self.limit == 0 {
            return Err(PolicyError::ZeroLimit);
        }
        if self.per.is_zero() {
            return Err(PolicyError::ZeroWindow);
        }
        if self.burst == 0 {
            return Err(PolicyError::ZeroBurst);
        }
        Ok(())
    }
}

fn validate_name(name: &str) -> Result<(), PolicyError> {
    if name.is_empty() {
        return Err(PolicyError::EmptyName);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.len() > MAX_POLICY_NAME_LEN || !name.chars().all(allowed) {
        return Err(PolicyError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// A [`PolicyConfig`] that breaks an invariant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The name is empty.
    #[error("policy name must not be empty")]
    EmptyName,
    /// The name is too long or uses characters outside `[A-Za-z0-9._-]`.
    #[error("invalid policy name `{0}`: use at most 64 ASCII letters, digits, `.`, `_` or `-`")]
    InvalidName(String),
    /// `limit` is zero.
    #[error("limit must be greater than zero")]
    ZeroLimit,
    /// `per` is zero.
    #[error("window `per` must be greater than zero")]
    ZeroWindow,
    /// `burst` is zero.
    #[error("burst must be greater than zero")]
    ZeroBurst,
}

/// What a policy counts requests per.
///
/// Parsed from and displayed as its config form: `user`, `ip`, `header:<name>`, `cell`,
/// `global`.
///
/// ```
/// use ratelimit::PolicyKey;
///
/// let key: PolicyKey = "header:X-Api-Key".parse()?;
/// assert_eq!(key, PolicyKey::Header("x-api-key".into()));
/// assert_eq!(key.to_string(), "header:x-api-key");
/// # Ok::<(), ratelimit::PolicyKeyError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PolicyKey {
    /// The request's routing key (the user).
    User,
    /// The client address.
    Ip,
    /// The value of a request header; the name is lowercase when parsed.
    Header(String),
    /// The cell the request is routed to.
    Cell,
    /// One counter shared by all requests.
    Global,
}

impl FromStr for PolicyKey {
    type Err = PolicyKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Self::User),
            "ip" => Ok(Self::Ip),
            "cell" => Ok(Self::Cell),
            "global" => Ok(Self::Global),
            _ => match s.strip_prefix("header:") {
                Some("") => Err(PolicyKeyError::EmptyHeaderName),
                Some(name) if name.bytes().all(is_tchar) => {
                    Ok(Self::Header(name.to_ascii_lowercase()))
                }
                Some(name) => Err(PolicyKeyError::InvalidHeaderName(name.to_owned())),
                None => Err(PolicyKeyError::UnknownKind(s.to_owned())),
            },
        }
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User => f.write_str("user"),
            Self::Ip => f.write_str("ip"),
            Self::Header(name) => write!(f, "header:{name}"),
            Self::Cell => f.write_str("cell"),
            Self::Global => f.write_str("global"),
        }
    }
}

/// RFC 9110 `tchar`: the characters allowed in a header field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A string that is not a [`PolicyKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyKeyError {
    /// Not one of the known key kinds.
    #[error("unknown policy key `{0}`: expected `user`, `ip`, `header:<name>`, `cell` or `global`")]
    UnknownKind(String),
    /// `header:` with nothing after it.
    #[error("policy key `header:` needs a header name, e.g. `header:x-api-key`")]
    EmptyHeaderName,
    /// `header:<name>` where the name is not a valid HTTP header name.
    #[error("policy key `header:{0}`: `{0}` is not a valid HTTP header name")]
    InvalidHeaderName(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn keys_round_trip_through_their_config_form() {
        for form in ["user", "ip", "header:x-api-key", "cell", "global"] {
            let key: PolicyKey = form.parse().unwrap();
            assert_eq!(key.to_string(), form);
        }
    }

    #[test]
    fn header_names_are_lowercased() {
        let key: PolicyKey = "header:X-Tenant".parse().unwrap();
        assert_eq!(key, PolicyKey::Header("x-tenant".to_owned()));
    }

    #[test]
    fn bad_keys_are_rejected_with_a_reason() {
        assert_eq!(
            "users".parse::<PolicyKey>(),
            Err(PolicyKeyError::UnknownKind("users".to_owned()))
        );
        assert_eq!(
            "header:".parse::<PolicyKey>(),
            Err(PolicyKeyError::EmptyHeaderName)
        );
        assert_eq!(
            "header:x y".parse::<PolicyKey>(),
            Err(PolicyKeyError::InvalidHeaderName("x y".to_owned()))
        );
        assert_eq!(
            "User".parse::<PolicyKey>(),
            Err(PolicyKeyError::UnknownKind("User".to_owned()))
        );
        let message = "users".parse::<PolicyKey>().unwrap_err().to_string();
        assert!(message.contains("`users`") && message.contains("header:<name>"));
    }

    #[test]
    fn burst_defaults_to_limit() {
        let policy = PolicyConfig::new("per-user", PolicyKey::User, 100, Duration::from_secs(1));
        assert_eq!(policy.burst, 100);
        assert_eq!(policy.with_burst(20).burst, 20);
    }

    #[test]
    fn validate_reports_each_broken_invariant() {
        let ok = PolicyConfig::new("per-user", PolicyKey::User, 10, Duration::from_secs(1));
        assert_eq!(ok.validate(), Ok(()));

        let cases = [
            (
                PolicyConfig {
                    name: String::new(),
                    ..ok.clone()
                },
                PolicyError::EmptyName,
            ),
            (
                PolicyConfig {
                    name: "per user".into(),
                    ..ok.clone()
                },
                PolicyError::InvalidName("per user".into()),
            ),
            (
                PolicyConfig {
                    name: "a".repeat(65),
                    ..ok.clone()
                },
                PolicyError::InvalidName("a".repeat(65)),
            ),
            (
                PolicyConfig {
                    limit: 0,
                    ..ok.clone()
                },
                PolicyError::ZeroLimit,
            ),
            (
                PolicyConfig {
                    per: Duration::ZERO,
                    ..ok.clone()
                },
                PolicyError::ZeroWindow,
            ),
            (ok.clone().with_burst(0), PolicyError::ZeroBurst),
        ];
        for (policy, expected) in cases {
            assert_eq!(policy.validate(), Err(expected));
        }
    }
}
