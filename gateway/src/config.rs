//! Typed configuration for `cellgate serve --config` and `cellgate check-config --config`.
//!
//! [`Config::load`] reads a TOML file (SPEC §3), substitutes `${NAME}` in string values from
//! the environment, and validates everything before any port is bound. Every problem is a
//! [`ConfigError`] that displays as `file:line: message`. Keys, types and defaults are
//! documented field by field below and in `docs/config.md`.
//!
//! ```
//! use std::collections::HashMap;
//! use gateway::config::{Config, KeySource};
//!
//! let text = r#"
//! [server]
//! admin_token = "${ADMIN_TOKEN}"
//!
//! [[cells]]
//! name = "cell-1"
//! upstreams = ["127.0.0.1:7001"]
//! "#;
//! let env = HashMap::from([("ADMIN_TOKEN".to_owned(), "s3cret".to_owned())]);
//! let config = Config::parse(text, "cellgate.toml", &env)?;
//! assert_eq!(config.server.admin_token.as_deref(), Some("s3cret"));
//! assert_eq!(config.cells[0].upstreams[0].authority(), "127.0.0.1:7001");
//! assert_eq!(config.routing.key, [KeySource::Header("x-user-id".parse()?)]);
//! assert!(config.redis.is_none());
//!
//! let err = Config::parse("[server]\nlisten = \"nowhere\"\n", "cellgate.toml", &env).unwrap_err();
//! assert!(err.to_string().starts_with("cellgate.toml:2: invalid address `nowhere`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::Path;

mod bytesize;
mod cells;
mod control;
mod delivery;
mod env;
mod error;
mod limits;
mod raw;
mod redis;
mod routing;
mod server;
mod tuning;
mod upstream;
mod validate;

pub use self::cells::{CellConfig, DEFAULT_MAX_IN_FLIGHT};
pub use self::control::ControlConfig;
pub use self::delivery::DeliveryConfig;
pub use self::env::{Env, ProcessEnv};
pub use self::error::ConfigError;
pub use self::limits::RateLimitConfig;
pub use self::redis::{DEFAULT_REDIS_TIMEOUT, RedisConfig, RedisTarget};
pub use self::routing::{KeySource, KeySourceError, MissingKey, RoutingConfig};
pub use self::server::{MAX_HEADER_BYTES, MIN_HEADER_BYTES, ServerConfig};
pub use self::tuning::CellTuning;
pub use self::upstream::{Upstream, UpstreamError};
pub use ::ratelimit::{PolicyConfig, PolicyKey};

use self::validate::Ctx;

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`; all defaults when the table is absent.
    pub server: ServerConfig,
    /// `[redis]`; `None` means in-memory control plane and local-only limits.
    pub redis: Option<RedisConfig>,
    /// `[routing]`; all defaults when the table is absent.
    pub routing: RoutingConfig,
    /// `[[cells]]`, in file order; at least one, names unique.
    pub cells: Vec<CellConfig>,
    /// `[delivery]`; `None` means `Prefer: respond-async` is not offered. Requires `redis`.
    pub delivery: Option<DeliveryConfig>,
    /// `[ratelimit]`; `None` means no rate limiting.
    pub ratelimit: Option<RateLimitConfig>,
    /// `[control]`: directory control plane settings (always present, defaults when absent).
    pub control: ControlConfig,
}

impl Config {
    /// Reads the file, substitutes `${NAME}` from the process environment, parses and
    /// validates. Error messages name the file as `path` was given.
    ///
    /// # Errors
    ///
    /// The file cannot be read (`cellgate.toml: cannot read: No such file or directory`), or
    /// anything [`Config::parse`] rejects.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(&origin, &e))?;
        Self::parse(&text, &origin, &ProcessEnv)
    }

    /// Parses and validates `text`, substituting `${NAME}` from `env`. `origin` names the
    /// file in error messages.
    ///
    /// # Errors
    ///
    /// The first problem found: TOML syntax, an unknown key, a value of the wrong type or out
    /// of range, a missing environment variable, or an inconsistency between sections; the
    /// error carries the line of the offending key or value.
    pub fn parse(text: &str, origin: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::from_toml(origin, text, &e))?;
        let ctx = Ctx::new(origin, text, env);
        let server = server::build(&raw.server, &ctx)?;
        let redis = raw
            .redis
            .as_ref()
            .map(|r| redis::build(r, &ctx))
            .transpose()?;
        let routing = routing::build(&raw.routing, &ctx)?;
        let cells = cells::build_all(&raw.cells, &ctx)?;
        let control = control::build(&raw.control, &ctx)?;
        if let (Some(delivery), None) = (&raw.delivery, &raw.redis) {
            return Err(ctx.error_at(
                delivery.span(),
                "[delivery] needs [redis]: the async queue is stored in Redis Streams",
            ));
        }
        let cluster = matches!(
            redis,
            Some(RedisConfig {
                target: RedisTarget::Cluster(_),
                ..
            })
        );
        let delivery = raw
            .delivery
            .as_ref()
            .map(|d| delivery::build(d, cluster, &ctx))
            .transpose()?;
        if let (Some(d), Some(raw_d)) = (&delivery, &raw.delivery) {
            // A live delivery slower than the visibility timeout would be claimed by another
            // worker and sent twice.
            if d.visibility_timeout <= server.request_timeout {
                let span = raw_d
                    .get_ref()
                    .visibility_timeout
                    .as_ref()
                    .map_or_else(|| raw_d.span(), toml::Spanned::span);
                return Err(ctx.error_at(
                    span,
                    format!(
                        "`delivery.visibility_timeout` ({}) must be longer than `server.request_timeout` ({})",
                        humantime::format_duration(d.visibility_timeout),
                        humantime::format_duration(server.request_timeout)
                    ),
                ));
            }
        }
        let ratelimit = raw
            .ratelimit
            .as_ref()
            .map(|r| limits::build(r, &ctx))
            .transpose()?;
        Ok(Config {
            server,
            redis,
            routing,
            cells,
            delivery,
            ratelimit,
            control,
        })
    }
}
