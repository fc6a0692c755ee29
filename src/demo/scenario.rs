//! The reference scenario (DESIGN §1), after Alibaba Cloud Service Mesh's walkthrough of
//! service-level disaster recovery: two regions with two zones each, one gateway per zone, and
//! `mocka -> mockb -> mockc` in every zone, each mock calling the next through its own zone's
//! gateway. [`Scenario`] builds and runs it (for `strait demo` and the tests);
//! [`Scenario::walk`] is what `strait demo` prints: the healthy chain, mockb refusing
//! connections in one zone, mockb down in a whole region, and recovery with failback.
//!
//! Every gateway lists the endpoints of both zones of its region (own zone: tier 0, the other
//! zone: tier 1) and has the two gateways of the other region as peers (tier 2). Outlier
//! detection is the walkthrough's (one 5xx or one failed connect ejects for five minutes,
//! every host of a tier may be ejected), and an active health check every 500 ms un-ejects a
//! recovered endpoint early, so failback happens within the demo.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use super::mocks::{self, EchoTcp, Fault, MockHttp, TlsHello, UpstreamCall};
use super::topology::Topology;
use super::{TLS_HOST, echo_roundtrip, h2c_get, tls_hello};
use crate::app::Bound;
use crate::balancer::Balancer;
use crate::certs::IssueOptions;
use crate::config::ServiceKey;
use crate::metrics::Metrics;

/// One zone of the scenario and its gateway.
#[derive(Debug, Clone, Copy)]
pub struct Zone {
    pub gateway: &'static str,
    pub region: &'static str,
    pub zone: &'static str,
}

/// The walkthrough's regions and zones, one gateway each. Zone `i` lives on the loopback
/// block `first_block + i`.
pub const ZONES: [Zone; 4] = [
    Zone {
        gateway: "gw-1a",
        region: "ap-northeast-1",
        zone: "ap-northeast-1a",
    },
    Zone {
        gateway: "gw-1b",
        region: "ap-northeast-1",
        zone: "ap-northeast-1b",
    },
    Zone {
        gateway: "gw-h",
        region: "cn-hangzhou",
        zone: "cn-hangzhou-h",
    },
    Zone {
        gateway: "gw-k",
        region: "cn-hangzhou",
        zone: "cn-hangzhou-k",
    },
];

/// The call chain and each service's port.
pub const CHAIN: [(&str, u16); 3] = [("mocka", 8000), ("mockb", 8001), ("mockc", 8002)];

/// The gateway clients enter by (zone ap-northeast-1a).
pub const ENTRY: &str = "gw-1a";
/// Service keys.
pub const MOCKB: &str = "mockb.default:8001";
pub const WEB: &str = "web.default:8080";
pub const SECURE: &str = "secure.default:8443";
pub const ECHO: &str = "echo.default:9000";
/// The zone where `web`, `secure` and `echo` run (only there: clients in ap-northeast-1 reach
/// them through the tunnel).
pub const BACKEND_ZONE: &str = "cn-hangzhou-h";
/// First loopback block of `strait demo` (127.0.41.x .. 127.0.44.x).
pub const DEMO_BLOCK: u8 = 41;

/// Outlier detection of every mock service: the walkthrough's DestinationRule.
pub const OUTLIER_DETECTION: &str = "
[services.outlier_detection]
consecutive_5xx_errors = 1
split_external_local_origin_errors = true
consecutive_local_origin_failures = 1
interval = \"30s\"
base_ejection_time = \"5m\"
max_ejection_percent = 100
";

/// Active health check of every mock service: the mock itself (`/healthz` makes no upstream
/// call), often enough that a recovered endpoint is un-ejected within the demo.
pub const HEALTH_CHECK: &str = "
[services.health_check]
kind = \"http\"
path = \"/healthz\"
interval = \"500ms\"
timeout = \"250ms\"
healthy_threshold = 1
unhealthy_threshold = 1
";

/// The zone named `zone`.
pub fn zone(zone: &str) -> Option<&'static Zone> {
    ZONES.iter().find(|z| z.zone == zone)
}

/// The region of a zone.
pub fn region_of(zone_name: &str) -> Option<&'static str> {
    zone(zone_name).map(|z| z.region)
}

/// The running scenario: four gateways and their backends.
pub struct Scenario {
    pub topology: Topology,
    pub gateways: Vec<(Bound, Metrics)>,
    /// `mocka`, `mockb`, `mockc` of every zone.
    pub mocks: Vec<Arc<MockHttp>>,
    /// An http backend, a TLS server and a TCP echo server in [`BACKEND_ZONE`] only.
    pub web: Arc<MockHttp>,
    pub tls: TlsHello,
    pub echo: EchoTcp,
}

