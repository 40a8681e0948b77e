//! Errors of the limiter.

use crate::PolicyError;

/// Why a [`Limiter`](crate::Limiter) or [`RedisSync`](crate::RedisSync) could not be built.
///
/// All variants are configuration errors (blame: the operator; not retryable) except
/// [`LimiterError::Redis`], which is raised only at construction and is not retryable either:
/// a running limiter never returns errors, it degrades (see [`LimiterMode`](crate::LimiterMode)).
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    /// A policy breaks one of its invariants.
    #[error("rate-limit policy `{name}`: {source}")]
    InvalidPolicy {
        /// The policy's name as configured.
        name: String,
        /// The broken invariant.
        #[source]
        source: PolicyError,
    },
    /// Two policies share a name.
    #[error("duplicate rate-limit policy name `{0}`")]
    DuplicatePolicy(String),
    /// `sync_interval` is zero.
    #[error("ratelimit sync_interval must be greater than zero")]
    ZeroSyncInterval,
    /// `max_keys` is zero.
    #[error("ratelimit max_keys must be at least 1")]
    ZeroMaxKeys,
    /// `idle_after` is zero.
    #[error("ratelimit idle_after must be greater than zero")]
    ZeroIdleAfter,
    /// The gateway id is empty.
    #[error("ratelimit gateway_id must not be empty")]
    EmptyGatewayId,
    /// The Redis URL does not parse.
    #[error("invalid redis url for the rate limiter: {0}")]
    Redis(#[source] redis::RedisError),
    /// The Redis timeout is zero.
    #[error("redis timeout must be greater than zero")]
    ZeroTimeout,
}
