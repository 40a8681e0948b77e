//! [`PeakEwma`]: Linkerd's peak-EWMA latency estimate of one upstream, and its load cost.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::clock::{Epoch, nanos};
use super::error::{InvalidConfig, check};
use super::outcome::Outcome;

/// Tuning of [`PeakEwma`].
#[derive(Clone, Debug, PartialEq)]
pub struct PeakEwmaConfig {
    /// Time constant of the decay: an observation's weight falls to `1/e` after this long.
    /// Default 10 s (Linkerd's).
    pub decay: Duration,
    /// Estimate of an upstream never observed. Default 30 ms (Linkerd's): new instances are
    /// neither shunned nor flooded.
    pub default_rtt: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> Self {
        Self {
            decay: Duration::from_secs(10),
            default_rtt: Duration::from_millis(30),
        }
    }
}

impl PeakEwmaConfig {
    /// # Errors
    /// [`InvalidConfig`] if `decay` is under 1 ms.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let ok = self.decay >= Duration::from_millis(1);
        check(ok, "peak_ewma", "decay", "must be at least 1ms")
    }
}

/// A peak-sensitive moving average of one upstream's latency, and its requests in flight.
///
/// - A latency above the current estimate replaces it at once (the peak): a slow instance is
///   penalised by its first slow answer.
/// - A lower latency pulls the estimate toward it with weight `1 - exp(-elapsed / decay)`,
///   `elapsed` being the time since the previous observation.
/// - Between observations the estimate decays toward 0 with the same time constant, so an
///   instance that lost all its traffic is eventually tried again (and, if still slow,
///   penalised again by its first answer).
///
/// [`cost`](Self::cost) is `estimate × (in_flight + 1)`, the load [`P2c`](super::P2c)
/// compares. Lock-free: the estimate (an `f32` of nanoseconds) and the time of the last
/// observation (wrapping milliseconds since construction) share one `AtomicU64`.
#[derive(Debug)]
pub struct PeakEwma {
    state: AtomicU64,
    in_flight: AtomicU32,
    decay_ms: f64,
    epoch: Epoch,
}

impl PeakEwma {
    /// An upstream never observed: estimate `config.default_rtt`, nothing in flight.
    pub fn new(config: &PeakEwmaConfig, now: Instant) -> Self {
        Self {
            state: AtomicU64::new(pack(nanos(config.default_rtt) as f32, 0)),
            in_flight: AtomicU32::new(0),
            decay_ms: (config.decay.as_secs_f64() * 1e3).max(1.0),
            epoch: Epoch::new(now),
        }
    }

    /// Counts a request in flight until the returned guard is finished or dropped.
    pub fn start(&self, now: Instant) -> Pending<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Pending {
            ewma: self,
            start: now,
        }
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The latency estimate at `now`, decayed toward 0 since the last observation.
    pub fn estimate(&self, now: Instant) -> Duration {
        let (value, stamp) = unpack(self.state.load(Ordering::Relaxed));
        let est = value * self.weight(self.now_ms(now), stamp);
        Duration::from_nanos(est as u64)
    }

    /// `estimate × (in_flight + 1)` in nanoseconds: lower is better.
    pub fn cost(&self, now: Instant) -> f64 {
        let (value, stamp) = unpack(self.state.load(Ordering::Relaxed));
        value * self.weight(self.now_ms(now), stamp) * (f64::from(self.in_flight()) + 1.0)
    }

    /// Feeds one successful request's latency.
    pub fn observe(&self, rtt: Duration, now: Instant) {
        self.update(nanos(rtt) as f64, now, false);
    }

    /// Feeds a failure that took `elapsed`: it may raise the estimate (a timeout is a peak)
    /// but never lowers it, so an instance failing fast does not look fast.
    pub fn observe_failure(&self, elapsed: Duration, now: Instant) {
        self.update(nanos(elapsed) as f64, now, true);
    }

