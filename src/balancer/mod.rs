//! Per-service load balancing across locality tiers, with outlier detection.
//!
//! Hosts of a service, relative to this gateway's locality:
//! tier 0 = endpoints in my zone, tier 1 = endpoints in the other zones of my region,
//! tier 2.. = peer gateways, one tier per peer region in configured order (each peer weighted
//! by the healthy endpoints it advertises for the service).
//!
//! Every pick reads one immutable [`Snapshot`], swapped atomically whenever health changes (an
//! ejection, an un-ejection, a health check, a tunnel going down or up, a peer's
//! advertisement), so a change is seen by the very next pick on every thread. Results of
//! attempts flow back through [`Balancer::report`] into the [`outlier::Detector`].

pub mod health_check;
pub mod outlier;
pub mod tiers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{LbPolicy, ServiceConfig, ServiceKey};
use crate::metrics::Metrics;
use crate::tunnel::client::PeerPool;
use outlier::{Detector, Event, HostId, Outcome};

/// Where a host is.
pub enum HostKind {
    Endpoint { address: SocketAddr, zone: String },
    Peer(Arc<PeerPool>),
}

/// One endpoint or peer of a service.
pub struct Host {
    pub id: HostId,
    pub kind: HostKind,
    pub tier: usize,
    /// Configured weight of an endpoint (peers are weighted by their advertisement).
    pub weight: u32,
    /// Attempts and requests in flight, for least-request picking.
    pub active: AtomicU64,
    pub successes: AtomicU64,
    pub failures: AtomicU64,
}

/// An immutable view of which hosts may be picked and how load splits between tiers.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per tier: hosts that may be picked, with their weights.
    pub tiers: Vec<Vec<(HostId, u32)>>,
    /// Per tier: Envoy health in percent.
    pub health: Vec<u32>,
    /// Per tier: percent of traffic, for traffic from local clients.
    pub loads: Vec<u32>,
    /// The same over local tiers only (0 and 1), for streams arriving from peers.
    pub local_loads: Vec<u32>,
    /// The tier taking most of the traffic now, if any can.
    pub serving_tier: Option<usize>,
}

/// Healthy and total endpoints of one zone, for advertisements and debug views.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZoneHealth {
    pub zone: String,
    pub healthy: u32,
    pub total: u32,
}

/// Mutable state behind a lock: the detector and active health-check verdicts.
struct State {
    detector: Detector,
    hc_failed: Vec<bool>,
}

/// Balancing state of one service.
pub struct Balancer {
    pub config: ServiceConfig,
    key_label: String,
    pub hosts: Vec<Host>,
    snapshot: ArcSwap<Snapshot>,
    state: Mutex<State>,
    rr: AtomicU64,
    /// Wakes the timer task when a new ejection deadline may be earlier than its sleep.
    wake: Notify,
    serving_tier: AtomicI64,
    metrics: Metrics,
    /// Told whenever this service's local health may have changed (for advertisements).
    local_health_changed: Arc<watch::Sender<u64>>,
}

/// Number of tiers for a gateway with these peer regions.
fn tier_of_peer(region_order: &[String], region: &str) -> usize {
    2 + region_order
        .iter()
        .position(|r| r == region)
        .unwrap_or(region_order.len())
}

impl Balancer {
    /// Builds the balancer of `config` as seen from a gateway in `my_zone`, with `peers` in
    /// failover order.
    pub fn new(
        config: ServiceConfig,
        my_zone: &str,
        peers: &[Arc<PeerPool>],
        metrics: Metrics,
        local_health_changed: Arc<watch::Sender<u64>>,
    ) -> Self {
        let mut hosts = Vec::new();
        for ep in &config.endpoints {
            hosts.push(Host::new(
                hosts.len(),
                HostKind::Endpoint {
                    address: ep.address,
                    zone: ep.zone.clone(),
                },
                usize::from(ep.zone != my_zone),
                ep.weight,
            ));
        }
        let mut regions: Vec<String> = Vec::new();
        for p in peers {
            if !regions.contains(&p.config().region) {
                regions.push(p.config().region.clone());
            }
        }
        for p in peers {
            let tier = tier_of_peer(&regions, &p.config().region);
            hosts.push(Host::new(hosts.len(), HostKind::Peer(p.clone()), tier, 1));
        }
        let tiers: Vec<u32> = hosts.iter().map(|h| h.tier as u32).collect();
        let detector = Detector::new(
            config.outlier_detection.clone(),
            tiers,
            SmallRng::from_os_rng(),
        );
        let balancer = Balancer {
            key_label: config.key.to_string(),
            config,
            state: Mutex::new(State {
                detector,
                hc_failed: vec![false; hosts.len()],
            }),
            hosts,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            rr: AtomicU64::new(0),
            wake: Notify::new(),
            serving_tier: AtomicI64::new(-1),
            metrics,
            local_health_changed,
        };
        balancer.rebuild();
        balancer
    }

