//! The file as written: serde structs mirroring SPEC §3, before substitution and validation.
//!
//! Strings stay raw here (`${NAME}` is substituted during validation, where the environment
//! is at hand) and every leaf keeps its span so validation errors point at the right line.
//! Unknown keys are rejected by serde, at the line of the key.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use toml::Spanned;

/// A string value, before `${NAME}` substitution.
pub(super) use super::tuning::{RawBreaker, RawHealthCheck, RawOutlier, RawRetry};

pub(super) type Text = Spanned<String>;
/// An integer value; range checks happen in validation.
pub(super) type Int = Spanned<Integer>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a Cellgate config document")]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    pub redis: Option<Spanned<RawRedis>>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub cells: Vec<Spanned<RawCell>>,
    pub delivery: Option<Spanned<RawDelivery>>,
    pub ratelimit: Option<Spanned<RawRateLimit>>,
    #[serde(default)]
    pub control: RawControl,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [server] table")]
pub(super) struct RawServer {
    pub listen: Option<Text>,
    pub admin_listen: Option<Text>,
    pub admin_token: Option<Text>,
    pub request_timeout: Option<Text>,
    pub connect_timeout: Option<Text>,
    pub gateway_id: Option<Text>,
    pub max_request_body: Option<Spanned<RawBytes>>,
    pub max_header_bytes: Option<Spanned<RawBytes>>,
    pub shutdown_grace: Option<Text>,
    pub pool_idle_timeout: Option<Text>,
    pub pool_max_idle_per_upstream: Option<Int>,
    pub state_dir: Option<Text>,
    pub max_in_flight: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [redis] table")]
pub(super) struct RawRedis {
    pub url: Option<Text>,
    pub cluster: Option<Spanned<Vec<Text>>>,
    pub timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [routing] table")]
pub(super) struct RawRouting {
    pub key: Option<Spanned<Vec<Text>>>,
    pub missing_key: Option<Text>,
    #[serde(default)]
    pub priorities: Vec<Spanned<RawPathPriority>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[routing.priorities]] table")]
pub(super) struct RawPathPriority {
    pub prefix: Text,
    pub priority: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[cells]] table")]
pub(super) struct RawCell {
    pub name: Text,
    pub upstreams: Spanned<Vec<Text>>,
    pub weight: Option<Spanned<Number>>,
    pub max_in_flight: Option<Int>,
    pub capacity_rps: Option<Spanned<Number>>,
    pub breaker: Option<Spanned<RawBreaker>>,
    pub outlier: Option<Spanned<RawOutlier>>,
    pub health_check: Option<Spanned<RawHealthCheck>>,
    pub retry: Option<Spanned<RawRetry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [delivery] table")]
pub(super) struct RawDelivery {
    pub workers: Option<Int>,
    pub max_attempts: Option<Int>,
    pub backoff_base: Option<Text>,
    pub backoff_max: Option<Text>,
    pub max_age: Option<Text>,
    pub max_pending: Option<Int>,
    pub max_body: Option<Spanned<RawBytes>>,
    pub visibility_timeout: Option<Text>,
    pub retention: Option<Text>,
    pub enqueue_timeout: Option<Text>,
    pub wait_replicas: Option<Int>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [ratelimit] table")]
pub(super) struct RawRateLimit {
    pub sync_interval: Option<Text>,
    pub max_keys: Option<Int>,
    #[serde(default)]
    pub policies: Vec<Spanned<RawPolicy>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[ratelimit.policies]] table")]
pub(super) struct RawPolicy {
    pub name: Text,
    pub key: Text,
    pub limit: Int,
    pub per: Text,
    pub burst: Option<Int>,
}

/// A TOML integer. Its own type so type errors say "an integer" rather than "i64".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Integer(pub i64);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntegerVisitor)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = Integer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Integer, E> {
        Ok(Integer(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Integer, E> {
        i64::try_from(v)
            .map(Integer)
            .map_err(|_| E::custom(format!("integer {v} is too large")))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Integer, E> {
        i64::try_from(v)
            .map(Integer)
            .map_err(|_| E::custom(format!("integer {v} is out of range")))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Integer, E> {
        Err(E::custom(format!("integer {v} is too large")))
    }
}

/// A TOML float or integer. Its own type so type errors say "a number" rather than "f64".
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NumberVisitor)
    }
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = Number;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        Ok(Number(v))
    }

