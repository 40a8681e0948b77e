//! Turning raw values into typed ones: substitution, parsing and range checks, each error
//! located at the value's span.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::bytesize;
use super::env::{self, Env};
use super::error::{self, ConfigError};
use super::raw::{Int, RawBytes, Text};

pub(super) type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// What validation needs besides the raw values: where they came from and the environment.
pub(super) struct Ctx<'a> {
    origin: &'a str,
    text: &'a str,
    env: &'a dyn Env,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str, env: &'a dyn Env) -> Self {
        Self { origin, text, env }
    }

    /// An error at the line of `span`.
    pub(super) fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.origin, self.text, span.start, message)
    }

    /// An error about the file as a whole.
    pub(super) fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.origin, message)
    }

    /// 1-based line of `span`, for messages that point at a second place.
    pub(super) fn line_of(&self, span: Range<usize>) -> usize {
        error::locate(self.text, span.start).0
    }

    /// The string with `${NAME}` substituted. Every string value goes through here.
    pub(super) fn string(&self, value: &Text) -> Result<String> {
        self.substitute(value.span(), value.get_ref())
    }

    fn substitute(&self, span: Range<usize>, raw: &str) -> Result<String> {
        env::substitute(raw, self.env).map_err(|e| self.error_at(span, e.to_string()))
    }

    /// A humantime duration such as `"10ms"` or `"1m"`.
    pub(super) fn duration(&self, value: &Text, what: &str) -> Result<Duration> {
        let text = self.string(value)?;
        humantime::parse_duration(&text).map_err(|e| {
            self.error_at(
                value.span(),
                format!("invalid duration `{text}` for {what}: {e}"),
            )
        })
    }

    /// A duration that must not be zero.
    pub(super) fn positive_duration(&self, value: &Text, what: &str) -> Result<Duration> {
        let duration = self.duration(value, what)?;
        if duration.is_zero() {
            return Err(self.error_at(value.span(), format!("{what} must be greater than zero")));
        }
        Ok(duration)
    }

    /// An integer of at least `min`.
    pub(super) fn int_at_least(&self, value: &Int, min: i64, what: &str) -> Result<u64> {
        let v = value.get_ref().0;
        u64::try_from(v).ok().filter(|_| v >= min).ok_or_else(|| {
            self.error_at(
                value.span(),
                format!("{what} must be at least {min}, got {v}"),
            )
        })
    }

    /// A count of at least `min`.
    pub(super) fn usize_at_least(&self, value: &Int, min: i64, what: &str) -> Result<usize> {
        let v = self.int_at_least(value, min, what)?;
        usize::try_from(v)
            .map_err(|_| self.error_at(value.span(), format!("{what} is too large, got {v}")))
    }

    /// A byte size: `"64MiB"`, `"10MB"`, `"512B"` or a plain integer.
    pub(super) fn bytes(&self, value: &Spanned<RawBytes>, what: &str) -> Result<u64> {
        match value.get_ref() {
            RawBytes::Int(v) => u64::try_from(*v).map_err(|_| {
                self.error_at(
                    value.span(),
                    format!("{what} must not be negative, got {v}"),
                )
            }),
            RawBytes::Text(text) => {
                let text = self.substitute(value.span(), text)?;
                bytesize::parse(&text).map_err(|e| {
                    self.error_at(
                        value.span(),
                        format!("invalid byte size `{text}` for {what}: {e}"),
                    )
                })
            }
        }
    }

    /// A byte size that must not be zero.
    pub(super) fn positive_bytes(&self, value: &Spanned<RawBytes>, what: &str) -> Result<u64> {
        let bytes = self.bytes(value, what)?;
        if bytes == 0 {
            return Err(self.error_at(value.span(), format!("{what} must be greater than zero")));
        }
        Ok(bytes)
    }

    /// A socket address such as `0.0.0.0:8080` or `[::1]:9901`.
    pub(super) fn socket_addr(&self, value: &Text, what: &str) -> Result<SocketAddr> {
        let text = self.string(value)?;
        text.parse().map_err(|_| {
            self.error_at(
                value.span(),
                format!(
                    "invalid address `{text}` for {what}: expected `ip:port`, e.g. `0.0.0.0:8080` or `[::1]:9901`"
                ),
            )
        })
    }
}

/// `parse(value)` when the key is present, else `default`.
pub(super) fn or_default<S, T>(
    value: Option<&S>,
    default: T,
    parse: impl FnOnce(&S) -> Result<T>,
) -> Result<T> {
    value.map(parse).transpose().map(|v| v.unwrap_or(default))
}

/// `[A-Za-z0-9._-]{1,64}`: names that are safe in headers, metric labels and Redis keys.
pub(super) fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