/// One hop of a chain answer: `-> NAME(version: ZONE, ip: ADDR)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub name: String,
    pub zone: String,
    pub ip: String,
}

/// The answer to one request for `mocka`.
#[derive(Debug, Clone)]
pub struct Chain {
    /// `None` when no HTTP response came back at all.
    pub status: Option<u16>,
    /// The body, or the client error.
    pub body: String,
    pub hops: Vec<Hop>,
    pub elapsed: Duration,
}

impl Chain {
    /// Status 200 and all three hops: mocka, mockb, mockc.
    pub fn ok(&self) -> bool {
        self.status == Some(200)
            && self.hops.len() == CHAIN.len()
            && self
                .hops
                .iter()
                .zip(CHAIN)
                .all(|(h, (name, _))| h.name == name)
    }

    /// The zone that served `name` in this chain.
    pub fn zone_of(&self, name: &str) -> Option<&str> {
        self.hops
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.zone.as_str())
    }
}

/// Parses `-> a(version: Z, ip: I)-> b(...)...` into hops, stopping at the first piece that is
/// not a hop (an error text).
pub fn parse_chain(body: &str) -> Vec<Hop> {
    let mut hops = Vec::new();
    for piece in body.split("-> ").skip(1) {
        let Some((name, rest)) = piece.split_once("(version: ") else {
            break;
        };
        let Some((zone, rest)) = rest.split_once(", ip: ") else {
            break;
        };
        let Some((ip, _)) = rest.split_once(')') else {
            break;
        };
        hops.push(Hop {
            name: name.to_owned(),
            zone: zone.to_owned(),
            ip: ip.to_owned(),
        });
    }
    hops
}

impl Scenario {
    /// Builds the scenario in `dir` on loopback blocks `first_block ..= first_block + 3`.
    pub async fn start(dir: &Path, first_block: u8) -> anyhow::Result<Self> {
        let mut topo = Topology::new(dir)?;
        let block = |i: usize| first_block + i as u8;
        for (i, z) in ZONES.iter().enumerate() {
            let g = topo.gateway(
                z.gateway,
                z.region,
                z.zone,
                Ipv4Addr::new(127, 0, block(i), 1),
            )?;
            g.peers = ZONES
                .iter()
                .filter(|o| o.region != z.region)
                .map(|o| o.gateway.to_owned())
                .collect();
            g.listener("http", "http", None)?;
            g.listener("tls", "tls", None)?;
            g.listener("echo", "tcp", Some(ECHO))?;
        }

        // mocka, mockb and mockc in every zone, each calling the next through its zone's gateway.
        let mut mocks = Vec::new();
        for (i, z) in ZONES.iter().enumerate() {
            let gateway = topo.get(z.gateway).listener_address("http");
            for (j, (name, _)) in CHAIN.iter().enumerate() {
                let upstream = CHAIN.get(j + 1).map(|(next, _)| UpstreamCall {
                    gateway,
                    host: format!("{next}.default"),
                });
                let address = SocketAddr::from(([127, 0, block(i), 11 + j as u8], 0));
                mocks.push(MockHttp::start(name, z.zone, address, upstream).await?);
            }
        }

        // web, secure and echo live only in cn-hangzhou-h.
        let backend_block = block(
            ZONES
                .iter()
                .position(|z| z.zone == BACKEND_ZONE)
                .expect("zone"),
        );
        let web = MockHttp::start(
            "web",
            BACKEND_ZONE,
            SocketAddr::from(([127, 0, backend_block, 21], 0)),
            None,
        )
        .await?;
        let tls_cert = topo.ca.issue(
            TLS_HOST,
            &[],
            &[TLS_HOST.to_owned()],
            &IssueOptions::default(),
        )?;
        let tls = TlsHello::start(
            SocketAddr::from(([127, 0, backend_block, 22], 0)),
            "secure",
            &tls_cert.cert_pem,
            &tls_cert.key_pem,
        )
        .await?;
        let echo = EchoTcp::start(SocketAddr::from(([127, 0, backend_block, 23], 0))).await?;

        for z in &ZONES {
            let g = topo.get_mut(z.gateway);
            // Own zone first: only the order of the TOML, tiers come from the zones.
            let mut in_region: Vec<&Arc<MockHttp>> = mocks
                .iter()
                .filter(|m| region_of(m.zone()) == Some(z.region))
                .collect();
            in_region.sort_by_key(|m| m.zone() != z.zone);
            for (name, port) in CHAIN {
                let endpoints = in_region
                    .iter()
                    .filter(|m| m.name() == name)
                    .map(|m| (m.address(), m.zone().to_owned()))
                    .collect();
                let svc = g.service(&format!("{name}.default:{port}"), "http", true, endpoints);
                svc.extra = format!("{OUTLIER_DETECTION}{HEALTH_CHECK}");
            }
            let here = |address: SocketAddr| {
                if region_of(BACKEND_ZONE) == Some(z.region) {
                    vec![(address, BACKEND_ZONE.to_owned())]
                } else {
                    vec![]
                }
            };
            g.service(WEB, "http", true, here(web.address()));
            g.service(SECURE, "tls", true, here(tls.address()))
                .hosts
                .push(TLS_HOST.into());
            g.service(ECHO, "tcp", true, here(echo.address()));
        }

        topo.write_configs()?;
        let mut gateways = Vec::new();
        for z in &ZONES {
            let config = topo.load(z.gateway)?;
            let metrics = Metrics::new();
            let sockets = topo.take_sockets(z.gateway);
            let bound = crate::app::bind_prebound(config, metrics.clone(), sockets).await?;
            gateways.push((bound, metrics));
        }
        Ok(Scenario {
            topology: topo,
            gateways,
            mocks,
            web,
            tls,
            echo,
        })
    }

