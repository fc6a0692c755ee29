//! Gateways as real `strait run` processes: a peer killed with SIGKILL comes back without
//! anyone touching the survivor; SIGTERM drains in-flight connections and refuses new ones,
//! up to `gateway.drain_timeout`, on the dialing side and on the serving side of a tunnel; a
//! would-be peer with a bad certificate is refused without disturbing the established tunnels.
//!
//! Each test uses its own loopback block (127.0.60-64.x) so it can run beside any other.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use strait::demo::mocks::{EchoTcp, http_get};
use strait::demo::topology::Topology;
use support::{StraitProcess, eventually, scrape_value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for a process's `ready` line or for a condition polled over the admin API.
const LIMIT: Duration = Duration::from_secs(15);
/// Bound on any single socket read in these tests.
const IO: Duration = Duration::from_secs(5);

/// Two gateways written out as configs: gw-x has a `tcp` listener for `svc.default:7000` and no
/// endpoints; gw-y has the endpoint, an echo server in this test process.
struct Plan {
    topo: Topology,
    dir: tempfile::TempDir,
    listen: SocketAddr,
    _echo: EchoTcp,
    /// Process starts so far (numbers the stderr logs).
    attempts: u32,
}

impl Plan {
    async fn new(block: u8, x_gateway_extra: &str, tunnel_extra: &str) -> Plan {
        strait::tls::install_default_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let echo = EchoTcp::start(SocketAddr::from(([127, 0, block, 10], 0)))
            .await
            .expect("echo server");
        let mut topo = Topology::new(dir.path()).expect("topology");
        let x = topo
            .gateway(
                "gw-x",
                "region-x",
                "zone-x1",
                Ipv4Addr::new(127, 0, block, 1),
            )
            .unwrap();
        x.peers.push("gw-y".into());
        x.gateway_extra = x_gateway_extra.to_owned();
        x.tunnel_extra = tunnel_extra.to_owned();
        x.service("svc.default:7000", "tcp", true, vec![]);
        let listen = x.listener("svc", "tcp", Some("svc.default:7000")).unwrap();
        let y = topo
            .gateway(
                "gw-y",
                "region-y",
                "zone-y1",
                Ipv4Addr::new(127, 0, block, 2),
            )
            .unwrap();
        y.peers.push("gw-x".into());
        y.tunnel_extra = tunnel_extra.to_owned();
        y.service(
            "svc.default:7000",
            "tcp",
            true,
            vec![(echo.address(), "zone-y1".into())],
        );
        topo.write_configs().unwrap();
        Plan {
            topo,
            dir,
            listen,
            _echo: echo,
            attempts: 0,
        }
    }

    fn admin(&self, name: &str) -> SocketAddr {
        self.topo.get(name).admin
    }

    /// Releases the reserved sockets of `name` and runs it as a process; returns once it
    /// printed its `ready` line. `attempt` names the stderr log.
    async fn spawn(&mut self, name: &str, attempt: u32) -> Result<StraitProcess, String> {
        drop(self.topo.take_sockets(name));
        let config = self.topo.config_path(name);
        let log = self.dir.path().join(format!("{name}.{attempt}.log"));
        let mut process = StraitProcess::spawn(
            &format!("{name} (attempt {attempt})"),
            ["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            &log,
        );
        let Some(line) = process.line(LIMIT).await else {
            let status = process.wait(IO).await;
            return Err(format!("{name} exited with {status}: {}", process.stderr()));
        };
        let ready: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
        assert_eq!(ready["event"], "ready", "{line}");
        let plan = self.topo.get(name);
        assert_eq!(ready["gateway"]["name"], name, "{line}");
        assert_eq!(ready["gateway"]["admin"], plan.admin.to_string(), "{line}");
        assert_eq!(
            ready["gateway"]["tunnel"],
            plan.tunnel.to_string(),
            "{line}"
        );
        Ok(process)
    }

    /// [`Plan::spawn`], retried briefly (bounded) while an address is still in use: after a
    /// SIGKILL the old process's sockets may linger a moment, and on a first start a released
    /// reserved socket can live on in a child another test is forking (until its exec closes
    /// it).
    async fn start(&mut self, name: &str) -> StraitProcess {
        let start = Instant::now();
        loop {
            self.attempts += 1;
            match self.spawn(name, self.attempts).await {
                Ok(process) => return process,
                Err(e) if e.contains("in use") && start.elapsed() < LIMIT => {
                    eprintln!("{name}: start {} failed, retrying: {e}", self.attempts);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("starting {name}: {e}"),
            }
        }
    }

    /// Starts gw-y then gw-x as processes and waits until gw-x's tunnel to gw-y is up.
    async fn start_both(&mut self) -> (StraitProcess, StraitProcess) {
        let y = self.start("gw-y").await;
        let x = self.start("gw-x").await;
        let admin = self.admin("gw-x");
        assert!(
            eventually(LIMIT, || tunnel_up_is(admin, "gw-y", 1.0)).await,
            "gw-x reports its tunnel to gw-y up; gw-x stderr:\n{}",
            x.stderr()
        );
        (x, y)
    }
}

/// gw-x's `/metrics` text (empty when the admin port does not answer).
async fn metrics(admin: SocketAddr) -> String {
    match http_get(admin, "admin", "/metrics").await {
        Ok((status, _, body)) if status == 200 => body,
        _ => String::new(),
    }
}

async fn tunnel_up_is(admin: SocketAddr, peer: &str, want: f64) -> bool {
    let text = metrics(admin).await;
    scrape_value(&text, &format!("strait_tunnel_up{{peer=\"{peer}\"}}")) == Some(want)
}

/// One connection through a listener: send `msg`, half-close, read to EOF. `Err` when the
/// connect, write or read fails (refused, reset) or the read takes longer than [`IO`].
async fn echo_once(addr: SocketAddr, msg: &[u8]) -> Result<Vec<u8>, String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.write_all(msg)
        .await
        .map_err(|e| format!("write: {e}"))?;
    tcp.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
    let mut back = Vec::new();
    match tokio::time::timeout(IO, tcp.read_to_end(&mut back)).await {
        Ok(Ok(_)) => Ok(back),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Err(_) => Err("read timed out".into()),
    }
}

async fn echoes(addr: SocketAddr) -> bool {
    echo_once(addr, b"ping").await.as_deref() == Ok(b"ping".as_slice())
}

/// A connection through `addr` gets no service: refused, reset, or closed without a byte.
async fn assert_unserved(addr: SocketAddr, what: &str) {
    match echo_once(addr, b"anyone there?").await {
        Err(e) => assert!(!e.contains("timed out"), "{what}: {e}"),
        Ok(back) => assert!(
            back.is_empty(),
            "{what}: expected no service, got {:?}",
            String::from_utf8_lossy(&back)
        ),
    }
}

/// Sends `msg` on an open connection and reads exactly its echo.
async fn round_trip(tcp: &mut TcpStream, msg: &[u8]) {
    tcp.write_all(msg).await.expect("write on held connection");
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(IO, tcp.read_exact(&mut back))
        .await
        .expect("echo in time")
        .expect("echo read");
    assert_eq!(back, msg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_comes_back_by_itself() {
    let mut plan = Plan::new(60, "", "reconnect_backoff_max = \"500ms\"\n").await;
    let (mut x, mut y) = plan.start_both().await;
    let (listen, x_admin) = (plan.listen, plan.admin("gw-x"));
    assert!(echoes(listen).await, "echo through gw-x -> gw-y");

    y.signal("KILL");
    let status = y.wait(IO).await;
    assert!(!status.success(), "gw-y was killed: {status}");
    drop(y);

    assert!(
        eventually(LIMIT, || tunnel_up_is(x_admin, "gw-y", 0.0)).await,
        "gw-x reports gw-y down after SIGKILL; metrics:\n{}",
        metrics(x_admin).await
    );
    assert_unserved(listen, "gw-y dead").await;

    // Same config, same addresses; gw-x is left alone.
    let _y = plan.start("gw-y").await;
    let restarted = Instant::now();
    assert!(
        eventually(LIMIT, || tunnel_up_is(x_admin, "gw-y", 1.0)).await,
        "gw-x redialed gw-y by itself; metrics:\n{}",
        metrics(x_admin).await
    );
    assert!(
        eventually(LIMIT, || echoes(listen)).await,
        "echo through gw-x works again"
    );
    let recovered = restarted.elapsed();
    let text = metrics(x_admin).await;
    let reconnects = scrape_value(&text, "strait_tunnel_reconnects_total{peer=\"gw-y\"}");
    assert!(
        reconnects.is_some_and(|n| n >= 1.0),
        "reconnect counted ({reconnects:?}); metrics:\n{text}"
    );
    assert!(
        matches!(x.child.try_wait(), Ok(None)),
        "gw-x kept running throughout"
    );
    eprintln!("gw-y restart to traffic through gw-x again: {recovered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_and_refuses_new() {
    let mut plan = Plan::new(61, "drain_timeout = \"10s\"\n", "").await;
    let (mut x, _y) = plan.start_both().await;
    let (listen, x_admin) = (plan.listen, plan.admin("gw-x"));
    let (status, _, body) = http_get(x_admin, "admin", "/readyz").await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "ready\n"));

    let mut held = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut held, b"first").await;

    x.signal("TERM");
    let term = Instant::now();
    let draining = eventually(LIMIT, || async {
        matches!(http_get(x_admin, "admin", "/readyz").await,
            Ok((s, _, b)) if s == 503 && b == "draining\n")
    })
    .await;
    assert!(draining, "/readyz answers 503 draining after SIGTERM");
    assert_unserved(listen, "new connection while draining").await;

    // The connection accepted before SIGTERM is still served, in both directions.
    round_trip(&mut held, b"second").await;
    held.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(IO, held.read_to_end(&mut rest))
        .await
        .expect("EOF in time")
        .expect("clean EOF");
    assert!(rest.is_empty());
    drop(held);

    // With nothing left in flight the process exits well before the 10 s deadline.
    let status = x.wait(IO).await;
    let took = term.elapsed();
    assert!(status.success(), "gw-x exits 0 after the drain: {status}");
    assert!(
        took < Duration::from_secs(8),
        "exited when the last connection closed, not at the deadline ({took:?})"
    );
    let stopped = x.json_line(IO).await;
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["forced"], 0, "{stopped}");
    eprintln!("SIGTERM to exit with one connection drained: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_forces_stuck_connections() {
    let mut plan = Plan::new(62, "drain_timeout = \"1s\"\n", "").await;
    let (mut x, _y) = plan.start_both().await;
    let listen = plan.listen;

    let mut stuck = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut stuck, b"never closing").await;

    x.signal("TERM");
    let term = Instant::now();
    let status = x.wait(Duration::from_secs(10)).await;
    let took = term.elapsed();
    assert!(
        status.success(),
        "gw-x exits 0 after a forced drain: {status}"
    );
    assert!(
        took >= Duration::from_millis(900),
        "waited for the deadline ({took:?})"
    );
    assert!(
        took < Duration::from_secs(4),
        "exited soon after the 1 s deadline ({took:?})"
    );
    let stopped = x.json_line(IO).await;
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert!(
        stopped["forced"].as_u64().is_some_and(|n| n >= 1),
        "{stopped}"
    );

    // The stuck client was closed on, not left hanging.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(IO, stuck.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eprintln!("SIGTERM to exit with a stuck connection and a 1 s deadline: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_serving_peer_finishes_its_streams() {
    let mut plan = Plan::new(64, "", "ping_interval = \"200ms\"\n").await;
    // gw-y serves the stream here; give it the long deadline.
    plan.topo.get_mut("gw-y").gateway_extra = "drain_timeout = \"10s\"\n".into();
    plan.topo.write_configs().unwrap();
    let (_x, mut y) = plan.start_both().await;
    let (listen, y_admin) = (plan.listen, plan.admin("gw-y"));

    let mut held = TcpStream::connect(listen).await.unwrap();
    round_trip(&mut held, b"first").await;

    y.signal("TERM");
    let term = Instant::now();
    let draining = eventually(LIMIT, || async {
        matches!(http_get(y_admin, "admin", "/readyz").await,
            Ok((s, _, b)) if s == 503 && b == "draining\n")
    })
    .await;
    assert!(draining, "gw-y /readyz answers 503 draining after SIGTERM");
    round_trip(&mut held, b"second").await;
    // Not a readiness wait: let gw-x ping the GOAWAY'd tunnel a few times (every 200 ms) to
    // show a draining peer still counts as alive for the streams it carries.
    tokio::time::sleep(Duration::from_millis(700)).await;
    round_trip(&mut held, b"third, after a few pings").await;
    held.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(IO, held.read_to_end(&mut rest))
        .await
        .expect("EOF in time")
        .expect("clean EOF");
    assert!(rest.is_empty());
    drop(held);

    let status = y.wait(IO).await;
    let took = term.elapsed();
    assert!(status.success(), "gw-y exits 0 after the drain: {status}");
    assert!(
        took < Duration::from_secs(8),
        "exited when the stream ended, not at the 10 s deadline ({took:?})"
    );
    let stopped = y.json_line(IO).await;
    assert_eq!(stopped["event"], "stopped", "{stopped}");
    assert_eq!(stopped["forced"], 0, "{stopped}");
    eprintln!("SIGTERM on the serving peer to exit, stream finished first: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_peers_are_refused_without_touching_the_tunnel() {
    let mut plan = Plan::new(63, "", "").await;
    let (x, y) = plan.start_both().await;
    let (listen, x_admin, y_admin) = (plan.listen, plan.admin("gw-x"), plan.admin("gw-y"));
    let x_tunnel = plan.topo.get("gw-x").tunnel;
    let ca_path = plan.dir.path().join("ca.pem");
    assert!(
        eventually(LIMIT, || tunnel_up_is(y_admin, "gw-x", 1.0)).await,
        "gw-y's tunnel to gw-x is up too"
    );

    // A certificate from another CA claiming gw-y's identity, and one from the right CA for a
    // gateway gw-x does not know.
    let rogue_ca = strait::certs::Ca::generate(strait::demo::topology::TRUST_DOMAIN).unwrap();
    let impostor = support::gateway_cert(&rogue_ca, "gw-y", &Default::default());
    let stranger = support::gateway_cert(&plan.topo.ca, "gw-evil", &Default::default());
    for (what, cert) in [("impostor", &impostor), ("stranger", &stranger)] {
        let config = support::peer_client(&ca_path, Some(cert));
        match support::tls_connect(x_tunnel, "gw-x", config).await {
            Err(_) => {}
            Ok(mut tls) => {
                let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
                let mut buf = [0u8; 64];
                let read = tokio::time::timeout(IO, tls.read(&mut buf))
                    .await
                    .expect("gw-x answers");
                assert!(matches!(read, Err(_) | Ok(0)), "{what} refused: {read:?}");
            }
        }
    }
    let refusals = || async {
        metrics(x_admin)
            .await
            .lines()
            .filter(|l| {
                l.starts_with("strait_tunnel_handshake_failures_total{")
                    && l.contains("direction=\"inbound\"")
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert!(
        eventually(LIMIT, || async { refusals().await >= 2.0 }).await,
        "both refusals counted; metrics:\n{}",
        metrics(x_admin).await
    );

    // The real tunnel never noticed: still up both ways, never redialed, still carrying.
    for (admin, peer) in [(x_admin, "gw-y"), (y_admin, "gw-x")] {
        let text = metrics(admin).await;
        assert_eq!(
            scrape_value(&text, &format!("strait_tunnel_up{{peer=\"{peer}\"}}")),
            Some(1.0),
            "{text}"
        );
        let reconnects = scrape_value(
            &text,
            &format!("strait_tunnel_reconnects_total{{peer=\"{peer}\"}}"),
        );
        assert!(
            reconnects.unwrap_or(0.0) == 0.0,
            "no reconnect to {peer}: {text}"
        );
    }
    assert!(
        echoes(listen).await,
        "echo through gw-x -> gw-y still works"
    );
    drop((x, y));
}
