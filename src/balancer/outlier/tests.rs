use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use super::*;

/// Envoy's defaults as DESIGN.md §3 states them.
fn config() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx_errors: 5,
        consecutive_gateway_errors: 0,
        split_external_local_origin_errors: false,
        consecutive_local_origin_failures: 5,
        interval: secs(10),
        base_ejection_time: secs(30),
        max_ejection_time: secs(300),
        max_ejection_time_jitter: Duration::ZERO,
        max_ejection_percent: 10,
        enforcing_consecutive_5xx: 100,
        enforcing_consecutive_gateway_errors: 100,
        enforcing_consecutive_local_origin_failures: 100,
        success_rate_minimum_hosts: 5,
        success_rate_request_volume: 100,
        success_rate_stdev_factor: 1900,
        enforcing_success_rate: 100,
        failure_percentage_threshold: 85,
        failure_percentage_minimum_hosts: 5,
        failure_percentage_request_volume: 50,
        enforcing_failure_percentage: 0,
    }
}

fn detector(config: OutlierConfig, tiers: Vec<u32>) -> Detector {
    Detector::new(config, tiers, SmallRng::seed_from_u64(7))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ejected(host: HostId, reason: EjectReason, until: Instant) -> Event {
    Event::Ejected {
        host,
        reason,
        until,
        enforced: true,
    }
}

/// Records `outcome` `n` times and returns every event.
fn feed(d: &mut Detector, host: HostId, outcome: Outcome, n: usize, now: Instant) -> Vec<Event> {
    (0..n).flat_map(|_| d.record(host, outcome, now)).collect()
}

fn view(d: &Detector, host: HostId) -> HostView {
    d.host(host).expect("known host")
}

// (1) Envoy's doc example: 2 connect timeouts then an HTTP 500 are 3 consecutive errors.
#[test]
fn timeouts_count_as_5xx_without_split() {
    let mut d = detector(
        OutlierConfig {
            consecutive_5xx_errors: 3,
            ..config()
        },
        vec![0],
    );
    let t = Instant::now();
    assert!(d.record(0, Outcome::Timeout, t).is_empty());
    assert!(d.record(0, Outcome::Timeout, t).is_empty());
    let events = d.record(0, Outcome::Http(500), t);
    assert_eq!(
        events,
        [ejected(0, EjectReason::Consecutive5xx, t + secs(30))]
    );
    assert!(d.is_ejected(0));
    assert_eq!(
        view(&d, 0).consecutive_5xx,
        0,
        "the counter that fired is reset"
    );
}

#[test]
fn connect_failures_are_gateway_errors_without_split() {
    let mut d = detector(
        OutlierConfig {
            consecutive_5xx_errors: 0,
            consecutive_gateway_errors: 2,
            ..config()
        },
        vec![0],
    );
    let t = Instant::now();
    assert!(d.record(0, Outcome::ConnectFailed, t).is_empty());
    let events = d.record(0, Outcome::ConnectFailed, t);
    assert_eq!(
        events,
        [ejected(
            0,
            EjectReason::ConsecutiveGatewayErrors,
            t + secs(30)
        )]
    );
}

#[test]
fn connect_success_is_ignored_and_final_success_resets_without_split() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 3,
        ..config()
    };
    let mut d = detector(cfg, vec![0, 1]);
    let t = Instant::now();
    feed(&mut d, 0, Outcome::Http(500), 2, t);
    assert!(d.record(0, Outcome::ConnectSuccess, t).is_empty());
    assert_eq!(
        d.record(0, Outcome::Http(500), t).len(),
        1,
        "ConnectSuccess did not reset"
    );
    feed(&mut d, 1, Outcome::Http(500), 2, t);
    assert!(d.record(1, Outcome::ConnectSuccessFinal, t).is_empty());
    assert!(
        d.record(1, Outcome::Http(500), t).is_empty(),
        "ConnectSuccessFinal is a 200"
    );
    assert_eq!(view(&d, 1).consecutive_5xx, 1);
}

// (2) Envoy's code example: {50,100,100,100,100} gives mean 90, stdev 20, threshold 52.
#[test]
fn success_rate_threshold_matches_envoy_example() {
    let (mean, threshold) = success_rate_threshold(&[50.0, 100.0, 100.0, 100.0, 100.0], 1900);
    assert!((mean - 90.0).abs() < 1e-9, "{mean}");
    assert!((threshold - 52.0).abs() < 1e-9, "{threshold}");
    assert_eq!(success_rate_threshold(&[], 1900), (0.0, 0.0));
}

