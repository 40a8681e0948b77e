//! How a gateway's share of a limit is computed: pure functions, property-tested.
//!
//! A share `s ∈ (0, 1]` turns the policy's rate `R = limit / per` and burst `B` into the local
//! bucket `rate = R·s`, `capacity = max(B·s, 1)`. The shares of all gateways for a key sum to 1
//! when they come from the same Redis snapshot, so the fleet admits `R`. See the crate docs for
//! the bounds.

/// Each reporting gateway counts as demanding at least `total / (FLOOR_DIVISOR · live)`, so a
/// gateway whose demand was near zero is not starved when its traffic returns. The Lua script
/// applies the same floor to the sum (keep the two in step).
pub(crate) const FLOOR_DIVISOR: f64 = 10.0;

/// A sync answer for one key: the sums over live gateways' entries, this one's included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GlobalView {
    /// Demand this gateway reported, requests per second.
    pub(crate) own: f64,
    /// Σ demand of live gateways, requests per second.
    pub(crate) total: f64,
    /// Σ max(demand, total / (FLOOR_DIVISOR · live)).
    pub(crate) effective_total: f64,
    /// Live gateways with an entry for the key.
    pub(crate) live: u32,
}

/// Share used before anything is known: an equal split over the live gateways.
pub(crate) fn default_share(live_gateways: usize) -> f64 {
    1.0 / live_gateways.max(1) as f64
}

/// This gateway's share from a sync answer: its floored demand over the floored total.
/// `None` when the answer carries no demand at all (nobody active): keep the current share.
pub(crate) fn synced_share(view: GlobalView) -> Option<f64> {
    if view.effective_total.is_nan() || view.effective_total <= 0.0 || view.live == 0 {
        return None;
    }
    let floor = view.total / (FLOOR_DIVISOR * f64::from(view.live));
    let own = view.own.max(floor);
    Some((own / view.effective_total).clamp(f64::MIN_POSITIVE, 1.0))
}

/// On the first ticks after Redis comes back, a share shrinks by at most half per tick: the
/// fleet's view is still settling and a sharp cut would refuse keys that are under their limit.
pub(crate) fn smoothed_after_recovery(previous: f64, next: f64) -> f64 {
    next.max(previous / 2.0)
}

/// Requests the demand average should span: a key seen less than once per sync interval would
/// otherwise read as idle after every gap (its share collapsing to the floor, its next request
/// refused) although its rate is steady; thin per-gateway traffic is what many gateways make.
const WINDOW_REQUESTS: f64 = 4.0;
/// The longest demand time constant, in ns: a key's share still follows a traffic shift
/// within a few seconds.
const MAX_TAU_NS: f64 = 1e9;

/// The demand average's time constant for a key whose rate is about `rate` (requests per
/// second): `base_ns` (the sync interval) for busy keys, longer for thin ones, so that the
/// window spans [`WINDOW_REQUESTS`], at most [`MAX_TAU_NS`] (or `base_ns` if longer).
pub(crate) fn demand_tau(base_ns: f64, rate: f64) -> f64 {
    if rate.is_nan() || rate <= 0.0 {
        return base_ns;
    }
    (WINDOW_REQUESTS * 1e9 / rate).clamp(base_ns, base_ns.max(MAX_TAU_NS))
}

/// Exponentially weighted moving average of a rate: `sample` observed over `dt`, time constant
/// `tau` (same unit as `dt`).
pub(crate) fn ewma(previous: f64, sample: f64, dt: f64, tau: f64) -> f64 {
    if dt.is_nan() || tau.is_nan() || dt <= 0.0 || tau <= 0.0 {
        return previous;
    }
    let alpha = 1.0 - (-dt / tau).exp();
    previous + alpha * (sample - previous)
}

