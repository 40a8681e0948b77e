//! [`LoadShedder`]: refuses lower-priority requests first when the gateway is saturated.

use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

use super::error::{InvalidConfig, check, is_ratio};

/// A request's priority, from `X-Priority` or route config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Shed only when the gateway is completely full.
    Critical,
    /// The default.
    #[default]
    Normal,
    /// Shed first.
    Batch,
}

impl Priority {
    /// `critical`, `normal` or `batch`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Normal => "normal",
            Self::Batch => "batch",
        }
    }
}

/// A priority that is not `critical`, `normal` or `batch`.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("priority must be critical, normal or batch")]
pub struct ParsePriorityError;

impl FromStr for Priority {
    type Err = ParsePriorityError;

    /// ASCII case-insensitive, surrounding whitespace ignored. A gateway should treat an
    /// unparsable `X-Priority` as [`Normal`](Priority::Normal), not as an error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [Self::Critical, Self::Normal, Self::Batch]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or(ParsePriorityError)
    }
}

/// Tuning of a [`LoadShedder`]; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadShedderConfig {
    /// Requests in flight through the whole gateway at which it is full. Default 10 000.
    pub max_in_flight: usize,
    /// Share of `max_in_flight` above which `batch` is shed. Default 0.7.
    pub batch_share: f64,
    /// Share of `max_in_flight` above which `normal` is shed. Default 0.9.
    pub normal_share: f64,
}

impl Default for LoadShedderConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            batch_share: 0.7,
            normal_share: 0.9,
        }
    }
}

impl LoadShedderConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "load_shedding";
        check(
            self.max_in_flight >= 1,
            S,
            "max_in_flight",
            "must be at least 1",
        )?;
        check(
            is_ratio(self.normal_share),
            S,
            "normal_share",
            "must be in (0, 1]",
        )?;
        let ok = is_ratio(self.batch_share) && self.batch_share <= self.normal_share;
        check(ok, S, "batch_share", "must be in (0, normal_share]")
    }
}

/// Priority admission on a saturation signal: requests in flight through the gateway.
///
/// In-flight is read from counters the gateway keeps anyway, reacts within one request and
/// needs no clock. Queueing delay (CoDel-style) is the alternative signal, but this gateway
/// never queues (bulkheads refuse at once), so the only queue is the runtime's, whose delay
/// is measured late and noisily; in-flight with a fixed limit is the predictable choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadShedder {
    /// Admission limits, indexed like [`Priority`]: critical, normal, batch.
    limits: [usize; 3],
}

impl LoadShedder {
    /// Precomputes the per-priority limits of `config`.
    pub fn new(config: &LoadShedderConfig) -> Self {
        let max = config.max_in_flight;
        let at = |share: f64| (max as f64 * share.clamp(0.0, 1.0)).floor() as usize;
        Self {
            limits: [max, at(config.normal_share), at(config.batch_share)],
        }
    }

    /// Whether to admit a request of `priority` when `in_flight` requests (not counting
    /// this one) are already in flight: `batch` while under 70% of the maximum, `normal`
    /// under 90%, `critical` under 100% (defaults). Otherwise answer `overloaded` 503.
    pub fn admit(&self, priority: Priority, in_flight: usize) -> bool {
        in_flight < self.limit(priority)
    }

    /// In-flight count from which `priority` is shed.
    pub fn limit(&self, priority: Priority) -> usize {
        self.limits[priority as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults() {
        assert_eq!(" Batch ".parse(), Ok(Priority::Batch));
        assert_eq!("CRITICAL".parse(), Ok(Priority::Critical));
        assert_eq!("urgent".parse::<Priority>(), Err(ParsePriorityError));
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn limits_follow_shares() {
        let s = LoadShedder::new(&LoadShedderConfig::default());
        assert!(s.admit(Priority::Batch, 6_999) && !s.admit(Priority::Batch, 7_000));
        assert!(s.admit(Priority::Normal, 8_999) && !s.admit(Priority::Normal, 9_000));
        assert!(s.admit(Priority::Critical, 9_999) && !s.admit(Priority::Critical, 10_000));
    }
}