    /// Waits until every tunnel is up and every peer has advertised its health.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mockb: ServiceKey = MOCKB.parse()?;
        loop {
            let ready = self.gateways.iter().all(|(b, _)| {
                b.gateway
                    .peers
                    .iter()
                    .all(|p| p.is_up() && p.advertised(&mockb).is_some_and(|a| a.healthy > 0))
            });
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < limit,
                "tunnels and health adverts not there within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A gateway by name, with its metrics.
    pub fn gateway(&self, name: &str) -> (&Bound, &Metrics) {
        let (b, m) = self
            .gateways
            .iter()
            .find(|(b, _)| b.addresses.name == name)
            .expect("gateway in scenario");
        (b, m)
    }

    pub fn metrics(&self, gateway: &str) -> &Metrics {
        self.gateway(gateway).1
    }

    /// A gateway's http listener: where clients (and the mocks of its zone) send requests.
    pub fn http(&self, gateway: &str) -> SocketAddr {
        self.topology.get(gateway).listener_address("http")
    }

    /// A gateway's balancer of `service` (`name.namespace:port`).
    pub fn balancer(&self, gateway: &str, service: &str) -> Arc<Balancer> {
        let key: ServiceKey = service.parse().expect("service key");
        self.gateway(gateway)
            .0
            .gateway
            .balancers
            .get(&key)
            .expect("service at gateway")
            .clone()
    }

    /// The tier taking most of `service`'s traffic at `gateway` now.
    pub fn serving_tier(&self, gateway: &str, service: &str) -> Option<usize> {
        self.balancer(gateway, service).snapshot().serving_tier
    }

    /// The mock `name` of `zone`.
    pub fn mock(&self, name: &str, zone: &str) -> Option<&Arc<MockHttp>> {
        self.mocks
            .iter()
            .find(|m| m.name() == name && m.zone() == zone)
    }

    /// Sets the fault of mock `name` in `zone`, or in every zone of a region.
    pub async fn set_fault(&self, name: &str, zone: &str, fault: Fault) -> anyhow::Result<()> {
        set_fault(&self.mocks, name, zone, fault).await.map(drop)
    }

    /// One request for `mocka` entering at `gateway`.
    pub async fn chain(&self, gateway: &str) -> Chain {
        chain_at(self.http(gateway)).await
    }

    /// The `--serve` line: every gateway's addresses, the CA folder, the control address.
    pub fn serve_json(&self, control: SocketAddr) -> serde_json::Value {
        let gateways: Vec<_> = self.gateways.iter().map(|(b, _)| &b.addresses).collect();
        let mocks: Vec<_> = self
            .mocks
            .iter()
            .chain([&self.web])
            .map(|m| json!({ "name": m.name(), "zone": m.zone(), "address": m.address() }))
            .collect();
        json!({
            "gateways": gateways,
            "ca_dir": self.topology.dir,
            "control": control,
            "entry": { "gateway": ENTRY, "http": self.http(ENTRY), "host": "mocka.default" },
            "mocks": mocks,
            "configs": ZONES.iter().map(|z| self.topology.config_path(z.gateway)).collect::<Vec<_>>(),
            "tls_host": TLS_HOST,
        })
    }

    /// Drains every gateway.
    pub async fn shutdown(self) {
        for (bound, _) in self.gateways {
            bound.shutdown().await;
        }
    }

    /// Runs the steps of DESIGN §1 and prints each; returns (checks made, checks failed).
    pub async fn walk(&self) -> (u32, u32) {
        let mut walk = Walk {
            s: self,
            sent: 0,
            failed: 0,
        };
        walk.intro();
        walk.step0().await;
        walk.step1().await;
        walk.step2().await;
        walk.step3().await;
        walk.step4().await;
        (walk.sent, walk.failed)
    }
}

/// One request for `mocka` at the http listener `http`, as a client in that zone sends it.
pub async fn chain_at(http: SocketAddr) -> Chain {
    let start = Instant::now();
    let result = mocks::http_get(http, "mocka.default", "/").await;
    let elapsed = start.elapsed();
    match result {
        Ok((status, _, body)) => Chain {
            status: Some(status.as_u16()),
            hops: parse_chain(&body),
            body,
            elapsed,
        },
        Err(e) => Chain {
            status: None,
            body: format!("request failed: {e:#}"),
            hops: Vec::new(),
            elapsed,
        },
    }
}

/// Sets the fault of mock `name` in `zone` (or in every zone of the region `zone`); returns
/// the mocks it changed.
pub async fn set_fault<'a>(
    mocks: &'a [Arc<MockHttp>],
    name: &str,
    zone: &str,
    fault: Fault,
) -> anyhow::Result<Vec<&'a Arc<MockHttp>>> {
    let targets: Vec<&Arc<MockHttp>> = mocks
        .iter()
        .filter(|m| m.name() == name && (m.zone() == zone || region_of(m.zone()) == Some(zone)))
        .collect();
    if targets.is_empty() {
        let names: Vec<String> = mocks
            .iter()
            .map(|m| format!("{} in {}", m.name(), m.zone()))
            .collect();
        anyhow::bail!(
            "no mock {name:?} in zone or region {zone:?}; there are: {}",
            names.join(", ")
        );
    }
    for m in &targets {
        m.set_fault(fault).await?;
    }
    Ok(targets)
}