    #[allow(clippy::cast_precision_loss)] // weights far beyond 2^53 are not meaningful anyway
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number(v as f64))
    }
}

/// A byte size as written: a string such as `"64MiB"` (substituted and parsed in validation)
/// or a plain TOML integer.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RawBytes {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawBytes {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawBytesVisitor)
    }
}

struct RawBytesVisitor;

impl Visitor<'_> for RawBytesVisitor {
    type Value = RawBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte size such as \"64MiB\" or an integer number of bytes")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawBytes, E> {
        Ok(RawBytes::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawBytes, E> {
        i64::try_from(v)
            .map(RawBytes::Int)
            .map_err(|_| E::custom(format!("byte size {v} is too large")))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawBytes, E> {
        Err(E::custom(format!("byte size {v} is out of range")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawBytes, E> {
        Ok(RawBytes::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawBytes, E> {
        Ok(RawBytes::Text(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Validation relies on toml attaching the value's span to errors raised inside a value's
    /// `Deserialize`, and the key's span to unknown-field errors.
    #[test]
    fn toml_locates_errors_raised_while_deserializing_values_and_keys() {
        let text = "[server]\n\nmax_request_body = true\n";
        let err = toml::from_str::<RawConfig>(text).unwrap_err();
        assert_eq!(err.span().map(|s| &text[s]), Some("true"));
        assert!(
            err.message().contains("expected a byte size"),
            "{}",
            err.message()
        );

        let text = "[[cells]]\nname = \"a\"\nupstreams = []\nmax_in_flight = 1.5\n";
        let err = toml::from_str::<RawConfig>(text).unwrap_err();
        assert_eq!(err.span().map(|s| &text[s]), Some("1.5"));
        assert!(
            err.message().contains("expected an integer"),
            "{}",
            err.message()
        );

        let text = "[delivery]\nworkerz = 1\n";
        let err = toml::from_str::<RawConfig>(text).unwrap_err();
        assert_eq!(err.span().map(|s| &text[s]), Some("workerz"));
    }

    #[test]
    fn table_spans_start_at_their_header() {
        let text = "[[cells]]\nname = \"a\"\nupstreams = []\n\n[delivery]\n";
        let raw = toml::from_str::<RawConfig>(text).unwrap();
        assert_eq!(&text[raw.cells[0].span()], "[[cells]]");
        assert_eq!(&text[raw.delivery.unwrap().span()], "[delivery]");
    }

    #[test]
    fn huge_integers_are_range_errors_not_type_errors() {
        let text = "[ratelimit]\nmax_keys = 99999999999999999999\n";
        let err = toml::from_str::<RawConfig>(text).unwrap_err();
        assert!(err.message().contains("out of range"), "{}", err.message());
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [control] table")]
pub(super) struct RawControl {
    pub min_active_cells: Option<Int>,
    pub poll_interval: Option<Text>,
    pub heartbeat_interval: Option<Text>,
    pub gateway_ttl: Option<Text>,
    pub timeout: Option<Text>,
    pub auto_evacuation: Option<Spanned<RawAutoEvacuation>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [control.auto_evacuation] table")]
pub(super) struct RawAutoEvacuation {
    pub enabled: Option<Spanned<bool>>,
    pub open_for: Option<Text>,
    pub healthy_for: Option<Text>,
    pub max_auto_evacuated: Option<Int>,
    pub drain_over: Option<Text>,
    pub undrain_over: Option<Text>,
}