    pub fn key(&self) -> &ServiceKey {
        &self.config.key
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Picks the next host to try. `tried` are hosts already attempted for this connection;
    /// `last_tier` the tier of the last attempt. The first pick rolls by tier load; after a
    /// failure the same tier is tried again (other hosts), then the following tiers, then the
    /// earlier ones. `local_only` restricts to tiers 0 and 1 (streams from peers).
    pub fn pick(
        &self,
        tried: &[HostId],
        last_tier: Option<usize>,
        local_only: bool,
    ) -> Option<(HostId, usize)> {
        let snap = self.snapshot.load();
        let usable = if local_only {
            snap.tiers.len().min(2)
        } else {
            snap.tiers.len()
        };
        let mut rng = rand::rng();
        let start = match last_tier {
            Some(t) => t,
            None => {
                let loads = if local_only {
                    &snap.local_loads
                } else {
                    &snap.loads
                };
                tiers::choose_tier(loads, rng.random_range(0..100))?
            }
        };
        let order = (start..usable).chain(0..start.min(usable));
        for tier in order {
            if let Some(host) = self.pick_in_tier(&snap.tiers[tier], tried, &mut rng) {
                return Some((host, tier));
            }
        }
        None
    }

    /// Round robin, or weighted least-request by the power of two choices.
    fn pick_in_tier(
        &self,
        tier: &[(HostId, u32)],
        tried: &[HostId],
        rng: &mut impl Rng,
    ) -> Option<HostId> {
        let candidates: Vec<(HostId, u32)> = tier
            .iter()
            .copied()
            .filter(|(h, _)| !tried.contains(h))
            .collect();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0].0),
            n => match self.config.load_balancer.policy {
                LbPolicy::RoundRobin => {
                    let i = self.rr.fetch_add(1, Ordering::Relaxed) as usize % n;
                    Some(candidates[i].0)
                }
                LbPolicy::LeastRequest => {
                    let a = rng.random_range(0..n);
                    let b = (a + rng.random_range(1..n)) % n;
                    Some(self.less_loaded(candidates[a], candidates[b]))
                }
            },
        }
    }

    /// The host with fewer requests in flight per unit of weight.
    fn less_loaded(&self, a: (HostId, u32), b: (HostId, u32)) -> HostId {
        let score = |(h, w): (HostId, u32)| {
            (self.hosts[h].active.load(Ordering::Relaxed) + 1) * 1_000_000 / u64::from(w.max(1))
        };
        if score(b) < score(a) { b.0 } else { a.0 }
    }

    /// Feeds the result of an attempt or request on `host` to outlier detection.
    pub fn report(&self, host: HostId, outcome: Outcome) {
        let ok = match outcome {
            Outcome::Http(code) => code < 500,
            Outcome::ConnectSuccess | Outcome::ConnectSuccessFinal => true,
            Outcome::ConnectFailed | Outcome::Timeout => false,
        };
        let counter = if ok {
            &self.hosts[host].successes
        } else {
            &self.hosts[host].failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let events = self.state.lock().expect("balancer lock").detector.record(
            host,
            outcome,
            Instant::now(),
        );
        self.apply(events);
    }

    /// Records detector events in metrics and logs, and rebuilds the snapshot.
    fn apply(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for event in &events {
            self.observe(event);
        }
        self.rebuild();
        self.wake.notify_one();
    }

    fn observe(&self, event: &Event) {
        let m = &self.metrics;
        let svc = self.key_label.as_str();
        match event {
            Event::Ejected {
                host,
                reason,
                until,
                enforced,
            } => {
                let tier = self.hosts[*host].tier.to_string();
                m.outlier_ejections_detected_total
                    .with_label_values(&[svc, &tier, reason.as_str()])
                    .inc();
                if *enforced {
                    m.outlier_ejections_enforced_total
                        .with_label_values(&[svc, &tier, reason.as_str()])
                        .inc();
                    m.outlier_ejections_active
                        .with_label_values(&[svc, &tier])
                        .inc();
                    m.outlier_ejected
                        .with_label_values(&[svc, &self.host_label(*host)])
                        .set(1);
                    let for_s = until
                        .saturating_duration_since(Instant::now())
                        .as_secs_f64();
                    tracing::warn!(service = svc, host = %self.host_label(*host), tier, reason = reason.as_str(), ejected_for_s = for_s, "host ejected");
                }
            }
            Event::Overflow { host, reason } => {
                let tier = self.hosts[*host].tier.to_string();
                m.outlier_ejections_detected_total
                    .with_label_values(&[svc, &tier, reason.as_str()])
                    .inc();
                m.outlier_ejections_overflow_total
                    .with_label_values(&[svc, &tier])
                    .inc();
                tracing::info!(service = svc, host = %self.host_label(*host), "ejection skipped: max_ejection_percent reached in this tier");
            }
            Event::Unejected { host } => {
                let tier = self.hosts[*host].tier.to_string();
                m.outlier_ejections_active
                    .with_label_values(&[svc, &tier])
                    .dec();
                // Per-endpoint series exist only while ejected.
                let _ = m
                    .outlier_ejected
                    .remove_label_values(&[svc, &self.host_label(*host)]);
                tracing::info!(service = svc, host = %self.host_label(*host), "host returned");
            }
        }
    }

    /// `address` for endpoints, `peer:NAME` for peers: the `endpoint` label.
    pub fn host_label(&self, host: HostId) -> String {
        match &self.hosts[host].kind {
            HostKind::Endpoint { address, .. } => address.to_string(),
            HostKind::Peer(p) => format!("peer:{}", p.name()),
        }
    }

    /// Recomputes which hosts may be picked and the tier loads, and swaps the snapshot in.
    pub fn rebuild(&self) {
        let state = self.state.lock().expect("balancer lock");
        let n_tiers = self
            .hosts
            .iter()
            .map(|h| h.tier + 1)
            .max()
            .unwrap_or(0)
            .max(2);
        let mut tiers = vec![Vec::new(); n_tiers];
        let (mut healthy, mut total) = (vec![0u64; n_tiers], vec![0u64; n_tiers]);
        for host in &self.hosts {
            let usable = !state.detector.is_ejected(host.id) && !state.hc_failed[host.id];
            let (weight, h, t) = match &host.kind {
                HostKind::Endpoint { .. } => (host.weight, u64::from(usable), 1),
                HostKind::Peer(pool) => {
                    // A peer stands for the endpoints it advertises; until it has said, assume one.
                    let (adv_healthy, adv_total) = pool
                        .advertised(&self.config.key)
                        .map_or((1, 1), |a| (a.healthy, a.total.max(1)));
                    let up = usable && pool.is_up() && adv_healthy > 0;
                    (
                        adv_healthy,
                        if up { u64::from(adv_healthy) } else { 0 },
                        u64::from(adv_total),
                    )
                }
            };
            total[host.tier] += t;
            healthy[host.tier] += h;
            if h > 0 {
                tiers[host.tier].push((host.id, weight.max(1)));
            }
        }
        drop(state);
        let factor = self.config.load_balancer.overprovisioning_factor;
        let health: Vec<u32> = (0..n_tiers)
            .map(|t| tiers::tier_health(healthy[t], total[t], factor))
            .collect();
        let loads = tiers::tier_loads(&health);
        let local_loads = tiers::tier_loads(&health[..2]);
        let serving_tier = loads
            .iter()
            .enumerate()
            .filter(|(_, l)| **l > 0)
            .max_by_key(|(t, l)| (**l, std::cmp::Reverse(*t)))
            .map(|(t, _)| t);
        self.note_serving_tier(serving_tier);
        self.snapshot.store(Arc::new(Snapshot {
            tiers,
            health,
            loads,
            local_loads,
            serving_tier,
        }));
        self.local_health_changed
            .send_modify(|version| *version += 1);
    }

    /// Counts a failover when the tier taking most traffic changes.
    fn note_serving_tier(&self, now: Option<usize>) {
        let now = now.map_or(-1, |t| t as i64);
        let before = self.serving_tier.swap(now, Ordering::AcqRel);
        self.metrics
            .serving_tier
            .with_label_values(&[&self.key_label])
            .set(now);
        if before != now && before != -1 && now != -1 {
            self.metrics
                .failovers_total
                .with_label_values(&[&self.key_label, &before.to_string(), &now.to_string()])
                .inc();
            tracing::warn!(service = %self.key_label, from_tier = before, to_tier = now, "traffic moved to another tier");
        }
    }

    /// Healthy and total local endpoints per zone (what this gateway advertises).
    pub fn local_health(&self) -> Vec<ZoneHealth> {
        let state = self.state.lock().expect("balancer lock");
        let mut zones: Vec<ZoneHealth> = Vec::new();
        for host in &self.hosts {
            let HostKind::Endpoint { zone, .. } = &host.kind else {
                continue;
            };
            let healthy = !state.detector.is_ejected(host.id) && !state.hc_failed[host.id];
            let i = match zones.iter().position(|z| &z.zone == zone) {
                Some(i) => i,
                None => {
                    zones.push(ZoneHealth {
                        zone: zone.clone(),
                        healthy: 0,
                        total: 0,
                    });
                    zones.len() - 1
                }
            };
            zones[i].total += 1;
            zones[i].healthy += u32::from(healthy);
        }
        zones
    }

    /// An active health check's verdict on `host` changed (or passed again).
    pub fn health_checked(&self, host: HostId, healthy: bool) {
        let event = {
            let mut state = self.state.lock().expect("balancer lock");
            let changed = state.hc_failed[host] == healthy;
            state.hc_failed[host] = !healthy;
            let event = if healthy {
                state.detector.health_check_passed(host, Instant::now())
            } else {
                None
            };
            if !changed && event.is_none() {
                return;
            }
            event
        };
        tracing::info!(service = %self.key_label, host = %self.host_label(host), healthy, "health check verdict");
        match event {
            Some(e) => self.apply(vec![e]),
            None => self.rebuild(),
        }
    }

    /// The outlier timers: statistical sweeps every `interval`, and each host's un-ejection
    /// at its own deadline.
    pub async fn run_timers(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.config.outlier_detection.interval;
        let mut next_sweep = Instant::now() + interval;
        loop {
            let deadline = {
                let state = self.state.lock().expect("balancer lock");
                state
                    .detector
                    .next_deadline()
                    .map_or(next_sweep, |d| d.min(next_sweep))
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = self.wake.notified() => continue,
                _ = stop.cancelled() => return,
            }
            let now = Instant::now();
            let mut events = Vec::new();
            {
                let mut state = self.state.lock().expect("balancer lock");
                if now >= next_sweep {
                    events.extend(state.detector.sweep(now));
                    next_sweep = now + interval;
                }
                events.extend(state.detector.uneject_due(now));
            }
            self.apply(events);
        }
    }

    /// Per-host state for `/debug/endpoints`.
    pub fn debug(&self) -> serde_json::Value {
        let state = self.state.lock().expect("balancer lock");
        let hosts: Vec<serde_json::Value> = self
            .hosts
            .iter()
            .map(|h| {
                let outlier = state.detector.host(h.id).map(outlier_json);
                let (kind, zone) = match &h.kind {
                    HostKind::Endpoint { zone, .. } => ("endpoint", Some(zone.clone())),
                    HostKind::Peer(_) => ("peer", None),
                };
                let health = if state.detector.is_ejected(h.id) {
                    "ejected"
                } else if state.hc_failed[h.id] {
                    "failed_health_check"
                } else {
                    "healthy"
                };
                serde_json::json!({
                    "host": self.host_label(h.id),
                    "kind": kind,
                    "tier": h.tier,
                    "zone": zone,
                    "weight": h.weight,
                    "health": health,
                    "active": h.active.load(Ordering::Relaxed),
                    "successes": h.successes.load(Ordering::Relaxed),
                    "failures": h.failures.load(Ordering::Relaxed),
                    "outlier": outlier,
                })
            })
            .collect();
        drop(state);
        let snap = self.snapshot.load();
        serde_json::json!({
            "service": self.key_label,
            "tier_health": snap.health,
            "tier_loads": snap.loads,
            "serving_tier": snap.serving_tier,
            "hosts": hosts,
        })
    }
}

