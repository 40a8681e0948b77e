//! [`P2c`]: power-of-two-choices among a cell's upstreams by [`Load`].

/// One upstream's standing for a [`P2c`] pick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Lower is better, typically [`PeakEwma::cost`](super::PeakEwma::cost), divided by a
    /// slow-start weight ([`with_weight`](Self::with_weight)). NaN counts as infinitely costly.
    pub cost: f64,
    /// Whether it may be picked: not ejected and passing health checks, or any upstream in
    /// panic mode ([`OutlierDetector::eligible`](super::OutlierDetector::eligible)).
    pub eligible: bool,
}

impl Load {
    /// A load of `cost`.
    pub fn new(cost: f64, eligible: bool) -> Self {
        Self { cost, eligible }
    }

    /// The cost divided by a weight in `(0, 1]` (e.g. a slow-start factor): an upstream at
    /// weight 0.1 looks 10 times as loaded. Weights below 0.01 count as 0.01.
    pub fn with_weight(self, weight: f64) -> Self {
        let weight = if weight.is_nan() {
            1.0
        } else {
            weight.clamp(0.01, 1.0)
        };
        Self {
            cost: self.cost / weight,
            ..self
        }
    }

    fn key(&self) -> f64 {
        if self.cost.is_nan() {
            f64::INFINITY
        } else {
            self.cost
        }
    }
}

/// Power of two choices: sample two distinct upstreams, send to the less loaded.
///
/// Compared with least-loaded over all upstreams, it needs two load reads instead of `n` and
/// does not herd every gateway onto the same instance; compared with random, it steers away
/// from a slow or busy instance within a few requests (Mitzenmacher 2001; Linkerd, tower).
#[derive(Clone, Copy, Debug, Default)]
pub struct P2c;

impl P2c {
    /// Picks one of `len` upstreams using the caller's uniform `random` number.
    ///
    /// `random` picks two distinct indices (the first uniform, the second uniform among the
    /// rest); the eligible one with the lower cost wins, ties going to the first. If neither
    /// is eligible, the cheapest eligible upstream of all is taken (a scan, only on that rare
    /// path). `None` if `len` is 0 or nothing is eligible. Allocation-free; calls `load` twice
    /// on the common path.
    pub fn pick(len: usize, random: u64, mut load: impl FnMut(usize) -> Load) -> Option<usize> {
        if len <= 1 {
            return (len == 1 && load(0).eligible).then_some(0);
        }
        let n = len as u64;
        let i = (random % n) as usize;
        let j = ((i as u64 + 1 + (random / n) % (n - 1)) % n) as usize;
        let (a, b) = (load(i), load(j));
        match (a.eligible, b.eligible) {
            (true, true) => Some(if b.key() < a.key() { j } else { i }),
            (true, false) => Some(i),
            (false, true) => Some(j),
            (false, false) => (0..len)
                .map(|k| (k, load(k)))
                .filter(|(_, l)| l.eligible)
                .min_by(|(_, x), (_, y)| x.key().total_cmp(&y.key()))
                .map(|(k, _)| k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cost_wins_and_ineligible_never() {
        let loads = [
            Load::new(5.0, true),
            Load::new(1.0, true),
            Load::new(0.0, false),
        ];
        for r in 0..64 {
            let k = P2c::pick(3, r, |i| loads[i]).unwrap_or(usize::MAX);
            assert_ne!(k, 2);
        }
        assert_eq!(P2c::pick(2, 7, |i| loads[i]), Some(1));
        assert_eq!(P2c::pick(0, 7, |i| loads[i]), None);
        assert_eq!(P2c::pick(1, 7, |_| loads[2]), None);
        assert_eq!(P2c::pick(3, 0, |_| Load::new(1.0, false)), None);
    }

    #[test]
    fn weight_scales_cost() {
        assert_eq!(Load::new(1.0, true).with_weight(0.1).cost, 10.0);
        assert_eq!(Load::new(1.0, true).with_weight(0.0).cost, 100.0);
        assert_eq!(Load::new(1.0, true).with_weight(f64::NAN).cost, 1.0);
    }
}