/// What a step expects of each chain: Ok or what was wrong.
type Expect<'e> = &'e dyn Fn(&Chain) -> Result<(), String>;

/// The demo's steps, counting every request and check.
struct Walk<'a> {
    s: &'a Scenario,
    sent: u32,
    failed: u32,
}

/// Metric families whose changes each step prints.
const WATCHED: [&str; 6] = [
    "strait_outlier_ejections_enforced_total",
    "strait_outlier_ejections_active",
    "strait_failovers_total",
    "strait_serving_tier",
    "strait_connect_retries_total",
    "strait_request_retries_total",
];

/// Samples of a registry by `name{labels}`, for the families named.
fn sample(m: &Metrics, families: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for family in m.registry().gather() {
        if !families.contains(&family.name()) {
            continue;
        }
        for metric in family.get_metric() {
            let labels: Vec<String> = metric
                .get_label()
                .iter()
                .map(|l| format!("{}=\"{}\"", l.name(), l.value()))
                .collect();
            let value = match family.get_field_type() {
                prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                _ => metric.get_gauge().get_value(),
            };
            out.insert(format!("{}{{{}}}", family.name(), labels.join(",")), value);
        }
    }
    out
}

/// mockb requests served (2xx) per tier, summed over every gateway: each request's mockb hop
/// is made by exactly one gateway, the one of the zone it entered.
fn mockb_by_tier(s: &Scenario) -> [f64; 3] {
    let mut tiers = [0.0; 3];
    for (_, m) in &s.gateways {
        for (key, value) in sample(m, &["strait_requests_total"]) {
            if !key.contains(&format!("service=\"{MOCKB}\"")) || !key.contains("outcome=\"2xx\"") {
                continue;
            }
            for (t, slot) in tiers.iter_mut().enumerate() {
                if key.contains(&format!("tier=\"{t}\"")) {
                    *slot += value;
                }
            }
        }
    }
    tiers
}