/// Five hosts in one tier; host 0 answers `good` of 100 requests, the others all 100.
fn success_rate_setup(cfg: OutlierConfig, good: usize, t: Instant) -> Detector {
    let mut d = detector(cfg, vec![0; 5]);
    feed(&mut d, 0, Outcome::Http(200), good, t);
    feed(&mut d, 0, Outcome::Http(500), 100 - good, t);
    for host in 1..5 {
        feed(&mut d, host, Outcome::Http(200), 100, t);
    }
    d
}

fn no_consecutive() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx_errors: 0,
        ..config()
    }
}

#[test]
fn success_rate_ejects_the_outlier_of_the_last_interval() {
    let t = Instant::now();
    let mut d = success_rate_setup(no_consecutive(), 50, t);
    // Envoy swaps the buckets first, then judges the interval that just ended.
    let events = d.sweep(t + secs(10));
    assert_eq!(events, [ejected(0, EjectReason::SuccessRate, t + secs(40))]);
    let (mean, threshold) = d.success_rate_stats().expect("evaluated");
    assert!((mean - 90.0).abs() < 1e-9 && (threshold - 52.0).abs() < 1e-9);
    assert_eq!(
        view(&d, 0).last_interval,
        Bucket {
            successes: 50,
            total: 100
        }
    );
    assert!((1..5).all(|h| !d.is_ejected(h)));
    // The next interval had no traffic: nothing left to judge.
    assert!(d.sweep(t + secs(20)).is_empty());
    assert_eq!(d.success_rate_stats(), None);
}

#[test]
fn success_rate_needs_volume_and_minimum_hosts() {
    let t = Instant::now();
    let mut d = detector(no_consecutive(), vec![0; 5]);
    feed(&mut d, 0, Outcome::Http(500), 100, t);
    for host in 1..4 {
        feed(&mut d, host, Outcome::Http(200), 100, t);
    }
    feed(&mut d, 4, Outcome::Http(200), 99, t);
    // Only 4 hosts reach the success rate volume (100); all 5 reach the failure percentage
    // volume (50), whose detection is not enforced by default.
    let detected = Event::Ejected {
        host: 0,
        reason: EjectReason::FailurePercentage,
        until: t + secs(10),
        enforced: false,
    };
    assert_eq!(d.sweep(t + secs(10)), [detected]);
    assert_eq!(d.success_rate_stats(), None);
}

#[test]
fn failure_percentage_ejects_when_success_rate_is_not_enforced() {
    let cfg = OutlierConfig {
        enforcing_success_rate: 0,
        enforcing_failure_percentage: 100,
        ..no_consecutive()
    };
    let t = Instant::now();
    let mut d = success_rate_setup(cfg, 10, t);
    let events = d.sweep(t + secs(10));
    let detected = Event::Ejected {
        host: 0,
        reason: EjectReason::SuccessRate,
        until: t + secs(10),
        enforced: false,
    };
    let enforced = ejected(0, EjectReason::FailurePercentage, t + secs(40));
    assert_eq!(events, [detected, enforced]);
}

// (3) Split mode: connect failures only reach the local-origin counter.
#[test]
fn split_mode_keeps_local_origin_apart() {
    let cfg = OutlierConfig {
        split_external_local_origin_errors: true,
        consecutive_5xx_errors: 3,
        consecutive_local_origin_failures: 3,
        ..config()
    };
    let mut d = detector(cfg, vec![0]);
    let t = Instant::now();
    assert!(feed(&mut d, 0, Outcome::ConnectFailed, 2, t).is_empty());
    assert!(feed(&mut d, 0, Outcome::Http(500), 2, t).is_empty());
    let v = view(&d, 0);
    assert_eq!((v.consecutive_local_origin, v.consecutive_5xx), (2, 2));
    assert!(d.record(0, Outcome::ConnectSuccess, t).is_empty());
    assert_eq!(
        view(&d, 0).consecutive_local_origin,
        0,
        "a connect success resets"
    );
    assert_eq!(
        view(&d, 0).consecutive_5xx,
        2,
        "but not the external counter"
    );
    feed(&mut d, 0, Outcome::Timeout, 2, t);
    let events = d.record(0, Outcome::ConnectFailed, t);
    assert_eq!(
        events,
        [ejected(
            0,
            EjectReason::ConsecutiveLocalOrigin,
            t + secs(30)
        )]
    );
}

