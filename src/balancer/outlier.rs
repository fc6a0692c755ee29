//! Outlier detection: a pure, deterministic state machine with Envoy's semantics
//! (`source/common/upstream/outlier_detection_impl.cc`). It does no I/O and reads no clock:
//! the caller passes `now` and a seeded [`SmallRng`], and applies the returned [`Event`]s to
//! the balancer snapshot and the metrics.
//!
//! What it does, as Envoy does:
//!
//! - **Consecutive detectors run inline** ([`Detector::record`]). Without
//!   `split_external_local_origin_errors`, a connect failure counts as HTTP 503, a connect
//!   timeout as 504, a finished TCP service as 200, and a bare connect success is ignored
//!   (the response status arrives later). An HTTP 502/503/504 bumps the gateway counter, any
//!   other 5xx resets it; every 5xx bumps the 5xx counter; a non-5xx resets both. A detector
//!   fires when its counter *equals* its threshold (0 = off). With split, connect failures and
//!   timeouts only bump the local-origin counter, any connect success resets it, and HTTP codes
//!   only reach the external counters.
//! - **Ejection**: an already ejected host is ignored. Otherwise the cap is checked
//!   (refusal = [`Event::Overflow`]), then the detector's `enforcing_*` percentage is rolled
//!   (a miss = [`Event::Ejected`] with `enforced: false`). An enforced ejection bumps the
//!   backoff (`if backoff × base < max + base { backoff += 1 }`) and lasts
//!   `min(base × backoff, max) + jitter`, jitter uniform in `[0, max_ejection_time_jitter]` in
//!   whole milliseconds. The counter that fired is reset whatever the outcome.
//! - **Un-ejection** resets the consecutive counters; a passing active health check un-ejects
//!   early ([`Detector::health_check_passed`]).
//! - **Every interval** ([`Detector::sweep`]) the backoff of each healthy host un-ejected at
//!   least one interval ago decays by one, the per-host success buckets swap, and the success
//!   rate and failure percentage detectors judge the interval just finished, cluster-wide, over
//!   non-ejected hosts with enough volume.
//!
//! Two deliberate differences (DESIGN.md §3):
//!
//! 1. **The `max_ejection_percent` cap applies per tier, and one host per tier may always be
//!    ejected.** Envoy counts all hosts of all priorities and, since 2023, has no floor (unless
//!    `always_eject_one_host`, which Istio does not expose): with the default 10% and fewer than
//!    ten hosts nothing is ever ejected, so outlier-driven failover cannot happen in small pools.
//!    A consequence: `max_ejection_percent = 0` does not disable ejection; thresholds of 0 do.
//! 2. **Un-ejection happens at each host's own deadline** ([`Detector::uneject_due`] with
//!    [`Detector::next_deadline`] for the caller's timer). Envoy only checks on the interval
//!    tick, so its ejections last up to one interval longer than configured.
//!
//! Not implemented: the local-origin success rate and local-origin failure percentage detectors
//! (our config has no `enforcing_local_origin_*` fields; Istio sets both to 0). Local-origin
//! outcomes in split mode are still counted in their own buckets, shown in [`HostView`].

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;

use crate::config::OutlierConfig;

/// Index of a host in the detector (the balancer maps endpoints and peers to these).
pub type HostId = usize;

/// What one attempt or request told us about a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered with this HTTP status (external origin).
    Http(u16),
    /// A TCP/TLS connection was established (local origin success). Without split it is
    /// ignored: the HTTP status reported later is the real verdict.
    ConnectSuccess,
    /// A TCP-level service (`tcp`/`tls`, no status exists) finished fine. Without split it
    /// counts as HTTP 200.
    ConnectSuccessFinal,
    /// Connect refused or reset, or TLS failed, before any byte (local origin). Without split
    /// it counts as HTTP 503.
    ConnectFailed,
    /// Connect timed out (local origin). Without split it counts as HTTP 504.
    Timeout,
}

/// Which detector found the outlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectReason {
    Consecutive5xx,
    ConsecutiveGatewayErrors,
    ConsecutiveLocalOrigin,
    SuccessRate,
    FailurePercentage,
}

