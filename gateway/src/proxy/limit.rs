//! Step 2 of the pipeline: rate limits, decided locally (SPEC §4, §5).
//!
//! Each configured policy names what it counts by (`user` = the routing key, `ip`,
//! `header:<name>`, `cell`, `global`). Every policy that applies to a request is checked; the
//! request is refused if any refuses it. The decision never waits on the network: the
//! [`Limiter`] syncs with Redis in the background.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use ratelimit::{Limiter, PolicyKey};

/// `RateLimit-Policy` (IETF httpapi-ratelimit-headers draft).
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit` (IETF httpapi-ratelimit-headers draft).
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The gateway's rate limits: the limiter plus what each policy keys on.
#[derive(Clone)]
pub struct RateLimits {
    limiter: Limiter,
    /// Pre-rendered `RateLimit-Policy` value, one entry per policy.
    policy_header: HeaderValue,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("policies", &self.limiter.policies().len())
            .field("mode", &self.limiter.mode())
            .finish()
    }
}

/// What the request's policies decided.
#[derive(Debug)]
pub struct Verdict {
    /// `Some(wait)` when a policy refused the request.
    pub refused: Option<Duration>,
    /// `RateLimit` header value for the response.
    pub header: Option<HeaderValue>,
}

impl RateLimits {
    /// Wraps a limiter; `None` when no policy is configured.
    pub fn new(limiter: Limiter) -> Option<RateLimits> {
        let policies = limiter.policies();
        if policies.is_empty() {
            return None;
        }
        let mut text = String::new();
        for (i, p) in policies.iter().enumerate() {
            if i > 0 {
                text.push_str(", ");
            }
            let _ = write!(
                text,
                "\"{}\";q={};w={}",
                p.name,
                p.limit,
                p.per.as_secs().max(1)
            );
        }
        let policy_header = HeaderValue::from_str(&text).ok()?;
        Some(RateLimits {
            limiter,
            policy_header,
        })
    }

    /// The limiter (for the admin API and metrics).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The `RateLimit-Policy` header value.
    pub fn policy_header(&self) -> &HeaderValue {
        &self.policy_header
    }

    /// Checks every policy that applies to the request. A policy keyed on a header the
    /// request does not carry does not apply to it.
    pub fn check(
        &self,
        routing_key: &[u8],
        remote: IpAddr,
        headers: &HeaderMap,
        cell: &str,
    ) -> Verdict {
        let mut refused: Option<Duration> = None;
        let mut header = String::new();
        let mut ip_text: Option<String> = None;
        for (i, policy) in self.limiter.policies().iter().enumerate() {
            let key: &[u8] = match &policy.key {
                PolicyKey::User => routing_key,
                PolicyKey::Ip => ip_text.get_or_insert_with(|| remote.to_string()).as_bytes(),
                PolicyKey::Header(name) => match headers.get(name.as_str()) {
                    Some(v) if !v.is_empty() => v.as_bytes(),
                    _ => continue,
                },
                PolicyKey::Cell => cell.as_bytes(),
                PolicyKey::Global => b"",
            };
            let decision = self.limiter.check(i, key);
            if !decision.allowed {
                let wait = decision.retry_after.unwrap_or(Duration::from_secs(1));
                refused = Some(refused.map_or(wait, |w| w.max(wait)));
            }
            if !header.is_empty() {
                header.push_str(", ");
            }
            let _ = write!(
                header,
                "\"{}\";r={};t={}",
                policy.name,
                if decision.allowed {
                    decision.remaining
                } else {
                    0
                },
                ceil_secs(decision.reset_after)
            );
        }
        Verdict {
            refused,
            header: (!header.is_empty())
                .then(|| HeaderValue::from_str(&header).ok())
                .flatten(),
        }
    }
}

/// Whole seconds, rounded up (headers carry integers; 0 only for "now").
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
