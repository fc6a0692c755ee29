//! The reference scenario (DESIGN §1) under continuous traffic: four gateways in two regions,
//! `mocka -> mockb -> mockc` in every zone, clients entering at gw-1a, faults injected into
//! mockb while requests keep flowing. Every request is recorded with the zone that served
//! mockb (parsed from the chain the mocks print).
//!
//! - connect failures (mockb refusing in 1a) and a region outage (mockb refusing in both zones
//!   of ap-northeast-1) lose no request; recovery fails back to tier 0 through the active
//!   health check; a peer region's outage reaches gw-1a as a health advertisement;
//! - a 503 from mockb is retried on the next host (the default `retry_on` includes
//!   `gateway-error`) and ejects the endpoint (consecutive 5xx);
//! - an endpoint that accepts connections and never answers hangs the requests that reach it
//!   until the health check takes it out: the gateway has no per-request timeout yet.
//!
//! Timings are printed; `cargo test --test scenario -- --nocapture` shows them.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strait::demo::mocks::Fault;
use strait::demo::scenario::{self, Chain, ENTRY, MOCKB, Scenario, region_of};
use support::{eventually, metric};

const A: &str = "ap-northeast-1a";
const B: &str = "ap-northeast-1b";
const REGION: &str = "ap-northeast-1";
const REMOTE: &str = "cn-hangzhou";

/// Clients sending requests concurrently, each one after the other.
const WORKERS: usize = 4;

async fn start(block: u8) -> (Scenario, tempfile::TempDir) {
    strait::tls::install_default_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Scenario::start(dir.path(), block)
        .await
        .expect("scenario starts");
    s.wait_ready(Duration::from_secs(10))
        .await
        .expect("tunnels and adverts");
    (s, dir)
}

/// One request made by the traffic generator.
#[derive(Debug, Clone)]
struct Record {
    started: Instant,
    ended: Instant,
    /// `None`: no answer within the client's timeout.
    chain: Option<Chain>,
}

impl Record {
    fn ok(&self) -> bool {
        self.chain.as_ref().is_some_and(Chain::ok)
    }

    fn mockb_zone(&self) -> Option<&str> {
        self.chain.as_ref()?.zone_of("mockb")
    }

    fn describe(&self) -> String {
        match &self.chain {
            Some(c) => format!("{:?} {}", c.status, c.body),
            None => "no answer within the client timeout".into(),
        }
    }
}

/// Continuous requests for mocka at gw-1a from [`WORKERS`] clients.
struct Traffic {
    stop: Arc<AtomicBool>,
    records: Arc<Mutex<Vec<Record>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    fn start(http: SocketAddr, client_timeout: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let records = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..WORKERS)
            .map(|_| {
                let (stop, records) = (stop.clone(), records.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let chain = tokio::time::timeout(client_timeout, scenario::chain_at(http))
                            .await
                            .ok();
                        let ended = Instant::now();
                        records.lock().unwrap().push(Record {
                            started,
                            ended,
                            chain,
                        });
                    }
                })
            })
            .collect();
        Traffic {
            stop,
            records,
            tasks,
        }
    }

    fn all(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Requests that started at or after `t`.
    fn since(&self, t: Instant) -> Vec<Record> {
        self.all().into_iter().filter(|r| r.started >= t).collect()
    }

    /// Waits until `n` requests that started after `t` have finished.
    async fn wait_for(&self, t: Instant, n: usize) {
        let done = eventually(Duration::from_secs(20), || {
            let k = self.since(t).len();
            async move { k >= n }
        })
        .await;
        assert!(done, "{n} requests after the mark within 20s");
    }

    async fn stop(self) -> Vec<Record> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.records.lock().unwrap().clone()
    }
}

/// Failed requests among `records`, described.
fn failures(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !r.ok())
        .map(Record::describe)
        .collect()
}

fn mockb_zones(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.mockb_zone().unwrap_or("none").to_owned())
        .collect()
}

/// A gw-1a metric for mockb.
fn entry_metric(s: &Scenario, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut all = vec![("service", MOCKB)];
    all.extend_from_slice(labels);
    metric(s.metrics(ENTRY), name, &all)
}

/// Waits until gw-1a serves mockb from `tier`; returns how long that took.
async fn serving_tier_becomes(s: &Scenario, tier: usize, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    eventually(limit, || {
        let now = s.serving_tier(ENTRY, MOCKB);
        async move { now == Some(tier) }
    })
    .await
    .then(|| start.elapsed())
}

const EJECTED: &str = "ejection";