/// Something that changed, for the caller to apply to the balancer snapshot and metrics.
///
/// Every detection yields exactly one `Ejected` (enforced or not) or one `Overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A detector fired and the cap allowed an ejection. With `enforced: false` the
    /// `enforcing_*` roll said no: the host is *not* ejected and `until` is the detection time.
    Ejected {
        host: HostId,
        reason: EjectReason,
        until: Instant,
        enforced: bool,
    },
    /// A detector fired but the per-tier `max_ejection_percent` cap refused the ejection.
    Overflow { host: HostId, reason: EjectReason },
    /// An ejected host is back: its deadline passed or an active health check passed.
    Unejected { host: HostId },
}

/// Successes and total of one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub successes: u64,
    pub total: u64,
}

/// One host's detector state, for `/debug/endpoints`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostView {
    pub tier: u32,
    pub consecutive_5xx: u32,
    pub consecutive_gateway_errors: u32,
    pub consecutive_local_origin: u32,
    /// Enforced ejections over the host's lifetime.
    pub num_ejections: u64,
    /// Multiplier of `base_ejection_time` for the next ejection, before the bump.
    pub backoff: u32,
    /// Set while ejected.
    pub ejected_until: Option<Instant>,
    /// Why the host was last (enforced) ejected.
    pub last_ejection_reason: Option<EjectReason>,
    pub last_unejected: Option<Instant>,
    /// External-origin results of the last finished interval (all results without split).
    pub last_interval: Bucket,
    /// Local-origin results of the last finished interval (split mode only).
    pub last_interval_local_origin: Bucket,
}

/// The outlier detector of one service: hosts are endpoints and peers, grouped in tiers.
#[derive(Debug)]
pub struct Detector {
    config: OutlierConfig,
    hosts: Vec<HostState>,
    rng: SmallRng,
    /// Mean and ejection threshold of the last success-rate evaluation.
    success_rate_stats: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default)]
struct HostState {
    tier: u32,
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    consecutive_local_origin: u32,
    ejected_until: Option<Instant>,
    last_ejection_reason: Option<EjectReason>,
    last_unejected: Option<Instant>,
    backoff: u32,
    num_ejections: u64,
    external: Buckets,
    local_origin: Buckets,
}

/// Envoy's two success-rate buckets: `current` fills, `previous` is judged.
#[derive(Debug, Clone, Copy, Default)]
struct Buckets {
    current: Bucket,
    previous: Bucket,
}

/// Which consecutive detectors one result made fire, in Envoy's order (gateway first).
#[derive(Debug, Default)]
struct Tripped {
    gateway: bool,
    five_xx: bool,
    local_origin: bool,
}

/// Mean and ejection threshold of success rates (percent): the threshold is
/// `mean - stdev_factor / 1000 × population stdev`, as Envoy computes it. An empty slice gives
/// `(0.0, 0.0)`, a threshold no rate is below.
pub fn success_rate_threshold(rates: &[f64], stdev_factor: u32) -> (f64, f64) {
    if rates.is_empty() {
        return (0.0, 0.0);
    }
    let n = rates.len() as f64;
    let mean = rates.iter().sum::<f64>() / n;
    let variance = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    let factor = f64::from(stdev_factor) / 1000.0;
    (mean, mean - factor * variance.sqrt())
}

// === impl EjectReason ===

impl EjectReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consecutive5xx => "consecutive_5xx",
            Self::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
            Self::ConsecutiveLocalOrigin => "consecutive_local_origin",
            Self::SuccessRate => "success_rate",
            Self::FailurePercentage => "failure_percentage",
        }
    }
}

// === impl Bucket ===

impl Bucket {
    /// Success rate in percent, `None` without any result.
    pub fn success_rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.successes as f64 * 100.0 / self.total as f64)
    }

    fn add(&mut self, success: bool) {
        self.total = self.total.saturating_add(1);
        if success {
            self.successes = self.successes.saturating_add(1);
        }
    }
}

// === impl Buckets ===

