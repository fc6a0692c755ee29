//! Peer liveness and failover across peer regions, measured: a black-holed peer (through
//! [`support::relay`]) is dropped by PING liveness and traffic moves to the next peer tier; a
//! killed peer (`strait run`, SIGKILL) is dropped at once; a restored or restarted peer takes
//! its traffic back; a peer's health advertisement reaches the caller and an empty one stops
//! traffic to it.
//!
//! Every test prints what it measured (`cargo test --test liveness -- --nocapture`). Each test
//! has its own loopback block (127.0.70-72.x); ports are all picked by the kernel.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use strait::app::Bound;
use strait::demo::topology::Topology;
use strait::metrics::Metrics;
use support::relay::{Mode, Relay};
use support::{StraitProcess, eventually, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SVC: &str = "svc.default:7000";
/// Longest wait for anything that should happen by itself (tunnels up, a redial).
// Generous: CI machines have two cores and run test binaries' threads side by side.
const LIMIT: Duration = Duration::from_secs(20);
/// Bound on one connection through a gateway, connect to EOF.
const IO: Duration = Duration::from_secs(6);
/// Hard bound on dropping a black-holed peer with the default liveness settings.
const BLACKHOLE_BOUND: Duration = Duration::from_millis(3500);

fn ip(block: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, block, host)
}

fn addr(block: u8, host: u8) -> SocketAddr {
    SocketAddr::from((ip(block, host), 0))
}

/// An echo server that names itself: answers `TAG|` and then echoes until the client's EOF.
/// Dropping it closes the listening socket (connects are refused).
struct TaggedEcho {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl TaggedEcho {
    async fn start(address: SocketAddr, tag: &'static str) -> TaggedEcho {
        let listener = TcpListener::bind(address).await.expect("echo listens");
        let address = listener.local_addr().expect("echo address");
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tcp.split();
                    if w.write_all(format!("{tag}|").as_bytes()).await.is_ok()
                        && tokio::io::copy(&mut r, &mut w).await.is_ok()
                    {
                        let _ = w.shutdown().await;
                    }
                });
            }
        });
        TaggedEcho { address, task }
    }
}