/// How gw-1a's mockb endpoint in `tier` left the pool after its fault: normally the next
/// request hits it and outlier detection ejects it for `reason` (exactly once); but when the
/// 500ms health check happens to probe it first, the check takes it out and no request ever
/// reaches it. Asserts one of the two, returns which.
fn taken_out(s: &Scenario, tier: &str, reason: &str) -> &'static str {
    let enforced = entry_metric(
        s,
        "strait_outlier_ejections_enforced_total",
        &[("tier", tier), ("reason", reason)],
    );
    if enforced == 1.0 {
        return EJECTED;
    }
    assert_eq!(
        enforced, 0.0,
        "at most one {reason} ejection in tier {tier}"
    );
    let debug = s.balancer(ENTRY, MOCKB).debug();
    let host = debug["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "endpoint" && h["tier"].as_u64() == tier.parse().ok())
        .cloned()
        .unwrap();
    assert_eq!(
        host["health"], "failed_health_check",
        "not ejected, so the health check took it out: {host}"
    );
    assert_eq!(host["failures"], 0, "and no request reached it: {host}");
    "health check (it probed before any request)"
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_and_a_region_outage_lose_no_request() {
    let (s, _dir) = start(45).await;
    let traffic = Traffic::start(s.http(ENTRY), Duration::from_secs(5));

    // Healthy: every hop in 1a.
    let t0 = Instant::now();
    traffic.wait_for(t0, 20).await;
    let healthy = traffic.since(t0);
    assert!(failures(&healthy).is_empty(), "{:?}", failures(&healthy));
    assert!(
        healthy
            .iter()
            .all(|r| r.chain.as_ref().unwrap().hops.iter().all(|h| h.zone == A)),
        "healthy chains stay in {A}: {:?}",
        mockb_zones(&healthy)
    );
    assert_eq!(s.serving_tier(ENTRY, MOCKB), Some(0));

    // (a) mockb refuses connections in 1a: chains move to 1b, none fails.
    let fault_a = Instant::now();
    s.set_fault("mockb", A, Fault::Refuse).await.unwrap();
    let after_a = Instant::now();
    traffic.wait_for(after_a, 60).await;
    let moved = traffic.since(after_a);
    assert!(
        moved.iter().all(|r| r.mockb_zone() == Some(B)),
        "mockb served from {B} once {A} refuses: {:?}",
        mockb_zones(&moved)
    );
    let to_1b = serving_tier_becomes(&s, 1, Duration::from_secs(1)).await;
    assert!(to_1b.is_some(), "serving tier 1");
    let how = taken_out(&s, "0", "consecutive_local_origin");
    println!("(a) mockb(1a) taken out by {how}");
    assert_eq!(
        entry_metric(&s, "strait_outlier_ejections_active", &[("tier", "0")]),
        if how == EJECTED { 1.0 } else { 0.0 }
    );
    assert_eq!(
        entry_metric(
            &s,
            "strait_failovers_total",
            &[("from_tier", "0"), ("to_tier", "1")]
        ),
        1.0
    );
    assert_eq!(entry_metric(&s, "strait_serving_tier", &[]), 1.0);
    let first_1b = traffic
        .all()
        .iter()
        .filter(|r| r.ended >= fault_a && r.mockb_zone() == Some(B))
        .map(|r| r.ended)
        .min()
        .expect("a request served from 1b");
    println!(
        "(a) mockb refuses in {A}: fault -> first request served by {B}: {}",
        ms(first_1b.saturating_duration_since(fault_a))
    );

    // (d) mockb refuses in both zones of ap-northeast-1: served from cn-hangzhou, tier 2.
    let fault_d = Instant::now();
    s.set_fault("mockb", B, Fault::Refuse).await.unwrap();
    let after_d = Instant::now();
    traffic.wait_for(after_d, 60).await;
    let crossed = traffic.since(after_d);
    assert!(
        crossed
            .iter()
            .all(|r| r.mockb_zone().and_then(region_of) == Some(REMOTE)),
        "mockb served from {REMOTE}: {:?}",
        mockb_zones(&crossed)
    );
    assert!(
        crossed.iter().all(|r| {
            let c = r.chain.as_ref().unwrap();
            c.zone_of("mocka") == Some(A) && c.zone_of("mockc") == c.zone_of("mockb")
        }),
        "mocka(1a) -> mockb(remote zone) -> mockc(the same remote zone)"
    );
    let first_tier2 = traffic
        .all()
        .iter()
        .filter(|r| r.ended >= fault_d && r.mockb_zone().and_then(region_of) == Some(REMOTE))
        .map(|r| r.ended)
        .min()
        .expect("a request served from the other region");
    println!(
        "(d) mockb down in {REGION}: fault -> first request served by tier 2: {}",
        ms(first_tier2.saturating_duration_since(fault_d))
    );
    assert_eq!(s.serving_tier(ENTRY, MOCKB), Some(2));
    assert_eq!(entry_metric(&s, "strait_serving_tier", &[]), 2.0);
    assert!(
        entry_metric(
            &s,
            "strait_requests_total",
            &[("tier", "2"), ("outcome", "2xx")]
        ) >= 60.0,
        "gw-1a counts mockb requests under tier \"2\""
    );
    let how = taken_out(&s, "1", "consecutive_local_origin");
    println!("(d) mockb(1b) taken out by {how}");
    assert_eq!(
        entry_metric(
            &s,
            "strait_failovers_total",
            &[("from_tier", "1"), ("to_tier", "2")]
        ),
        1.0
    );
    let mut served_in: Vec<String> = mockb_zones(&crossed);
    served_in.sort();
    served_in.dedup();
    println!("(d) mockb served in {served_in:?}");

    // (e) recovery: the health check un-ejects long before the 5m ejection ends.
    let clear = Instant::now();
    s.set_fault("mockb", REGION, Fault::None).await.unwrap();
    let failback = serving_tier_becomes(&s, 0, Duration::from_secs(5))
        .await
        .expect("failback to tier 0 within 5s");
    println!(
        "(e) faults cleared -> gw-1a serves mockb from tier 0 again: {}",
        ms(failback)
    );
    let back = Instant::now();
    traffic.wait_for(back, 40).await;
    let recovered = traffic.since(back);
    assert!(
        recovered.iter().all(|r| r.mockb_zone() == Some(A)),
        "back in {A}: {:?}",
        mockb_zones(&recovered)
    );
    assert!(
        eventually(Duration::from_secs(5), || async {
            entry_metric(&s, "strait_outlier_ejections_active", &[("tier", "0")]) == 0.0
                && entry_metric(&s, "strait_outlier_ejections_active", &[("tier", "1")]) == 0.0
        })
        .await,
        "no ejection left"
    );
    assert_eq!(entry_metric(&s, "strait_serving_tier", &[]), 0.0);
    let to_0 = entry_metric(
        &s,
        "strait_failovers_total",
        &[("from_tier", "2"), ("to_tier", "0")],
    ) + entry_metric(
        &s,
        "strait_failovers_total",
        &[("from_tier", "1"), ("to_tier", "0")],
    );
    assert_eq!(to_0, 1.0, "one failover back to tier 0");
    println!(
        "(e) every mockb host at gw-1a healthy: {} after the faults were cleared",
        ms(clear.elapsed())
    );

    // Advertisement: mockb down in cn-hangzhou reaches gw-1a through the tunnel, and gw-1a
    // stops counting on that region for mockb (its own zone keeps serving).
    let fault_p = Instant::now();
    s.set_fault("mockb", REMOTE, Fault::Refuse).await.unwrap();
    let advertised_zero = eventually(Duration::from_secs(5), || async {
        ["gw-h", "gw-k"].iter().all(|p| {
            metric(
                s.metrics(ENTRY),
                "strait_remote_healthy_endpoints",
                &[("peer", p), ("service", MOCKB)],
            ) == 0.0
        })
    })
    .await;
    assert!(advertised_zero, "gw-h and gw-k advertise no healthy mockb");
    println!(
        "advert: mockb down in {REMOTE} -> gw-1a knows from both peers' adverts: {}",
        ms(fault_p.elapsed())
    );
    assert_eq!(
        s.balancer(ENTRY, MOCKB).snapshot().health.get(2).copied(),
        Some(0),
        "tier 2 has no health for mockb"
    );
    s.set_fault("mockb", REMOTE, Fault::None).await.unwrap();
    assert!(
        eventually(Duration::from_secs(20), || async {
            s.balancer(ENTRY, MOCKB).snapshot().health.get(2).copied() == Some(100)
        })
        .await,
        "the peers advertise mockb again"
    );

    let all = traffic.stop().await;
    let failed = failures(&all);
    println!(
        "{} requests through gw-1a while faults came and went, {} failed",
        all.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "no request may fail: {failed:?}");
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_on_the_next_host_and_ejects_the_endpoint() {
    let (s, _dir) = start(49).await;
    let traffic = Traffic::start(s.http(ENTRY), Duration::from_secs(5));
    traffic.wait_for(Instant::now(), 10).await;

    // (b) mockb(1a) answers 503. One 5xx ejects it (consecutive_5xx_errors 1), and the 503 is
    // retried on mockb(1b) (retry_on defaults to gateway-error and reset), so the client sees
    // nothing of it.
    let fault = Instant::now();
    s.set_fault("mockb", A, Fault::Unavailable).await.unwrap();
    traffic.wait_for(Instant::now(), 60).await;
    let after = traffic.since(fault);
    assert!(failures(&after).is_empty(), "{:?}", failures(&after));
    let how = taken_out(&s, "0", "consecutive_5xx");
    let retries = metric(
        s.metrics(ENTRY),
        "strait_request_retries_total",
        &[("service", MOCKB)],
    );
    if how == EJECTED {
        assert!(retries >= 1.0, "the 503 was retried: {retries}");
    }
    assert_eq!(s.serving_tier(ENTRY, MOCKB), Some(1));
    let ejected = Instant::now();
    traffic.wait_for(ejected, 20).await;
    let late = traffic.since(ejected);
    assert!(
        late.iter().all(|r| r.mockb_zone() == Some(B)),
        "served by {B} while mockb(1a) is ejected: {:?}",
        mockb_zones(&late)
    );
    let first_1b = after
        .iter()
        .filter(|r| r.mockb_zone() == Some(B))
        .map(|r| r.ended)
        .min()
        .unwrap();
    println!(
        "(b) mockb(1a) answers 503: taken out by {how}; {} requests after the fault, 0 failed, {retries} retried; first served by {B} after {}",
        after.len(),
        ms(first_1b.saturating_duration_since(fault))
    );

    s.set_fault("mockb", A, Fault::None).await.unwrap();
    let failback = serving_tier_becomes(&s, 0, Duration::from_secs(5)).await;
    assert!(failback.is_some(), "failback after the 503s stop");
    println!(
        "(b) 503s stopped -> tier 0 again: {}",
        ms(failback.unwrap())
    );
    let all = traffic.stop().await;
    assert!(failures(&all).is_empty(), "{:?}", failures(&all));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_hangs_requests_until_the_health_check_takes_it_out() {
    let (s, _dir) = start(53).await;
    let client_timeout = Duration::from_secs(2);
    let traffic = Traffic::start(s.http(ENTRY), client_timeout);
    traffic.wait_for(Instant::now(), 10).await;

    // (c) mockb(1a) accepts connections and never answers. The connect succeeds, so there is
    // nothing to retry; the gateway has no per-request timeout, so nothing reports a failure
    // either. Requests that reach it hang until the client gives up. The active health check
    // (500ms interval, 250ms timeout, one failure) takes it out; after that, requests go to 1b.
    let fault = Instant::now();
    s.set_fault("mockb", A, Fault::Blackhole).await.unwrap();
    let balancer = s.balancer(ENTRY, MOCKB);
    let taken_out = eventually(Duration::from_secs(3), || {
        let d = balancer.debug();
        async move { d["hosts"][0]["health"] == "failed_health_check" }
    })
    .await;
    assert!(taken_out, "the health check takes mockb(1a) out");
    let verdict = fault.elapsed();
    let after_verdict = Instant::now();
    traffic.wait_for(after_verdict + client_timeout, 40).await;
    let all = traffic.all();
    // Requests in flight at the fault count too: they reach mockb after it.
    let hung: Vec<&Record> = all.iter().filter(|r| r.chain.is_none()).collect();
    let later = traffic.since(after_verdict);
    assert!(
        later.iter().all(|r| r.ok() && r.mockb_zone() == Some(B)),
        "requests after the health check verdict are served by {B}: {:?}",
        later.iter().map(Record::describe).collect::<Vec<_>>()
    );
    assert!(
        hung.iter().all(|r| r.started < after_verdict),
        "only requests sent before the verdict hang"
    );
    assert!(hung.len() <= WORKERS, "at most one hung request per client");
    let ejected = entry_metric(
        &s,
        "strait_outlier_ejections_enforced_total",
        &[("tier", "0"), ("reason", "consecutive_local_origin")],
    ) + entry_metric(
        &s,
        "strait_outlier_ejections_enforced_total",
        &[("tier", "0"), ("reason", "consecutive_5xx")],
    );
    println!(
        "(c) mockb(1a) black-holed: health check verdict after {}; {} request(s) hung until the {client_timeout:?} client timeout \
         (the per-try timeout is 15s by default, longer than the client waits); outlier ejections of mockb(1a): {ejected}",
        ms(verdict),
        hung.len()
    );

    s.set_fault("mockb", A, Fault::None).await.unwrap();
    let failback = serving_tier_becomes(&s, 0, Duration::from_secs(5)).await;
    assert!(failback.is_some(), "failback after the black hole ends");
    let ejected_after = entry_metric(
        &s,
        "strait_outlier_ejections_enforced_total",
        &[("tier", "0"), ("reason", "consecutive_local_origin")],
    );
    println!(
        "(c) after the black hole ended (its held connections closed): consecutive_local_origin ejections of mockb(1a): {ejected_after}"
    );
    let back = Instant::now();
    traffic.wait_for(back, 20).await;
    let recovered = traffic.since(back);
    println!(
        "(c) black hole ended -> tier 0 again: {}; then {} of {} requests ok",
        ms(failback.unwrap()),
        recovered.iter().filter(|r| r.ok()).count(),
        recovered.len()
    );
    assert!(
        failures(&recovered).is_empty(),
        "{:?}",
        failures(&recovered)
    );
    traffic.stop().await;
    s.shutdown().await;
}
