//! Load shedding: under saturation batch goes first, then normal; critical last.

use cell_router::containment::{LoadShedder, LoadShedderConfig, Priority};
use proptest::prelude::*;

use crate::support::Rng;

/// Offered load of 1.5× capacity, a third of each priority, each admitted request held for
/// 100 ticks; returns the admitted share of each priority (critical, normal, batch).
fn saturated_shares() -> [f64; 3] {
    let config = LoadShedderConfig {
        max_in_flight: 100,
        ..LoadShedderConfig::default()
    };
    let shedder = LoadShedder::new(&config);
    let mut rng = Rng::new(7);
    let mut finishing = [0usize; 100]; // ring: requests ending at tick % 100
    let mut in_flight = 0;
    let (mut offered, mut admitted) = ([0u64; 3], [0u64; 3]);
    for tick in 0..100_000 {
        in_flight -= std::mem::take(&mut finishing[tick % 100]);
        let arrivals = if rng.unit() < 0.5 { 1 } else { 2 }; // 1.5 per tick
        for _ in 0..arrivals {
            let p =
                [Priority::Critical, Priority::Normal, Priority::Batch][(rng.next() % 3) as usize];
            offered[p as usize] += 1;
            if shedder.admit(p, in_flight) {
                admitted[p as usize] += 1;
                in_flight += 1;
                finishing[tick % 100] += 1;
            }
        }
    }
    [0, 1, 2].map(|i| admitted[i] as f64 / offered[i] as f64)
}

#[test]
fn batch_is_shed_first_then_normal_critical_last() {
    let [critical, normal, batch] = saturated_shares();
    eprintln!(
        "admitted at 1.5x load: critical {critical:.3}, normal {normal:.3}, batch {batch:.3}"
    );
    assert!(critical > 0.95, "{critical}");
    assert!(normal > 0.5 && normal < critical, "{normal}");
    assert!(batch < 0.05, "{batch}");
}

proptest! {
    /// Admission is monotone: whatever a lower priority gets, a higher one gets too.
    #[test]
    fn higher_priority_is_never_shed_before_lower(max in 1usize..100_000, in_flight in 0usize..200_000) {
        let s = LoadShedder::new(&LoadShedderConfig { max_in_flight: max, ..Default::default() });
        let [c, n, b] = [Priority::Critical, Priority::Normal, Priority::Batch].map(|p| s.admit(p, in_flight));
        prop_assert!(c >= n && n >= b);
        prop_assert_eq!(c, in_flight < max);
    }

    #[test]
    fn parsing_never_panics(s in ".{0,16}") {
        let _ = s.parse::<Priority>();
    }
}