impl Buckets {
    fn swap(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

// === impl HostState ===

impl HostState {
    fn new(tier: u32) -> Self {
        Self {
            tier,
            ..Self::default()
        }
    }

    fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// Envoy's `putHttpResponseCode`.
    fn put_http_code(&mut self, code: u16, config: &OutlierConfig) -> Tripped {
        let mut tripped = Tripped::default();
        if (500..600).contains(&code) {
            self.external.current.add(false);
            if (502..=504).contains(&code) {
                tripped.gateway = bump(
                    &mut self.consecutive_gateway,
                    config.consecutive_gateway_errors,
                );
            } else {
                self.consecutive_gateway = 0;
            }
            tripped.five_xx = bump(&mut self.consecutive_5xx, config.consecutive_5xx_errors);
        } else {
            self.external.current.add(true);
            self.consecutive_5xx = 0;
            self.consecutive_gateway = 0;
        }
        tripped
    }

    /// Envoy's `localOriginFailure` (split mode).
    fn local_origin_failure(&mut self, config: &OutlierConfig) -> Tripped {
        self.local_origin.current.add(false);
        Tripped {
            local_origin: bump(
                &mut self.consecutive_local_origin,
                config.consecutive_local_origin_failures,
            ),
            ..Tripped::default()
        }
    }

    /// Envoy's `localOriginNoFailure` (split mode).
    fn local_origin_success(&mut self) -> Tripped {
        self.local_origin.current.add(true);
        self.consecutive_local_origin = 0;
        Tripped::default()
    }

    fn reset_counter(&mut self, reason: EjectReason) {
        match reason {
            EjectReason::Consecutive5xx => self.consecutive_5xx = 0,
            EjectReason::ConsecutiveGatewayErrors => self.consecutive_gateway = 0,
            EjectReason::ConsecutiveLocalOrigin => self.consecutive_local_origin = 0,
            EjectReason::SuccessRate | EjectReason::FailurePercentage => {}
        }
    }

    fn reset_counters(&mut self) {
        self.consecutive_5xx = 0;
        self.consecutive_gateway = 0;
        self.consecutive_local_origin = 0;
    }

    fn uneject(&mut self, now: Instant) {
        self.ejected_until = None;
        self.last_unejected = Some(now);
        // Envoy resets the counters so a host does not come back one error from re-ejection.
        self.reset_counters();
    }

    fn view(&self) -> HostView {
        HostView {
            tier: self.tier,
            consecutive_5xx: self.consecutive_5xx,
            consecutive_gateway_errors: self.consecutive_gateway,
            consecutive_local_origin: self.consecutive_local_origin,
            num_ejections: self.num_ejections,
            backoff: self.backoff,
            ejected_until: self.ejected_until,
            last_ejection_reason: self.last_ejection_reason,
            last_unejected: self.last_unejected,
            last_interval: self.external.previous,
            last_interval_local_origin: self.local_origin.previous,
        }
    }
}

/// Bumps a consecutive counter; true when it reaches a non-zero threshold (Envoy: `==`).
fn bump(counter: &mut u32, threshold: u32) -> bool {
    *counter = counter.saturating_add(1);
    threshold > 0 && *counter == threshold
}

// === impl Detector ===

impl Detector {
    /// A detector for hosts `0..tiers.len()`, where `tiers[h]` is the tier of host `h`.
    pub fn new(config: OutlierConfig, tiers: Vec<u32>, rng: SmallRng) -> Self {
        Self {
            config,
            hosts: tiers.into_iter().map(HostState::new).collect(),
            rng,
            success_rate_stats: None,
        }
    }

    /// Replaces the host list by position: host `h < old len` keeps its state (counters,
    /// ejection, backoff) with its new tier, hosts beyond the old length start fresh, hosts
    /// beyond the new length are forgotten (no event). Use [`Detector::remap_hosts`] when
    /// hosts move.
    pub fn set_hosts(&mut self, tiers: Vec<u32>) {
        let hosts = tiers
            .into_iter()
            .enumerate()
            .map(|(h, tier)| (tier, Some(h)))
            .collect();
        self.remap_hosts(hosts);
    }

    /// Replaces the host list: new host `i` has tier `hosts[i].0` and inherits the state of old
    /// host `hosts[i].1` (fresh state for `None` or an unknown id). Old hosts nobody inherits
    /// are forgotten, without event. An old id given twice copies its state twice.
    pub fn remap_hosts(&mut self, hosts: Vec<(u32, Option<HostId>)>) {
        self.hosts = hosts
            .into_iter()
            .map(|(tier, old)| {
                let mut state = old
                    .and_then(|h| self.hosts.get(h).cloned())
                    .unwrap_or_default();
                state.tier = tier;
                state
            })
            .collect();
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True without hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// The configuration in force.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Feeds one result to the consecutive detectors and the success buckets. Returns the
    /// detections it caused: usually none, at most two, because one 502/503/504 can make the
    /// gateway and the 5xx detectors fire together (Envoy posts both; the second is ignored
    /// when the first ejected the host). Unknown hosts are ignored.
    pub fn record(&mut self, host: HostId, outcome: Outcome, now: Instant) -> Vec<Event> {
        let Some(state) = self.hosts.get_mut(host) else {
            return Vec::new();
        };
        let tripped = if self.config.split_external_local_origin_errors {
            put_split(state, outcome, &self.config)
        } else {
            put_merged(state, outcome, &self.config)
        };
        let fired = [
            (tripped.gateway, EjectReason::ConsecutiveGatewayErrors),
            (tripped.five_xx, EjectReason::Consecutive5xx),
            (tripped.local_origin, EjectReason::ConsecutiveLocalOrigin),
        ];
        fired
            .into_iter()
            .filter(|&(fired, _)| fired)
            .filter_map(|(_, reason)| self.on_consecutive(host, reason, now))
            .collect()
    }

    /// Runs the interval work; call it every `interval`. In order: un-ejects hosts whose
    /// deadline passed (as [`Detector::uneject_due`]), decays backoffs, swaps the success
    /// buckets, then runs the success rate and failure percentage detectors over the interval
    /// that just ended.
    pub fn sweep(&mut self, now: Instant) -> Vec<Event> {
        let mut events = self.uneject_due(now);
        self.decay_backoff(now);
        for state in &mut self.hosts {
            state.external.swap();
            state.local_origin.swap();
        }
        self.run_statistical(now, &mut events);
        events
    }

    /// Un-ejects every host whose own deadline is at or before `now` (Envoy waits for the next
    /// interval tick instead). Resets their consecutive counters.
    pub fn uneject_due(&mut self, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for (host, state) in self.hosts.iter_mut().enumerate() {
            if state.ejected_until.is_some_and(|until| until <= now) {
                state.uneject(now);
                events.push(Event::Unejected { host });
            }
        }
        events
    }

    /// The earliest deadline of an ejected host, for the caller's un-ejection timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.hosts.iter().filter_map(|s| s.ejected_until).min()
    }

    /// An active health check passed: clears the host's consecutive counters and, if it is
    /// ejected, un-ejects it now (Envoy's `successful_active_health_check_uneject_host`, which
    /// is always on here; the health checker decides when a host counts as passing).
    pub fn health_check_passed(&mut self, host: HostId, now: Instant) -> Option<Event> {
        let state = self.hosts.get_mut(host)?;
        if state.is_ejected() {
            state.uneject(now);
            return Some(Event::Unejected { host });
        }
        state.reset_counters();
        None
    }

    /// Whether the host is ejected now (false for unknown hosts).
    pub fn is_ejected(&self, host: HostId) -> bool {
        self.hosts.get(host).is_some_and(HostState::is_ejected)
    }

    /// The host's state for `/debug/endpoints`, `None` for unknown hosts.
    pub fn host(&self, host: HostId) -> Option<HostView> {
        self.hosts.get(host).map(HostState::view)
    }

    /// Ejected hosts in `tier`.
    pub fn ejected_count(&self, tier: u32) -> usize {
        self.hosts
            .iter()
            .filter(|s| s.tier == tier && s.is_ejected())
            .count()
    }

    /// Mean and ejection threshold of the last sweep that evaluated success rates, if any.
    pub fn success_rate_stats(&self) -> Option<(f64, f64)> {
        self.success_rate_stats
    }

    /// Envoy's `onConsecutiveErrorWorker`: an ejected host is ignored (its counter is left
    /// alone; un-ejection resets it), otherwise detect, then reset the counter that fired so
    /// the next detection needs a full run of errors.
    fn on_consecutive(&mut self, host: HostId, reason: EjectReason, now: Instant) -> Option<Event> {
        if self.is_ejected(host) {
            return None;
        }
        let event = self.detect(host, reason, now);
        if let Some(state) = self.hosts.get_mut(host) {
            state.reset_counter(reason);
        }
        event
    }

    /// Envoy's `ejectHost`, with the cap per tier. The caller checked the host is not ejected.
    fn detect(&mut self, host: HostId, reason: EjectReason, now: Instant) -> Option<Event> {
        let tier = self.hosts.get(host)?.tier;
        if !self.cap_allows(tier) {
            return Some(Event::Overflow { host, reason });
        }
        if !self.roll(self.enforcing(reason)) {
            return Some(Event::Ejected {
                host,
                reason,
                until: now,
                enforced: false,
            });
        }
        let until = self.eject(host, reason, now)?;
        Some(Event::Ejected {
            host,
            reason,
            until,
            enforced: true,
        })
    }

    /// One more ejection in `tier` is allowed if none is ejected yet (our floor) or if
    /// `100 × (ejected + 1) / hosts <= max_ejection_percent`, compared exactly by
    /// cross-multiplying (the same result as Envoy's `double` division).
    fn cap_allows(&self, tier: u32) -> bool {
        let in_tier = self.hosts.iter().filter(|s| s.tier == tier);
        let (hosts, ejected) = in_tier.fold((0u64, 0u64), |(n, e), s| {
            (n + 1, e + u64::from(s.is_ejected()))
        });
        let max_percent = u64::from(self.config.max_ejection_percent.min(100));
        ejected == 0 || 100 * (ejected + 1) <= max_percent * hosts
    }

    fn enforcing(&self, reason: EjectReason) -> u32 {
        let c = &self.config;
        match reason {
            EjectReason::Consecutive5xx => c.enforcing_consecutive_5xx,
            EjectReason::ConsecutiveGatewayErrors => c.enforcing_consecutive_gateway_errors,
            EjectReason::ConsecutiveLocalOrigin => c.enforcing_consecutive_local_origin_failures,
            EjectReason::SuccessRate => c.enforcing_success_rate,
            EjectReason::FailurePercentage => c.enforcing_failure_percentage,
        }
    }

    /// Envoy's `featureEnabled`: true with probability `percent`%.
    fn roll(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100u32) < percent
    }

    /// Enforces an ejection and returns its deadline.
    fn eject(&mut self, host: HostId, reason: EjectReason, now: Instant) -> Option<Instant> {
        let jitter = self.jitter();
        let (base, max) = (
            self.config.base_ejection_time,
            self.config.max_ejection_time,
        );
        let state = self.hosts.get_mut(host)?;
        // Envoy bumps the backoff only while base × backoff has not passed max, so that decay
        // from a long outage does not take forever.
        if base.saturating_mul(state.backoff) < max.saturating_add(base) {
            state.backoff = state.backoff.saturating_add(1);
        }
        let duration = base
            .saturating_mul(state.backoff)
            .min(max)
            .saturating_add(jitter);
        let until = add_saturating(now, duration);
        state.ejected_until = Some(until);
        state.last_ejection_reason = Some(reason);
        state.num_ejections = state.num_ejections.saturating_add(1);
        Some(until)
    }

    /// Uniform in `[0, max_ejection_time_jitter]`, whole milliseconds (Envoy:
    /// `random % (max_jitter_ms + 1)`).
    fn jitter(&mut self) -> Duration {
        let max_ms =
            u64::try_from(self.config.max_ejection_time_jitter.as_millis()).unwrap_or(u64::MAX - 1);
        Duration::from_millis(self.rng.random_range(0..=max_ms))
    }

    /// Envoy's decay in `checkHostForUneject`: a healthy host un-ejected at least one interval
    /// ago loses one step of backoff per sweep. Never-ejected hosts have no backoff to lose.
    fn decay_backoff(&mut self, now: Instant) {
        let interval = self.config.interval;
        for state in &mut self.hosts {
            let healthy_long_enough = state
                .last_unejected
                .is_none_or(|t| now.saturating_duration_since(t) >= interval);
            if !state.is_ejected() && healthy_long_enough {
                state.backoff = state.backoff.saturating_sub(1);
            }
        }
    }

    /// Envoy's `processSuccessRateEjections` for external-origin results, cluster-wide.
    fn run_statistical(&mut self, now: Instant, events: &mut Vec<Event>) {
        self.success_rate_stats = None;
        let c = &self.config;
        let n = self.hosts.len();
        if n < c.success_rate_minimum_hosts as usize
            && n < c.failure_percentage_minimum_hosts as usize
        {
            return;
        }
        // (host, success rate, volume) of non-ejected hosts with results last interval.
        let rated: Vec<(HostId, f64, u64)> = self
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_ejected())
            .filter_map(|(h, s)| {
                let bucket = s.external.previous;
                bucket.success_rate().map(|rate| (h, rate, bucket.total))
            })
            .collect();
        let sr_hosts = with_volume(&rated, c.success_rate_request_volume);
        let fp_hosts = with_volume(&rated, c.failure_percentage_request_volume);
        let (sr_min, fp_min) = (
            c.success_rate_minimum_hosts,
            c.failure_percentage_minimum_hosts,
        );
        let fp_threshold = f64::from(c.failure_percentage_threshold);
        let stdev_factor = c.success_rate_stdev_factor;

        if !sr_hosts.is_empty() && sr_hosts.len() >= sr_min as usize {
            let rates: Vec<f64> = sr_hosts.iter().map(|&(_, r)| r).collect();
            let (mean, threshold) = success_rate_threshold(&rates, stdev_factor);
            self.success_rate_stats = Some((mean, threshold));
            for &(host, _) in sr_hosts.iter().filter(|&&(_, r)| r < threshold) {
                events.extend(self.detect_statistical(host, EjectReason::SuccessRate, now));
            }
        }
        if !fp_hosts.is_empty() && fp_hosts.len() >= fp_min as usize {
            for &(host, _) in fp_hosts.iter().filter(|&&(_, r)| 100.0 - r >= fp_threshold) {
                events.extend(self.detect_statistical(host, EjectReason::FailurePercentage, now));
            }
        }
    }