impl Drop for TaggedEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection through a gateway listener: send `ping`, half-close, read to EOF, and return
/// the tag of the echo server that answered. `Err` on anything else.
async fn echo_via(listen: SocketAddr) -> Result<String, String> {
    let attempt = async {
        let mut tcp = TcpStream::connect(listen)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.write_all(b"ping")
            .await
            .map_err(|e| format!("write: {e}"))?;
        tcp.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
        let mut back = Vec::new();
        tcp.read_to_end(&mut back)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let back = String::from_utf8_lossy(&back).into_owned();
        match back.split_once('|') {
            Some((tag, "ping")) => Ok(tag.to_owned()),
            _ => Err(format!("unexpected answer {back:?}")),
        }
    };
    tokio::time::timeout(IO, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {IO:?}")))
}

/// One client connection of a retry loop, timed from the loop's origin.
#[derive(Debug)]
struct Attempt {
    started: Duration,
    finished: Duration,
    result: Result<String, String>,
}

/// A client that connects and echoes in a loop from `origin` until an echo comes from `until`
/// (or `limit` passes), recording every attempt.
fn retry_loop(
    listen: SocketAddr,
    origin: Instant,
    until: &'static str,
    limit: Duration,
) -> JoinHandle<Vec<Attempt>> {
    tokio::spawn(async move {
        let mut attempts = Vec::new();
        // Paced, not a wait: a few hundred connections a second, not tens of thousands.
        let mut pace = tokio::time::interval(Duration::from_millis(5));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while origin.elapsed() < limit {
            pace.tick().await;
            let started = origin.elapsed();
            let result = echo_via(listen).await;
            let done = result.as_deref() == Ok(until);
            attempts.push(Attempt {
                started,
                finished: origin.elapsed(),
                result,
            });
            if done {
                break;
            }
        }
        attempts
    })
}

fn tunnel_up(m: &Metrics, peer: &str) -> f64 {
    metric(m, "strait_tunnel_up", &[("peer", peer)])
}

fn serving_tier(m: &Metrics) -> f64 {
    metric(m, "strait_serving_tier", &[("service", SVC)])
}

fn remote_healthy(m: &Metrics, peer: &str) -> f64 {
    metric(
        m,
        "strait_remote_healthy_endpoints",
        &[("peer", peer), ("service", SVC)],
    )
}

/// `strait_connections_total` of the tcp listener for the service.
fn connections(m: &Metrics, tier: &str, outcome: &str) -> f64 {
    metric(
        m,
        "strait_connections_total",
        &[
            ("protocol", "tcp"),
            ("service", SVC),
            ("tier", tier),
            ("outcome", outcome),
        ],
    )
}

/// Starts `name` in this process on its reserved sockets.
async fn start_in_process(topo: &mut Topology, name: &str) -> (Bound, Metrics) {
    let config = topo.load(name).expect("config loads");
    let sockets = topo.take_sockets(name);
    let metrics = Metrics::new();
    let bound = strait::app::bind_prebound(config, metrics.clone(), sockets)
        .await
        .expect("gateway starts");
    (bound, metrics)
}

/// Rewrites `gateway`'s config so that its peer `peer` is dialed at `address` instead.
fn redirect_peer(topo: &Topology, gateway: &str, peer: &str, address: SocketAddr) {
    let path = topo.config_path(gateway);
    let toml = std::fs::read_to_string(&path).expect("read config");
    let from = format!("address = \"{}\"", topo.get(peer).tunnel);
    assert_eq!(toml.matches(&from).count(), 1, "{from} once in:\n{toml}");
    let toml = toml.replace(&from, &format!("address = \"{address}\""));
    std::fs::write(&path, toml).expect("write config");
}

/// Adds gw-x (the caller: a `tcp` listener for the service, no endpoints of its own) with
/// `peers` in failover order; returns its listener address.
fn add_caller(topo: &mut Topology, block: u8, peers: &[&str]) -> SocketAddr {
    let x = topo
        .gateway("gw-x", "region-x", "zone-x1", ip(block, 1))
        .unwrap();
    x.peers = peers.iter().map(|p| p.to_string()).collect();
    x.service(SVC, "tcp", false, vec![]);
    x.listener("svc", "tcp", Some(SVC)).unwrap()
}

/// Adds a serving peer in its own region with `endpoints` for the service in its zone.
fn add_server(
    topo: &mut Topology,
    name: &str,
    region: &str,
    ip: Ipv4Addr,
    endpoints: &[SocketAddr],
    extra: &str,
) {
    let zone = format!("{region}-a");
    let g = topo.gateway(name, region, &zone, ip).unwrap();
    g.peers.push("gw-x".into());
    let eps = endpoints.iter().map(|a| (*a, zone.clone())).collect();
    g.service(SVC, "tcp", true, eps).extra = extra.to_owned();
}

/// Waits until `strait_connections_total{tier, outcome="ok"}` reaches `at_least` (a
/// connection is counted when it ends).
async fn assert_counted(m: &Metrics, tier: &str, at_least: f64) {
    assert!(
        eventually(LIMIT, || async { connections(m, tier, "ok") >= at_least }).await,
        "connections_total{{tier=\"{tier}\",outcome=\"ok\"}} reached {at_least} (is {})",
        connections(m, tier, "ok")
    );
}

/// `n` sequential connections, each of which must echo from `tag`.
async fn assert_all_served_by(listen: SocketAddr, tag: &str, n: usize, what: &str) {
    for i in 0..n {
        let got = echo_via(listen).await;
        assert_eq!(
            got.as_deref(),
            Ok(tag),
            "{what}: connection {i} of {n} not served by {tag}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_peer_is_dropped_within_3s_and_returns() {
    strait::tls::install_default_provider();
    let block = 70;
    let dir = tempfile::tempdir().unwrap();
    let echo_y = TaggedEcho::start(addr(block, 10), "y").await;
    let echo_z = TaggedEcho::start(addr(block, 11), "z").await;
    let mut topo = Topology::new(dir.path()).unwrap();
    let listen = add_caller(&mut topo, block, &["gw-y", "gw-z"]);
    add_server(
        &mut topo,
        "gw-y",
        "region-y",
        ip(block, 2),
        &[echo_y.address],
        "",
    );
    add_server(
        &mut topo,
        "gw-z",
        "region-z",
        ip(block, 3),
        &[echo_z.address],
        "",
    );
    // gw-x reaches gw-y only through the relay; gw-y and gw-z reach gw-x directly.
    let relay = Relay::start(addr(block, 9), topo.get("gw-y").tunnel)
        .await
        .unwrap();
    topo.write_configs().unwrap();
    redirect_peer(&topo, "gw-x", "gw-y", relay.address());
    let _y = start_in_process(&mut topo, "gw-y").await;
    let _z = start_in_process(&mut topo, "gw-z").await;
    let (_x, xm) = start_in_process(&mut topo, "gw-x").await;

    // Healthy: gw-y (tier 2) serves, gw-z (tier 3) stands by.
    assert!(
        eventually(LIMIT, || async {
            tunnel_up(&xm, "gw-y") == 1.0
                && tunnel_up(&xm, "gw-z") == 1.0
                && remote_healthy(&xm, "gw-y") == 1.0
                && remote_healthy(&xm, "gw-z") == 1.0
        })
        .await,
        "gw-x has both tunnels up and both adverts"
    );
    assert_eq!(serving_tier(&xm), 2.0, "gw-y's region is tier 2 at gw-x");
    assert_all_served_by(listen, "y", 10, "healthy").await;
    assert_counted(&xm, "2", 10.0).await;

    // T0: the link to gw-y goes silent. A client starts connecting at once.
    relay.set_mode(Mode::Blackhole);
    let t0 = Instant::now();
    let client = retry_loop(listen, t0, "z", Duration::from_secs(10));
    assert!(
        eventually(LIMIT, || async { tunnel_up(&xm, "gw-y") == 0.0 }).await,
        "gw-x drops the black-holed gw-y"
    );
    let detected = t0.elapsed();
    eprintln!(
        "blackhole: gw-y marked down {detected:?} after T0 (default ping_interval/ping_timeout)"
    );
    assert!(
        detected < BLACKHOLE_BOUND,
        "black-holed peer dropped in {detected:?}, bound {BLACKHOLE_BOUND:?}"
    );
    if detected >= Duration::from_secs(3) {
        eprintln!("blackhole: NOTE detection took {detected:?}, not under 3 s");
    }

    let attempts = client.await.unwrap();
    let first = attempts.last().expect("at least one attempt");
    assert_eq!(
        first.result.as_deref(),
        Ok("z"),
        "the retrying client reached gw-z: {attempts:?}"
    );
    eprintln!(
        "blackhole: first echo through gw-z {:?} after T0 ({} attempt(s): {attempts:?})",
        first.finished,
        attempts.len()
    );
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.result.is_err()).collect();
    assert!(
        failed.is_empty(),
        "connections started after T0 fail: {failed:?}"
    );

    // Down: every new connection goes to gw-z, tier 3, none fails.
    assert!(
        eventually(LIMIT, || async { serving_tier(&xm) == 3.0 }).await,
        "serving tier 3 at gw-x (is {})",
        serving_tier(&xm)
    );
    let before = connections(&xm, "3", "ok");
    assert_all_served_by(listen, "z", 20, "gw-y black-holed").await;
    assert_counted(&xm, "3", before + 20.0).await;

    // The link heals: gw-x redials gw-y by itself and traffic returns to tier 2. The dial gw-x
    // started when it dropped gw-y went into the black hole and lost its ClientHello, so it
    // only gives up at `handshake_timeout` (default 5 s); the next dial succeeds.
    relay.set_mode(Mode::Pass);
    let healed = Instant::now();
    assert!(
        eventually(Duration::from_secs(12), || async {
            tunnel_up(&xm, "gw-y") == 1.0
        })
        .await,
        "gw-x redials gw-y after the link heals"
    );
    let redialed = healed.elapsed();
    assert!(
        eventually(LIMIT, || async { serving_tier(&xm) == 2.0 }).await,
        "serving tier back to 2"
    );
    assert!(
        eventually(LIMIT, || async {
            echo_via(listen).await.as_deref() == Ok("y")
        })
        .await,
        "traffic back on gw-y"
    );
    eprintln!(
        "blackhole: link healed -> tunnel up again {redialed:?}, traffic on gw-y {:?}",
        healed.elapsed()
    );
    assert_all_served_by(listen, "y", 5, "gw-y back").await;
    assert!(
        metric(
            &xm,
            "strait_failovers_total",
            &[("service", SVC), ("from_tier", "2"), ("to_tier", "3")]
        ) >= 1.0,
        "failover 2 -> 3 counted"
    );
}

/// `strait run` of `name` from `topo`, returned once it printed `ready`. Retries (bounded)
/// while an address is still in use, as after a SIGKILL.
async fn start_process(
    topo: &mut Topology,
    dir: &Path,
    name: &str,
    attempt: &mut u32,
) -> StraitProcess {
    drop(topo.take_sockets(name));
    let config = topo.config_path(name);
    let start = Instant::now();
    loop {
        *attempt += 1;
        let log = dir.join(format!("{name}.{attempt}.log"));
        let mut process = StraitProcess::spawn(
            &format!("{name} (start {attempt})"),
            ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            &log,
        );
        if let Some(line) = process.line(LIMIT).await {
            let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
            assert_eq!(ready["event"], "ready", "{line}");
            return process;
        }
        let status = process.wait(IO).await;
        let stderr = process.stderr();
        assert!(
            stderr.contains("in use") && start.elapsed() < LIMIT,
            "{name} exited with {status}: {stderr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_dropped_and_traffic_moves() {
    strait::tls::install_default_provider();
    let block = 71;
    let dir = tempfile::tempdir().unwrap();
    let echo_y = TaggedEcho::start(addr(block, 10), "y").await;
    let echo_z = TaggedEcho::start(addr(block, 11), "z").await;
    let mut topo = Topology::new(dir.path()).unwrap();
    let listen = add_caller(&mut topo, block, &["gw-y", "gw-z"]);
    add_server(
        &mut topo,
        "gw-y",
        "region-y",
        ip(block, 2),
        &[echo_y.address],
        "",
    );
    add_server(
        &mut topo,
        "gw-z",
        "region-z",
        ip(block, 3),
        &[echo_z.address],
        "",
    );
    topo.write_configs().unwrap();
    let mut starts = 0;
    let mut y = start_process(&mut topo, dir.path(), "gw-y", &mut starts).await;
    let _z = start_in_process(&mut topo, "gw-z").await;
    let (_x, xm) = start_in_process(&mut topo, "gw-x").await;

    assert!(
        eventually(LIMIT, || async {
            tunnel_up(&xm, "gw-y") == 1.0 && tunnel_up(&xm, "gw-z") == 1.0
        })
        .await,
        "gw-x has both tunnels up"
    );
    assert!(
        eventually(LIMIT, || async { serving_tier(&xm) == 2.0 }).await,
        "gw-y's region serves"
    );
    assert_all_served_by(listen, "y", 10, "healthy").await;

    // A client keeps connecting throughout; gw-y is killed under it.
    let origin = Instant::now();
    let client = retry_loop(listen, origin, "never", Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(500)).await; // deliberate: traffic before the kill
    y.signal("KILL");
    let killed = origin.elapsed();
    let t0 = Instant::now();
    assert!(
        eventually(LIMIT, || async { tunnel_up(&xm, "gw-y") == 0.0 }).await,
        "gw-x drops the killed gw-y"
    );
    let detected = t0.elapsed();
    eprintln!("kill: gw-y marked down {detected:?} after SIGKILL");
    assert!(
        detected < Duration::from_secs(1),
        "a killed peer is seen at once (connection reset), took {detected:?}"
    );
    assert!(!y.wait(IO).await.success(), "gw-y was killed");
    drop(y);
    assert!(
        eventually(LIMIT, || async { serving_tier(&xm) == 3.0 }).await,
        "serving tier 3 at gw-x"
    );

    let attempts = client.await.unwrap();
    // Connections started after the kill must all succeed, through gw-z once it is known
    // dead; one in flight at the kill may be cut.
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.started >= killed).collect();
    let failed: Vec<&&Attempt> = after.iter().filter(|a| a.result.is_err()).collect();
    let in_flight: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| a.started < killed && a.finished > killed)
        .collect();
    eprintln!(
        "kill: {} connections before the kill, {} after ({} failed), in flight at the kill: {in_flight:?}",
        attempts.len() - after.len(),
        after.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "new connections failed after the kill: {failed:?}"
    );
    assert!(
        after.iter().any(|a| a.result.as_deref() == Ok("z")),
        "traffic moved to gw-z: {after:?}"
    );
    if let Some(first) = after.iter().find(|a| a.result.as_deref() == Ok("z")) {
        eprintln!(
            "kill: first echo through gw-z {:?} after SIGKILL",
            first.finished - killed
        );
    }
    assert_all_served_by(listen, "z", 20, "gw-y dead").await;

    // gw-y comes back with the same config; gw-x redials it and moves traffic back.
    let restarting = Instant::now();
    let _y = start_process(&mut topo, dir.path(), "gw-y", &mut starts).await;
    let ready = restarting.elapsed();
    assert!(
        eventually(LIMIT, || async { tunnel_up(&xm, "gw-y") == 1.0 }).await,
        "gw-x redials the restarted gw-y"
    );
    let redialed = restarting.elapsed();
    assert!(
        eventually(LIMIT, || async {
            serving_tier(&xm) == 2.0 && echo_via(listen).await.as_deref() == Ok("y")
        })
        .await,
        "traffic back on gw-y"
    );
    eprintln!(
        "kill: restarted gw-y ready after {ready:?}, tunnel up after {redialed:?}, traffic on gw-y after {:?}",
        restarting.elapsed()
    );
    assert_all_served_by(listen, "y", 5, "gw-y restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_advert_propagates() {
    strait::tls::install_default_provider();
    let block = 72;
    let dir = tempfile::tempdir().unwrap();
    let echo_1 = TaggedEcho::start(addr(block, 10), "y").await;
    let echo_2 = TaggedEcho::start(addr(block, 11), "y").await;
    let mut topo = Topology::new(dir.path()).unwrap();
    let listen = add_caller(&mut topo, block, &["gw-y"]);
    // An inline table: `extra` is written before `endpoints = [...]`, so a `[services.health_check]`
    // header there would swallow the endpoints key.
    let health_check = "health_check = { kind = \"tcp\", interval = \"100ms\", timeout = \"100ms\", \
                        unhealthy_threshold = 1, healthy_threshold = 1 }\n";
    add_server(
        &mut topo,
        "gw-y",
        "region-y",
        ip(block, 2),
        &[echo_1.address, echo_2.address],
        health_check,
    );
    topo.write_configs().unwrap();
    let (_y, ym) = start_in_process(&mut topo, "gw-y").await;
    let (_x, xm) = start_in_process(&mut topo, "gw-x").await;

    assert!(
        eventually(LIMIT, || async {
            tunnel_up(&xm, "gw-y") == 1.0 && remote_healthy(&xm, "gw-y") == 2.0
        })
        .await,
        "gw-x sees gw-y advertise 2 healthy endpoints (sees {})",
        remote_healthy(&xm, "gw-y")
    );
    assert_eq!(serving_tier(&xm), 2.0);
    assert_all_served_by(listen, "y", 4, "both endpoints up").await;

    // One endpoint stops: gw-y's health check notices, its advert says 1.
    drop(echo_1);
    let t0 = Instant::now();
    assert!(
        eventually(LIMIT, || async { remote_healthy(&xm, "gw-y") == 1.0 }).await,
        "gw-x sees 1 healthy endpoint at gw-y (sees {})",
        remote_healthy(&xm, "gw-y")
    );
    let one = t0.elapsed();
    eprintln!(
        "advert: one endpoint down -> gw-x sees 1 after {one:?} (health check interval 100ms)"
    );
    assert_all_served_by(listen, "y", 4, "one endpoint left").await;

    // The other stops too: gw-x sees 0 and sends gw-y nothing more.
    drop(echo_2);
    let t0 = Instant::now();
    assert!(
        eventually(LIMIT, || async { remote_healthy(&xm, "gw-y") == 0.0 }).await,
        "gw-x sees 0 healthy endpoints at gw-y"
    );
    let zero = t0.elapsed();
    eprintln!("advert: last endpoint down -> gw-x sees 0 after {zero:?}");
    assert!(
        eventually(LIMIT, || async { serving_tier(&xm) == -1.0 }).await,
        "no tier serves (serving tier {})",
        serving_tier(&xm)
    );
    let streams_at_y = |outcome: &str| {
        metric(
            &ym,
            "strait_tunnel_streams_total",
            &[
                ("peer", "gw-x"),
                ("direction", "inbound"),
                ("outcome", outcome),
            ],
        )
    };
    let refused_before = streams_at_y("no-healthy-endpoint");
    let started = Instant::now();
    match echo_via(listen).await {
        // Reset (the unread `ping`) or a plain close, either way without an answer.
        Err(e) if !e.starts_with("connect:") && !e.starts_with("no answer") => {}
        other => panic!("expected the connection closed without an answer, got {other:?}"),
    }
    let closed = started.elapsed();
    eprintln!("advert: connection with no healthy upstream closed after {closed:?}");
    assert!(
        closed < Duration::from_secs(1),
        "closed at once, took {closed:?}"
    );
    assert!(
        eventually(LIMIT, || async {
            connections(&xm, "none", "no_healthy_upstream") == 1.0
        })
        .await,
        "counted as no_healthy_upstream"
    );
    assert_eq!(
        streams_at_y("no-healthy-endpoint"),
        refused_before,
        "gw-x sent gw-y no stream for a service it advertises empty"
    );
}

/// The impairment relay itself: pass with latency, black-hole old and new connections, reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_passes_blackholes_and_resets() {
    let block = 75;
    let echo = TaggedEcho::start(addr(block, 10), "t").await;
    let relay = Relay::start(addr(block, 9), echo.address).await.unwrap();
    let via = relay.address();
    assert_eq!(echo_via(via).await.as_deref(), Ok("t"));

    relay.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(echo_via(via).await.as_deref(), Ok("t"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "100 ms each way, took {took:?}"
    );
    relay.set_latency(Duration::ZERO);

    // Absence of bytes can only be checked for a while; 300 ms is plenty on loopback.
    let silent = Duration::from_millis(300);
    let mut old = TcpStream::connect(via).await.unwrap();
    let mut tag = [0u8; 2];
    old.read_exact(&mut tag).await.unwrap();
    assert_eq!(&tag, b"t|");
    relay.set_mode(Mode::Blackhole);
    assert_eq!(relay.mode(), Mode::Blackhole);
    old.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 16];
    assert!(
        tokio::time::timeout(silent, old.read(&mut buf))
            .await
            .is_err(),
        "nothing comes back through a black hole"
    );
    let mut new = TcpStream::connect(via).await.expect("black hole accepts");
    new.write_all(b"ping").await.unwrap();
    assert!(
        tokio::time::timeout(silent, new.read(&mut buf))
            .await
            .is_err(),
        "a new connection goes nowhere"
    );

    relay.set_mode(Mode::Reset);
    for (what, tcp) in [("old", &mut old), ("new", &mut new)] {
        let read = tokio::time::timeout(IO, tcp.read(&mut buf))
            .await
            .expect("reset at once");
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset),
            "{what} connection reset"
        );
    }
    match echo_via(via).await {
        Err(e) if e.contains("reset") => {}
        other => panic!("new connections are reset, got {other:?}"),
    }

    relay.set_mode(Mode::Pass);
    assert_eq!(echo_via(via).await.as_deref(), Ok("t"), "passes again");
}