#[test]
fn split_mode_final_success_does_not_reset_5xx() {
    let cfg = OutlierConfig {
        split_external_local_origin_errors: true,
        consecutive_5xx_errors: 2,
        ..config()
    };
    let mut d = detector(cfg, vec![0]);
    let t = Instant::now();
    d.record(0, Outcome::Http(503), t);
    d.record(0, Outcome::ConnectSuccessFinal, t);
    let events = d.record(0, Outcome::Http(503), t);
    assert_eq!(
        events,
        [ejected(0, EjectReason::Consecutive5xx, t + secs(30))]
    );
}

// (4) The cap is per tier, and the first host of a tier may always go.
#[test]
fn max_ejection_percent_is_per_tier_with_a_floor_of_one() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 1,
        ..config()
    };
    let mut d = detector(cfg, vec![0, 0, 1, 1]);
    let t = Instant::now();
    let until = t + secs(30);
    let reason = EjectReason::Consecutive5xx;
    assert_eq!(
        d.record(0, Outcome::Http(500), t),
        [ejected(0, reason, until)]
    );
    assert_eq!(
        d.record(1, Outcome::Http(500), t),
        [Event::Overflow { host: 1, reason }]
    );
    assert_eq!(
        view(&d, 1).consecutive_5xx,
        0,
        "an overflow also resets the counter"
    );
    assert_eq!(
        d.record(2, Outcome::Http(500), t),
        [ejected(2, reason, until)]
    );
    assert_eq!(
        d.record(3, Outcome::Http(500), t),
        [Event::Overflow { host: 3, reason }]
    );
    assert_eq!((d.ejected_count(0), d.ejected_count(1)), (1, 1));
}

#[test]
fn max_ejection_percent_allows_its_share() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 1,
        max_ejection_percent: 50,
        ..config()
    };
    let mut d = detector(cfg, vec![0; 4]);
    let t = Instant::now();
    for host in 0..2 {
        assert!(matches!(
            d.record(host, Outcome::Http(500), t)[..],
            [Event::Ejected { .. }]
        ));
    }
    assert!(matches!(
        d.record(2, Outcome::Http(500), t)[..],
        [Event::Overflow { .. }]
    ));
    assert_eq!(d.ejected_count(0), 2);
}

// (5) Backoff, exact deadlines, cap, decay and jitter.
fn backoff_config() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx_errors: 1,
        base_ejection_time: secs(10),
        max_ejection_time: secs(30),
        interval: secs(10),
        ..config()
    }
}

/// Ejects host 0 at `now` and returns the ejection's length.
fn eject_now(d: &mut Detector, now: Instant) -> Duration {
    match d.record(0, Outcome::Http(500), now)[..] {
        [
            Event::Ejected {
                until,
                enforced: true,
                ..
            },
        ] => until - now,
        ref other => panic!("expected an ejection, got {other:?}"),
    }
}

#[test]
fn uneject_happens_at_the_exact_deadline() {
    let mut d = detector(backoff_config(), vec![0]);
    let t = Instant::now() + secs(3); // not aligned to any interval
    let until = t + eject_now(&mut d, t);
    assert_eq!(d.next_deadline(), Some(until));
    assert!(d.uneject_due(until - Duration::from_millis(1)).is_empty());
    assert_eq!(d.uneject_due(until), [Event::Unejected { host: 0 }]);
    assert!(!d.is_ejected(0));
    assert_eq!(d.next_deadline(), None);
    assert_eq!(view(&d, 0).last_unejected, Some(until));
}

#[test]
fn backoff_doubles_then_caps_at_max() {
    let mut d = detector(backoff_config(), vec![0]);
    let mut now = Instant::now();
    let mut lengths = Vec::new();
    for _ in 0..6 {
        let length = eject_now(&mut d, now);
        lengths.push(length.as_secs());
        now += length;
        assert_eq!(d.uneject_due(now).len(), 1);
    }
    assert_eq!(lengths, [10, 20, 30, 30, 30, 30]);
    // Envoy stops bumping once base × backoff reaches max + base.
    assert_eq!(view(&d, 0).backoff, 4);
    assert_eq!(view(&d, 0).num_ejections, 6);
}

#[test]
fn backoff_decays_one_step_per_healthy_interval() {
    let mut d = detector(backoff_config(), vec![0]);
    let mut now = Instant::now();
    for _ in 0..3 {
        now += eject_now(&mut d, now);
        d.uneject_due(now);
    }
    assert_eq!(view(&d, 0).backoff, 3);
    assert!(d.sweep(now + secs(5)).is_empty());
    assert_eq!(
        view(&d, 0).backoff,
        3,
        "un-ejected less than an interval ago"
    );
    for (i, expected) in [2, 1, 0, 0].into_iter().enumerate() {
        d.sweep(now + secs(10 * (i as u64 + 1)));
        assert_eq!(view(&d, 0).backoff, expected);
    }
    assert_eq!(eject_now(&mut d, now + secs(60)), secs(10), "back to base");
}

