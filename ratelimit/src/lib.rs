//! Rate limiting for Cellgate.
//!
//! Policies ([`PolicyConfig`], counted per [`PolicyKey`]) say how many requests each user,
//! client address, header value, cell or the whole fleet may make per window. Decisions are
//! taken locally, from in-memory per-key state; global usage is synchronised with Redis in the
//! background and the limiter fails open when Redis is slow or down.
//!
//! ```
//! use std::time::Duration;
//! use ratelimit::{PolicyConfig, PolicyKey};
//!
//! let policy = PolicyConfig::new("per-user", "user".parse()?, 100, Duration::from_secs(1))
//!     .with_burst(20);
//! assert_eq!(policy.key, PolicyKey::User);
//! assert!(policy.validate().is_ok());
//! # Ok::<(), ratelimit::PolicyKeyError>(())
//! ```

mod policy;

pub use policy::{MAX_POLICY_NAME_LEN, PolicyConfig, PolicyError, PolicyKey, PolicyKeyError};
