//! Active health: verdicts flip only after N consecutive results.

use cell_router::containment::{Health, HealthCheck, HealthCheckConfig};
use proptest::prelude::*;

proptest! {
    #[test]
    fn flips_need_a_full_run(results in prop::collection::vec(any::<bool>(), 0..200)) {
        let mut check = HealthCheck::new(&HealthCheckConfig::default());
        for (i, &passed) in results.iter().enumerate() {
            let before = check.health();
            let flip = check.record(passed);
            prop_assert_eq!(flip.is_some(), before != check.health());
            let run = |n: usize, want: bool| i + 1 >= n && results[i + 1 - n..=i].iter().all(|&r| r == want);
            match flip {
                Some(Health::Unhealthy) => prop_assert!(run(3, false)),
                Some(Health::Healthy) => prop_assert!(run(2, true)),
                None => {}
            }
        }
    }

    #[test]
    fn delays_stay_within_jitter(random in any::<u64>()) {
        let c = HealthCheckConfig::default();
        let d = c.next_delay(random).as_secs_f64();
        prop_assert!((4.5..=5.5).contains(&d));
        prop_assert!(c.first_delay(random) < c.interval);
    }
}
