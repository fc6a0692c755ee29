//! Locality tiers as Envoy priorities: how much of the traffic each tier takes given how
//! healthy it is. Pure integer arithmetic, exactly Envoy's:
//!
//! ```text
//! health(t) = min(100, factor% × healthy_t / total_t)      (factor 140 by default)
//! NTH       = min(100, Σ health)                            (normalized total health)
//! load(0)   = min(100, health(0) × 100 / NTH)
//! load(t)   = min(100 − Σ load(<t), health(t) × 100 / NTH)
//! ```
//!
//! A tier keeps all traffic until fewer than ~71.4 % of it is healthy, then sheds exactly the
//! missing health to the next tier.

/// Health of a tier in percent.
pub fn tier_health(healthy: u64, total: u64, overprovisioning_factor: u32) -> u32 {
    if total == 0 {
        return 0;
    }
    let scaled = u64::from(overprovisioning_factor) * healthy / total;
    scaled.min(100) as u32
}

/// Percent of traffic per tier. Sums to 100, or to 0 when no tier has any health.
pub fn tier_loads(health: &[u32]) -> Vec<u32> {
    let nth = health.iter().map(|&h| u64::from(h)).sum::<u64>().min(100);
    let mut loads = vec![0u32; health.len()];
    if nth == 0 {
        return loads;
    }
    let mut assigned = 0u32;
    for (load, &h) in loads.iter_mut().zip(health) {
        let share = (u64::from(h) * 100 / nth).min(100) as u32;
        *load = share.min(100 - assigned);
        assigned += *load;
    }
    // Integer division can leave a point or two unassigned (e.g. three tiers at 33);
    // Envoy gives the rest to the first tier that has any health.
    if assigned < 100
        && let Some(first) = health.iter().position(|&h| h > 0)
    {
        loads[first] += 100 - assigned;
    }
    loads
}

/// The tier a request falls in, for `roll` uniformly drawn from `0..100`.
pub fn choose_tier(loads: &[u32], roll: u32) -> Option<usize> {
    let mut upper = 0;
    for (tier, &load) in loads.iter().enumerate() {
        upper += load;
        if roll < upper {
            return Some(tier);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Envoy's documented table: P0 healthy% → P0/P1 load, P1 fully healthy.
    #[test]
    fn envoy_priority_examples() {
        for (healthy_pct, expect) in [
            (72, [100, 0]),
            (71, [99, 1]),
            (50, [70, 30]),
            (25, [35, 65]),
            (0, [0, 100]),
        ] {
            let health = [
                tier_health(healthy_pct, 100, 140),
                tier_health(100, 100, 140),
            ];
            assert_eq!(tier_loads(&health), expect, "{healthy_pct}% healthy");
        }
    }

    #[test]
    fn degraded_tiers_are_normalized() {
        // Envoy's example: healths {20, 30} give {40 %, 60 %}.
        assert_eq!(tier_loads(&[20, 30]), vec![40, 60]);
        assert_eq!(tier_loads(&[0, 0, 0]), vec![0, 0, 0]);
        assert_eq!(tier_loads(&[33, 33, 33]), vec![34, 33, 33]);
    }

    #[test]
    fn rolls_map_onto_loads() {
        let loads = [70, 30, 0];
        assert_eq!(choose_tier(&loads, 0), Some(0));
        assert_eq!(choose_tier(&loads, 69), Some(0));
        assert_eq!(choose_tier(&loads, 70), Some(1));
        assert_eq!(choose_tier(&loads, 99), Some(1));
        assert_eq!(choose_tier(&[0, 0], 5), None);
    }

    proptest! {
        #[test]
        fn loads_sum_to_100_or_0(health in proptest::collection::vec(0u32..=100, 1..6)) {
            let loads = tier_loads(&health);
            let sum: u32 = loads.iter().sum();
            if health.iter().all(|&h| h == 0) {
                prop_assert_eq!(sum, 0);
            } else {
                prop_assert_eq!(sum, 100);
            }
            for (l, h) in loads.iter().zip(&health) {
                if *h == 0 { prop_assert_eq!(*l, 0); }
            }
        }

        #[test]
        fn a_healthy_first_tier_takes_everything(h0 in 72u64..=100, rest in proptest::collection::vec(0u32..=100, 0..4)) {
            let mut health = vec![tier_health(h0, 100, 140)];
            health.extend(rest);
            prop_assert_eq!(tier_loads(&health)[0], 100);
        }

        #[test]
        fn less_health_never_means_more_load(healthy in 0u64..=100, more in 0u64..=100) {
            let (lo, hi) = (healthy.min(more), healthy.max(more));
            let load_lo = tier_loads(&[tier_health(lo, 100, 140), 100])[0];
            let load_hi = tier_loads(&[tier_health(hi, 100, 140), 100])[0];
            prop_assert!(load_lo <= load_hi);
        }
    }
}