// Regression tests for two bugs these tests found (both fixed).

/// After a tunnel reconnect the health stream must be reopened at once: a lost connection is
/// not the stream's fault (it once waited out the 5 s heartbeat, so a health change at the
/// peer reached the caller ~4.85 s late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adverts_resume_at_once_after_a_reconnect() {
    strait::tls::install_default_provider();
    let block = 73;
    let dir = tempfile::tempdir().unwrap();
    let echo_1 = TaggedEcho::start(addr(block, 10), "y").await;
    let echo_2 = TaggedEcho::start(addr(block, 11), "y").await;
    let mut topo = Topology::new(dir.path()).unwrap();
    add_caller(&mut topo, block, &["gw-y"]);
    let health_check = "health_check = { kind = \"tcp\", interval = \"100ms\", timeout = \"100ms\", \
                        unhealthy_threshold = 1, healthy_threshold = 1 }\n";
    let eps = [echo_1.address, echo_2.address];
    add_server(
        &mut topo,
        "gw-y",
        "region-y",
        ip(block, 2),
        &eps,
        health_check,
    );
    let relay = Relay::start(addr(block, 9), topo.get("gw-y").tunnel)
        .await
        .unwrap();
    topo.write_configs().unwrap();
    redirect_peer(&topo, "gw-x", "gw-y", relay.address());
    let _y = start_in_process(&mut topo, "gw-y").await;
    let (_x, xm) = start_in_process(&mut topo, "gw-x").await;
    assert!(
        eventually(LIMIT, || async {
            tunnel_up(&xm, "gw-y") == 1.0 && remote_healthy(&xm, "gw-y") == 2.0
        })
        .await,
        "gw-x sees gw-y's two healthy endpoints"
    );

    // The tunnel connection is lost and redialed (reset, then the link works again).
    relay.set_mode(Mode::Reset);
    assert!(eventually(LIMIT, || async { tunnel_up(&xm, "gw-y") == 0.0 }).await);
    relay.set_mode(Mode::Pass);
    assert!(eventually(LIMIT, || async { tunnel_up(&xm, "gw-y") == 1.0 }).await);

    drop(echo_1);
    let t0 = Instant::now();
    let seen = eventually(Duration::from_secs(1), || async {
        remote_healthy(&xm, "gw-y") == 1.0
    })
    .await;
    assert!(
        seen,
        "an advert change right after a reconnect reaches gw-x within 1 s (health check 100 ms); \
         still {} after {:?}",
        remote_healthy(&xm, "gw-y"),
        t0.elapsed()
    );
}