    fn update(&self, rtt: f64, now: Instant, peak_only: bool) {
        let now_ms = self.now_ms(now);
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (stored, stamp) = unpack(cur);
            let w = self.weight(now_ms, stamp);
            let next = if rtt >= stored * w {
                rtt
            } else if peak_only {
                return;
            } else {
                stored * w + rtt * (1.0 - w)
            };
            // A racing caller with a later `now` keeps its stamp.
            let stamp = if ahead(now_ms, stamp) { now_ms } else { stamp };
            let new = pack(next as f32, stamp);
            match self
                .state
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    fn now_ms(&self, now: Instant) -> u32 {
        // Wrapping by design: only differences of stamps are used.
        (self.epoch.nanos(now) / 1_000_000) as u32
    }

    /// `exp(-elapsed / decay)`; a `now` behind the stamp counts as no time elapsed.
    fn weight(&self, now_ms: u32, stamp: u32) -> f64 {
        if !ahead(now_ms, stamp) {
            return 1.0;
        }
        (-f64::from(now_ms.wrapping_sub(stamp)) / self.decay_ms).exp()
    }
}

/// A request counted in flight on a [`PeakEwma`]; dropping it uncounts without observing.
#[derive(Debug)]
#[must_use = "dropping a Pending at once counts nothing in flight"]
pub struct Pending<'a> {
    ewma: &'a PeakEwma,
    start: Instant,
}

impl Pending<'_> {
    /// Ends the request: a success feeds its latency, an upstream failure feeds the time it
    /// took as a possible peak, and [`Outcome::Local`] feeds nothing.
    pub fn finish(self, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Success { latency } => self.ewma.observe(latency, now),
            Outcome::UpstreamError | Outcome::Timeout => self
                .ewma
                .observe_failure(now.saturating_duration_since(self.start), now),
            Outcome::Local => {}
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.ewma.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether wrapping stamp `a` is strictly after `b` (less than 2^31 ms, 24 days, ahead).
fn ahead(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < 1 << 31
}

fn pack(value_ns: f32, stamp_ms: u32) -> u64 {
    let value = if value_ns.is_finite() {
        value_ns.max(0.0)
    } else {
        f32::MAX
    };
    (u64::from(value.to_bits()) << 32) | u64::from(stamp_ms)
}

fn unpack(v: u64) -> (f64, u32) {
    (f64::from(f32::from_bits((v >> 32) as u32)), v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn peaks_jump_and_lows_decay_slowly() {
        let t0 = Instant::now();
        let e = PeakEwma::new(&PeakEwmaConfig::default(), t0);
        assert_eq!(e.estimate(t0), 30 * MS);
        e.observe(200 * MS, t0 + MS);
        assert!(e.estimate(t0 + MS) >= 199 * MS);
        e.observe(2 * MS, t0 + 2 * MS); // 1 ms of a 10 s time constant: barely moves
        assert!(e.estimate(t0 + 2 * MS) > 190 * MS);
        // 10 s of silence: decays to 1/e of the peak.
        let later = e.estimate(t0 + Duration::from_millis(10_002)).as_secs_f64();
        assert!((later - 0.2 / std::f64::consts::E).abs() < 0.002, "{later}");
    }

    #[test]
    fn failures_only_raise_and_in_flight_scales_cost() {
        let t0 = Instant::now();
        let e = PeakEwma::new(&PeakEwmaConfig::default(), t0);
        e.start(t0).finish(Outcome::UpstreamError, t0 + MS); // fast failure: no raise
        assert!(e.estimate(t0 + MS) <= 30 * MS && e.estimate(t0 + MS) > 29 * MS);
        let a = e.start(t0);
        let b = e.start(t0);
        assert_eq!(e.in_flight(), 2);
        assert!((e.cost(t0) - 3.0 * 30e6).abs() < 1.0);
        a.finish(Outcome::Timeout, t0 + 5000 * MS); // a timeout is a peak
        assert_eq!(e.estimate(t0 + 5000 * MS), 5000 * MS);
        drop(b);
        assert_eq!(e.in_flight(), 0);
    }
}
