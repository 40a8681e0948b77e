//! `[ratelimit]`: global rate limits, decided locally and synchronised through Redis.

use std::collections::HashMap;
use std::time::Duration;

use ::ratelimit::{PolicyConfig, PolicyError, PolicyKey};
use toml::Spanned;

use super::raw::{Int, RawPolicy, RawRateLimit};
use super::validate::{Ctx, Result, or_default};

/// `[ratelimit]`: limiter settings and its policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// How often per-key usage is exchanged with Redis. Default 100ms, not zero.
    pub sync_interval: Duration,
    /// Cap on tracked keys, so memory stays bounded. Default 1000000, at least 1.
    pub max_keys: usize,
    /// The `[[ratelimit.policies]]`, in file order; names are unique.
    pub policies: Vec<PolicyConfig>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_millis(100),
            max_keys: 1_000_000,
            policies: Vec::new(),
        }
    }
}

pub(super) fn build(raw: &Spanned<RawRateLimit>, ctx: &Ctx<'_>) -> Result<RateLimitConfig> {
    let d = RateLimitConfig::default();
    let raw = raw.get_ref();
    let sync_interval = or_default(raw.sync_interval.as_ref(), d.sync_interval, |v| {
        ctx.positive_duration(v, "`ratelimit.sync_interval`")
    })?;
    let max_keys = or_default(raw.max_keys.as_ref(), d.max_keys, |v| {
        ctx.usize_at_least(v, 1, "`ratelimit.max_keys`")
    })?;
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(raw.policies.len());
    let mut policies = Vec::with_capacity(raw.policies.len());
    for policy in &raw.policies {
        let policy = policy.get_ref();
        let built = build_policy(policy, ctx)?;
        let name_span = policy.name.span();
        if let Some(line) = seen.insert(built.name.clone(), ctx.line_of(name_span.clone())) {
            return Err(ctx.error_at(
                name_span,
                format!(
                    "duplicate rate-limit policy name `{}` (first defined at line {line})",
                    built.name
                ),
            ));
        }
        policies.push(built);
    }
    Ok(RateLimitConfig {
        sync_interval,
        max_keys,
        policies,
    })
}

fn build_policy(raw: &RawPolicy, ctx: &Ctx<'_>) -> Result<PolicyConfig> {
    let name = ctx.string(&raw.name)?;
    let key = ctx
        .string(&raw.key)?
        .parse::<PolicyKey>()
        .map_err(|e| ctx.error_at(raw.key.span(), format!("policy `{name}`: {e}")))?;
    // Negative numbers get their own message; zero is left to `PolicyConfig::validate`.
    let limit = non_negative(&raw.limit, "limit", &name, ctx)?;
    let per = ctx.duration(&raw.per, &format!("`per` of policy `{name}`"))?;
    let burst = or_default(raw.burst.as_ref(), limit, |v| {
        non_negative(v, "burst", &name, ctx)
    })?;
    let policy = PolicyConfig::new(name, key, limit, per).with_burst(burst);
    policy.validate().map_err(|e| match e {
        PolicyError::EmptyName | PolicyError::InvalidName(_) => {
            ctx.error_at(raw.name.span(), e.to_string())
        }
        PolicyError::ZeroLimit => {
            ctx.error_at(raw.limit.span(), format!("policy `{}`: {e}", policy.name))
        }
        PolicyError::ZeroWindow => {
            ctx.error_at(raw.per.span(), format!("policy `{}`: {e}", policy.name))
        }
        PolicyError::ZeroBurst => {
            let span = raw.burst.as_ref().map_or(raw.limit.span(), Spanned::span);
            ctx.error_at(span, format!("policy `{}`: {e}", policy.name))
        }
    })?;
    Ok(policy)
}

fn non_negative(value: &Int, field: &str, policy: &str, ctx: &Ctx<'_>) -> Result<u64> {
    let v = value.get_ref().0;
    u64::try_from(v).map_err(|_| {
        ctx.error_at(
            value.span(),
            format!("policy `{policy}`: {field} must be greater than zero, got {v}"),
        )
    })
}