#[test]
fn no_decay_while_ejected() {
    let mut d = detector(backoff_config(), vec![0]);
    let t = Instant::now();
    eject_now(&mut d, t);
    d.sweep(t + secs(5));
    assert_eq!(view(&d, 0).backoff, 1);
    assert!(d.is_ejected(0));
}

#[test]
fn jitter_stays_within_bounds_in_whole_milliseconds() {
    let cfg = OutlierConfig {
        max_ejection_time_jitter: Duration::from_millis(500),
        ..backoff_config()
    };
    let mut seen = std::collections::HashSet::new();
    for seed in 0..200 {
        let mut d = Detector::new(cfg.clone(), vec![0], SmallRng::seed_from_u64(seed));
        let jitter = eject_now(&mut d, Instant::now()) - secs(10);
        assert!(jitter <= Duration::from_millis(500), "{jitter:?}");
        assert_eq!(jitter.subsec_nanos() % 1_000_000, 0);
        seen.insert(jitter);
    }
    assert!(seen.len() > 50, "jitter is spread: {}", seen.len());
}

// (6) An active health check un-ejects early and clears the counters.
#[test]
fn health_check_pass_unejects_early() {
    let mut d = detector(backoff_config(), vec![0, 0]);
    let t = Instant::now();
    eject_now(&mut d, t);
    let later = t + secs(1);
    assert_eq!(
        d.health_check_passed(0, later),
        Some(Event::Unejected { host: 0 })
    );
    assert!(!d.is_ejected(0));
    assert_eq!(d.next_deadline(), None);
    assert_eq!(view(&d, 0).last_unejected, Some(later));
    let cfg2 = OutlierConfig {
        consecutive_5xx_errors: 3,
        ..backoff_config()
    };
    let mut d = detector(cfg2, vec![0]);
    feed(&mut d, 0, Outcome::Http(500), 2, t);
    assert_eq!(d.health_check_passed(0, t), None);
    assert_eq!(view(&d, 0).consecutive_5xx, 0);
}

// (7) enforcing 0: detected, reported, not ejected.
#[test]
fn enforcing_zero_detects_without_ejecting() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 2,
        enforcing_consecutive_5xx: 0,
        ..config()
    };
    let mut d = detector(cfg, vec![0]);
    let t = Instant::now();
    d.record(0, Outcome::Http(500), t);
    let events = d.record(0, Outcome::Http(500), t);
    let detected = Event::Ejected {
        host: 0,
        reason: EjectReason::Consecutive5xx,
        until: t,
        enforced: false,
    };
    assert_eq!(events, [detected]);
    assert!(!d.is_ejected(0));
    assert_eq!(view(&d, 0).num_ejections, 0);
    assert_eq!(
        view(&d, 0).consecutive_5xx,
        0,
        "a detection resets the counter"
    );
}

// (8) Gateway errors: 502/503/504 count; another 5xx resets them but counts as a 5xx.
#[test]
fn gateway_errors_count_only_502_503_504() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 10,
        consecutive_gateway_errors: 3,
        ..config()
    };
    let mut d = detector(cfg, vec![0]);
    let t = Instant::now();
    for code in [502, 503, 500] {
        assert!(d.record(0, Outcome::Http(code), t).is_empty());
    }
    let v = view(&d, 0);
    assert_eq!((v.consecutive_gateway_errors, v.consecutive_5xx), (0, 3));
    d.record(0, Outcome::Http(502), t);
    d.record(0, Outcome::Http(503), t);
    let events = d.record(0, Outcome::Http(504), t);
    assert_eq!(
        events,
        [ejected(
            0,
            EjectReason::ConsecutiveGatewayErrors,
            t + secs(30)
        )]
    );
    assert_eq!(
        view(&d, 0).consecutive_5xx,
        6,
        "only the counter that fired is reset"
    );
}

