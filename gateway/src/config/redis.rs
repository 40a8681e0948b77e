//! `[redis]`: the shared store for the control plane, global limits and the delivery queue.

use std::time::Duration;

use toml::Spanned;

use super::raw::{RawRedis, Text};
use super::validate::{Ctx, Result, or_default};

/// `[redis]`. Without it the gateway runs an in-memory control plane, local-only rate limits
/// and no async delivery queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The server or cluster to talk to.
    pub target: RedisTarget,
    /// Budget for any Redis call made on behalf of a request or a sync tick. Default 10ms.
    pub timeout: Duration,
}

/// Which Redis deployment to use: `url` or `cluster` in the file, exactly one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a proxy), as a `redis://` or `rediss://` URL.
    Single(String),
    /// Seed nodes of a Redis Cluster, as `redis://` or `rediss://` URLs; never empty.
    Cluster(Vec<String>),
}

/// Default [`RedisConfig::timeout`].
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(10);

pub(super) fn build(raw: &Spanned<RawRedis>, ctx: &Ctx<'_>) -> Result<RedisConfig> {
    let section = raw.get_ref();
    let target = match (&section.url, &section.cluster) {
        (Some(url), None) => RedisTarget::Single(redis_url(url, "`redis.url`", ctx)?),
        (None, Some(nodes)) => {
            if nodes.get_ref().is_empty() {
                return Err(ctx.error_at(
                    nodes.span(),
                    "`redis.cluster` must list at least one node URL",
                ));
            }
            let mut urls: Vec<String> = Vec::with_capacity(nodes.get_ref().len());
            for node in nodes.get_ref() {
                let url = redis_url(node, "`redis.cluster`", ctx)?;
                if urls.contains(&url) {
                    return Err(ctx.error_at(
                        node.span(),
                        format!("duplicate node `{}` in `redis.cluster`", redact(&url)),
                    ));
                }
                urls.push(url);
            }
            RedisTarget::Cluster(urls)
        }
        (Some(_), Some(nodes)) => {
            return Err(ctx.error_at(
                nodes.span(),
                "[redis] takes either `url` or `cluster`, not both",
            ));
        }
        (None, None) => {
            return Err(ctx.error_at(
                raw.span(),
                "[redis] needs `url = \"redis://host:6379\"` or `cluster = [\"redis://host:7000\", ...]`",
            ));
        }
    };
    let timeout = or_default(section.timeout.as_ref(), DEFAULT_REDIS_TIMEOUT, |v| {
        ctx.positive_duration(v, "`redis.timeout`")
    })?;
    Ok(RedisConfig { target, timeout })
}

fn redis_url(value: &Text, what: &str, ctx: &Ctx<'_>) -> Result<String> {
    let url = ctx.string(value)?;
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    let host = rest
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| {
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host)
        });
    match host {
        Some(host) if !host.is_empty() => Ok(url),
        _ => Err(ctx.error_at(
            value.span(),
            format!(
                "invalid Redis URL `{}` for {what}: expected `redis://host:port` or `rediss://host:port`",
                redact(&url)
            ),
        )),
    }
}

/// The URL with any password hidden, for error messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority_end..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_credentials_only() {
        assert_eq!(redact("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact("redis://:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(redact("rediss://user:pw@h"), "rediss://***@h");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