/// A host's detector state as JSON; `ejected_until` as Unix seconds.
fn outlier_json(v: outlier::HostView) -> serde_json::Value {
    let remaining = v
        .ejected_until
        .map(|u| u.saturating_duration_since(Instant::now()));
    let until_unix = remaining
        .and_then(|r| std::time::SystemTime::now().checked_add(r))
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    serde_json::json!({
        "consecutive_5xx": v.consecutive_5xx,
        "consecutive_gateway_errors": v.consecutive_gateway_errors,
        "consecutive_local_origin": v.consecutive_local_origin,
        "ejections": v.num_ejections,
        "backoff": v.backoff,
        "ejected_until_unix": until_unix.map(|d| d.as_secs_f64()),
        "ejected_for_s": remaining.map(|r| r.as_secs_f64()),
        "last_ejection_reason": v.last_ejection_reason.map(|r| r.as_str()),
        "last_interval": { "successes": v.last_interval.successes, "total": v.last_interval.total },
    })
}

impl Host {
    fn new(id: HostId, kind: HostKind, tier: usize, weight: u32) -> Self {
        Host {
            id,
            kind,
            tier,
            weight,
            active: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

/// Counts a host's in-flight attempt or connection for least-request picking; held for as
/// long as the connection or request lasts.
pub struct InFlight {
    balancer: Arc<Balancer>,
    host: HostId,
}

impl InFlight {
    pub fn new(balancer: Arc<Balancer>, host: HostId) -> Self {
        balancer.hosts[host].active.fetch_add(1, Ordering::Relaxed);
        InFlight { balancer, host }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.balancer.hosts[self.host]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}