    /// A statistical detection. A host the success rate detector just ejected is skipped by
    /// the failure percentage one (Envoy would call `ejectHost` twice).
    fn detect_statistical(
        &mut self,
        host: HostId,
        reason: EjectReason,
        now: Instant,
    ) -> Option<Event> {
        if self.is_ejected(host) {
            return None;
        }
        self.detect(host, reason, now)
    }
}

/// Envoy's `putResultNoLocalExternalSplit`: local-origin results become HTTP codes.
fn put_merged(state: &mut HostState, outcome: Outcome, config: &OutlierConfig) -> Tripped {
    match outcome {
        Outcome::Http(code) => state.put_http_code(code, config),
        Outcome::ConnectSuccess => Tripped::default(),
        Outcome::ConnectSuccessFinal => state.put_http_code(200, config),
        Outcome::ConnectFailed => state.put_http_code(503, config),
        Outcome::Timeout => state.put_http_code(504, config),
    }
}

/// Envoy's `putResultWithLocalExternalSplit`: local-origin results only touch the local
/// counter and buckets, HTTP codes only the external ones.
fn put_split(state: &mut HostState, outcome: Outcome, config: &OutlierConfig) -> Tripped {
    match outcome {
        Outcome::Http(code) => state.put_http_code(code, config),
        Outcome::ConnectSuccess | Outcome::ConnectSuccessFinal => state.local_origin_success(),
        Outcome::ConnectFailed | Outcome::Timeout => state.local_origin_failure(config),
    }
}

/// The `(host, rate)` pairs with at least `volume` results (Envoy: at least 1).
fn with_volume(rated: &[(HostId, f64, u64)], volume: u32) -> Vec<(HostId, f64)> {
    let floor = u64::from(volume.max(1));
    rated
        .iter()
        .filter(|&&(_, _, total)| total >= floor)
        .map(|&(h, r, _)| (h, r))
        .collect()
}

/// `now + d`, saturating to a century ahead (effectively forever) instead of panicking.
fn add_saturating(now: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d)
        .or_else(|| now.checked_add(CENTURY))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests;