/// One line per host of a balancer: tier, health, ejection.
fn hosts_line(b: &Balancer) -> String {
    let d = b.debug();
    let hosts = d["hosts"].as_array().cloned().unwrap_or_default();
    hosts
        .iter()
        .map(|h| {
            let mut s = format!(
                "{} (tier {}) {}",
                h["host"].as_str().unwrap_or("?"),
                h["tier"],
                h["health"].as_str().unwrap_or("?")
            );
            if let Some(left) = h["outlier"]["ejected_for_s"].as_f64() {
                s.push_str(&format!(
                    " [{}, {left:.0}s left]",
                    h["outlier"]["last_ejection_reason"].as_str().unwrap_or("?")
                ));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether every host of a balancer is healthy (none ejected, none failing its health check).
fn all_healthy(b: &Balancer) -> bool {
    let d = b.debug();
    d["hosts"]
        .as_array()
        .is_some_and(|hosts| hosts.iter().all(|h| h["health"] == "healthy"))
}

/// The longest remaining ejection among a balancer's hosts.
fn ejection_left(b: &Balancer) -> Option<Duration> {
    let d = b.debug();
    d["hosts"]
        .as_array()?
        .iter()
        .filter_map(|h| h["outlier"]["ejected_for_s"].as_f64())
        .reduce(f64::max)
        .map(Duration::from_secs_f64)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The chain in the walkthrough's one-line form.
fn show(c: &Chain) -> String {
    match c.status {
        Some(200) => c.body.clone(),
        Some(status) => format!("{status}: {}", c.body.trim_end()),
        None => c.body.clone(),
    }
}

impl Walk<'_> {
    /// Counts one check; prints it when it failed.
    fn record(&mut self, ok: bool, what: &str) {
        self.sent += 1;
        if !ok {
            self.failed += 1;
            println!("  FAILED: {what}");
        }
    }

    fn intro(&self) {
        let s = self.s;
        println!(
            "strait demo: the reference scenario (DESIGN §1) on loopback, one gateway per zone"
        );
        for z in &ZONES {
            let g = s.topology.get(z.gateway);
            println!(
                "  {:<14} {:<15} {:<5} tunnel {:<19} admin {:<19} http {}",
                z.region,
                z.zone,
                z.gateway,
                g.tunnel.to_string(),
                g.admin.to_string(),
                g.listener_address("http")
            );
        }
        println!(
            "  every zone runs mocka -> mockb -> mockc; each mock calls the next through its own zone's gateway"
        );
        println!(
            "  tiers at each gateway: 0 = own zone, 1 = other zone of the region, 2 = the other region's gateways (via the tunnel)"
        );
        println!(
            "  outlier detection (walkthrough): consecutive_5xx_errors 1, consecutive_local_origin_failures 1 (split), \
             interval 30s, base_ejection_time 5m, max_ejection_percent 100"
        );
        println!(
            "  active health check: GET /healthz every 500ms (timeout 250ms); one pass un-ejects early"
        );
        let tunnels: Vec<String> = ZONES
            .iter()
            .filter(|z| z.region == ZONES[0].region)
            .flat_map(|a| {
                ZONES
                    .iter()
                    .filter(move |b| b.region != a.region)
                    .map(move |b| format!("{} <-> {}", a.gateway, b.gateway))
            })
            .collect();
        println!(
            "  tunnels up: {} (TLS 1.3, client certificates both ways, SPIFFE identities)",
            tunnels.join(", ")
        );
    }

    /// Step 0: every listener kind through the tunnel, gw-1a to cn-hangzhou.
    async fn step0(&mut self) {
        let s = self.s;
        println!("\nstep 0: every listener kind at {ENTRY}, through the tunnel to {BACKEND_ZONE}");
        let http = s.http(ENTRY);
        let expected = format!(
            "-> web(version: {BACKEND_ZONE}, ip: {})",
            s.web.address().ip()
        );
        let mut served_by: BTreeMap<String, u32> = BTreeMap::new();
        let mut ok = 0;
        for _ in 0..10 {
            let res = mocks::http_get(http, "web.default", "/").await;
            let peer = res
                .as_ref()
                .ok()
                .and_then(|(_, h, _)| h.get("strait-served-by")?.to_str().ok().map(str::to_owned));
            let good = matches!(&res, Ok((st, _, body)) if st.is_success() && *body == expected)
                && peer.is_some();
            *served_by
                .entry(peer.unwrap_or_else(|| "none".into()))
                .or_default() += 1;
            ok += u32::from(good);
            self.record(good, &format!("http web.default: {res:?}"));
        }
        let by: Vec<String> = served_by.iter().map(|(p, n)| format!("{p} {n}")).collect();
        println!(
            "  http  web.default         10 requests (HTTP/1.1): {ok} ok, served by {}   {expected}",
            by.join(", ")
        );

        let h2c = h2c_get(http, "web.default").await;
        let good = matches!(&h2c, Ok(body) if *body == expected);
        self.record(good, &format!("h2c web.default: {h2c:?}"));
        println!(
            "  h2c   web.default          1 request  (HTTP/2 prior knowledge): {}",
            if good { "ok" } else { "FAILED" }
        );

        let tls = s.topology.get(ENTRY).listener_address("tls");
        let ca = s.topology.dir.join("ca.pem");
        let mut ok = 0;
        for i in 0..5 {
            let res = tls_hello(tls, &ca, &format!("ping {i}")).await;
            let good = matches!(&res, Ok(line) if *line == format!("hello from secure: ping {i}"));
            ok += u32::from(good);
            self.record(good, &format!("tls {TLS_HOST}: {res:?}"));
        }
        println!(
            "  tls   {TLS_HOST}   5 connections, SNI passthrough, backend cert verified by the client: {ok} ok"
        );

        let echo = s.topology.get(ENTRY).listener_address("echo");
        let mut ok = 0;
        for i in 0..5u8 {
            let payload: Vec<u8> = (0..65536u32)
                .map(|n| (n as u8).wrapping_mul(i + 1))
                .collect();
            let res = echo_roundtrip(echo, &payload).await;
            let good = matches!(&res, Ok(back) if *back == payload);
            ok += u32::from(good);
            self.record(good, "tcp echo round trip");
        }
        println!(
            "  tcp   echo.default          5 connections x 64 KiB echoed with half-close: {ok} ok"
        );
    }

    /// Sends `sequential` requests one after another, then `concurrent` at once, all entering
    /// at [`ENTRY`]; checks each against `expect`; returns them.
    async fn traffic(
        &mut self,
        sequential: usize,
        concurrent: usize,
        expect: Expect<'_>,
    ) -> Vec<Chain> {
        let mut chains = Vec::new();
        for _ in 0..sequential {
            chains.push(self.s.chain(ENTRY).await);
        }
        chains.extend(join_all((0..concurrent).map(|_| self.s.chain(ENTRY))).await);
        for c in &chains {
            self.check(c, expect);
        }
        chains
    }

    /// Counts a chain: failed unless 200 with all three hops, and on the path expected.
    fn check(&mut self, c: &Chain, expect: Expect<'_>) {
        if !c.ok() {
            self.record(false, &format!("request failed: {}", show(c)));
        } else if let Err(why) = expect(c) {
            self.record(false, &format!("{why}: {}", show(c)));
        } else {
            self.record(true, "");
        }
    }

    /// The tally line and the metrics that moved at the entry gateway.
    fn tally(
        &self,
        step: u32,
        chains: &[Chain],
        tiers_before: [f64; 3],
        metrics_before: &BTreeMap<String, f64>,
    ) {
        let tiers = mockb_by_tier(self.s);
        let d: Vec<f64> = (0..3).map(|t| tiers[t] - tiers_before[t]).collect();
        let failed = chains.iter().filter(|c| !c.ok()).count();
        println!(
            "  step {step}: sent {}, failed {failed}, mockb served by tier 0: {}, tier 1: {}, tier 2: {}",
            chains.len(),
            d[0],
            d[1],
            d[2]
        );
        let after = sample(self.s.metrics(ENTRY), &WATCHED);
        let moved: Vec<String> = after
            .iter()
            .filter(|(k, v)| metrics_before.get(*k).copied().unwrap_or(0.0) != **v)
            .map(|(k, v)| {
                format!(
                    "{k} {} -> {v}",
                    metrics_before.get(k).copied().unwrap_or(0.0)
                )
            })
            .collect();
        if moved.is_empty() {
            println!("  metrics at {ENTRY}: no ejection or failover metric moved");
        } else {
            println!("  metrics moved at {ENTRY}:");
            for m in moved {
                println!("    {m}");
            }
        }
    }

    /// The distinct chains, most frequent first, with how many requests took each.
    fn samples(chains: &[Chain], n: usize) {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for c in chains {
            match counts.iter_mut().find(|(body, _)| *body == c.body) {
                Some((_, k)) => *k += 1,
                None => counts.push((&c.body, 1)),
            }
        }
        counts.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
        for (body, k) in counts.iter().take(n) {
            println!("    {k:>2} x {body}");
        }
        if counts.len() > n {
            println!("    ... and {} other chains", counts.len() - n);
        }
    }

    fn mockb_hosts(&self) {
        println!(
            "  {ENTRY} mockb hosts: {}",
            hosts_line(&self.s.balancer(ENTRY, MOCKB))
        );
    }

    /// Step 1: healthy; every hop stays in the zone the request entered.
    async fn step1(&mut self) {
        let s = self.s;
        println!("\nstep 1: healthy: every hop stays in the caller's zone");
        let tiers_before = mockb_by_tier(s);
        let metrics_before = sample(s.metrics(ENTRY), &WATCHED);
        let mut chains = Vec::new();
        for z in &ZONES {
            for i in 0..5 {
                let c = s.chain(z.gateway).await;
                if i == 0 {
                    println!("    via {:<5} {}", z.gateway, show(&c));
                }
                let expect = |c: &Chain| {
                    if c.hops.iter().all(|h| h.zone == z.zone) {
                        Ok(())
                    } else {
                        Err(format!("a hop left {}", z.zone))
                    }
                };
                self.check(&c, &expect);
                chains.push(c);
            }
        }
        self.tally(1, &chains, tiers_before, &metrics_before);
    }

    /// Step 2: mockb refuses connections in ap-northeast-1a; chains move to 1b, none fails.
    async fn step2(&mut self) {
        let s = self.s;
        let (a, b) = (ZONES[0].zone, ZONES[1].zone);
        println!(
            "\nstep 2: mockb in {a} refuses connections: chains entering in {a} move to {b}, none fails"
        );
        let tiers_before = mockb_by_tier(s);
        let metrics_before = sample(s.metrics(ENTRY), &WATCHED);
        let retries = || {
            sample(s.metrics(ENTRY), &["strait_connect_retries_total"])
                .iter()
                .filter(|(k, _)| k.contains(MOCKB))
                .map(|(_, v)| v)
                .sum::<f64>()
        };
        let expect = |c: &Chain| match (c.zone_of("mocka"), c.zone_of("mockb"), c.zone_of("mockc"))
        {
            (Some(x), Some(y), Some(z)) if x == a && y == b && z == b => Ok(()),
            _ => Err(format!("expected mocka({a}) -> mockb({b}) -> mockc({b})")),
        };
        let mockb = s.mock("mockb", a).expect("mockb in 1a");
        if let Err(e) = s.set_fault("mockb", a, Fault::Refuse).await {
            self.record(false, &format!("injecting the fault: {e:#}"));
        }
        println!(
            "  fault: mockb({a}) at {} closed its socket (connection refused)",
            mockb.address()
        );
        let before = retries();
        let first = s.chain(ENTRY).await;
        let retried = retries() - before;
        println!(
            "  first request after the fault: {} in {}, connect retries at {ENTRY} +{retried}{}",
            first
                .status
                .map_or("no response".to_owned(), |st| st.to_string()),
            ms(first.elapsed),
            if retried > 0.0 {
                " (refused by mockb(1a), retried at once on mockb(1b))"
            } else {
                " (the health check had already taken mockb(1a) out)"
            }
        );
        println!("    {}", show(&first));
        self.check(&first, &expect);
        let mut chains = vec![first];
        chains.extend(self.traffic(19, 20, &expect).await);
        println!("  chains:");
        Self::samples(&chains, 3);
        self.tally(2, &chains, tiers_before, &metrics_before);
        self.mockb_hosts();
    }

    /// Step 3: mockb down in both zones of ap-northeast-1; chains cross to cn-hangzhou.
    async fn step3(&mut self) {
        let s = self.s;
        let (a, b) = (ZONES[0].zone, ZONES[1].zone);
        let remote = ZONES[2].region;
        println!(
            "\nstep 3: mockb down in both zones of {}: mockb is served from {remote} through the tunnel",
            ZONES[0].region
        );
        let tiers_before = mockb_by_tier(s);
        let metrics_before = sample(s.metrics(ENTRY), &WATCHED);
        let expect = |c: &Chain| match (c.zone_of("mocka"), c.zone_of("mockb"), c.zone_of("mockc"))
        {
            (Some(x), Some(y), Some(z)) if x == a && region_of(y) == Some(remote) && z == y => {
                Ok(())
            }
            _ => Err(format!(
                "expected mocka({a}) -> mockb({remote}) -> mockc(same zone as mockb)"
            )),
        };

        // Watch the entry gateway's serving tier for mockb from the moment of the fault.
        let balancer = s.balancer(ENTRY, MOCKB);
        let watcher = tokio::spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if balancer.snapshot().serving_tier == Some(2) {
                    return Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        });
        let mockb = s.mock("mockb", b).expect("mockb in 1b");
        let fault_at = Instant::now();
        if let Err(e) = s.set_fault("mockb", b, Fault::Refuse).await {
            self.record(false, &format!("injecting the fault: {e:#}"));
        }
        println!(
            "  fault: mockb({b}) at {} closed its socket too (mockb({a}) still refuses)",
            mockb.address()
        );
        let first = s.chain(ENTRY).await;
        let first_at = fault_at.elapsed();
        let first_remote = first.zone_of("mockb").and_then(region_of) == Some(remote);
        self.check(&first, &expect);
        println!(
            "  first request after the fault: {} in {}, mockb served by tier 2: {}",
            first
                .status
                .map_or("no response".to_owned(), |st| st.to_string()),
            ms(first.elapsed),
            if first_remote { "yes" } else { "no" }
        );
        println!("    {}", show(&first));
        let mut chains = vec![first];
        chains.extend(self.traffic(19, 20, &expect).await);
        let switched = watcher.await.ok().flatten();
        println!("  chains:");
        Self::samples(&chains, 3);
        self.tally(3, &chains, tiers_before, &metrics_before);
        self.mockb_hosts();
        let first_tier2 = chains
            .iter()
            .position(|c| c.zone_of("mockb").and_then(region_of) == Some(remote));
        match first_tier2 {
            Some(0) => println!(
                "  timing: fault -> first request served by tier 2: {} (the very first request after the fault)",
                ms(first_at)
            ),
            Some(i) => println!(
                "  timing: the first request served by tier 2 was request #{}",
                i + 1
            ),
            None => println!("  timing: no request was served by tier 2"),
        }
        match switched {
            Some(t) => println!(
                "  timing: fault -> {ENTRY} serving tier for mockb = 2: {}",
                ms(t.saturating_duration_since(fault_at))
            ),
            None => self.record(false, "the serving tier of mockb at gw-1a never became 2"),
        }
    }

    /// Step 4: recovery and failback through the active health check.
    async fn step4(&mut self) {
        let s = self.s;
        let (a, b) = (ZONES[0].zone, ZONES[1].zone);
        let region = ZONES[0].region;
        println!(
            "\nstep 4: {region} recovers: the health check un-ejects mockb long before the 5m ejection ends, traffic fails back"
        );
        let tiers_before = mockb_by_tier(s);
        let metrics_before = sample(s.metrics(ENTRY), &WATCHED);
        let left = ejection_left(&s.balancer(ENTRY, MOCKB)).map_or_else(
            || "none".to_owned(),
            |d| format!("{:.0} s", d.as_secs_f64()),
        );
        let start = Instant::now();
        if let Err(e) = s.set_fault("mockb", region, Fault::None).await {
            self.record(false, &format!("clearing the fault: {e:#}"));
        }
        println!("  fault cleared: mockb({a}) and mockb({b}) listen again");
        let limit = Duration::from_secs(10);
        let (mut back, mut healthy) = (None, None);
        while start.elapsed() < limit && healthy.is_none() {
            let at_0 = [ZONES[0].gateway, ZONES[1].gateway]
                .iter()
                .all(|g| s.serving_tier(g, MOCKB) == Some(0));
            if at_0 && back.is_none() {
                back = Some(start.elapsed());
            }
            if at_0 && all_healthy(&s.balancer(ENTRY, MOCKB)) {
                healthy = Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match back {
            Some(t) => println!(
                "  timing: fault cleared -> {} and {} serve mockb from tier 0 again (failback): {}",
                ZONES[0].gateway,
                ZONES[1].gateway,
                ms(t)
            ),
            None => self.record(false, &format!("no failback within {limit:?}")),
        }
        match healthy {
            Some(t) => println!(
                "  timing: fault cleared -> every mockb host at {ENTRY} healthy again: {} ({left} of the 5m ejection skipped)",
                ms(t)
            ),
            None => self.record(
                false,
                &format!("mockb hosts at {ENTRY} not all healthy within {limit:?}"),
            ),
        }
        self.mockb_hosts();
        let expect = |c: &Chain| {
            if c.hops.iter().all(|h| h.zone == a) {
                Ok(())
            } else {
                Err(format!("a hop left {a}"))
            }
        };
        let mut chains = self.traffic(20, 20, &expect).await;
        println!("  chains:");
        Self::samples(&chains, 3);
        for z in &ZONES[1..] {
            let c = s.chain(z.gateway).await;
            println!("    via {:<5} {}", z.gateway, show(&c));
            let expect = |c: &Chain| {
                if c.hops.iter().all(|h| h.zone == z.zone) {
                    Ok(())
                } else {
                    Err(format!("a hop left {}", z.zone))
                }
            };
            self.check(&c, &expect);
            chains.push(c);
        }
        self.tally(4, &chains, tiers_before, &metrics_before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse() {
        let body = "-> mocka(version: ap-northeast-1a, ip: 127.0.41.11)-> mockb(version: cn-hangzhou-h, ip: 127.0.43.12)-> mockc(version: cn-hangzhou-h, ip: 127.0.43.13)";
        let hops = parse_chain(body);
        assert_eq!(hops.len(), 3);
        assert_eq!(hops[1].name, "mockb");
        assert_eq!(hops[1].zone, "cn-hangzhou-h");
        assert_eq!(hops[2].ip, "127.0.43.13");
        let broken = "-> mocka(version: ap-northeast-1a, ip: 127.0.41.11)-> upstream 502 Bad Gateway: no upstream";
        assert_eq!(parse_chain(broken).len(), 1);
        assert_eq!(region_of("cn-hangzhou-k"), Some("cn-hangzhou"));
    }
}