/// Streams that die because liveness retired their tunnel connection are the tunnel's
/// failure, not the service's: they must not count towards ejecting the peer (they once did,
/// and connections opened while a black-holed peer was being detected ejected it for 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_tunnel_does_not_eject_the_peer() {
    strait::tls::install_default_provider();
    let block = 74;
    let dir = tempfile::tempdir().unwrap();
    let echo_y = TaggedEcho::start(addr(block, 10), "y").await;
    let echo_z = TaggedEcho::start(addr(block, 11), "z").await;
    let mut topo = Topology::new(dir.path()).unwrap();
    let listen = add_caller(&mut topo, block, &["gw-y", "gw-z"]);
    add_server(
        &mut topo,
        "gw-y",
        "region-y",
        ip(block, 2),
        &[echo_y.address],
        "",
    );
    add_server(
        &mut topo,
        "gw-z",
        "region-z",
        ip(block, 3),
        &[echo_z.address],
        "",
    );
    let relay = Relay::start(addr(block, 9), topo.get("gw-y").tunnel)
        .await
        .unwrap();
    topo.write_configs().unwrap();
    redirect_peer(&topo, "gw-x", "gw-y", relay.address());
    let _y = start_in_process(&mut topo, "gw-y").await;
    let _z = start_in_process(&mut topo, "gw-z").await;
    let (_x, xm) = start_in_process(&mut topo, "gw-x").await;
    assert!(
        eventually(LIMIT, || async {
            tunnel_up(&xm, "gw-y") == 1.0
                && tunnel_up(&xm, "gw-z") == 1.0
                && serving_tier(&xm) == 2.0
        })
        .await,
        "gw-y serves"
    );

    relay.set_mode(Mode::Blackhole);
    let clients: Vec<_> = (0..8).map(|_| tokio::spawn(echo_via(listen))).collect();
    for client in clients {
        assert_eq!(client.await.unwrap().as_deref(), Ok("z"), "served by gw-z");
    }
    assert_eq!(tunnel_up(&xm, "gw-y"), 0.0);
    let ejected = metric(
        &xm,
        "strait_outlier_ejections_active",
        &[("service", SVC), ("tier", "2")],
    );
    assert_eq!(
        ejected, 0.0,
        "a peer taken out by liveness is not also ejected by outlier detection"
    );
}