/// Whether a key needs its share refreshed every tick ("hot") rather than every few ticks:
/// this gateway refused or nearly emptied its bucket, or uses half its local rate, or the
/// fleet's demand is at least half the limit.
pub(crate) fn is_hot(
    pressured: bool,
    demand: f64,
    local_rate: f64,
    global_demand: f64,
    limit_rate: f64,
) -> bool {
    pressured || demand >= 0.5 * local_rate || global_demand >= 0.5 * limit_rate
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the Lua script computes, for the property tests.
    fn answer(demands: &[f64], own: usize) -> GlobalView {
        let total: f64 = demands.iter().sum();
        let live = demands.len() as u32;
        let floor = total / (FLOOR_DIVISOR * f64::from(live));
        let effective_total = demands.iter().map(|d| d.max(floor)).sum();
        GlobalView {
            own: demands[own],
            total,
            effective_total,
            live,
        }
    }

    #[test]
    fn shares_follow_demand() {
        let d = [420.0, 120.0, 60.0];
        let s: Vec<f64> = (0..3)
            .map(|i| synced_share(answer(&d, i)).unwrap_or(0.0))
            .collect();
        assert!(
            (s[0] - 0.7).abs() < 1e-9 && (s[1] - 0.2).abs() < 1e-9 && (s[2] - 0.1).abs() < 1e-9
        );
    }

    #[test]
    fn thin_keys_average_over_a_longer_window() {
        let base = 100e6;
        assert_eq!(demand_tau(base, 0.0), base);
        assert_eq!(
            demand_tau(base, 1000.0),
            base,
            "busy keys: the sync interval"
        );
        assert_eq!(demand_tau(base, 10.0), 400e6, "4 requests' worth");
        assert_eq!(demand_tau(base, 1.0), 1e9, "capped at 1 s");
        assert_eq!(demand_tau(2e9, 1.0), 2e9, "never below the sync interval");
    }

    #[test]
    fn an_idle_gateway_keeps_a_floor() {
        let s = synced_share(answer(&[1000.0, 0.0], 1)).unwrap_or(0.0);
        assert!(s > 1.0 / 21.0 - 1e-9, "{s}");
    }

    #[test]
    fn no_demand_keeps_the_current_share() {
        assert_eq!(synced_share(answer(&[0.0, 0.0], 0)), None);
        assert_eq!(default_share(0), 1.0);
        assert_eq!(default_share(4), 0.25);
    }

    #[test]
    fn recovery_halves_at_most() {
        assert_eq!(smoothed_after_recovery(0.8, 0.1), 0.4);
        assert_eq!(smoothed_after_recovery(0.2, 0.5), 0.5);
    }

    #[test]
    fn ewma_converges() {
        let mut d = 0.0;
        for _ in 0..20 {
            d = ewma(d, 100.0, 0.1, 0.1);
        }
        assert!((d - 100.0).abs() < 1e-3);
        assert_eq!(ewma(5.0, 100.0, 0.0, 0.1), 5.0);
    }

    proptest! {
        /// Shares from one snapshot sum to 1: the fleet admits exactly the limit.
        #[test]
        fn shares_sum_to_one(demands in proptest::collection::vec(0.0f64..1e6, 1..16)) {
            prop_assume!(demands.iter().sum::<f64>() > 0.0);
            let sum: f64 = (0..demands.len())
                .map(|i| synced_share(answer(&demands, i)).unwrap_or(0.0))
                .sum();
            prop_assert!((sum - 1.0).abs() < 1e-9, "{sum}");
        }

        /// Under the limit, everyone's local rate covers its demand.
        #[test]
        fn under_the_limit_everyone_gets_its_demand(
            demands in proptest::collection::vec(0.0f64..1e3, 1..16),
            limit in 1.0f64..1e6,
        ) {
            let total: f64 = demands.iter().sum();
            prop_assume!(total > 0.0 && total <= limit);
            for i in 0..demands.len() {
                let rate = limit * synced_share(answer(&demands, i)).unwrap_or(0.0);
                prop_assert!(rate >= demands[i] * (1.0 - 1e-9));
            }
        }

        /// Every gateway gets at least 1/(11·live) of the limit.
        #[test]
        fn floor_holds(demands in proptest::collection::vec(0.0f64..1e6, 1..16)) {
            prop_assume!(demands.iter().sum::<f64>() > 0.0);
            let n = demands.len() as f64;
            for i in 0..demands.len() {
                let s = synced_share(answer(&demands, i)).unwrap_or(0.0);
                prop_assert!(s >= 1.0 / (11.0 * n) - 1e-12);
            }
        }

        /// Recovery smoothing never shrinks by more than half and never lowers a growing share.
        #[test]
        fn smoothing_bounds(prev in 0.0f64..1.0, next in 0.0f64..1.0) {
            let s = smoothed_after_recovery(prev, next);
            prop_assert!(s >= prev / 2.0 && s >= next && s <= prev.max(next));
        }
    }
}