#[test]
fn one_503_can_fire_both_detectors() {
    let cfg = OutlierConfig {
        consecutive_5xx_errors: 2,
        consecutive_gateway_errors: 2,
        enforcing_consecutive_gateway_errors: 0,
        ..config()
    };
    let mut d = detector(cfg, vec![0]);
    let t = Instant::now();
    d.record(0, Outcome::Http(503), t);
    let events = d.record(0, Outcome::Http(503), t);
    let gateway = Event::Ejected {
        host: 0,
        reason: EjectReason::ConsecutiveGatewayErrors,
        until: t,
        enforced: false,
    };
    assert_eq!(
        events,
        [
            gateway,
            ejected(0, EjectReason::Consecutive5xx, t + secs(30))
        ]
    );
}

#[test]
fn ejected_hosts_ignore_detections_and_come_back_clean() {
    let mut d = detector(
        OutlierConfig {
            consecutive_5xx_errors: 2,
            ..backoff_config()
        },
        vec![0],
    );
    let t = Instant::now();
    feed(&mut d, 0, Outcome::Http(500), 2, t);
    assert!(d.is_ejected(0));
    assert!(feed(&mut d, 0, Outcome::Http(500), 5, t).is_empty());
    d.uneject_due(t + secs(10));
    assert_eq!(view(&d, 0).consecutive_5xx, 0);
    assert!(d.record(0, Outcome::Http(500), t + secs(10)).is_empty());
}

#[test]
fn set_hosts_keeps_state_by_position() {
    let mut d = detector(backoff_config(), vec![0, 0]);
    let t = Instant::now();
    eject_now(&mut d, t);
    d.set_hosts(vec![1, 1, 1]);
    assert!(d.is_ejected(0));
    assert_eq!(view(&d, 0).tier, 1);
    assert_eq!(
        view(&d, 2),
        Detector::new(config(), vec![1], SmallRng::seed_from_u64(0))
            .host(0)
            .expect("host")
    );
    d.remap_hosts(vec![(0, None), (2, Some(0))]);
    assert!(!d.is_ejected(0) && d.is_ejected(1));
    assert_eq!((d.ejected_count(1), d.ejected_count(2)), (0, 1));
    assert!(d.record(7, Outcome::Http(500), t).is_empty());
    assert_eq!(d.host(7), None);
}

#[test]
fn reason_labels() {
    let labels = [
        EjectReason::Consecutive5xx,
        EjectReason::ConsecutiveGatewayErrors,
        EjectReason::ConsecutiveLocalOrigin,
        EjectReason::SuccessRate,
        EjectReason::FailurePercentage,
    ]
    .map(EjectReason::as_str);
    assert_eq!(
        labels,
        [
            "consecutive_5xx",
            "consecutive_gateway_errors",
            "consecutive_local_origin",
            "success_rate",
            "failure_percentage"
        ]
    );
}

// === properties ===

#[derive(Debug, Clone)]
enum Op {
    Record(HostId, Outcome),
    Sweep,
    UnejectDue,
    HealthCheck(HostId),
}

fn arb_outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        4 => prop::sample::select(vec![200u16, 404, 500, 502, 503, 504]).prop_map(Outcome::Http),
        1 => Just(Outcome::ConnectSuccess),
        1 => Just(Outcome::ConnectSuccessFinal),
        2 => Just(Outcome::ConnectFailed),
        1 => Just(Outcome::Timeout),
    ]
}

fn arb_op() -> impl Strategy<Value = (u64, Op)> {
    let op = prop_oneof![
        12 => (0usize..8, arb_outcome()).prop_map(|(h, o)| Op::Record(h, o)),
        2 => Just(Op::Sweep),
        2 => Just(Op::UnejectDue),
        1 => (0usize..8).prop_map(Op::HealthCheck),
    ];
    (0u64..1500, op)
}

fn arb_config() -> impl Strategy<Value = OutlierConfig> {
    let pct = || prop::sample::select(vec![0u32, 50, 100]);
    let thresholds = (0u32..4, 0u32..4, any::<bool>(), 0u32..4);
    let enforcing = (pct(), pct(), pct(), pct(), pct());
    let times = (1u64..5, 0u64..6, 0u64..1500, 1u64..4, 0u32..=100);
    let stats = (1u32..4, 1u32..6, 0u32..3000, 50u32..100);
    (thresholds, enforcing, times, stats).prop_map(|(th, en, ti, st)| OutlierConfig {
        consecutive_5xx_errors: th.0,
        consecutive_gateway_errors: th.1,
        split_external_local_origin_errors: th.2,
        consecutive_local_origin_failures: th.3,
        enforcing_consecutive_5xx: en.0,
        enforcing_consecutive_gateway_errors: en.1,
        enforcing_consecutive_local_origin_failures: en.2,
        enforcing_success_rate: en.3,
        enforcing_failure_percentage: en.4,
        base_ejection_time: secs(ti.0),
        max_ejection_time: secs(ti.0 + ti.1),
        max_ejection_time_jitter: Duration::from_millis(ti.2),
        interval: secs(ti.3),
        max_ejection_percent: ti.4,
        success_rate_minimum_hosts: st.0,
        failure_percentage_minimum_hosts: st.0,
        success_rate_request_volume: st.1,
        failure_percentage_request_volume: st.1,
        success_rate_stdev_factor: st.2,
        failure_percentage_threshold: st.3,
    })
}

