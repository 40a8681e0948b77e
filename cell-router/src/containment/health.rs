//! [`HealthCheck`]: an upstream's active-health verdict from consecutive probe results.

use std::time::Duration;

use super::clock::{nanos, scale, unit};
use super::error::{InvalidConfig, check};

/// Tuning of active health checks; defaults in `docs/containment.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheckConfig {
    /// Path probed with `GET`. Default `/healthz`.
    pub path: String,
    /// Time between probes of one upstream (before jitter). Default 5 s.
    pub interval: Duration,
    /// A probe not answered 2xx within this fails. Default 1 s.
    pub timeout: Duration,
    /// Each delay is scaled by a uniform factor in `[1 - j, 1 + j]`. Default 0.1.
    pub jitter: f64,
    /// Passed probes in a row that make an unhealthy upstream healthy. Default 2.
    pub healthy_threshold: u32,
    /// Failed probes in a row that make a healthy upstream unhealthy. Default 3.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            jitter: 0.1,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

impl HealthCheckConfig {
    /// # Errors
    /// [`InvalidConfig`] for the first field out of range.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        const S: &str = "health_check";
        check(self.path.starts_with('/'), S, "path", "must start with '/'")?;
        check(!self.interval.is_zero(), S, "interval", "must be positive")?;
        let ok = !self.timeout.is_zero() && self.timeout <= self.interval;
        check(ok, S, "timeout", "must be positive and at most interval")?;
        check(
            (0.0..=1.0).contains(&self.jitter),
            S,
            "jitter",
            "must be in [0, 1]",
        )?;
        check(
            self.healthy_threshold >= 1,
            S,
            "healthy_threshold",
            "must be at least 1",
        )?;
        check(
            self.unhealthy_threshold >= 1,
            S,
            "unhealthy_threshold",
            "must be at least 1",
        )
    }

    /// Delay before the next probe: `interval` jittered by `±jitter` from the caller's
    /// `random`, so gateways started together drift apart instead of probing in lockstep.
    pub fn next_delay(&self, random: u64) -> Duration {
        let j = self.jitter.clamp(0.0, 1.0);
        scale(self.interval, 1.0 - j + 2.0 * j * unit(random))
    }

    /// Delay before an upstream's first probe: uniform in `[0, interval)`, spreading the
    /// probes of many upstreams (and gateways) over the interval.
    pub fn first_delay(&self, random: u64) -> Duration {
        let ns = (u128::from(nanos(self.interval)) * u128::from(random)) >> 64;
        Duration::from_nanos(ns as u64)
    }
}

/// The active-health verdict on an upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Health {
    /// In rotation (as far as active checks go). Upstreams start here: a gateway must serve
    /// from its first second, and passive detection catches a bad instance fast.
    #[default]
    Healthy,
    /// Failed `unhealthy_threshold` probes in a row.
    Unhealthy,
}

/// One upstream's active-health state: flips only after N consecutive results, never on one.
///
/// Owned by the task probing the upstream (`&mut self`); it tells the
/// [`OutlierDetector`](super::OutlierDetector) about flips
/// ([`set_health`](super::OutlierDetector::set_health)).
#[derive(Clone, Debug)]
pub struct HealthCheck {
    health: Health,
    run: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthCheck {
    /// A healthy upstream with the thresholds of `config`.
    pub fn new(config: &HealthCheckConfig) -> Self {
        Self {
            health: Health::Healthy,
            run: 0,
            healthy_threshold: config.healthy_threshold.max(1),
            unhealthy_threshold: config.unhealthy_threshold.max(1),
        }
    }

    /// The current verdict.
    pub fn health(&self) -> Health {
        self.health
    }

    /// Records one probe result; returns the new verdict when it flips.
    pub fn record(&mut self, passed: bool) -> Option<Health> {
        let (agrees, threshold, flipped) = match self.health {
            Health::Healthy => (passed, self.unhealthy_threshold, Health::Unhealthy),
            Health::Unhealthy => (!passed, self.healthy_threshold, Health::Healthy),
        };
        if agrees {
            self.run = 0;
            return None;
        }
        self.run += 1;
        if self.run < threshold {
            return None;
        }
        self.run = 0;
        self.health = flipped;
        Some(flipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_after_consecutive_results_only() {
        let mut h = HealthCheck::new(&HealthCheckConfig::default());
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None); // the run is broken
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(Health::Unhealthy));
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Health::Healthy));
    }

    #[test]
    fn delays_are_jittered_within_bounds() {
        let c = HealthCheckConfig::default();
        assert_eq!(c.next_delay(0), Duration::from_millis(4500));
        assert!(c.next_delay(u64::MAX) <= Duration::from_millis(5500));
        assert!(c.first_delay(u64::MAX) < c.interval);
        assert!(c.validate().is_ok());
    }
}
