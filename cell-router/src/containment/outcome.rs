//! [`Outcome`]: how one forwarded request ended, as every containment type sees it.

use std::time::Duration;

/// How one request to an upstream ended.
///
/// Only failures the upstream caused count against it ([`UpstreamError`](Self::UpstreamError),
/// [`Timeout`](Self::Timeout)); [`Local`](Self::Local) never does, so the gateway's own 503s
/// cannot eject an instance or open a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with a non-5xx status (4xx is the client's problem, not the
    /// upstream's) after `latency` (to the response head).
    Success {
        /// Time from sending the request to receiving the response head.
        latency: Duration,
    },
    /// The upstream failed: a 5xx status, a connect error, or a reset before the response head.
    UpstreamError,
    /// The upstream did not answer within the gateway's own timeout. A timeout of a budget the
    /// *client* shortened (`X-Request-Deadline-Ms` below the route timeout) says nothing about
    /// the upstream: report it as [`Local`](Self::Local), or a client sending 1 ms deadlines
    /// could eject healthy instances.
    Timeout,
    /// The gateway ended the request itself (bulkhead full, shed, breaker open, client gone):
    /// never counted for or against the upstream.
    Local,
}

impl Outcome {
    /// Whether this is a failure the upstream caused.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(self, Self::UpstreamError | Self::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_upstream_failures_count() {
        assert!(Outcome::UpstreamError.is_upstream_failure());
        assert!(Outcome::Timeout.is_upstream_failure());
        assert!(!Outcome::Local.is_upstream_failure());
        let ok = Outcome::Success {
            latency: Duration::ZERO,
        };
        assert!(!ok.is_upstream_failure());
    }
}