/// What the events say each host's deadline is.
struct Model {
    cfg: OutlierConfig,
    tiers: Vec<u32>,
    until: Vec<Option<Instant>>,
}

impl Model {
    fn ejected_in(&self, tier: u32) -> (u64, u64) {
        let hosts = self.tiers.iter().filter(|&&t| t == tier).count() as u64;
        let ejected = (0..self.tiers.len())
            .filter(|&h| self.tiers[h] == tier && self.until[h].is_some())
            .count() as u64;
        (hosts, ejected)
    }

    fn cap_allows_one_more(&self, host: HostId) -> bool {
        let (hosts, ejected) = self.ejected_in(self.tiers[host]);
        ejected == 0 || 100 * (ejected + 1) <= u64::from(self.cfg.max_ejection_percent) * hosts
    }

    /// Checks one event against the model and applies it.
    fn apply(&mut self, event: Event, now: Instant, by_health_check: bool) {
        match event {
            Event::Ejected {
                host,
                until,
                enforced,
                ..
            } => {
                assert!(self.until[host].is_none(), "detection on an ejected host");
                assert!(self.cap_allows_one_more(host), "ejection over the cap");
                if enforced {
                    let c = &self.cfg;
                    let min = c.base_ejection_time.min(c.max_ejection_time);
                    let max = c.max_ejection_time + c.max_ejection_time_jitter;
                    assert!(until >= now + min && until <= now + max);
                    self.until[host] = Some(until);
                } else {
                    assert_eq!(until, now);
                }
            }
            Event::Overflow { host, .. } => {
                assert!(self.until[host].is_none());
                assert!(!self.cap_allows_one_more(host), "overflow under the cap");
            }
            Event::Unejected { host } => {
                let until = self.until[host].take().expect("un-ejected a healthy host");
                assert!(
                    by_health_check || until <= now,
                    "un-ejected before the deadline"
                );
            }
        }
    }

    fn check(&self, d: &Detector, now: Instant, swept: bool) {
        for (h, until) in self.until.iter().enumerate() {
            assert_eq!(d.host(h).expect("host").ejected_until, *until);
            assert_eq!(d.is_ejected(h), until.is_some());
            assert!(
                !swept || until.is_none_or(|u| u > now),
                "overdue host left ejected"
            );
        }
        assert_eq!(
            d.next_deadline(),
            self.until.iter().flatten().min().copied()
        );
        for &tier in &self.tiers {
            let (hosts, ejected) = self.ejected_in(tier);
            assert_eq!(d.ejected_count(tier) as u64, ejected);
            let cap = u64::from(self.cfg.max_ejection_percent) * hosts;
            assert!(
                ejected <= 1 || 100 * ejected <= cap,
                "tier {tier} over the cap"
            );
        }
    }
}

proptest! {
    #[test]
    fn events_respect_cap_deadlines_and_pairing(
        cfg in arb_config(),
        tiers in prop::collection::vec(0u32..3, 1..8),
        seed in any::<u64>(),
        ops in prop::collection::vec(arb_op(), 1..300),
    ) {
        let mut d = Detector::new(cfg.clone(), tiers.clone(), SmallRng::seed_from_u64(seed));
        let n = tiers.len();
        let mut model = Model { cfg, until: vec![None; n], tiers };
        let mut now = Instant::now();
        for (dt, op) in ops {
            now += Duration::from_millis(dt);
            let (events, by_hc, swept) = match op {
                Op::Record(h, o) => (d.record(h % n, o, now), false, false),
                Op::Sweep => (d.sweep(now), false, true),
                Op::UnejectDue => (d.uneject_due(now), false, true),
                Op::HealthCheck(h) => (d.health_check_passed(h % n, now).into_iter().collect(), true, false),
            };
            for event in events {
                model.apply(event, now, by_hc);
            }
            model.check(&d, now, swept);
        }
    }
}
