//! Latency comparisons for tests that measure traffic before a fault and during it, on a
//! shared machine whose hiccups stall every process at once: a window's p99 is taken as the
//! median of the p99s of equal slices of it, so one hiccup lifts one slice and not the
//! result, while a real slowdown lifts every slice. Paced clients make a stall confined to
//! one slice visible as missing requests ([`Slice::rate`]).

use std::time::{Duration, Instant};

/// The 99th percentile (nearest rank) of `latencies`; zero for none.
pub fn p99(latencies: impl IntoIterator<Item = Duration>) -> Duration {
    let mut l: Vec<Duration> = latencies.into_iter().collect();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l.sort_unstable();
    l[(l.len() * 99 / 100).min(l.len() - 1)]
}

/// One slice of a window of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// Requests that started in it.
    pub requests: usize,
    /// Their p99 latency.
    pub p99: Duration,
    /// Its length.
    pub len: Duration,
}

impl Slice {
    /// Requests started per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.len.as_secs_f64()
    }
}

/// Cuts `[from, to)` into `n` equal slices, each with the requests of `samples` (start time,
/// latency) that started in it.
pub fn slices(samples: &[(Instant, Duration)], from: Instant, to: Instant, n: u32) -> Vec<Slice> {
    let len = (to - from) / n.max(1);
    (0..n)
        .map(|i| {
            let (a, b) = (from + len * i, from + len * (i + 1));
            let inside: Vec<Duration> = samples
                .iter()
                .filter(|(at, _)| *at >= a && *at < b)
                .map(|(_, latency)| *latency)
                .collect();
            Slice {
                requests: inside.len(),
                p99: p99(inside),
                len,
            }
        })
        .collect()
}

/// The median of the slices' p99s (the upper middle one for an even count).
pub fn median_p99(slices: &[Slice]) -> Duration {
    median(slices.iter().map(|s| s.p99))
}

/// The median of the slices' request rates (the upper middle one for an even count).
pub fn median_rate(slices: &[Slice]) -> f64 {
    let mut rates: Vec<f64> = slices.iter().map(Slice::rate).collect();
    rates.sort_unstable_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied().unwrap_or(0.0)
}

fn median(values: impl IntoIterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = values.into_iter().collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn p99_is_the_nearest_rank() {
        assert_eq!(p99((1..=100).map(|i| MS * i)), MS * 100);
        assert_eq!(p99((1..=200).map(|i| MS * i)), MS * 199);
        assert_eq!(p99([MS * 7]), MS * 7);
        assert_eq!(p99([]), Duration::ZERO);
    }

    #[test]
    fn one_slow_slice_does_not_move_the_median_and_a_slow_window_does() {
        let t0 = Instant::now();
        // 300 requests over 3 s, 1 ms each, but 10 ms ones in the second second.
        let hiccup: Vec<(Instant, Duration)> = (0..300u32)
            .map(|i| {
                let latency = if (100..110).contains(&i) { MS * 10 } else { MS };
                (t0 + MS * (10 * i), latency)
            })
            .collect();
        let s = slices(&hiccup, t0, t0 + MS * 3000, 3);
        assert_eq!(s.iter().map(|s| s.requests).collect::<Vec<_>>(), [100; 3]);
        assert_eq!(s[1].p99, MS * 10);
        assert_eq!(median_p99(&s), MS);
        assert!((median_rate(&s) - 100.0).abs() < 1e-9);

        let slow: Vec<(Instant, Duration)> =
            hiccup.iter().map(|(at, l)| (*at, *l + MS * 5)).collect();
        assert_eq!(median_p99(&slices(&slow, t0, t0 + MS * 3000, 3)), MS * 6);
    }
}
